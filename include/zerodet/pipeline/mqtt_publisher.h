// MqttPublisher: sends a pipeline's detections to an MQTT broker (libmosquitto), one topic per
// source, so results leave the machine through a broker the site already runs (mosquitto,
// EMQX, HiveMQ, a cloud IoT hub).
//
// Delivery: QoS 1 by default (at least once: the broker acknowledges each message, and one sent
// but not acknowledged when the connection drops is sent again, so a consumer may see it twice).
// The client connects in the background and reconnects with exponential backoff (min_reconnect
// .. max_reconnect) whenever the broker goes away; messages published meanwhile wait in memory
// and go out after the reconnect, in order, after the unacknowledged ones. That
// memory is bounded: at most max_queue messages wait or are in flight at once; Publish drops
// (and counts) what does not fit instead of blocking the pipeline or growing without bound.
//
// Ownership: owns its libmosquitto client and network thread; the destructor disconnects
// (messages still waiting are dropped, counted in stats()). Thread-safety: every method may be
// called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "zerodet/core/status.h"

namespace zerodet::pipeline {

struct MqttOptions {
  std::string host = "127.0.0.1";
  int port = 1883;                       // 1..65535
  std::string topic_prefix = "zerodet";  // messages go to <topic_prefix>/<source>
  int qos = 1;                           // 0, 1 or 2
  std::string client_id;                 // empty: "zerodet-<pid>"
  std::string username;                  // empty: no authentication
  std::string password;
  int keepalive_seconds = 30;  // 5..3600
  uint32_t max_queue = 10000;  // messages waiting or unacknowledged, 1..10'000'000
  std::chrono::seconds min_reconnect{1};
  std::chrono::seconds max_reconnect{30};
};

struct MqttStats {
  uint64_t published = 0;     // accepted by Publish
  uint64_t acknowledged = 0;  // acknowledged by the broker (QoS 0: handed to libmosquitto)
  uint64_t dropped = 0;       // refused by Publish: the queue was full
  uint64_t connects = 0;      // successful connections (the first and each reconnect)
  bool connected = false;
};

// Errors: kInvalidArgument naming the option out of range: port outside 1..65535, qos outside
// 0..2, keepalive outside 5..3600 s, max_queue outside 1..10^7, an empty host, a topic prefix
// with wildcards (+, #), NUL or empty levels, reconnect delays under 1 s or min > max.
Status ValidateMqttOptions(const MqttOptions& options);

class MqttPublisher {
 public:
  // Validates the options and starts connecting in the background (a broker that is not up yet
  // is retried, not an error). Errors: ValidateMqttOptions's; kInternal when libmosquitto
  // cannot create the client or its threads.
  static Result<std::unique_ptr<MqttPublisher>> Create(const MqttOptions& options);
  ~MqttPublisher();
  MqttPublisher(const MqttPublisher&) = delete;
  MqttPublisher& operator=(const MqttPublisher&) = delete;

  // Queues `payload` for <topic_prefix>/<source>. Returns false (counted as dropped) when
  // max_queue messages already wait or are unacknowledged, or the source name is not a valid
  // topic level (wildcards, '/', NUL or empty).
  bool Publish(std::string_view source, std::string_view payload);

  MqttStats stats() const;
  const MqttOptions& options() const;

  struct Impl;

 private:
  explicit MqttPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zerodet::pipeline

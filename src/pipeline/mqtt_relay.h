// MqttRelay (internal): the pipeline's MQTT client lives in a child process of its own, fed the
// result lines over a socket pair. The supervisor forks its ingest and worker children at any
// time (restarts); had it a libmosquitto client, the client's threads could hold a lock (the
// allocator's, the logger's) at the moment of a fork and leave the child deadlocked. Forked
// first, while the supervisor is still single-threaded, the relay keeps it that way.
//
// Framing on the socket: per result, u32 source length, u32 payload length (host order), the
// source name, the payload. Sends never block the supervisor: records wait in a bounded buffer
// (kMaxBuffered) while the relay is behind; beyond it they are dropped and counted.
//
// Ownership: the supervisor owns the relay (its socket and pid); Finish ends it. A child forked
// later must call CloseInChild so the relay sees the end of the stream when the supervisor ends.
// Thread-safety: none (the supervisor's thread only).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "zerodet/core/status.h"
#include "zerodet/pipeline/mqtt_publisher.h"

namespace zerodet::pipeline::detail {

class MqttRelay {
 public:
  static constexpr size_t kMaxBuffered = size_t{16} << 20;

  // Forks the relay child, which connects to the broker in the background. Errors: the
  // socket pair or the fork failing (ErrnoError).
  static Result<std::unique_ptr<MqttRelay>> Start(const MqttOptions& options);
  // Ends the relay if Finish was not called (its results still waiting are lost).
  ~MqttRelay();
  MqttRelay(const MqttRelay&) = delete;
  MqttRelay& operator=(const MqttRelay&) = delete;

  // Hands one result to the relay without blocking; false when it was dropped (the buffer is
  // full, or the relay has died).
  bool Send(std::string_view source, std::string_view payload);

  // Sends what is buffered, closes the stream and waits (at most `grace`, then SIGKILL) for the
  // relay to deliver and report. Returns its counts: published (handed to the relay's client),
  // dropped (here, in the relay's queue, or unacknowledged by the broker at the end).
  struct Counts {
    uint64_t published = 0;
    uint64_t dropped = 0;
  };
  Counts Finish(std::chrono::milliseconds grace);

  // In a child forked after Start: closes the relay's socket there.
  void CloseInChild() const;

 private:
  MqttRelay() = default;
  // Writes as much of the buffer as the socket takes now; false when the relay is gone.
  bool Flush();

  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buffer_;
  size_t sent_ = 0;  // bytes of buffer_ already written
  uint64_t records_ = 0;
  uint64_t dropped_ = 0;
  bool dead_ = false;
};

// The relay child's body: reads records from `fd` until its end, publishes them, waits for the
// broker's acknowledgements (at most `flush`), writes the counts back on `fd` and returns the
// exit code.
int RunMqttRelay(const MqttOptions& options, int fd, std::chrono::milliseconds flush);

}  // namespace zerodet::pipeline::detail

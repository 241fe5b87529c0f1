#include "zerodet/pipeline/mqtt_publisher.h"

#include <mosquitto.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace zerodet::pipeline {
namespace {

void InitLibraryOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

// A topic level of ours (the prefix's levels, a source name): no wildcards, no NUL.
bool ValidTopicText(std::string_view text, bool allow_slash) {
  if (text.empty()) return false;
  for (char c : text) {
    if (c == '+' || c == '#' || c == '\0' || (!allow_slash && c == '/')) return false;
  }
  return true;
}

}  // namespace

// Messages go out on one sender thread, in order: Publish only queues them, so no caller ever
// waits on the network. With QoS 1/2 every message sent stays in `unacked` until the broker
// acknowledges it; when the connection drops, the unacknowledged ones go back to the front of
// `waiting` (in their order) and are sent again after the reconnect: at least once, whatever
// libmosquitto itself keeps across reconnects (it may send some twice).
// Locks: `mu` guards the queue, `acks_mu` the unacknowledged messages; the sender never holds
// both, the disconnect callback takes acks_mu then mu.
struct MqttPublisher::Impl {
  struct Message {
    uint64_t sequence = 0;  // order of Publish
    std::string topic;
    std::string payload;
  };

  MqttOptions options;
  mosquitto* client = nullptr;

  std::mutex mu;
  std::condition_variable wake;
  std::deque<Message> waiting;
  bool connected = false;  // as the sender sees it (guarded by mu)
  bool stopping = false;
  std::thread sender;

  std::mutex acks_mu;
  std::map<int, Message> unacked;  // by message id

  std::atomic<uint64_t> published{0};
  std::atomic<uint64_t> acknowledged{0};
  std::atomic<uint64_t> dropped{0};
  std::atomic<uint64_t> connects{0};
  std::atomic<bool> link_up{false};

  static void OnConnect(mosquitto*, void* self, int rc) {
    auto* impl = static_cast<Impl*>(self);
    if (rc != 0) {
      spdlog::warn("mqtt {}:{}: connection refused: {}", impl->options.host, impl->options.port,
                   mosquitto_connack_string(rc));
      return;
    }
    impl->connects.fetch_add(1);
    impl->link_up = true;
    spdlog::info("mqtt {}:{}: connected", impl->options.host, impl->options.port);
    {
      const std::lock_guard lock(impl->mu);
      impl->connected = true;
    }
    impl->wake.notify_all();
  }

  static void OnDisconnect(mosquitto*, void* self, int rc) {
    auto* impl = static_cast<Impl*>(self);
    impl->link_up = false;
    if (rc != 0) {
      spdlog::warn("mqtt {}:{}: connection lost; reconnecting", impl->options.host,
                   impl->options.port);
    }
    std::vector<Message> resend;
    {
      const std::lock_guard lock(impl->acks_mu);
      for (auto& [mid, message] : impl->unacked) resend.push_back(std::move(message));
      impl->unacked.clear();
    }
    std::sort(resend.begin(), resend.end(),
              [](const Message& a, const Message& b) { return a.sequence < b.sequence; });
    const std::lock_guard lock(impl->mu);
    impl->waiting.insert(impl->waiting.begin(), std::make_move_iterator(resend.begin()),
                         std::make_move_iterator(resend.end()));
    impl->connected = false;
  }

  static void OnPublish(mosquitto*, void* self, int mid) {
    auto* impl = static_cast<Impl*>(self);
    if (impl->options.qos == 0) return;  // counted when sent: no acknowledgement comes
    const std::lock_guard lock(impl->acks_mu);
    if (impl->unacked.erase(mid) > 0) impl->acknowledged.fetch_add(1);
  }

  void Send() {
    std::unique_lock lock(mu);
    while (true) {
      wake.wait(lock, [&] { return stopping || (connected && !waiting.empty()); });
      if (stopping) return;
      Message message = std::move(waiting.front());
      waiting.pop_front();
      lock.unlock();
      int rc;
      {
        const std::lock_guard acks(acks_mu);
        int mid = 0;
        rc = mosquitto_publish(client, &mid, message.topic.c_str(),
                               static_cast<int>(message.payload.size()), message.payload.data(),
                               options.qos, false);
        if (rc == MOSQ_ERR_SUCCESS && options.qos > 0) {
          unacked.emplace(mid, std::move(message));
        } else if (rc == MOSQ_ERR_SUCCESS) {
          acknowledged.fetch_add(1);
        }
      }
      lock.lock();
      if (rc == MOSQ_ERR_SUCCESS) continue;
      // Not accepted (the link went down meanwhile): first in line again, until the reconnect.
      waiting.push_front(std::move(message));
      if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST) {
        connected = false;
      } else {
        spdlog::warn("mqtt: publish failed: {}; retrying", mosquitto_strerror(rc));
        wake.wait_for(lock, std::chrono::milliseconds(100));
      }
    }
  }

  uint64_t next_sequence = 0;  // guarded by mu
};

Status ValidateMqttOptions(const MqttOptions& options) {
  if (options.host.empty()) return InvalidArgumentError("mqtt: host is empty");
  if (options.port < 1 || options.port > 65535) {
    return InvalidArgumentError("mqtt: port " + std::to_string(options.port) +
                                " is outside 1..65535");
  }
  if (options.qos < 0 || options.qos > 2) {
    return InvalidArgumentError("mqtt: qos must be 0, 1 or 2");
  }
  if (options.keepalive_seconds < 5 || options.keepalive_seconds > 3600) {
    return InvalidArgumentError("mqtt: keepalive must be within 5..3600 seconds");
  }
  if (options.max_queue < 1 || options.max_queue > 10'000'000) {
    return InvalidArgumentError("mqtt: max_queue must be within 1..10000000");
  }
  if (!ValidTopicText(options.topic_prefix, /*allow_slash=*/true) ||
      options.topic_prefix.front() == '/' || options.topic_prefix.back() == '/' ||
      options.topic_prefix.find("//") != std::string::npos) {
    return InvalidArgumentError("mqtt: topic prefix '" + options.topic_prefix.substr(0, 100) +
                                "' must be topic levels without wildcards (+, #) or empty levels");
  }
  if (options.min_reconnect.count() < 1 || options.max_reconnect < options.min_reconnect) {
    return InvalidArgumentError("mqtt: reconnect delays must be 1 s or more, min <= max");
  }
  return Status::Ok();
}

Result<std::unique_ptr<MqttPublisher>> MqttPublisher::Create(const MqttOptions& options) {
  ZD_RETURN_IF_ERROR(ValidateMqttOptions(options));
  InitLibraryOnce();
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (impl->options.client_id.empty()) {
    impl->options.client_id = "zerodet-" + std::to_string(::getpid());
  }
  impl->client = mosquitto_new(impl->options.client_id.c_str(), /*clean_session=*/true, impl.get());
  if (impl->client == nullptr) return InternalError("mqtt: cannot create the client");
  mosquitto_connect_callback_set(impl->client, &Impl::OnConnect);
  mosquitto_disconnect_callback_set(impl->client, &Impl::OnDisconnect);
  mosquitto_publish_callback_set(impl->client, &Impl::OnPublish);
  mosquitto_reconnect_delay_set(impl->client, static_cast<unsigned>(options.min_reconnect.count()),
                                static_cast<unsigned>(options.max_reconnect.count()),
                                /*exponential=*/true);
  if (!options.username.empty()) {
    mosquitto_username_pw_set(impl->client, options.username.c_str(),
                              options.password.empty() ? nullptr : options.password.c_str());
  }
  auto publisher = std::unique_ptr<MqttPublisher>(new MqttPublisher(std::move(impl)));
  Impl& i = *publisher->impl_;
  // A broker that is not up yet is retried by the network thread (connect_async + loop).
  const int rc = mosquitto_connect_async(i.client, options.host.c_str(), options.port,
                                         options.keepalive_seconds);
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_ERRNO) {
    return InvalidArgumentError("mqtt: cannot connect to " + options.host + ":" +
                                std::to_string(options.port) + ": " + mosquitto_strerror(rc));
  }
  if (mosquitto_loop_start(i.client) != MOSQ_ERR_SUCCESS) {
    return InternalError("mqtt: cannot start the network thread");
  }
  try {
    i.sender = std::thread([&i] { i.Send(); });
  } catch (const std::system_error& e) {
    return InternalError(std::string("mqtt: cannot start the sender thread: ") + e.what());
  }
  return publisher;
}

MqttPublisher::MqttPublisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MqttPublisher::~MqttPublisher() {
  Impl& i = *impl_;
  {
    const std::lock_guard lock(i.mu);
    i.stopping = true;
    i.dropped.fetch_add(i.waiting.size());
    i.waiting.clear();
  }
  i.wake.notify_all();
  if (i.sender.joinable()) i.sender.join();
  if (i.client != nullptr) {
    mosquitto_disconnect(i.client);
    mosquitto_loop_stop(i.client, /*force=*/true);
    mosquitto_destroy(i.client);
  }
}

bool MqttPublisher::Publish(std::string_view source, std::string_view payload) {
  Impl& i = *impl_;
  if (!ValidTopicText(source, /*allow_slash=*/false) || payload.size() > (256u << 20)) {
    i.dropped.fetch_add(1);
    return false;
  }
  {
    const std::lock_guard lock(i.mu);
    // Waiting here, or sent and not acknowledged yet (dropped ones were never published).
    const uint64_t outstanding = i.published.load() - i.acknowledged.load();
    if (outstanding >= i.options.max_queue) {
      i.dropped.fetch_add(1);
      return false;
    }
    i.waiting.push_back(Impl::Message{i.next_sequence++,
                                      i.options.topic_prefix + "/" + std::string(source),
                                      std::string(payload)});
    i.published.fetch_add(1);
  }
  i.wake.notify_one();
  return true;
}

MqttStats MqttPublisher::stats() const {
  const Impl& i = *impl_;
  MqttStats s;
  s.published = i.published.load();
  s.acknowledged = i.acknowledged.load();
  s.dropped = i.dropped.load();
  s.connects = i.connects.load();
  s.connected = i.link_up.load();
  return s;
}

const MqttOptions& MqttPublisher::options() const {
  return impl_->options;
}

}  // namespace zerodet::pipeline

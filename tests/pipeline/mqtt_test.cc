// MqttPublisher against a real broker: mosquitto (Debian) started by the test on a loopback port
// with persistence, and a subscriber on libmosquitto with a persistent session. Every message
// arrives in order on its source's topic; a broker restart mid-stream loses nothing (messages
// published while it is down wait and go out after the reconnect; at least once, so a message
// may arrive twice); a broker that never comes fills the bounded queue and the rest is counted
// as dropped without blocking; bad options are one-line errors.
#include <gtest/gtest.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "test_support.h"
#include "zerodet/pipeline/config.h"
#include "zerodet/pipeline/mqtt_publisher.h"
#include "zerodet/pipeline/pipeline.h"

namespace zerodet::pipeline {
namespace {

using zerodet::testing::ChildProcess;
using zerodet::testing::TempDir;
using zerodet::testing::WaitFor;

constexpr const char* kMosquitto = "/usr/sbin/mosquitto";

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

bool PortOpen(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  const bool open = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return open;
}

// A mosquitto broker on 127.0.0.1:port whose state (subscriptions, queued messages) survives
// its restarts.
class Broker {
 public:
  Broker(const TempDir& dir, int port) : dir_(dir), port_(port) {
    config_ = dir.File("mosquitto.conf");
    std::ofstream(config_) << "listener " << port << " 127.0.0.1\n"
                           << "allow_anonymous true\n"
                           << "persistence true\n"
                           << "persistence_location " << dir.path().string() << "/\n";
    // Started as root, mosquitto switches to the user "mosquitto", who cannot write its
    // database into our directory: stay who we are.
    if (::geteuid() == 0) std::ofstream(config_, std::ios::app) << "user root\n";
  }
  bool Start() {
    process_ = std::make_unique<ChildProcess>(std::vector<std::string>{kMosquitto, "-c", config_},
                                              dir_.File("mosquitto.log"));
    return process_->ok() && WaitFor([&] { return PortOpen(port_); });
  }
  // SIGTERM: mosquitto saves its persistent state and exits.
  void Stop() {
    if (!process_) return;
    process_->Signal(SIGTERM);
    process_->Wait();
    process_.reset();
  }
  ~Broker() { Stop(); }

 private:
  const TempDir& dir_;
  int port_;
  std::string config_;
  std::unique_ptr<ChildProcess> process_;
};

// Collects what arrives on zerodet/#, with a persistent session (clean_session false, QoS 1), so
// messages the broker holds for it while it reconnects are delivered too.
class Subscriber {
 public:
  explicit Subscriber(int port) {
    mosquitto_lib_init();
    client_ = mosquitto_new("zerodet-test-subscriber", /*clean_session=*/false, this);
    mosquitto_connect_callback_set(client_, [](mosquitto* m, void*, int rc) {
      if (rc == 0) mosquitto_subscribe(m, nullptr, "zerodet/#", 1);
    });
    mosquitto_subscribe_callback_set(client_, [](mosquitto*, void* self, int, int, const int*) {
      static_cast<Subscriber*>(self)->subscribed_ = true;
    });
    mosquitto_message_callback_set(
        client_, [](mosquitto*, void* self, const mosquitto_message* message) {
          auto* s = static_cast<Subscriber*>(self);
          const std::lock_guard lock(s->mu_);
          s->messages_.emplace_back(message->topic,
                                    std::string(static_cast<const char*>(message->payload),
                                                static_cast<size_t>(message->payloadlen)));
        });
    mosquitto_reconnect_delay_set(client_, 1, 1, false);
    mosquitto_connect_async(client_, "127.0.0.1", port, 30);
    mosquitto_loop_start(client_);
  }
  ~Subscriber() {
    mosquitto_disconnect(client_);
    mosquitto_loop_stop(client_, true);
    mosquitto_destroy(client_);
  }
  bool subscribed() const { return subscribed_; }
  std::vector<std::pair<std::string, std::string>> messages() const {
    const std::lock_guard lock(mu_);
    return messages_;
  }
  std::set<std::string> payloads() const {
    std::set<std::string> out;
    for (const auto& m : messages()) out.insert(m.second);
    return out;
  }

 private:
  mosquitto* client_ = nullptr;
  std::atomic<bool> subscribed_{false};
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> messages_;
};

class MqttPublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kMosquitto, X_OK) != 0) GTEST_SKIP() << "mosquitto is not installed";
    port_ = FreePort();
    ASSERT_GT(port_, 0);
    broker_ = std::make_unique<Broker>(dir_, port_);
    ASSERT_TRUE(broker_->Start());
    subscriber_ = std::make_unique<Subscriber>(port_);
    ASSERT_TRUE(WaitFor([&] { return subscriber_->subscribed(); }));
  }

  std::unique_ptr<MqttPublisher> Publisher(uint32_t max_queue = 10000) {
    MqttOptions options;
    options.port = port_;
    options.max_queue = max_queue;
    auto publisher = MqttPublisher::Create(options);
    EXPECT_TRUE(publisher.ok()) << publisher.status().ToString();
    return publisher.ok() ? std::move(publisher).value() : nullptr;
  }

  TempDir dir_{"pipeline_mqtt"};
  int port_ = 0;
  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Subscriber> subscriber_;
};

TEST_F(MqttPublisherTest, EveryResultArrivesInOrderOnItsSourcesTopic) {
  auto publisher = Publisher();
  ASSERT_NE(publisher, nullptr);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(publisher->Publish(i % 2 == 0 ? "gate" : "press",
                                   "{\"sequence\":" + std::to_string(i) + "}"));
  }
  ASSERT_TRUE(WaitFor([&] { return subscriber_->messages().size() >= 100; }));
  std::vector<int> gate;
  for (const auto& [topic, payload] : subscriber_->messages()) {
    const int sequence = std::stoi(payload.substr(payload.find(':') + 1));
    EXPECT_EQ(topic, sequence % 2 == 0 ? "zerodet/gate" : "zerodet/press") << payload;
    if (topic == "zerodet/gate") gate.push_back(sequence);
  }
  ASSERT_EQ(gate.size(), 50u);
  for (size_t k = 1; k < gate.size(); ++k) EXPECT_LT(gate[k - 1], gate[k]);
  EXPECT_TRUE(WaitFor([&] { return publisher->stats().acknowledged == 100; }));
  EXPECT_EQ(publisher->stats().dropped, 0u);
}

TEST_F(MqttPublisherTest, ABrokerRestartMidStreamLosesNothing) {
  auto publisher = Publisher();
  ASSERT_NE(publisher, nullptr);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(publisher->Publish("gate", std::to_string(i)));
  ASSERT_TRUE(WaitFor([&] { return subscriber_->payloads().size() == 50; }));

  // The broker saves its sessions (the subscriber's among them) and stops; what is published
  // meanwhile waits in the publisher.
  broker_->Stop();
  ASSERT_TRUE(WaitFor([&] { return !publisher->stats().connected; }));
  for (int i = 50; i < 100; ++i) ASSERT_TRUE(publisher->Publish("gate", std::to_string(i)));
  EXPECT_EQ(publisher->stats().acknowledged, 50u);
  ASSERT_TRUE(broker_->Start());

  // Both clients reconnect by themselves (backoff); the broker acknowledges every message and
  // holds them for the subscriber's session until it is back.
  ASSERT_TRUE(
      WaitFor([&] { return publisher->stats().acknowledged == 100; }, std::chrono::seconds(60)))
      << publisher->stats().acknowledged << " of 100 acknowledged";
  ASSERT_TRUE(
      WaitFor([&] { return subscriber_->payloads().size() == 100; }, std::chrono::seconds(60)))
      << subscriber_->payloads().size() << " of 100 arrived";
  EXPECT_GE(publisher->stats().connects, 2u);
  EXPECT_EQ(publisher->stats().dropped, 0u);
}

TEST_F(MqttPublisherTest, WithoutABrokerTheQueueIsBoundedAndTheRestCounted) {
  broker_->Stop();
  auto publisher = Publisher(/*max_queue=*/10);
  ASSERT_NE(publisher, nullptr);
  int accepted = 0;
  for (int i = 0; i < 25; ++i) accepted += publisher->Publish("gate", "x") ? 1 : 0;
  EXPECT_EQ(accepted, 10);
  EXPECT_EQ(publisher->stats().dropped, 15u);
  EXPECT_FALSE(publisher->Publish("a/b", "x"));  // not one topic level
  EXPECT_FALSE(publisher->Publish("#", "x"));
  publisher.reset();  // returns although nothing was ever sent
}

// A whole pipeline with output.mqtt: every result line it writes also arrives on the broker, on
// its source's topic, byte for byte.
TEST_F(MqttPublisherTest, APipelinesResultsArriveOnTheBroker) {
  const std::string yaml =
      "sources:\n"
      "  - {name: dock, type: images, fps: 20, path: " ZERODET_SHARED_DIR
      "/images}\n"
      "models:\n"
      "  - {name: yolo, path: " ZERODET_SHARED_DIR
      "/models/yolo11n-320.onnx, workers: 1, threads: 1}\n"
      "output:\n"
      "  results: " +
      dir_.File("results.jsonl") +
      "\n"
      "  mqtt: {host: 127.0.0.1, port: " +
      std::to_string(port_) + ", topic_prefix: zerodet/line1, max_queue: 100}\n";
  auto config = ParsePipelineConfig(yaml, dir_.path(), "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_TRUE(config->mqtt.has_value());
  auto summary = RunPipeline(*config);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  std::vector<std::string> lines;
  std::ifstream in(dir_.File("results.jsonl"));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(summary->mqtt_published, lines.size());
  EXPECT_EQ(summary->mqtt_dropped, 0u);
  ASSERT_TRUE(WaitFor([&] { return subscriber_->messages().size() >= lines.size(); }));
  std::multiset<std::string> received;
  for (const auto& [topic, payload] : subscriber_->messages()) {
    EXPECT_EQ(topic, "zerodet/line1/dock");
    received.insert(payload);
  }
  EXPECT_EQ(received, std::multiset<std::string>(lines.begin(), lines.end()));
}

TEST(MqttConfigTest, TheConfigsMqttSectionIsCheckedWhenRead) {
  TempDir dir("pipeline_mqtt_config");
  const auto parse = [&](const std::string& mqtt) {
    return ParsePipelineConfig(
        "sources:\n  - {name: a, path: x.mp4}\nmodels:\n"
        "  - {name: m, path: m.onnx}\noutput:\n  mqtt: " +
            mqtt + "\n",
        dir.path(), "line.yaml");
  };
  auto config = parse("{host: broker, port: 8883, qos: 0, client_id: line1}");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->mqtt->host, "broker");
  EXPECT_EQ(config->mqtt->port, 8883);
  EXPECT_EQ(config->mqtt->qos, 0);
  std::ofstream(dir.File("secret")) << "s3cret\nignored\n";
  config = parse("{username: line1, password_file: secret}");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->mqtt->password, "s3cret");
  for (const std::string& bad :
       {std::string("{port: 70000}"), std::string("{qos: 5}"), std::string("{topic_prefix: 'a/#'}"),
        std::string("{hots: x}"), std::string("{password_file: secret}"), std::string("[1, 2]")}) {
    config = parse(bad);
    ASSERT_FALSE(config.ok()) << bad;
    EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(config.status().message().find("output.mqtt"), std::string::npos)
        << config.status().message();
  }
}

TEST(MqttOptionsTest, BadOptionsAreOneLineErrors) {
  const auto error = [](auto change) {
    MqttOptions options;
    change(options);
    auto publisher = MqttPublisher::Create(options);
    EXPECT_FALSE(publisher.ok());
    return publisher.status();
  };
  EXPECT_EQ(error([](MqttOptions& o) { o.port = 0; }).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(error([](MqttOptions& o) { o.qos = 3; }).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(error([](MqttOptions& o) { o.topic_prefix = "a/+/b"; }).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(error([](MqttOptions& o) { o.topic_prefix = "a/"; }).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(error([](MqttOptions& o) { o.max_queue = 0; }).code(), StatusCode::kInvalidArgument);
  const Status host = error([](MqttOptions& o) { o.host.clear(); });
  EXPECT_EQ(host.message().find('\n'), std::string::npos);
}

}  // namespace
}  // namespace zerodet::pipeline

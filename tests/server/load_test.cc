// Load and overload of the HTTP front end. A load test with wrk (Debian's `wrk`) on loopback,
// bounded in time: many keep-alive connections posting real JPEGs to /v1/detect and hammering
// health, with every response a success, the server still answering afterwards, and the metrics
// counting what wrk sent (no timing is asserted; the rate is printed for the log). Then a burst
// beyond a model's queue limit, answered 429 with Retry-After for the excess and 200 for the
// rest, and a queue timeout answered 503.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <regex>
#include <thread>

#include "http_client.h"
#include "models_test_util.h"
#include "test_support.h"
#include "zerodet/core/file.h"
#include "zerodet/server/http_server.h"
#include "zerodet/server/inference_service.h"

namespace zerodet::server {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using zerodet::server::testing::Send;
using zerodet::testing::AddVersion;
using zerodet::testing::SharedImage;
using zerodet::testing::SharedModel;
using zerodet::testing::TempDir;

// The request count wrk reports ("N requests in ..."), or -1.
long RequestsDone(const std::string& out) {
  std::smatch match;
  if (!std::regex_search(out, match, std::regex(R"((\d+) requests in)"))) return -1;
  return std::stol(match[1]);
}

TEST(HttpLoadTest, WrkOnDetectAndHealthGetsOnlySuccesses) {
  const fs::path wrk = "/usr/bin/wrk";
  if (!fs::exists(wrk)) GTEST_SKIP() << "Debian's wrk is not installed";
  const TempDir dir("server-load");
  AddVersion(dir.path() / "repo", "a", 1, SharedModel("yolo11n-320.onnx"));
  ManagerOptions manager_options;
  manager_options.repository = dir.path() / "repo";
  manager_options.watch = false;
  manager_options.thread_pool.intra_op_threads = 1;
  auto manager = ModelManager::Create(manager_options);
  ASSERT_TRUE(manager.ok()) << manager.status().ToString();
  InferenceService service(**manager, {});
  HttpServerOptions options;
  options.port = 0;
  auto server = HttpServer::Start(service, options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const std::string base = "http://127.0.0.1:" + std::to_string((*server)->port());

  // wrk posts the JPEG's bytes from a Lua script (wrk.body is a Lua string: binary-safe).
  const fs::path script = dir.path() / "detect.lua";
  std::ofstream(script) << "local f = io.open('" << SharedImage("dog.jpg").string()
                        << "', 'rb')\nwrk.method = 'POST'\nwrk.body = f:read('*a')\nf:close()\n"
                        << "wrk.headers['Content-Type'] = 'image/jpeg'\n";
  zerodet::testing::RunOptions run;
  run.timeout = std::chrono::seconds(60);
  const auto detect =
      zerodet::testing::RunProcess({wrk.string(), "-t2", "-c8", "-d3s", "--timeout", "20s", "-s",
                                    script.string(), base + "/v1/detect?model=a"},
                                   run);
  ASSERT_EQ(detect.exit_code, 0) << detect.out << detect.err;
  std::cout << "wrk /v1/detect:\n" << detect.out;
  EXPECT_EQ(detect.out.find("Non-2xx"), std::string::npos) << detect.out;
  EXPECT_EQ(detect.out.find("Socket errors"), std::string::npos) << detect.out;
  const long detected = RequestsDone(detect.out);
  EXPECT_GT(detected, 0) << detect.out;

  const auto health = zerodet::testing::RunProcess(
      {wrk.string(), "-t2", "-c64", "-d2s", base + "/v2/health/ready"}, run);
  ASSERT_EQ(health.exit_code, 0) << health.out << health.err;
  std::cout << "wrk /v2/health/ready:\n" << health.out;
  EXPECT_EQ(health.out.find("Non-2xx"), std::string::npos) << health.out;
  EXPECT_GT(RequestsDone(health.out), 0) << health.out;

  // Still serving, and every detection wrk completed was counted (wrk may close connections
  // with requests still running at its deadline, so the server can count a few more).
  EXPECT_EQ(Send((*server)->port(), http::verb::get, "/v2/health/live").status, 200);
  const std::string metrics = service.metrics().Render();
  std::smatch match;
  ASSERT_TRUE(std::regex_search(
      metrics, match,
      std::regex(
          R"(zerodet_requests_total\{endpoint="detect",model="a",outcome="success"\} (\d+))")))
      << metrics;
  EXPECT_GE(std::stol(match[1]), detected);
  EXPECT_EQ((*server)->Shutdown(std::chrono::seconds(30)), 0);
}

class OverloadTest : public ::testing::Test {
 protected:
  void Start(uint32_t max_queue, std::chrono::milliseconds queue_timeout) {
    AddVersion(dir_.path() / "repo", "a", 1, SharedModel("yolov8n.onnx"));
    ManagerOptions manager_options;
    manager_options.repository = dir_.path() / "repo";
    manager_options.watch = false;
    auto manager = ModelManager::Create(manager_options);
    ASSERT_TRUE(manager.ok()) << manager.status().ToString();
    manager_ = std::move(manager).value();
    InferenceService::Options service_options;
    service_options.max_queue = max_queue;
    service_options.queue_timeout = queue_timeout;
    service_ = std::make_unique<InferenceService>(*manager_, service_options);
    HttpServerOptions options;
    options.port = 0;
    options.request_threads = 16;
    auto server = HttpServer::Start(*service_, options);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    auto bytes = ReadFileBytes(SharedImage("dog.jpg"));
    ASSERT_TRUE(bytes.ok());
    image_.assign(bytes->begin(), bytes->end());
  }

  TempDir dir_{"server-overload"};
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<HttpServer> server_;
  std::string image_;
};

TEST_F(OverloadTest, ABurstBeyondTheQueueIsAnswered429AndTheRestServed) {
  Start(/*max_queue=*/2, std::chrono::milliseconds(0));
  // The model is not loaded: every request of the burst waits for its load, so they all queue
  // at once; two fit, the others are refused at once.
  constexpr size_t kBurst = 12;
  std::vector<int> statuses(kBurst);
  std::vector<std::string> retry_after(kBurst);
  std::vector<std::thread> clients;
  for (size_t i = 0; i < kBurst; ++i) {
    clients.emplace_back([&, i] {
      const auto reply = Send(server_->port(), http::verb::post, "/v1/detect?model=a", image_);
      statuses[i] = reply.status;
      if (reply.status != 0) retry_after[i] = std::string(reply.raw["Retry-After"]);
    });
  }
  for (std::thread& t : clients) t.join();
  int ok = 0, refused = 0;
  for (size_t i = 0; i < kBurst; ++i) {
    if (statuses[i] == 200) ++ok;
    if (statuses[i] == 429) {
      ++refused;
      EXPECT_EQ(retry_after[i], "1");
    }
  }
  EXPECT_EQ(static_cast<size_t>(ok + refused), kBurst)
      << "every request is served or refused, none fails otherwise";
  EXPECT_GE(ok, 2);
  EXPECT_GE(refused, 1);
  // Once the queue drains the model serves again, and the refusals were counted.
  EXPECT_EQ(Send(server_->port(), http::verb::post, "/v1/detect?model=a", image_).status, 200);
  EXPECT_NE(
      service_->metrics().Render().find(
          R"(zerodet_requests_total{endpoint="detect",model="a",outcome="resource_exhausted"})"),
      std::string::npos);
}

TEST_F(OverloadTest, AQueueTimeoutIsAnswered503) {
  Start(/*max_queue=*/0, std::chrono::milliseconds(20));
  // The load takes longer than the queue timeout.
  const auto reply = Send(server_->port(), http::verb::post, "/v1/detect?model=a", image_);
  EXPECT_EQ(reply.status, 503) << reply.body;
  EXPECT_NE(reply.body.find("queue timeout"), std::string::npos) << reply.body;
  EXPECT_EQ(std::string(reply.raw["Retry-After"]), "1");
  // The load went on; the model serves once it is ready.
  ASSERT_TRUE(zerodet::testing::WaitFor(
      [&] {
        return Send(server_->port(), http::verb::post, "/v1/detect?model=a", image_).status == 200;
      },
      std::chrono::seconds(60), std::chrono::milliseconds(100)));
}

}  // namespace
}  // namespace zerodet::server

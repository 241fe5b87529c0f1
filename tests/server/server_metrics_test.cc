// The Prometheus metrics of `zerodet serve`: what requests on a real model (../shared/models) are
// counted as, per model, endpoint, stage and outcome; the model cache and process families;
// hostile model names; and a real Prometheus server (Debian's `prometheus`, started on loopback
// with a 1 s scrape interval by tests/support's PrometheusServer) scraping both /metrics on the
// HTTP port and the --metrics port of a `zerodet serve` process, then answering PromQL queries
// on what it scraped. The exposer itself (addresses, errors) is tested in tests/metrics.
#include "zerodet/server/server_metrics.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "http_client.h"
#include "models_test_util.h"
#include "prometheus_server.h"
#include "test_support.h"
#include "zerodet/core/file.h"
#include "zerodet/metrics/exposer.h"
#include "zerodet/server/inference_service.h"

namespace zerodet::server {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using zerodet::server::testing::Send;
using zerodet::testing::DashboardQueries;
using zerodet::testing::PrometheusServer;
using zerodet::testing::SharedImage;
using zerodet::testing::SharedModel;
using zerodet::testing::TempDir;

const char* kModelFile = "yolo11n-320.onnx";

void AddModel(const fs::path& repo, const std::string& name) {
  zerodet::testing::AddVersion(repo, name, 1, SharedModel(kModelFile));
}

std::vector<uint8_t> DogJpeg() {
  auto bytes = ReadFileBytes(SharedImage("dog.jpg"));
  EXPECT_TRUE(bytes.ok());
  return bytes.ok() ? *bytes : std::vector<uint8_t>{};
}

// The value of the sample line `name_and_labels VALUE` in the text format, or -1.
double SampleValue(const std::string& text, const std::string& name_and_labels) {
  return zerodet::testing::SampleValue(text, name_and_labels).value_or(-1);
}

class ServerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AddModel(repo_.path(), "a");
    ManagerOptions options;
    options.repository = repo_.path();
    options.watch = false;
    DeviceBudget budget;
    budget.max_models = 4;
    budget.max_bytes = uint64_t{64} << 30;
    options.budgets["cpu"] = budget;
    auto manager = ModelManager::Create(options);
    ASSERT_TRUE(manager.ok()) << manager.status().ToString();
    manager_ = std::move(manager).value();
    service_ = std::make_unique<InferenceService>(*manager_, InferenceService::Options{});
  }

  TempDir repo_{"server-metrics"};
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<InferenceService> service_;
};

TEST_F(ServerMetricsTest, CountsRequestsPerModelStageAndOutcome) {
  const std::vector<uint8_t> jpeg = DogJpeg();
  DetectRequest detect;
  detect.model_name = "a";
  detect.image = jpeg;
  detect.source_name = "dog.jpg";
  ASSERT_TRUE(service_->Detect(detect).ok());  // a miss: loads the model
  ASSERT_TRUE(service_->Detect(detect).ok());  // a hit

  std::vector<float> input(3 * 320 * 320, 0.5f);
  InferRequest infer;
  infer.model_name = "a";
  InferInput images;
  images.name = "images";
  images.datatype = "FP32";
  images.shape = {1, 3, 320, 320};
  images.data = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(input.data()),
                                         input.size() * sizeof(float));
  infer.inputs.push_back(images);
  const InferSink ignore = [](const ServedBy&, std::span<const InferOutput>) {
    return Status::Ok();
  };
  ASSERT_TRUE(service_->Infer(infer, ignore).ok());
  infer.inputs[0].shape = {1, 3, 32, 32};  // wrong shape
  EXPECT_EQ(service_->Infer(infer, ignore).code(), StatusCode::kInvalidArgument);
  // Unknown and hostile names all count as one "_unknown" model, and the text stays parseable.
  for (const char* name : {"nope", "x\"}\nzerodet_fake 1", "\\"}) {
    detect.model_name = name;
    EXPECT_EQ(service_->Detect(detect).status().code(), StatusCode::kNotFound);
  }
  detect.model_name = "a";
  detect.image = std::span<const uint8_t>(jpeg.data(), 100);  // truncated
  EXPECT_FALSE(service_->Detect(detect).ok());

  const std::string text = service_->metrics().Render();
  EXPECT_EQ(
      SampleValue(text, R"(zerodet_requests_total{endpoint="detect",model="a",outcome="success"})"),
      2)
      << text;
  EXPECT_EQ(
      SampleValue(text, R"(zerodet_requests_total{endpoint="infer",model="a",outcome="success"})"),
      1);
  EXPECT_EQ(
      SampleValue(
          text, R"(zerodet_requests_total{endpoint="infer",model="a",outcome="invalid_argument"})"),
      1);
  EXPECT_EQ(
      SampleValue(
          text,
          R"(zerodet_requests_total{endpoint="detect",model="_unknown",outcome="not_found"})"),
      3);
  EXPECT_EQ(
      SampleValue(text,
                  R"(zerodet_requests_total{endpoint="detect",model="a",outcome="corrupt_data"})"),
      1);
  for (const char* stage : {"queue", "preprocess", "infer", "postprocess", "total"}) {
    EXPECT_EQ(
        SampleValue(
            text,
            std::string(
                R"(zerodet_request_duration_seconds_count{endpoint="detect",model="a",stage=")") +
                stage + "\"}"),
        2)
        << stage;
  }
  // Stage times add up to no more than the total.
  double stages = 0;
  for (const char* stage : {"queue", "preprocess", "infer", "postprocess"}) {
    stages += SampleValue(
        text,
        std::string(R"(zerodet_request_duration_seconds_sum{endpoint="detect",model="a",stage=")") +
            stage + "\"}");
  }
  const double total = SampleValue(
      text, R"(zerodet_request_duration_seconds_sum{endpoint="detect",model="a",stage="total"})");
  EXPECT_GT(total, 0);
  EXPECT_LE(stages, total * 1.001);
  EXPECT_EQ(SampleValue(text, R"(zerodet_request_batch_size_count{endpoint="infer",model="a"})"),
            1);
  EXPECT_EQ(SampleValue(text, R"(zerodet_inflight_requests{endpoint="detect"})"), 0);
  EXPECT_EQ(SampleValue(text, R"(zerodet_queued_requests{endpoint="detect"})"), 0);

  // The model cache, read from the manager.
  EXPECT_EQ(SampleValue(text, "zerodet_models_loaded"), 1);
  EXPECT_EQ(SampleValue(text, R"(zerodet_model_cache_misses_total{model="a"})"), 1);
  EXPECT_GE(SampleValue(text, R"(zerodet_model_cache_hits_total{model="a"})"), 2);
  EXPECT_EQ(SampleValue(text, R"(zerodet_model_loads_total{model="a"})"), 1);
  EXPECT_EQ(SampleValue(text, R"(zerodet_model_state{model="a",state="ready"})"), 1);
  EXPECT_EQ(SampleValue(text, R"(zerodet_model_state{model="a",state="unloaded"})"), 0);
  EXPECT_EQ(SampleValue(text, R"(zerodet_model_load_duration_seconds_count{model="a"})"), 1);
  EXPECT_GT(SampleValue(text, R"(zerodet_model_memory_bytes{device="cpu",model="a"})"), 0);
  EXPECT_GT(SampleValue(text, R"(zerodet_device_memory_used_bytes{device="cpu"})"), 0);
  EXPECT_GT(SampleValue(text, "zerodet_process_resident_memory_bytes"), 0);
  EXPECT_GT(SampleValue(text, "zerodet_process_threads"), 0);
  // No hostile name reached the output.
  EXPECT_EQ(text.find("zerodet_fake"), std::string::npos);
  EXPECT_EQ(SampleValue(text, "zerodet_fake"), -1);
  // Every line is a comment or `name{labels} value`.
  const std::regex sample(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+|NaN|[+-]Inf$)");
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    EXPECT_TRUE(std::regex_search(line, sample)) << line;
  }

  EXPECT_EQ(SampleValue(text, R"(zerodet_device_models_budget{device="cpu"})"), 4);

  // Every metric the Grafana dashboard in deploy/ charts exists (the GPU's only with a GPU).
  const std::string dashboard = zerodet::testing::ReadText(zerodet::testing::SourceDir() /
                                                           "deploy/grafana/zerodet-serve.json");
  ASSERT_FALSE(dashboard.empty());
  const std::regex metric_name(R"(zerodet_[a-z_]+)");
  int charted = 0;
  for (auto it = std::sregex_iterator(dashboard.begin(), dashboard.end(), metric_name);
       it != std::sregex_iterator(); ++it) {
    std::string name = it->str();
    for (const char* suffix : {"_bucket", "_count", "_sum"}) {
      if (name.ends_with(suffix)) name.resize(name.size() - std::strlen(suffix));
    }
    // GPU memory shows only with a GPU; HTTP responses are counted by the HTTP front end (the
    // Prometheus test below sees them).
    if (name == "zerodet_gpu_memory_used_bytes" || name == "zerodet_http_responses_total") continue;
    EXPECT_NE(text.find("# TYPE " + name + " "), std::string::npos) << name;
    ++charted;
  }
  EXPECT_GT(charted, 15);

  // An unload shows in the state and the loaded count.
  ASSERT_TRUE(manager_->Unload("a").ok());
  const std::string after = service_->metrics().Render();
  EXPECT_EQ(SampleValue(after, "zerodet_models_loaded"), 0) << after;
  EXPECT_EQ(SampleValue(after, R"(zerodet_model_state{model="a",state="unloaded"})"), 1);
}

TEST_F(ServerMetricsTest, ExposerServesTheRegistry) {
  auto exposer = metrics::MetricsExposer::Start(service_->metrics().registry(), "127.0.0.1:0");
  ASSERT_TRUE(exposer.ok()) << exposer.status().ToString();
  ASSERT_GT((*exposer)->port(), 0);
  const auto reply = Send((*exposer)->port(), http::verb::get, "/metrics");
  EXPECT_EQ(reply.status, 200);
  EXPECT_NE(reply.body.find("zerodet_models_loaded 0"), std::string::npos) << reply.body;
}

TEST(ServerMetricsPrometheusTest, ARealPrometheusScrapesBothEndpointsAndAnswersPromQL) {
  if (!PrometheusServer::Installed()) GTEST_SKIP() << "Debian's prometheus is not installed";
  const TempDir dir("server-prometheus");
  AddModel(dir.path() / "repo", "a");
  zerodet::testing::ChildProcess serve({zerodet::testing::ZerodetBinary().string(), "serve",
                                        "--repo", (dir.path() / "repo").string(), "--http",
                                        "127.0.0.1:0", "--grpc", "off", "--metrics", "127.0.0.1:0"},
                                       (dir.path() / "serve.log").string());
  ASSERT_TRUE(serve.ok());
  ASSERT_TRUE(zerodet::testing::WaitFor([&] {
    return serve.Log().find("metrics_port") != std::string::npos;
  })) << serve.Log();
  const auto ports =
      nlohmann::json::parse(serve.Log().substr(serve.Log().find('{')), nullptr, false);
  const uint16_t http_port = ports["http_port"];
  const int metrics_port = ports["metrics_port"];
  ASSERT_GT(metrics_port, 0);
  const std::vector<uint8_t> jpeg = DogJpeg();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Send(http_port, http::verb::post, "/v1/detect?model=a",
                   std::string(jpeg.begin(), jpeg.end()))
                  .status,
              200);
  }
  EXPECT_EQ(Send(http_port, http::verb::post, "/v1/detect?model=nope",
                 std::string(jpeg.begin(), jpeg.end()))
                .status,
            404);

  const PrometheusServer prometheus(
      dir.path(), {{"http", http_port}, {"metrics", static_cast<uint16_t>(metrics_port)}});
  ASSERT_TRUE(prometheus.ok());

  // Both targets up, and every query answered from what was scraped.
  const auto answers = [&](const std::string& promql, double expected) {
    return prometheus.WaitForValue(promql, expected);
  };
  EXPECT_TRUE(answers(R"(up{job="http"})", 1)) << prometheus.Log();
  EXPECT_TRUE(answers(R"(up{job="metrics"})", 1)) << prometheus.Log();
  for (const char* job : {"http", "metrics"}) {
    const std::string on = std::string("job=\"") + job + "\"";
    EXPECT_TRUE(answers(
        "zerodet_requests_total{" + on + R"(,endpoint="detect",model="a",outcome="success"})", 3))
        << job;
    EXPECT_TRUE(answers("zerodet_requests_total{" + on + R"(,model="_unknown"})", 1)) << job;
    EXPECT_TRUE(answers("zerodet_models_loaded{" + on + "}", 1)) << job;
    EXPECT_TRUE(
        answers("zerodet_request_duration_seconds_count{" + on + R"(,model="a",stage="total"})", 3))
        << job;
    EXPECT_TRUE(answers("zerodet_model_cache_misses_total{" + on + R"(,model="a"})", 1)) << job;
  }
  // A PromQL function over a histogram: the median request time is within its buckets.
  const auto median = prometheus.Query(
      R"(histogram_quantile(0.5, zerodet_request_duration_seconds_bucket{job="metrics",stage="total"}))");
  ASSERT_TRUE(median.has_value());
  EXPECT_GT(*median, 0);
  EXPECT_LE(*median, 30);
  // The HTTP port counted its own responses, scrapes included.
  EXPECT_TRUE(prometheus.WaitFor(R"(zerodet_http_responses_total{job="metrics",code="200"})",
                                 [](double value) { return value >= 4; }));

  // Every query of the Grafana dashboard in deploy/ is valid PromQL with data behind it.
  const std::vector<std::string> queries =
      DashboardQueries(zerodet::testing::SourceDir() / "deploy/grafana/zerodet-serve.json");
  ASSERT_FALSE(queries.empty());
  for (const std::string& expr : queries) {
    const auto reply = prometheus.QueryReply(expr);
    EXPECT_EQ(reply.status, 200) << expr << ": " << reply.body;
    EXPECT_EQ(reply.Json().value("status", ""), "success") << expr;
  }

  ASSERT_TRUE(serve.Signal(SIGTERM));
  EXPECT_EQ(serve.Wait(), 0) << serve.Log();
}

}  // namespace
}  // namespace zerodet::server

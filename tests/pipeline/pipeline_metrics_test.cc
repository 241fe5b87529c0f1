// `zerodet pipeline --metrics`: a real Prometheus server (Debian's `prometheus`, scraping every
// second; tests/support/prometheus_server.h) scrapes a running pipeline (a looping folder of
// ../shared/images, yolo11n-320) and answers PromQL on it: frames published per source, results
// and stage-time histograms per model and source, processes running, a worker restart after a
// kill, every pipeline query of the Grafana dashboard in deploy/. And the one-line error for a
// bad --metrics address.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "prometheus_server.h"
#include "test_support.h"

namespace zerodet::pipeline {
namespace {

namespace fs = std::filesystem;
using zerodet::testing::ChildProcess;
using zerodet::testing::PrometheusServer;
using zerodet::testing::TempDir;
using zerodet::testing::WaitFor;

// A pipeline over the shared images (looping, 4 frames/s) with one worker of yolo11n-320.
fs::path WriteConfig(const fs::path& dir) {
  const fs::path yaml = dir / "p.yaml";
  std::ofstream(yaml) << "sources:\n"
                         "  - {name: photos, type: images, path: '"
                      << zerodet::testing::SharedDir().string()
                      << "/images', fps: 4, loop: true}\n"
                         "models:\n"
                         "  - {name: m, path: '"
                      << zerodet::testing::SharedModel("yolo11n-320.onnx").string()
                      << "', threads: 2}\n"
                         "output: {results: results.jsonl}\n"
                         "control: {socket: ''}\n";
  return yaml;
}

size_t CountLines(const fs::path& path) {
  const std::string text = zerodet::testing::ReadText(path);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

TEST(PipelineMetricsTest, ARealPrometheusScrapesFramesResultsLatenciesAndRestarts) {
  if (!PrometheusServer::Installed()) GTEST_SKIP() << "Debian's prometheus is not installed";
  const TempDir dir("pipeline-metrics");
  const fs::path yaml = WriteConfig(dir.path());
  ChildProcess supervisor({zerodet::testing::ZerodetBinary().string(), "pipeline", yaml.string(),
                           "--metrics", "127.0.0.1:0"},
                          dir.File("log"));
  ASSERT_TRUE(supervisor.ok());
  ASSERT_TRUE(WaitFor([&] {
    return zerodet::testing::MetricsPortIn(supervisor.Log()) > 0 || !supervisor.Running();
  })) << supervisor.Log();
  const uint16_t port = zerodet::testing::MetricsPortIn(supervisor.Log());
  ASSERT_GT(port, 0) << supervisor.Log();
  ASSERT_TRUE(WaitFor([&] { return CountLines(dir.path() / "results.jsonl") >= 3; },
                      std::chrono::minutes(2)))
      << supervisor.Log();

  const PrometheusServer prometheus(dir.path(), {{"pipeline", port}});
  ASSERT_TRUE(prometheus.ok());
  const auto at_least = [](double least) { return [least](double v) { return v >= least; }; };
  EXPECT_TRUE(prometheus.WaitForValue(R"(up{job="pipeline"})", 1)) << prometheus.Log();
  EXPECT_TRUE(prometheus.WaitFor(R"(zerodet_pipeline_frames_published_total{source="photos"})",
                                 at_least(3)));
  EXPECT_TRUE(prometheus.WaitFor(R"(zerodet_pipeline_results_total{model="m",source="photos"})",
                                 at_least(3)));
  EXPECT_TRUE(prometheus.WaitFor(
      R"(zerodet_pipeline_frame_duration_seconds_count{model="m",source="photos",stage="infer"})",
      at_least(3)));
  EXPECT_TRUE(prometheus.WaitForValue(R"(zerodet_pipeline_workers_running{model="m"})", 1));
  EXPECT_TRUE(prometheus.WaitForValue(R"(zerodet_pipeline_ingest_running{source="photos"})", 1));
  EXPECT_TRUE(prometheus.WaitForValue(R"(zerodet_pipeline_frame_failures_total{model="m"})", 0));
  EXPECT_TRUE(prometheus.WaitForValue(R"(zerodet_pipeline_frames_dropped_total)", 0));
  // The median inference time lies within the buckets, and a frame's total time covers its
  // inference.
  const auto median = prometheus.Query(
      R"(histogram_quantile(0.5, sum by (le) (zerodet_pipeline_frame_duration_seconds_bucket{stage="infer"})))");
  ASSERT_TRUE(median.has_value());
  EXPECT_GT(*median, 0);
  EXPECT_LE(*median, 30);
  EXPECT_TRUE(prometheus.WaitForValue(
      R"(zerodet_pipeline_frame_duration_seconds_sum{stage="total"} >= bool on(model, source) zerodet_pipeline_frame_duration_seconds_sum{stage="infer"})",
      1));
  // Published frames keep coming (the counters are live, not the summary at exit).
  const auto published =
      prometheus.Query(R"(zerodet_pipeline_frames_published_total{source="photos"})");
  ASSERT_TRUE(published.has_value());
  EXPECT_TRUE(prometheus.WaitFor(R"(zerodet_pipeline_frames_published_total{source="photos"})",
                                 at_least(*published + 2)));

  // A worker killed: its restart is counted and it runs again. The ingest started first, the
  // worker after it: the newest child is the worker.
  const std::vector<pid_t> children = zerodet::testing::ChildrenOf(supervisor.pid());
  ASSERT_EQ(children.size(), 2u) << "an ingest and a worker";
  ::kill(*std::max_element(children.begin(), children.end()), SIGKILL);
  EXPECT_TRUE(prometheus.WaitForValue(R"(zerodet_pipeline_worker_restarts_total{model="m"})", 1));
  EXPECT_TRUE(prometheus.WaitForValue(R"(zerodet_pipeline_ingest_restarts_total)", 0));
  const auto results = prometheus.Query(R"(zerodet_pipeline_results_total{model="m"})");
  ASSERT_TRUE(results.has_value());
  EXPECT_TRUE(prometheus.WaitFor(R"(zerodet_pipeline_results_total{model="m"})",
                                 at_least(*results + 2), std::chrono::minutes(2)));
  EXPECT_TRUE(prometheus.WaitForValue(R"(zerodet_pipeline_workers_running{model="m"})", 1));

  // Every pipeline query of the dashboard is valid PromQL with data behind it.
  int charted = 0;
  for (const std::string& expr : zerodet::testing::DashboardQueries(
           zerodet::testing::SourceDir() / "deploy/grafana/zerodet-store-pipeline.json")) {
    if (expr.find("zerodet_pipeline_") == std::string::npos) continue;
    ++charted;
    EXPECT_TRUE(WaitFor([&] { return prometheus.SeriesCount(expr) > 0; }, std::chrono::seconds(60),
                        std::chrono::milliseconds(200)))
        << expr << ": " << prometheus.QueryReply(expr).body;
  }
  EXPECT_GE(charted, 8);

  ASSERT_TRUE(supervisor.Signal(SIGINT));
  EXPECT_EQ(supervisor.Wait(), 0) << supervisor.Log();
}

TEST(PipelineMetricsTest, ABadAddressIsOneLineAndStartsNothing) {
  const TempDir dir("pipeline-metrics-address");
  const fs::path yaml = WriteConfig(dir.path());
  const auto run =
      zerodet::testing::RunZerodet({"pipeline", yaml.string(), "--metrics", "nonsense"});
  EXPECT_EQ(run.exit_code, 1) << run.err;
  ASSERT_EQ(run.ErrLines().size(), 1u) << run.err;
  EXPECT_EQ(run.ErrLines()[0].rfind("zerodet pipeline: ", 0), 0u) << run.err;
  EXPECT_NE(run.err.find("'nonsense' is not HOST:PORT"), std::string::npos) << run.err;
  EXPECT_FALSE(fs::exists(dir.path() / "results.jsonl"));
}

}  // namespace
}  // namespace zerodet::pipeline

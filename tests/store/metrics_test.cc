// `zerodet store --metrics`: a real Prometheus server (Debian's `prometheus`, scraping every
// second; tests/support/prometheus_server.h) scrapes a `zerodet store` process and answers
// PromQL on what it scraped: the objects put in it, the bytes they take against the capacity,
// an eviction, the clients connected; every store query of the Grafana dashboard in deploy/.
// And the one-line errors for a bad or taken --metrics address.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <string>
#include <vector>

#include "prometheus_server.h"
#include "store_test_util.h"
#include "zerodet/store/client.h"

namespace zerodet::store {
namespace {

namespace fs = std::filesystem;
using testing::ChildProcess;
using testing::PrometheusServer;
using testing::RunZerodet;
using testing::TempDir;
using testing::WaitFor;

// Creates and seals an object of `size` bytes (released: evictable).
void Put(StoreClient& client, int i, uint64_t size) {
  auto buffer = client.Create(testing::IdOf(i), size);
  ASSERT_TRUE(buffer.ok()) << buffer.status().ToString();
  ASSERT_TRUE(client.Seal(std::move(*buffer)).ok());
}

TEST(StoreMetricsTest, ARealPrometheusScrapesObjectsBytesEvictionsAndClients) {
  if (!PrometheusServer::Installed()) GTEST_SKIP() << "Debian's prometheus is not installed";
  const TempDir dir("store-metrics");
  const std::string socket = dir.File("store.sock");
  ChildProcess store({testing::ZerodetBinary().string(), "store", "--socket", socket, "--capacity",
                      "1M", "--metrics", "127.0.0.1:0"},
                     dir.File("store.log"));
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(WaitFor([&] { return testing::MetricsPortIn(store.Log()) > 0 || !store.Running(); }))
      << store.Log();
  const uint16_t port = testing::MetricsPortIn(store.Log());
  ASSERT_GT(port, 0) << store.Log();
  std::unique_ptr<StoreClient> client;
  ASSERT_TRUE(WaitFor([&] {
    auto connected = StoreClient::Connect(socket);
    if (connected.ok()) client = std::move(*connected);
    return client != nullptr;
  })) << store.Log();

  // A 1 MiB arena holds three objects of 300 KiB; the fourth evicts the oldest.
  constexpr uint64_t kObject = 300 << 10;
  for (int i = 0; i < 4; ++i) Put(*client, i, kObject);
  EXPECT_FALSE(client->Contains(testing::IdOf(0)));

  const PrometheusServer prometheus(dir.path(), {{"store", port}});
  ASSERT_TRUE(prometheus.ok());
  EXPECT_TRUE(prometheus.WaitForValue(R"(up{job="store"})", 1)) << prometheus.Log();
  EXPECT_TRUE(prometheus.WaitForValue("zerodet_store_objects", 3));
  EXPECT_TRUE(prometheus.WaitForValue("zerodet_store_sealed_objects", 3));
  EXPECT_TRUE(prometheus.WaitForValue("zerodet_store_creates_total", 4));
  EXPECT_TRUE(prometheus.WaitForValue("zerodet_store_evictions_total", 1));
  EXPECT_TRUE(prometheus.WaitForValue("zerodet_store_capacity_bytes", 1 << 20));
  EXPECT_TRUE(prometheus.WaitFor("zerodet_store_allocated_bytes",
                                 [&](double bytes) { return bytes >= 3 * kObject; }));
  EXPECT_TRUE(
      prometheus.WaitFor("zerodet_store_allocated_bytes + zerodet_store_largest_free_block_bytes",
                         [](double bytes) { return bytes <= 1 << 20; }));
  EXPECT_TRUE(prometheus.WaitForValue("zerodet_store_clients", 1));
  EXPECT_TRUE(prometheus.WaitForValue("zerodet_store_max_objects", 65536));
  // The values move: a pinned object, then the client leaves.
  auto pinned = client->Create(testing::IdOf(100), 1000, {}, CreateOptions{.pinned = true});
  ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();
  ASSERT_TRUE(client->Seal(std::move(*pinned)).ok());
  EXPECT_TRUE(prometheus.WaitForValue("zerodet_store_pinned_objects", 1));
  EXPECT_TRUE(prometheus.WaitForValue("zerodet_store_objects", 4));
  client.reset();
  EXPECT_TRUE(prometheus.WaitForValue("zerodet_store_clients", 0));

  // Every store query of the dashboard is valid PromQL with data behind it.
  int charted = 0;
  for (const std::string& expr : testing::DashboardQueries(
           testing::SourceDir() / "deploy/grafana/zerodet-store-pipeline.json")) {
    if (expr.find("zerodet_store_") == std::string::npos) continue;
    ++charted;
    EXPECT_TRUE(WaitFor([&] { return prometheus.SeriesCount(expr) > 0; }, std::chrono::seconds(60),
                        std::chrono::milliseconds(200)))
        << expr << ": " << prometheus.QueryReply(expr).body;
  }
  EXPECT_GE(charted, 8);

  ASSERT_TRUE(store.Signal(SIGTERM));
  EXPECT_EQ(store.Wait(), 0) << store.Log();
}

TEST(StoreMetricsTest, ABadOrTakenAddressIsOneLineAndNoStore) {
  const TempDir dir("store-metrics-address");
  const std::string socket = dir.File("store.sock");
  const auto bad =
      RunZerodet({"store", "--socket", socket, "--capacity", "1M", "--metrics", "localhost-9100"});
  EXPECT_EQ(bad.exit_code, 1) << bad.err;
  ASSERT_EQ(bad.ErrLines().size(), 1u) << bad.err;
  EXPECT_EQ(bad.ErrLines()[0].rfind("zerodet store: ", 0), 0u) << bad.err;
  EXPECT_NE(bad.err.find("'localhost-9100' is not HOST:PORT"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(socket));

  ChildProcess first({testing::ZerodetBinary().string(), "store", "--socket", socket, "--capacity",
                      "1M", "--metrics", "127.0.0.1:0"},
                     dir.File("first.log"));
  ASSERT_TRUE(WaitFor([&] { return testing::MetricsPortIn(first.Log()) > 0 || !first.Running(); }));
  const std::string taken = "127.0.0.1:" + std::to_string(testing::MetricsPortIn(first.Log()));
  const auto second = RunZerodet(
      {"store", "--socket", dir.File("second.sock"), "--capacity", "1M", "--metrics", taken});
  EXPECT_EQ(second.exit_code, 1) << second.err;
  ASSERT_EQ(second.ErrLines().size(), 1u) << second.err;
  EXPECT_NE(second.err.find("cannot serve metrics on " + taken), std::string::npos) << second.err;
  EXPECT_FALSE(fs::exists(dir.File("second.sock")));
}

}  // namespace
}  // namespace zerodet::store

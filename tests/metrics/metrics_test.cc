// The metrics module on its own: a registry's instruments and collectors in the text format, a
// collector that fails, and the exposer: HOST:PORT checks and errors, serving over loopback
// (plain HTTP GETs from tests/support), sharing the registry, and scrapes concurrent with
// updates (labelled concurrent: the ThreadSanitizer job runs it).
#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "prometheus_server.h"
#include "test_support.h"
#include "zerodet/metrics/exposer.h"
#include "zerodet/metrics/registry.h"

namespace zerodet::metrics {
namespace {

using prometheus::MetricType;
using zerodet::testing::HttpGet;
using zerodet::testing::SampleValue;

TEST(MetricsRegistryTest, RendersInstrumentsThenCollectors) {
  Registry registry;
  auto& counter = prometheus::BuildCounter()
                      .Name("zerodet_test_events_total")
                      .Help("Events.")
                      .Register(registry.instruments());
  counter.Add({{"kind", "a"}}).Increment(3);
  registry.AddCollector([] {
    auto gauge = MakeFamily("zerodet_test_level", "A level.", MetricType::Gauge);
    AddSample(gauge, 7, {{"where", "here"}});
    auto total = MakeFamily("zerodet_test_reads_total", "Reads.", MetricType::Counter);
    AddSample(total, 11);
    return std::vector<prometheus::MetricFamily>{gauge, total};
  });
  const std::string text = registry.Render();
  EXPECT_EQ(SampleValue(text, R"(zerodet_test_events_total{kind="a"})"), 3) << text;
  EXPECT_EQ(SampleValue(text, R"(zerodet_test_level{where="here"})"), 7);
  EXPECT_EQ(SampleValue(text, "zerodet_test_reads_total"), 11);
  EXPECT_NE(text.find("# TYPE zerodet_test_level gauge"), std::string::npos);
  EXPECT_NE(text.find("# TYPE zerodet_test_reads_total counter"), std::string::npos);
  EXPECT_LT(text.find("zerodet_test_events_total"), text.find("zerodet_test_level"));
}

TEST(MetricsRegistryTest, ACollectorThatThrowsLosesOnlyItsOwnFamilies) {
  Registry registry;
  registry.AddCollector([]() -> std::vector<prometheus::MetricFamily> {
    throw std::runtime_error("the store went away");
  });
  registry.AddCollector([] {
    auto gauge = MakeFamily("zerodet_test_still_here", "Still here.", MetricType::Gauge);
    AddSample(gauge, 1);
    return std::vector<prometheus::MetricFamily>{gauge};
  });
  std::string text;
  for (int scrape = 0; scrape < 2; ++scrape) {
    ASSERT_NO_THROW(text = registry.Render());
    EXPECT_EQ(SampleValue(text, "zerodet_test_still_here"), 1) << text;
  }
}

TEST(MetricsExposerTest, RefusesWhatIsNotHostPort) {
  auto registry = std::make_shared<Registry>();
  for (const char* address : {"nonsense", "127.0.0.1", ":9100", "127.0.0.1:", "127.0.0.1:99999",
                              "127.0.0.1:port", "127.0.0.1:1,127.0.0.1:2", "127.0.0.1: 80"}) {
    const auto exposer = MetricsExposer::Start(registry, address);
    EXPECT_EQ(exposer.status().code(), StatusCode::kInvalidArgument) << address;
    EXPECT_NE(exposer.status().message().find("HOST:PORT"), std::string::npos) << address;
  }
  EXPECT_EQ(MetricsExposer::Start(nullptr, "127.0.0.1:0").status().code(),
            StatusCode::kInvalidArgument);
}

TEST(MetricsExposerTest, AnAddressItCannotBindIsUnavailableNamingIt) {
  auto registry = std::make_shared<Registry>();
  auto first = MetricsExposer::Start(registry, "127.0.0.1:0");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  const auto second = MetricsExposer::Start(registry, taken);
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(taken), std::string::npos) << second.status().ToString();
  // An address of no interface here (TEST-NET-3, RFC 5737).
  EXPECT_EQ(MetricsExposer::Start(registry, "203.0.113.7:0").status().code(),
            StatusCode::kUnavailable);
}

TEST(MetricsExposerTest, ServesTheRegistryItSharesUntilDestroyed) {
  auto registry = std::make_shared<Registry>();
  auto& gauge = prometheus::BuildGauge()
                    .Name("zerodet_test_temperature_celsius")
                    .Help("A gauge.")
                    .Register(registry->instruments())
                    .Add({});
  gauge.Set(21.5);
  auto exposer = MetricsExposer::Start(registry, "127.0.0.1:0");
  ASSERT_TRUE(exposer.ok()) << exposer.status().ToString();
  const uint16_t port = (*exposer)->port();
  ASSERT_GT(port, 0);
  registry.reset();  // the exposer keeps it alive
  const auto reply = HttpGet(port, "/metrics");
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(SampleValue(reply.body, "zerodet_test_temperature_celsius"), 21.5) << reply.body;
  EXPECT_EQ(HttpGet(port, "/elsewhere").status, 404);
  exposer->reset();
  EXPECT_EQ(HttpGet(port, "/metrics").status, 0);  // nothing listens any more
}

TEST(MetricsExposerTest, ScrapesRunWhileOtherThreadsUpdateAndAddCollectors) {
  auto registry = std::make_shared<Registry>();
  auto& counter = prometheus::BuildCounter()
                      .Name("zerodet_test_updates_total")
                      .Help("Updates.")
                      .Register(registry->instruments())
                      .Add({});
  auto exposer = MetricsExposer::Start(registry, "127.0.0.1:0");
  ASSERT_TRUE(exposer.ok()) << exposer.status().ToString();
  const uint16_t port = (*exposer)->port();
  std::atomic<bool> done{false};
  std::atomic<int> scrapes{0};
  std::vector<std::thread> scrapers;
  for (int t = 0; t < 2; ++t) {
    scrapers.emplace_back([&] {
      while (!done.load()) {
        if (HttpGet(port, "/metrics").status == 200) scrapes.fetch_add(1);
        (void)registry->Render();
      }
    });
  }
  constexpr int kCollectors = 20;
  for (int i = 0; i < kCollectors; ++i) {
    registry->AddCollector([i] {
      auto family = MakeFamily("zerodet_test_collector_" + std::to_string(i), "One collector.",
                               MetricType::Gauge);
      AddSample(family, i);
      return std::vector<prometheus::MetricFamily>{family};
    });
    for (int k = 0; k < 100; ++k) counter.Increment();
  }
  // At least one scrape after every update.
  const int seen = scrapes.load();
  EXPECT_TRUE(zerodet::testing::WaitFor([&] { return scrapes.load() > seen; }));
  done.store(true);
  for (std::thread& t : scrapers) t.join();
  const auto reply = HttpGet(port, "/metrics");
  ASSERT_EQ(reply.status, 200);
  EXPECT_EQ(SampleValue(reply.body, "zerodet_test_updates_total"), 100 * kCollectors);
  EXPECT_EQ(SampleValue(reply.body, "zerodet_test_collector_19"), 19);
}

}  // namespace
}  // namespace zerodet::metrics

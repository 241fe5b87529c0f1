#include "zerodet/metrics/registry.h"

#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <iterator>
#include <utility>

namespace zerodet::metrics {

Registry::Registry() : instruments_(std::make_shared<prometheus::Registry>()) {}
Registry::~Registry() = default;

void Registry::AddCollector(Collector collector) {
  auto entry = std::make_shared<Entry>();
  entry->collect = std::move(collector);
  std::lock_guard<std::mutex> lock(mu_);
  collectors_.push_back(std::move(entry));
}

std::vector<prometheus::MetricFamily> Registry::Collect() const {
  std::vector<prometheus::MetricFamily> families;
  std::vector<std::shared_ptr<const Entry>> collectors;
  try {
    families = instruments_->Collect();
    std::lock_guard<std::mutex> lock(mu_);
    collectors = collectors_;
  } catch (const std::exception& e) {
    spdlog::warn("metrics: collecting the instruments failed: {}", e.what());
    return {};
  }
  // Collectors run outside the lock: a slow one does not hold up AddCollector.
  for (const auto& entry : collectors) {
    try {
      std::vector<prometheus::MetricFamily> more = entry->collect();
      families.insert(families.end(), std::make_move_iterator(more.begin()),
                      std::make_move_iterator(more.end()));
    } catch (const std::exception& e) {
      if (!entry->failure_logged.exchange(true)) {
        spdlog::warn("metrics: a collector failed (its metrics are left out): {}", e.what());
      }
    }
  }
  return families;
}

std::string Registry::Render() const {
  const std::vector<prometheus::MetricFamily> families = Collect();
  try {
    return prometheus::TextSerializer().Serialize(families);
  } catch (const std::exception& e) {
    spdlog::warn("metrics: rendering failed: {}", e.what());
    return {};
  }
}

prometheus::MetricFamily MakeFamily(std::string name, std::string help,
                                    prometheus::MetricType type) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  return family;
}

void AddSample(prometheus::MetricFamily& family, double value, std::vector<Label> labels) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  if (family.type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
}

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};
  return buckets;
}

}  // namespace zerodet::metrics

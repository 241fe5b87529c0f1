// metrics::Registry: the one place a zerodet process keeps its Prometheus metrics, and their text
// exposition (format 0.0.4). `zerodet serve`, `zerodet store` and `zerodet pipeline` each hold
// one and serve it with MetricsExposer (exposer.h), so one Prometheus scrapes the whole system.
//
// Two kinds of metrics live in a registry:
//   - instruments the process updates as things happen: prometheus-cpp (Debian's
//     prometheus-cpp-dev) counters, gauges and histograms registered on instruments(), e.g.
//     prometheus::BuildCounter().Name("zerodet_x_total").Help("...").Register(r.instruments());
//   - families computed at each scrape by collectors (AddCollector), for values that already
//     live elsewhere and are read when asked (a store's object table, a model manager's cache).
//     MakeFamily and AddSample build them.
// Names follow Prometheus conventions: the `zerodet_` prefix, base units (seconds, bytes),
// `_total` for counters. A name must belong to one instrument or one collector family, not both.
//
// Ownership: held by std::shared_ptr (an exposer shares it). The registry owns its instruments
// and collectors; what a collector reads is borrowed, so it must outlive every Collect(): stop
// the exposer (destroy it) before what its collectors read goes away.
//
// Thread-safety: every method may be called from any thread concurrently (prometheus-cpp's
// instruments are thread-safe themselves). Collectors run on the thread that collects (an
// exposer's thread): they must be thread-safe with respect to what they read.
//
// Errors: Collect() and Render() never throw. A collector that throws (or returns families that
// cannot be serialized) loses its families for that scrape; the first failure of each collector
// is logged. Registering an instrument with an invalid name or label name throws
// std::invalid_argument (prometheus-cpp): names are constants of the code, checked by its tests.
#pragma once

#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace zerodet::metrics {

using Label = prometheus::ClientMetric::Label;  // {name, value}
// Computes families at scrape time.
using Collector = std::function<std::vector<prometheus::MetricFamily>()>;

class Registry final : public prometheus::Collectable {
 public:
  Registry();
  ~Registry() override;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Where instruments are registered (see the header comment). Lives as long as the registry.
  prometheus::Registry& instruments() { return *instruments_; }

  // Adds a collector run at every Collect(), after the instruments, in the order added.
  void AddCollector(Collector collector);

  // The instruments' families followed by every collector's. Never throws.
  std::vector<prometheus::MetricFamily> Collect() const override;

  // Collect() in the Prometheus text exposition format (kPrometheusTextContentType, exposer.h).
  std::string Render() const;

 private:
  struct Entry {
    Collector collect;
    mutable std::atomic<bool> failure_logged{false};
  };
  std::shared_ptr<prometheus::Registry> instruments_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<const Entry>> collectors_;
};

// A family for a collector to fill: type Counter or Gauge (AddSample), or Histogram (whose
// ClientMetric::histogram the caller fills).
prometheus::MetricFamily MakeFamily(std::string name, std::string help,
                                    prometheus::MetricType type);

// Appends a sample of `value` with `labels` to a Counter or Gauge family (counter.value or
// gauge.value by the family's type).
void AddSample(prometheus::MetricFamily& family, double value, std::vector<Label> labels = {});

// Latency histogram boundaries in seconds, from 100 µs (a cache hit on a tiny model) to 30 s
// (a model load on a miss): the buckets of every zerodet_*_duration_seconds histogram.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

}  // namespace zerodet::metrics

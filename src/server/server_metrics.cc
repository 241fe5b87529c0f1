#include "zerodet/server/server_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>

#include <charconv>
#include <limits>

#include "zerodet/metrics/registry.h"
#include "zerodet/models/memory_probe.h"
#include "zerodet/models/model_stats.h"

namespace zerodet::server {
namespace {

using metrics::LatencyBuckets;

const prometheus::Histogram::BucketBoundaries& BatchBuckets() {
  static const prometheus::Histogram::BucketBoundaries buckets = {1, 2, 4, 8, 16, 32, 64, 128};
  return buckets;
}

// "success", or the error's code name with underscores ("invalid_argument").
std::string OutcomeLabel(const Status& status) {
  if (status.ok()) return "success";
  std::string label(StatusCodeName(status.code()));
  for (char& c : label) {
    if (c == ' ') c = '_';
  }
  return label;
}

prometheus::ClientMetric Sample(double value, prometheus::MetricType type,
                                std::vector<metrics::Label> labels = {}) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  return metric;
}

// The model manager and the process, read at each scrape (a snapshot of ModelManager::Stats()).
class ManagerCollector {
 public:
  explicit ManagerCollector(ModelManager& manager) : manager_(manager) {}

  std::vector<prometheus::MetricFamily> operator()() const {
    using prometheus::MetricType;
    const ManagerStats stats = manager_.Stats();
    std::vector<prometheus::MetricFamily> out;

    auto loaded = metrics::MakeFamily("zerodet_models_loaded", "Model versions loaded now.",
                                      MetricType::Gauge);
    loaded.metric.push_back(Sample(static_cast<double>(stats.loaded_versions), MetricType::Gauge));
    out.push_back(std::move(loaded));
    auto ratio = metrics::MakeFamily("zerodet_model_cache_hit_ratio",
                                     "Requests served by a loaded model / all requests for models.",
                                     MetricType::Gauge);
    ratio.metric.push_back(Sample(stats.hit_rate, MetricType::Gauge));
    out.push_back(std::move(ratio));

    auto hits = metrics::MakeFamily("zerodet_model_cache_hits_total",
                                    "Requests that found their model loaded.", MetricType::Counter);
    auto misses =
        metrics::MakeFamily("zerodet_model_cache_misses_total",
                            "Requests that waited for their model to load.", MetricType::Counter);
    auto loads = metrics::MakeFamily("zerodet_model_loads_total", "Completed model loads.",
                                     MetricType::Counter);
    auto failures = metrics::MakeFamily("zerodet_model_load_failures_total", "Failed model loads.",
                                        MetricType::Counter);
    auto evictions =
        metrics::MakeFamily("zerodet_model_evictions_total", "Model versions evicted to make room.",
                            MetricType::Counter);
    auto state = metrics::MakeFamily(
        "zerodet_model_state",
        "1 for the model's current state (unloaded, loading, ready, failed).", MetricType::Gauge);
    auto bytes = metrics::MakeFamily("zerodet_model_memory_bytes",
                                     "Memory charged to the model's loaded versions, per device.",
                                     MetricType::Gauge);
    auto leased = metrics::MakeFamily("zerodet_model_instances_in_use",
                                      "Model instances running a request now.", MetricType::Gauge);
    auto load_time = metrics::MakeFamily(
        "zerodet_model_load_duration_seconds",
        "Time to load a model version (session creation and warm-up).", MetricType::Histogram);
    for (const ModelStats& model : stats.models) {
      const std::vector<prometheus::ClientMetric::Label> label = {{"model", model.name}};
      hits.metric.push_back(Sample(static_cast<double>(model.hits), MetricType::Counter, label));
      misses.metric.push_back(
          Sample(static_cast<double>(model.misses), MetricType::Counter, label));
      loads.metric.push_back(Sample(static_cast<double>(model.loads), MetricType::Counter, label));
      failures.metric.push_back(
          Sample(static_cast<double>(model.failed_loads), MetricType::Counter, label));
      evictions.metric.push_back(
          Sample(static_cast<double>(model.evictions), MetricType::Counter, label));
      for (ModelState s :
           {ModelState::kUnloaded, ModelState::kLoading, ModelState::kReady, ModelState::kFailed}) {
        state.metric.push_back(
            Sample(model.state == s ? 1 : 0, MetricType::Gauge,
                   {{"model", model.name}, {"state", std::string(ModelStateName(s))}}));
      }
      for (const auto& [device, charged] : model.bytes) {
        bytes.metric.push_back(Sample(static_cast<double>(charged), MetricType::Gauge,
                                      {{"device", device}, {"model", model.name}}));
      }
      int handles = 0;
      for (const VersionStats& v : model.versions) handles += v.handles;
      leased.metric.push_back(Sample(handles, MetricType::Gauge, label));
      prometheus::ClientMetric histogram;
      histogram.label = label;
      histogram.histogram.sample_count = model.load_ms.count();
      histogram.histogram.sample_sum = model.load_ms.sum_ms() / 1000;
      uint64_t cumulative = 0;
      for (size_t i = 0; i < model.load_ms.counts().size(); ++i) {
        cumulative += model.load_ms.counts()[i];
        histogram.histogram.bucket.push_back(
            {cumulative, i < DurationHistogram::kBoundsMs.size()
                             ? DurationHistogram::kBoundsMs[i] / 1000
                             : std::numeric_limits<double>::infinity()});
      }
      load_time.metric.push_back(std::move(histogram));
    }
    for (auto* family :
         {&hits, &misses, &loads, &failures, &evictions, &state, &bytes, &leased, &load_time}) {
      out.push_back(std::move(*family));
    }

    auto used =
        metrics::MakeFamily("zerodet_device_memory_used_bytes",
                            "Memory charged to loaded models on the device.", MetricType::Gauge);
    auto budget = metrics::MakeFamily(
        "zerodet_device_memory_budget_bytes",
        "The model cache's memory budget on the device (absent: unbounded).", MetricType::Gauge);
    auto count = metrics::MakeFamily("zerodet_device_models_loaded",
                                     "Model versions loaded on the device.", MetricType::Gauge);
    auto count_budget = metrics::MakeFamily(
        "zerodet_device_models_budget",
        "The model cache's budget of loaded versions (absent: unbounded).", MetricType::Gauge);
    auto gpu = metrics::MakeFamily("zerodet_gpu_memory_used_bytes",
                                   "GPU memory in use on the device (all processes), from CUDA.",
                                   MetricType::Gauge);
    for (const auto& [device, d] : stats.devices) {
      const std::vector<prometheus::ClientMetric::Label> label = {{"device", device}};
      used.metric.push_back(Sample(static_cast<double>(d.bytes_used), MetricType::Gauge, label));
      count.metric.push_back(
          Sample(static_cast<double>(d.models_loaded), MetricType::Gauge, label));
      if (d.bytes_budget > 0) {
        budget.metric.push_back(
            Sample(static_cast<double>(d.bytes_budget), MetricType::Gauge, label));
      }
      if (d.models_budget > 0) {
        count_budget.metric.push_back(
            Sample(static_cast<double>(d.models_budget), MetricType::Gauge, label));
      }
      int gpu_index = 0;
      if (device.starts_with("cuda:")) {
        const auto [end, ec] =
            std::from_chars(device.data() + 5, device.data() + device.size(), gpu_index);
        if (ec == std::errc() && end == device.data() + device.size()) {
          if (auto gpu_used = GpuUsedBytes(gpu_index); gpu_used.ok()) {
            gpu.metric.push_back(Sample(static_cast<double>(*gpu_used), MetricType::Gauge, label));
          }
        }
      }
    }
    for (auto* family : {&used, &budget, &count, &count_budget, &gpu}) {
      if (!family->metric.empty()) out.push_back(std::move(*family));
    }

    if (auto rss = ProcessResidentBytes(); rss.ok()) {
      auto family =
          metrics::MakeFamily("zerodet_process_resident_memory_bytes",
                              "Resident memory of the server process.", MetricType::Gauge);
      family.metric.push_back(Sample(static_cast<double>(*rss), MetricType::Gauge));
      out.push_back(std::move(family));
    }
    if (auto threads = ProcessThreadCount(); threads.ok()) {
      auto family = metrics::MakeFamily("zerodet_process_threads", "Threads of the server process.",
                                        MetricType::Gauge);
      family.metric.push_back(Sample(*threads, MetricType::Gauge));
      out.push_back(std::move(family));
    }
    return out;
  }

 private:
  ModelManager& manager_;
};

}  // namespace

struct ServerMetrics::Impl {
  explicit Impl(ModelManager& model_manager)
      : registry(MakeRegistry(model_manager)),
        requests(prometheus::BuildCounter()
                     .Name("zerodet_requests_total")
                     .Help("Finished inference requests by endpoint, model and outcome.")
                     .Register(registry->instruments())),
        durations(prometheus::BuildHistogram()
                      .Name("zerodet_request_duration_seconds")
                      .Help("Request time per stage: queue (waiting for the model), "
                            "preprocess, infer, postprocess, total.")
                      .Register(registry->instruments())),
        batches(prometheus::BuildHistogram()
                    .Name("zerodet_request_batch_size")
                    .Help("Batch dimension of the requests' inputs.")
                    .Register(registry->instruments())),
        inflight(prometheus::BuildGauge()
                     .Name("zerodet_inflight_requests")
                     .Help("Inference requests being handled now.")
                     .Register(registry->instruments())),
        queued(prometheus::BuildGauge()
                   .Name("zerodet_queued_requests")
                   .Help("Requests waiting for their model (a load or a free instance).")
                   .Register(registry->instruments())),
        http_responses(prometheus::BuildCounter()
                           .Name("zerodet_http_responses_total")
                           .Help("HTTP responses by status code.")
                           .Register(registry->instruments())) {}

  // The instruments below, then the model cache and the process read at each scrape.
  static std::shared_ptr<metrics::Registry> MakeRegistry(ModelManager& model_manager) {
    auto made = std::make_shared<metrics::Registry>();
    made->AddCollector(ManagerCollector(model_manager));
    return made;
  }

  std::shared_ptr<metrics::Registry> registry;
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Histogram>& durations;
  prometheus::Family<prometheus::Histogram>& batches;
  prometheus::Family<prometheus::Gauge>& inflight;
  prometheus::Family<prometheus::Gauge>& queued;
  prometheus::Family<prometheus::Counter>& http_responses;
};

ServerMetrics::ServerMetrics(ModelManager& manager) : impl_(std::make_unique<Impl>(manager)) {}
ServerMetrics::~ServerMetrics() = default;

ServerMetrics::InFlight::InFlight(ServerMetrics& metrics, std::string_view endpoint)
    : metrics_(metrics), endpoint_(endpoint) {
  metrics_.impl_->inflight.Add({{"endpoint", endpoint_}}).Increment();
}

ServerMetrics::InFlight::~InFlight() {
  QueueEnd();
  metrics_.impl_->inflight.Add({{"endpoint", endpoint_}}).Decrement();
}

void ServerMetrics::InFlight::QueueBegin() {
  if (queued_) return;
  queued_ = true;
  metrics_.impl_->queued.Add({{"endpoint", endpoint_}}).Increment();
}

void ServerMetrics::InFlight::QueueEnd() {
  if (!queued_) return;
  queued_ = false;
  metrics_.impl_->queued.Add({{"endpoint", endpoint_}}).Decrement();
}

void ServerMetrics::RecordRequest(std::string_view endpoint, std::string_view model, bool known,
                                  const Status& status, const RequestStageSeconds& stages,
                                  double total_seconds, int64_t batch) {
  Impl& impl = *impl_;
  const std::string model_label = known ? std::string(model) : "_unknown";
  const std::string endpoint_label(endpoint);
  impl.requests
      .Add(
          {{"endpoint", endpoint_label}, {"model", model_label}, {"outcome", OutcomeLabel(status)}})
      .Increment();
  if (!status.ok()) return;
  const auto observe = [&](const char* stage, double seconds) {
    impl.durations
        .Add({{"endpoint", endpoint_label}, {"model", model_label}, {"stage", stage}},
             LatencyBuckets())
        .Observe(seconds);
  };
  observe("queue", stages.queue);
  observe("preprocess", stages.preprocess);
  observe("infer", stages.infer);
  observe("postprocess", stages.postprocess);
  observe("total", total_seconds);
  if (batch > 0) {
    impl.batches.Add({{"endpoint", endpoint_label}, {"model", model_label}}, BatchBuckets())
        .Observe(static_cast<double>(batch));
  }
}

void ServerMetrics::CountHttpResponse(int status_code) {
  impl_->http_responses.Add({{"code", std::to_string(status_code)}}).Increment();
}

std::string ServerMetrics::Render() const {
  return impl_->registry->Render();
}

std::shared_ptr<metrics::Registry> ServerMetrics::registry() const {
  return impl_->registry;
}

}  // namespace zerodet::server

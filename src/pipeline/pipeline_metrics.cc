#include "zerodet/pipeline/pipeline_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include <mutex>
#include <utility>
#include <vector>

#include "zerodet/metrics/registry.h"

namespace zerodet::pipeline {
namespace {

using prometheus::MetricFamily;
using prometheus::MetricType;

// The families read from the supervisor's last published state.
std::vector<MetricFamily> StateFamilies(const PipelineState& state) {
  auto published =
      metrics::MakeFamily("zerodet_pipeline_frames_published_total",
                          "Frames the source's ingest published in its ring.", MetricType::Counter);
  auto dropped = metrics::MakeFamily(
      "zerodet_pipeline_frames_dropped_total",
      "Frames of the source not published: its ring was full (overflow drop_newest).",
      MetricType::Counter);
  auto overwritten = metrics::MakeFamily(
      "zerodet_pipeline_frames_overwritten_total",
      "Frames of the source replaced in its ring before every model's workers took them.",
      MetricType::Counter);
  auto ingest_restarts =
      metrics::MakeFamily("zerodet_pipeline_ingest_restarts_total",
                          "Restarts of the source's ingest process.", MetricType::Counter);
  auto ingest_running =
      metrics::MakeFamily("zerodet_pipeline_ingest_running",
                          "1 while the source's ingest process runs.", MetricType::Gauge);
  for (const auto& [name, source] : state.summary.sources) {
    const std::vector<metrics::Label> label = {{"source", name}};
    metrics::AddSample(published, static_cast<double>(source.frames_published), label);
    metrics::AddSample(dropped, static_cast<double>(source.frames_dropped), label);
    metrics::AddSample(overwritten, static_cast<double>(source.frames_overwritten), label);
    metrics::AddSample(ingest_restarts, source.ingest_restarts, label);
    const auto running = state.ingest_running.find(name);
    metrics::AddSample(ingest_running,
                       running != state.ingest_running.end() && running->second ? 1 : 0, label);
  }
  auto worker_restarts =
      metrics::MakeFamily("zerodet_pipeline_worker_restarts_total",
                          "Restarts of the model's worker processes.", MetricType::Counter);
  auto lost = metrics::MakeFamily("zerodet_pipeline_frames_lost_in_flight_total",
                                  "Frames being processed by a worker of the model that died.",
                                  MetricType::Counter);
  auto workers =
      metrics::MakeFamily("zerodet_pipeline_workers_running",
                          "Worker processes of the model running now.", MetricType::Gauge);
  for (const auto& [name, model] : state.summary.models) {
    const std::vector<metrics::Label> label = {{"model", name}};
    metrics::AddSample(worker_restarts, model.worker_restarts, label);
    metrics::AddSample(lost, static_cast<double>(model.frames_lost_in_flight), label);
    const auto running = state.workers_running.find(name);
    metrics::AddSample(workers, running != state.workers_running.end() ? running->second : 0,
                       label);
  }
  auto oversized = metrics::MakeFamily("zerodet_pipeline_results_ring_oversized_total",
                                       "Result lines too long for a slot of the results ring "
                                       "(written to the output, left out of the ring).",
                                       MetricType::Counter);
  metrics::AddSample(oversized, static_cast<double>(state.summary.results_ring_oversized));
  std::vector<MetricFamily> out;
  for (auto* family : {&published, &dropped, &overwritten, &ingest_restarts, &ingest_running,
                       &worker_restarts, &lost, &workers, &oversized}) {
    out.push_back(std::move(*family));
  }
  return out;
}

// The supervisor's last published state, shared with the registry's collector: an exposer may
// hold the registry (and scrape) after the metrics are gone.
struct SharedState {
  std::mutex mu;
  PipelineState state;  // guarded by mu
};

}  // namespace

struct PipelineMetrics::Impl {
  Impl()
      : registry(std::make_shared<metrics::Registry>()),
        shared(std::make_shared<SharedState>()),
        results(prometheus::BuildCounter()
                    .Name("zerodet_pipeline_results_total")
                    .Help("Result lines of the model for frames of the source (failed frames "
                          "included).")
                    .Register(registry->instruments())),
        failures(prometheus::BuildCounter()
                     .Name("zerodet_pipeline_frame_failures_total")
                     .Help("Frames of the source the model's detector failed on.")
                     .Register(registry->instruments())),
        durations(prometheus::BuildHistogram()
                      .Name("zerodet_pipeline_frame_duration_seconds")
                      .Help("Time of a frame per stage: decode (capture to the ring), queue "
                            "(ring to a worker), preprocess, infer, postprocess, total "
                            "(capture to result).")
                      .Register(registry->instruments())) {
    registry->AddCollector([state = shared] {
      std::lock_guard<std::mutex> lock(state->mu);
      return StateFamilies(state->state);
    });
  }

  std::shared_ptr<metrics::Registry> registry;  // owns the instrument families below
  std::shared_ptr<SharedState> shared;
  prometheus::Family<prometheus::Counter>& results;
  prometheus::Family<prometheus::Counter>& failures;
  prometheus::Family<prometheus::Histogram>& durations;
};

PipelineMetrics::PipelineMetrics() : impl_(std::make_unique<Impl>()) {}
PipelineMetrics::~PipelineMetrics() = default;

std::shared_ptr<metrics::Registry> PipelineMetrics::registry() const {
  return impl_->registry;
}

std::string PipelineMetrics::Render() const {
  return impl_->registry->Render();
}

void PipelineMetrics::Publish(const PipelineState& state) {
  std::lock_guard<std::mutex> lock(impl_->shared->mu);
  impl_->shared->state = state;
}

void PipelineMetrics::ObserveResult(const std::string& model, const std::string& source,
                                    const FrameStageSeconds* stages) {
  Impl& impl = *impl_;
  const prometheus::Labels labels = {{"model", model}, {"source", source}};
  impl.results.Add(labels).Increment();
  // The failure counter exists (at 0) from the first result on, so rate() has a series.
  prometheus::Counter& failures = impl.failures.Add(labels);
  if (stages == nullptr) {
    failures.Increment();
    return;
  }
  for (const auto& [stage, seconds] :
       {std::pair{"decode", stages->decode}, std::pair{"queue", stages->queue},
        std::pair{"preprocess", stages->preprocess}, std::pair{"infer", stages->infer},
        std::pair{"postprocess", stages->postprocess}, std::pair{"total", stages->total}}) {
    impl.durations
        .Add({{"model", model}, {"source", source}, {"stage", stage}}, metrics::LatencyBuckets())
        .Observe(seconds);
  }
}

}  // namespace zerodet::pipeline

// PipelineMetrics: the live Prometheus metrics of a running pipeline (pipeline.h), in a
// metrics::Registry (metrics/registry.h) that `zerodet pipeline --metrics HOST:PORT` serves
// with a metrics::MetricsExposer. RunPipeline's supervisor updates it while it runs
// (PipelineOptions::metrics); a scrape reads it from the exposer's thread.
//
// Names follow Prometheus conventions (`zerodet_` prefix, base units, `_total` counters). Per
// source (one ring each, so these are the ring's counters too; cumulative over restarts of the
// ingest, which resumes its ring):
//   zerodet_pipeline_frames_published_total{source}    counter: frames published in the ring
//   zerodet_pipeline_frames_dropped_total{source}      counter: not published, ring full
//                                                      (overflow: drop_newest)
//   zerodet_pipeline_frames_overwritten_total{source}  counter: replaced before every model's
//                                                      workers took them (overwrite_oldest)
//   zerodet_pipeline_ingest_restarts_total{source}     counter
//   zerodet_pipeline_ingest_running{source}            gauge: 1 while its ingest process runs
// Per model entry (models[].name) and source:
//   zerodet_pipeline_results_total{model,source}       counter: result lines (failed ones too)
//   zerodet_pipeline_frame_failures_total{model,source}  counter: frames the detector failed on
//   zerodet_pipeline_frame_duration_seconds{model,source,stage}
//                                                      histogram of the result line's latency_ms
//                                                      stages: decode, queue, preprocess, infer,
//                                                      postprocess, total (successful frames)
// Per model entry:
//   zerodet_pipeline_worker_restarts_total{model}      counter
//   zerodet_pipeline_frames_lost_in_flight_total{model}  counter: frames of workers that died
//   zerodet_pipeline_workers_running{model}            gauge: worker processes running now
// And zerodet_pipeline_results_ring_oversized_total (lines too long for the results ring).
// Frame counters come from the ingests, which report their ring's counters after a frame when
// the last report is half a second old: while frames come they lag the ring by at most that
// (or by the frames since the last report, when a stream stalls), and they are exact once an
// ingest has exited.
//
// Ownership: the registry is shared (registry()); the metrics own everything in it. Lifetime:
// must outlive the RunPipeline that updates it.
// Thread-safety: every method may be called from any thread concurrently. RunPipeline forks
// while an exposer's thread may be reading the metrics: the children never touch them.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "zerodet/pipeline/pipeline.h"

namespace zerodet::metrics {
class Registry;
}  // namespace zerodet::metrics

namespace zerodet::pipeline {

// The stage times of one frame, in seconds (see the result line in pipeline.h).
struct FrameStageSeconds {
  double decode = 0;
  double queue = 0;
  double preprocess = 0;
  double infer = 0;
  double postprocess = 0;
  double total = 0;
};

// What the supervisor knows now, besides the results: the run's counters and its processes.
struct PipelineState {
  PipelineSummary summary;
  std::map<std::string, bool> ingest_running;  // per source: its ingest process runs now
  std::map<std::string, int> workers_running;  // per model entry: worker processes running now
};

class PipelineMetrics {
 public:
  PipelineMetrics();
  ~PipelineMetrics();
  PipelineMetrics(const PipelineMetrics&) = delete;
  PipelineMetrics& operator=(const PipelineMetrics&) = delete;

  // The registry holding every metric above, for metrics::MetricsExposer.
  std::shared_ptr<metrics::Registry> registry() const;

  // Every metric now, in the Prometheus text exposition format (version 0.0.4).
  std::string Render() const;

  // Replaces the counters and gauges read from the supervisor's state (frames per source,
  // restarts, losses, running processes). Counters are cumulative: values only grow while one
  // run updates the metrics.
  void Publish(const PipelineState& state);

  // Counts one result line of model entry `model` for a frame of `source`; `stages` are its
  // stage times, or null when the detector failed on the frame (counted as a failure).
  void ObserveResult(const std::string& model, const std::string& source,
                     const FrameStageSeconds* stages);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace zerodet::pipeline

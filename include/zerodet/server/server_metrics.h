// ServerMetrics: the Prometheus metrics of `zerodet serve`, in a metrics::Registry
// (metrics/registry.h, on prometheus-cpp): what the requests did (counted and timed per model,
// endpoint and stage by InferenceService, so HTTP and gRPC count alike), HTTP responses by status
// code, and, read from the model manager at each scrape, the model cache (state, bytes per model
// and device against the budgets, hits, misses, loads and their times, evictions, failures) and the
// process (resident memory, threads; GPU memory per device where the CUDA runtime answers).
//
// Names follow Prometheus conventions: the `zerodet_` prefix, base units (seconds, bytes),
// `_total` for counters. The families and labels:
//   zerodet_requests_total{endpoint,model,outcome}           counter: outcome "success" or the
//                                                            error ("invalid_argument", ...)
//   zerodet_request_duration_seconds{endpoint,model,stage}   histogram: stage queue (waiting
//                                                            for the model), preprocess, infer,
//                                                            postprocess, total
//   zerodet_request_batch_size{endpoint,model}               histogram of the batch dimension
//   zerodet_inflight_requests{endpoint}                      gauge
//   zerodet_queued_requests{endpoint}                        gauge: waiting for their model
//   zerodet_http_responses_total{code}                       counter
//   zerodet_models_loaded, zerodet_model_*, zerodet_device_*, zerodet_model_cache_*,
//   zerodet_process_*, zerodet_gpu_memory_used_bytes         see server_metrics.cc
// A request for a model the repository does not have is counted under model="_unknown", so
// hostile names cannot grow the label set without bound.
//
// Served at /metrics on the HTTP port and, with `--metrics HOST:PORT`, by a
// metrics::MetricsExposer of registry() (metrics/exposer.h).
//
// Ownership: borrows the manager, which must outlive the metrics (and any exposer of them).
// Thread-safety: every method may be called from any thread concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "zerodet/core/status.h"
#include "zerodet/metrics/exposer.h"
#include "zerodet/models/model_manager.h"

namespace zerodet::metrics {
class Registry;
}  // namespace zerodet::metrics

namespace zerodet::server {

// Seconds a request spent in each stage (0 for a stage it did not reach).
struct RequestStageSeconds {
  double queue = 0;
  double preprocess = 0;
  double infer = 0;
  double postprocess = 0;
};

class ServerMetrics {
 public:
  explicit ServerMetrics(ModelManager& manager);
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // Marks a request of `endpoint` ("infer", "detect") in flight while it lives.
  class InFlight {
   public:
    InFlight(ServerMetrics& metrics, std::string_view endpoint);
    ~InFlight();
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

    // Marks the request waiting for its model until the matching QueueEnd (or the end).
    void QueueBegin();
    void QueueEnd();

   private:
    ServerMetrics& metrics_;
    std::string endpoint_;
    bool queued_ = false;
  };

  // Counts one finished request and its stage times. `model` is the requested name; `known`
  // whether the repository has it (otherwise it counts as "_unknown"). `batch` is the batch
  // dimension of its input (0: none, not recorded).
  void RecordRequest(std::string_view endpoint, std::string_view model, bool known,
                     const Status& status, const RequestStageSeconds& stages, double total_seconds,
                     int64_t batch);

  // Counts one HTTP response by status code.
  void CountHttpResponse(int status_code);

  // Every metric now, in the Prometheus text exposition format (version 0.0.4).
  std::string Render() const;

  // The registry holding every metric above, for metrics::MetricsExposer (`zerodet serve
  // --metrics`). Its collector reads the manager: stop any exposer before the manager goes.
  std::shared_ptr<metrics::Registry> registry() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The content type of Render()'s text (the exposition format of the metrics module).
using metrics::kPrometheusTextContentType;

}  // namespace zerodet::server

// The measurements behind `zerodet bench models`, side by side in one process, as one JSON
// object:
//   "cold_load": per model, load + warm-up from the .onnx and from the optimized-graph cache,
//     next to one Run of the same model (the cost of a cold switch, in Runs);
//   "cache_hit": Acquire + release of a ready model, p50/p99, with 1 thread and with 2 threads
//     (on two different models: unrelated models share no lock);
//   "stream": a Zipf-popular request stream over the repository's models (up to 6), each request
//     Acquire + Detect on one image, with every model resident vs a budget of 2 models: peak
//     RSS, hit rate, latency percentiles including the loads.
// The process's shared ONNX Runtime thread pool is configured once with `threads` intra-op
// threads.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

#include "zerodet/core/status.h"

namespace zerodet::bench {

struct ModelsBenchOptions {
  std::filesystem::path repo;
  std::filesystem::path image;  // the stream's image; empty: dog.jpg of ../shared
  int rounds = 3;               // cold loads per model and source (medians reported)
  int hit_iterations = 200000;  // Acquire + release pairs per thread
  int stream_requests = 60;
  double zipf_exponent = 1.0;
  int threads = 0;  // shared intra-op threads (0: one per core)
};

// Errors: the repository cannot be read or serves no model; a model that fails to load; the
// image cannot be decoded.
Result<nlohmann::ordered_json> MeasureModels(const ModelsBenchOptions& options);

}  // namespace zerodet::bench

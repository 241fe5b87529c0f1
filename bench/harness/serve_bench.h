// What `zerodet serve` adds to a request, measured side by side in one run (the measuring code
// of `zerodet bench serve`): an in-process HTTP server on loopback over a temporary repository
// holding one model, a keep-alive Beast client, and the same model run directly.
//   - infer on one preprocessed tensor (1x3xHxW FP32 at the model's input size): sent as JSON
//     numbers, as binary tensor data, through a registered system shared-memory region (the
//     output written into another), and as an object of a store (started in process) named by
//     id; server overhead = request p50 - direct Run p50;
//   - /v1/detect with the JPEG's bytes at concurrency 1, 4 and 16 against the detector in
//     process on the same bytes (images per second); with a batched model (the same weights
//     with a dynamic batch, scripts/make_dynamic_batch.py), also through the dynamic batcher.
// Thread-safety: MeasureServe runs alone (it starts its own threads).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

#include "zerodet/core/status.h"

namespace zerodet::bench {

struct ServeBenchOptions {
  std::filesystem::path model;  // empty: yolov8n.onnx of the shared test data
  std::filesystem::path image;  // empty: dog.jpg of the shared test data
  int requests = 20;            // per measurement
  int threads = 0;              // ONNX Runtime intra-op threads (0: one per core)
  // A dynamic-batch version of the model, served with dynamic_batching (max_batch 16, this
  // delay); empty: no batched measurement.
  std::filesystem::path batched_model;
  uint64_t batch_delay_us = 2000;
};

// Errors: the model or image cannot be read; the server cannot start; a request fails.
Result<nlohmann::ordered_json> MeasureServe(const ServeBenchOptions& options);

}  // namespace zerodet::bench

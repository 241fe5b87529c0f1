// ModelLoader: turns one version of one model into ready instances, the unit the model manager
// caches. The ONNX Runtime loader creates `instances` Detectors on the manager's shared thread
// pool (unless the model asks for threads of its own), through the optimized-graph cache when
// one is configured, checks the tensors the config declares, runs `warmup` runs on each instance
// at its input shape (a model is ready only after them, as with Triton's model_warmup; a failed
// warm-up fails the load), and measures what the load really took:
//   CPU: growth of the process's resident set across the load. When other loads overlapped it
//     (the loader pool runs several at once), that growth mixes several models: the charge is
//     then the one measured for the same file when it last loaded alone, if any ("rss-shared"
//     otherwise, and an over-estimate).
//   GPU (cuda, tensorrt): growth of the device's used memory (cudaMemGetInfo) across the load;
//     loads on one GPU are serialized so that the difference is the model's alone.
//
// Thread-safety: Load may be called from several threads at once.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "zerodet/core/clock.h"
#include "zerodet/core/status.h"
#include "zerodet/infer/detector.h"
#include "zerodet/models/model_config.h"
#include "zerodet/models/repository.h"

namespace zerodet {

struct LoadRequest {
  std::string name;
  int64_t version = 0;
  std::filesystem::path model_path;
  FileIdentity identity;  // of model_path when the repository was scanned
  ModelConfig config;
  Deadline deadline = Deadline::Never();  // checked between instances and warm-up runs
};

// One loaded version: its instances and what it costs. Owned by the manager (one per loaded
// version); instances are leased to one caller at a time.
struct LoadedModel {
  std::vector<std::unique_ptr<Detector>> instances;  // config.instances, at least one
  std::map<std::string, uint64_t> charge;            // device ("cpu", "cuda:0") -> bytes
  std::string charge_source;                         // "rss", "rss-shared", "gpu", ...
  double create_ms = 0;                              // sessions (all instances)
  double warmup_ms = 0;                              // warm-up runs (all instances)
  bool from_graph_cache = false;                     // sessions built from the cached graph
};

class ModelLoader {
 public:
  virtual ~ModelLoader() = default;
  // Errors: the Detector's errors (kNotFound, kCorruptData, kUnavailable for a provider that
  // cannot start, ...); kInvalidArgument when the model does not have the tensors its config
  // declares; kDeadlineExceeded when request.deadline passes; a warm-up run's error.
  virtual Result<LoadedModel> Load(const LoadRequest& request) = 0;
};

struct OnnxLoaderOptions {
  std::filesystem::path graph_cache_dir;  // empty: no optimized-graph cache
};

std::shared_ptr<ModelLoader> CreateOnnxModelLoader(const OnnxLoaderOptions& options);

}  // namespace zerodet

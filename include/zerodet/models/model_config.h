// ModelConfig: how one model of a repository is served, read from REPO/<model>/config.yaml
// (zerodet's format) and/or REPO/<model>/config.pbtxt (Triton's, for repositories that come from
// Triton). When both exist, config.pbtxt is read first and config.yaml's keys override it.
//
// config.yaml keys (all optional):
//   name: yolov8n                # must equal the directory name when given (as in Triton)
//   model_filename: model.onnx   # the file inside each version directory
//   format: auto                 # YOLO layout override: auto, v8, v5, v10 (end2end), yolox
//   input_size: 640              # or [width, height]; for models with a dynamic input size
//   class_names: [person, car]   # instead of the model's metadata names
//   provider: cpu                # cpu, cuda or tensorrt
//   device: 0                    # GPU ordinal
//   provider_options: {gpu_mem_limit: "2147483648"}
//   intra_op_threads: 0          # 0: the manager's shared pool; > 0: pools of the model's own
//   graph_optimization_level: 3  # 0..3
//   instances: 1                 # Detectors per loaded version (concurrent requests it serves)
//   warmup: 1                    # runs per instance before the version is ready
//   pinned: false                # never evicted
//   preload: false               # loaded when the manager starts
//   max_batch: 1                 # images per Run for models with a dynamic batch
//   dynamic_batching: {max_queue_delay_us: 2000, preferred_batch_sizes: [4, 8],
//                      max_queue_size: 64, queue_timeout_us: 500000}
//                                # zerodet serve batches concurrent requests (Triton's knobs,
//                                # the queue policy as its default_queue_policy)
//   version_policy: {latest: 1}  # or all, or {specific: [1, 3]} (Triton's policies)
//   default_version: 2           # requests without a version go here (instead of the newest)
//   traffic: {2: 90, 3: 10}      # weighted split of requests without a version (canaries)
//   shrink_arenas: false         # return each Run's arena memory to the system after it
//   conf_threshold: 0.25, iou_threshold: 0.45, max_detections: 300, class_agnostic: false
// An unknown key is an error (a typo must not silently change how a model is served).
//
// Plain values, no shared state: safe to copy and use from any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/core/status.h"
#include "zerodet/infer/backend.h"
#include "zerodet/infer/detector.h"
#include "zerodet/infer/yolo.h"

namespace zerodet {

// Which versions of a model are served (Triton's version_policy).
struct VersionPolicy {
  enum class Kind { kLatest, kAll, kSpecific };
  Kind kind = Kind::kLatest;
  uint32_t latest = 1;            // kLatest: the N highest versions
  std::vector<int64_t> specific;  // kSpecific: exactly these

  // The served subset of `available` (ascending, positive), ascending.
  std::vector<int64_t> Select(const std::vector<int64_t>& available) const;
};

// Triton's dynamic_batching, kept for the server's batcher (the manager itself does not batch):
// requests that arrive within max_queue_delay_us of each other run as one batch of at most
// ModelConfig::max_batch; a batch of a preferred size runs without waiting for the delay.
struct DynamicBatching {
  std::vector<int> preferred_batch_sizes;  // each within 1..max_batch
  uint64_t max_queue_delay_us = 0;         // at most 10 s
  // The model's queue policy (Triton's default_queue_policy, REJECT): at most max_queue_size
  // requests wait for it, a request waits at most queue_timeout_us. 0: the server's policy.
  uint32_t max_queue_size = 0;
  uint64_t queue_timeout_us = 0;
};

// A tensor the config declares (Triton's input/output); checked against the model at load.
struct DeclaredTensor {
  std::string name;
  std::vector<int64_t> dims;  // without the batch dimension when max_batch_size > 0
};

struct ModelConfig {
  std::string name;  // the directory name
  std::string model_filename = "model.onnx";
  YoloFormat format = YoloFormat::kAuto;
  int input_width = 0;  // 0: the model's
  int input_height = 0;
  std::vector<std::string> class_names;
  ExecutionProvider provider = ExecutionProvider::kCpu;
  int device_id = 0;
  std::map<std::string, std::string> provider_options;
  int intra_op_threads = 0;  // 0: the shared pool
  int graph_optimization_level = 3;
  int instances = 1;
  int warmup_runs = 1;
  bool pinned = false;
  bool preload = false;
  int max_batch = 1;
  bool shrink_arenas = false;
  DetectParams params;
  VersionPolicy version_policy;
  std::optional<int64_t> default_version;
  std::map<int64_t, double> traffic;  // version -> weight (> 0); empty: no split
  std::optional<DynamicBatching> dynamic_batching;
  std::vector<DeclaredTensor> inputs;
  std::vector<DeclaredTensor> outputs;
  bool config_batch_dim = false;  // Triton max_batch_size > 0: dims exclude the batch dimension

  // Where the config came from: "config.yaml", "config.pbtxt", "config.pbtxt+config.yaml" or
  // "default" (no config file).
  std::string source = "default";
  // Fields of the config that zerodet does not support, one line each ("config.pbtxt:
  // sequence_batching is not supported"), logged once when the model loads and listed in the
  // index.
  std::vector<std::string> unsupported;

  // The options a Detector of this model is created with (provider, threads, overrides, limits).
  DetectorOptions ToDetectorOptions() const;
};

// The device a model's memory is charged to: "cpu", or "cuda:<device>" for GPU providers.
std::string ConfigDevice(const ModelConfig& config);

// Parses config.yaml text onto `config` (which holds defaults, or what config.pbtxt set).
// `origin` names the file in errors ("REPO/yolov8n/config.yaml: traffic: ...").
// Errors: kInvalidArgument for malformed YAML, unknown keys, wrong types or values out of range.
Status ApplyYamlConfig(std::string_view text, const std::string& origin, ModelConfig& config);

// Parses Triton config.pbtxt text (protobuf text format of Triton's ModelConfig) onto `config`;
// fields that do not apply are appended to config.unsupported. Errors: kInvalidArgument for text
// that is not a valid ModelConfig (message has the line and column), a platform/backend other
// than ONNX Runtime, or values out of range.
Status ApplyTritonConfig(std::string_view text, const std::string& origin, ModelConfig& config);

// Reads REPO/<name>/config.pbtxt and REPO/<name>/config.yaml (each optional) into a config whose
// name is `name`, and checks the rules that span both files (model_filename a plain name,
// default_version and traffic not both set). Errors: kInvalidArgument as the parsers, naming the
// file, and for those rules; a config whose `name` differs from the directory; unreadable files
// (FIFOs are refused without blocking).
Result<ModelConfig> ReadModelConfig(const std::filesystem::path& model_dir,
                                    const std::string& name);

}  // namespace zerodet

// Backend: runs an ONNX model on one execution provider. The ONNX Runtime implementation is the
// only one today; the interface exists so the detector, model manager and servers do not see
// ONNX Runtime types.
//
// Thread-safety: a Backend is NOT safe for concurrent Run calls (outputs live in buffers the
// backend owns and reuses). Use one Backend per worker thread, or serialize Run. info() is
// immutable after creation and may be read from any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "zerodet/core/status.h"
#include "zerodet/core/tensor.h"

namespace zerodet {

enum class ExecutionProvider { kCpu, kCuda, kTensorRT };

// "cpu", "cuda", "tensorrt". Errors: kInvalidArgument for other names.
Result<ExecutionProvider> ParseExecutionProvider(std::string_view name);
std::string_view ExecutionProviderName(ExecutionProvider provider);

// Most threads one backend may ask ONNX Runtime for (per pool). ONNX Runtime cannot report a
// failure to create its pool threads and aborts instead, so counts are bounded before it sees
// them; more threads than this never made a YOLO model faster.
inline constexpr int kMaxBackendThreads = 64;

struct BackendOptions {
  ExecutionProvider provider = ExecutionProvider::kCpu;
  int device_id = 0;         // GPU ordinal for CUDA / TensorRT
  int intra_op_threads = 0;  // 0: ONNX Runtime's default (one per physical core); <= 64
  int inter_op_threads = 0;  // 0: default; <= kMaxBackendThreads
  // Largest tensor the backend allocates for an output (a hostile model may declare any
  // shape): bigger outputs fail the Run with kResourceExhausted.
  uint64_t max_output_bytes = uint64_t{1} << 30;
  // 0 disable, 1 basic, 2 extended, 3 all (ONNX Runtime's GraphOptimizationLevel).
  int graph_optimization_level = 3;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;  // -1 for dynamic dimensions
};

struct ModelInfo {
  std::filesystem::path path;
  std::vector<TensorInfo> inputs;
  std::vector<TensorInfo> outputs;
  std::map<std::string, std::string> metadata;  // ONNX metadata_props (custom_metadata_map)
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelInfo& info() const = 0;
  virtual ExecutionProvider provider() const = 0;

  // Runs the model. `inputs` are bound in the order of info().inputs and must match their dtype
  // and (static) dimensions; they stay in caller memory (no copy on CPU) and are only read. On
  // success the returned views, in the order of info().outputs, point into backend-owned memory
  // that stays valid until the next Run or the backend's destruction. Outputs whose shape is
  // known from the input shapes (static, or a symbolic dimension shared with an input, such as a
  // dynamic batch) are written into buffers allocated once and reused while input shapes stay
  // the same; others (data-dependent shapes) are allocated by ONNX Runtime on each Run.
  // Errors: kInvalidArgument for a wrong count, dtype or shape (message names the tensor and
  // both shapes); kInternal for runtime failures.
  virtual Result<std::vector<TensorView>> Run(std::span<const ConstTensorView> inputs) = 0;
};

// Execution providers compiled into the ONNX Runtime library in use, e.g. {"cpu"} or
// {"cpu", "cuda", "tensorrt"}.
std::vector<std::string> AvailableExecutionProviders();

// Loads an ONNX model with ONNX Runtime. All backends share one process-wide Ort::Env (logging
// goes to spdlog; ONNX Runtime's telemetry is switched off before the Env exists, so no device
// id, event database or debug log is written); each has its own session and thread pools. For
// kTensorRT, CUDA is appended as the fallback for nodes TensorRT does not take. Thread-safe.
// Errors: kNotFound for a missing file; kUnimplemented when the provider is not in this
// ONNX Runtime build (message lists the available ones); kUnavailable when the provider is in
// the build but cannot start (no GPU, missing CUDA libraries); kCorruptData for a file ONNX
// Runtime cannot parse; kInvalidArgument for bad options (thread counts outside
// 0..kMaxBackendThreads) or a path that is not a regular file (FIFOs are refused without
// blocking).
Result<std::unique_ptr<Backend>> CreateOnnxBackend(const std::filesystem::path& model_path,
                                                   const BackendOptions& options = {});

}  // namespace zerodet

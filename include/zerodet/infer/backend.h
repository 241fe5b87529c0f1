// Backend: runs an ONNX model on one execution provider. The ONNX Runtime implementation is the
// only one today; the interface exists so the detector, model manager and servers do not see
// ONNX Runtime types.
//
// Thread-safety: a Backend is NOT safe for concurrent Run calls (outputs live in buffers the
// backend owns and reuses). Use one Backend per worker thread, or serialize Run. info() is
// immutable after creation and may be read from any thread.
//
// Threads: by default each backend's session has thread pools of its own. Backends created with
// BackendOptions::shared_thread_pool run on one process-wide pair of pools instead (see
// ConfigureSharedThreadPool), so a process serving many models starts one pool, not one per
// model.
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
  // Run on the process-wide shared thread pools instead of pools of the session's own.
  // REQUIRES intra_op_threads == 0 and inter_op_threads == 0 (the shared pools' sizes are set
  // once per process by ConfigureSharedThreadPool).
  bool shared_thread_pool = false;
  // Options of the execution provider as ONNX Runtime names them (CUDA: "gpu_mem_limit",
  // "arena_extend_strategy", "cudnn_conv_algo_search", ...; TensorRT: "trt_fp16_enable", ...).
  // Ignored for kCpu. An unknown key fails the load with kUnavailable.
  std::map<std::string, std::string> provider_options;
  // A file that holds ONNX Runtime's optimized graph of this model (the caller chooses the path,
  // e.g. keyed by the model's hash, the ONNX Runtime version and the provider). When it exists,
  // the session is built from it with graph optimizations off (they were applied when it was
  // written), which is several times faster; when it is missing or cannot be loaded, the session
  // is built from the model and its optimized graph is written there, through a temporary file
  // renamed into place (concurrent writers and readers never see a partial file). Empty: none.
  // Not used with kTensorRT (its compiled engines cannot be saved as an ONNX graph).
  std::filesystem::path optimized_graph_path;
  // Passes ONNX Runtime's run option memory.enable_memory_arena_shrinkage on every Run, so the
  // arenas (CPU, and the CUDA arena of the device) return the chunks a Run used to the system
  // when it ends: less memory held by idle models, for some allocation cost on each Run.
  bool shrink_arenas_after_run = false;
};

// Sizes of the process-wide shared thread pools (0: ONNX Runtime's default, one intra-op thread
// per physical core).
struct SharedThreadPoolOptions {
  int intra_op_threads = 0;  // <= kMaxBackendThreads
  int inter_op_threads = 0;  // <= kMaxBackendThreads
};

// Creates ONNX Runtime's process-wide environment with shared thread pools of these sizes. It
// must run before the first backend of the process (which creates the environment: without
// shared pools, unless it asks for them, in which case they get default sizes). Calling it again
// with the same sizes is a no-op. Thread-safe.
// Errors: kInvalidArgument for counts outside 0..kMaxBackendThreads; kFailedPrecondition when
// the environment already exists without shared pools or with pools of other sizes.
Status ConfigureSharedThreadPool(const SharedThreadPoolOptions& options);

// The version of the ONNX Runtime library in use, e.g. "1.29.0".
std::string OnnxRuntimeVersion();

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
  // The session was built from BackendOptions::optimized_graph_path (not from `path`).
  bool loaded_from_optimized_graph = false;
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
// id, event database or debug log is written); each has its own session, and its own thread
// pools unless options.shared_thread_pool. For
// kTensorRT, CUDA is appended as the fallback for nodes TensorRT does not take. Thread-safe.
// Errors: kNotFound for a missing file; kUnimplemented when the provider is not in this
// ONNX Runtime build (message lists the available ones); kUnavailable when the provider is in
// the build but cannot start (no GPU, missing CUDA libraries); kCorruptData for a file ONNX
// Runtime cannot parse; kInvalidArgument for bad options (thread counts outside
// 0..kMaxBackendThreads, or thread counts with shared_thread_pool) or a path that is not a
// regular file (FIFOs are refused without blocking); kFailedPrecondition for shared_thread_pool
// when the process's environment was created without shared pools.
Result<std::unique_ptr<Backend>> CreateOnnxBackend(const std::filesystem::path& model_path,
                                                   const BackendOptions& options = {});

}  // namespace zerodet

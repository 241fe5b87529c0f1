// ONNX Runtime implementation of Backend.
//
// Data path: the caller's input tensors are wrapped in Ort::Values over their own memory and bound
// with IOBinding (no copy on CPU). Outputs whose shapes are known for the bound input shapes are
// bound to buffers this backend owns, so a Run writes straight into memory that is reused from
// call to call; outputs with data-dependent shapes are allocated by ONNX Runtime and kept alive
// until the next Run.
#include <onnxruntime_cxx_api.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "zerodet/core/file.h"
#include "zerodet/core/sanitizers.h"
#include "zerodet/infer/backend.h"

namespace zerodet {
namespace {

constexpr const char* kOrtCpu = "CPUExecutionProvider";
constexpr const char* kOrtCuda = "CUDAExecutionProvider";
constexpr const char* kOrtTensorRT = "TensorrtExecutionProvider";

void LogFromOrt(void* /*param*/, OrtLoggingLevel severity, const char* category,
                const char* /*logid*/, const char* /*code_location*/, const char* message) {
  spdlog::level::level_enum level = spdlog::level::debug;
  switch (severity) {
    case ORT_LOGGING_LEVEL_VERBOSE:
      level = spdlog::level::trace;
      break;
    case ORT_LOGGING_LEVEL_INFO:
      level = spdlog::level::debug;
      break;
    case ORT_LOGGING_LEVEL_WARNING:
      level = spdlog::level::warn;
      break;
    case ORT_LOGGING_LEVEL_ERROR:
    case ORT_LOGGING_LEVEL_FATAL:
      level = spdlog::level::err;
      break;
  }
  spdlog::log(level, "onnxruntime [{}]: {}", category ? category : "", message ? message : "");
}

// One Ort::Env per process: it owns ONNX Runtime's logging, global state and, when asked for,
// the shared thread pools; creating a second one is an error in ONNX Runtime. It is created on
// first use, with shared pools when ConfigureSharedThreadPool ran first or the first backend
// asks for them (sizes cannot change afterwards).
//
// The official ONNX Runtime builds record telemetry on Linux: a device id and an event database
// under ~/.cache/Microsoft/DeveloperTools, and a /tmp/mat-debug-PID.log per process. zerodet
// never lets it: ORT_DISABLE_TELEMETRY must be set before the first Env is created (the library
// latches the decision), and the Env's events are disabled too.
class OrtEnvironment {
 public:
  static OrtEnvironment& Get() {
    static OrtEnvironment environment;
    return environment;
  }

  // The Env, created without shared pools when none exists. Throws Ort::Exception.
  Ort::Env& Env() {
    std::lock_guard lock(mu_);
    if (!env_) Create(std::nullopt);
    return *env_;
  }

  // The Env, created with shared pools of these sizes (default sizes when nullopt) when none
  // exists. Errors: kFailedPrecondition as ConfigureSharedThreadPool. Throws Ort::Exception.
  Result<Ort::Env*> EnvWithSharedPools(std::optional<SharedThreadPoolOptions> sizes) {
    std::lock_guard lock(mu_);
    if (!env_) Create(sizes.value_or(SharedThreadPoolOptions{}));
    if (!shared_) {
      return FailedPreconditionError(
          "ONNX Runtime's environment was created without shared thread pools (a backend with "
          "its own pools came first): ConfigureSharedThreadPool must run before the first "
          "backend of the process");
    }
    if (sizes && (sizes->intra_op_threads != shared_->intra_op_threads ||
                  sizes->inter_op_threads != shared_->inter_op_threads)) {
      return FailedPreconditionError("the shared thread pools already exist with " +
                                     std::to_string(shared_->intra_op_threads) + " intra-op / " +
                                     std::to_string(shared_->inter_op_threads) +
                                     " inter-op threads; asked for " +
                                     std::to_string(sizes->intra_op_threads) + " / " +
                                     std::to_string(sizes->inter_op_threads));
    }
    return env_.get();
  }

 private:
  void Create(std::optional<SharedThreadPoolOptions> shared) {
    ::setenv("ORT_DISABLE_TELEMETRY", "1", /*overwrite=*/1);
    if (shared) {
      Ort::ThreadingOptions threading;
      threading.SetGlobalIntraOpNumThreads(shared->intra_op_threads);
      threading.SetGlobalInterOpNumThreads(shared->inter_op_threads);
      env_ = std::make_unique<Ort::Env>(threading, LogFromOrt, nullptr, ORT_LOGGING_LEVEL_WARNING,
                                        "zerodet");
    } else {
      env_ = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_WARNING, "zerodet", LogFromOrt, nullptr);
    }
    env_->DisableTelemetryEvents();
    shared_ = shared;
  }

  std::mutex mu_;
  std::unique_ptr<Ort::Env> env_;
  std::optional<SharedThreadPoolOptions> shared_;
};

Ort::Env& OrtEnv() {
  return OrtEnvironment::Get().Env();
}

std::string ProviderShortName(const std::string& ort_name) {
  if (ort_name == kOrtCpu) return "cpu";
  if (ort_name == kOrtCuda) return "cuda";
  if (ort_name == kOrtTensorRT) return "tensorrt";
  return ort_name;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

Result<DType> ToDType(ONNXTensorElementDataType type, const std::string& tensor_name) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return DType::kFloat32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return DType::kFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return DType::kUInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
      return DType::kInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return DType::kInt32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return DType::kInt64;
    default:
      return UnimplementedError("tensor '" + tensor_name + "' has ONNX element type " +
                                std::to_string(static_cast<int>(type)) +
                                ", which zerodet does not support (FP32, FP16, UINT8, INT8, "
                                "INT32, INT64 are)");
  }
}

ONNXTensorElementDataType ToOrtType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    case DType::kFloat16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    case DType::kUInt8:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    case DType::kInt8:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    case DType::kInt32:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    case DType::kInt64:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  }
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

// Maps an ONNX Runtime error raised while loading a model to a zerodet status.
Status LoadError(const Ort::Exception& e, const std::filesystem::path& path) {
  const std::string message = path.string() + ": " + e.what();
  switch (e.GetOrtErrorCode()) {
    case ORT_NO_SUCHFILE:
      return NotFoundError(message);
    case ORT_INVALID_PROTOBUF:
    case ORT_INVALID_GRAPH:
      return CorruptDataError(message + " (not a valid ONNX model)");
    case ORT_NOT_IMPLEMENTED:
      return UnimplementedError(message);
    case ORT_INVALID_ARGUMENT:
      return InvalidArgumentError(message);
    default:
      return InternalError(message);
  }
}

// A tensor's element type, shape and the names of its symbolic (dynamic) dimensions.
struct TensorDecl {
  TensorInfo info;
  std::vector<std::string> symbols;  // per dimension; empty when unnamed or static
};

Result<TensorDecl> DescribeTensor(const std::string& name, const Ort::TypeInfo& type_info) {
  if (type_info.GetONNXType() != ONNX_TYPE_TENSOR) {
    return UnimplementedError("'" + name + "' is not a tensor (sequence/map values unsupported)");
  }
  auto shape_info = type_info.GetTensorTypeAndShapeInfo();
  TensorDecl decl;
  decl.info.name = name;
  ZD_ASSIGN_OR_RETURN(decl.info.dtype, ToDType(shape_info.GetElementType(), name));
  decl.info.shape = shape_info.GetShape();
  for (auto& d : decl.info.shape) {
    if (d <= 0) d = -1;
  }
  for (const char* symbol : shape_info.GetSymbolicDimensions()) {
    decl.symbols.emplace_back(symbol ? symbol : "");
  }
  decl.symbols.resize(decl.info.shape.size());
  return decl;
}

// 64-byte aligned, so kernels writing outputs can use aligned vector stores.
struct AlignedFree {
  void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
};
using AlignedBuffer = std::unique_ptr<std::byte[], AlignedFree>;

AlignedBuffer AllocateAligned(size_t bytes) {
  return AlignedBuffer(static_cast<std::byte*>(::operator new[](bytes, std::align_val_t{64})));
}

class OnnxBackend final : public Backend {
 public:
  OnnxBackend(Ort::Session session, ModelInfo info, const BackendOptions& options,
              std::vector<std::vector<std::string>> input_symbols,
              std::vector<std::vector<std::string>> output_symbols)
      : session_(std::move(session)),
        binding_(session_),
        cpu_memory_(Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault)),
        info_(std::move(info)),
        provider_(options.provider),
        max_output_bytes_(options.max_output_bytes),
        input_symbols_(std::move(input_symbols)),
        output_symbols_(std::move(output_symbols)),
        outputs_(info_.outputs.size()) {
    if (options.shrink_arenas_after_run) {
      std::string arenas = "cpu:0";
      if (provider_ != ExecutionProvider::kCpu)
        arenas += ";gpu:" + std::to_string(options.device_id);
      run_options_.AddConfigEntry("memory.enable_memory_arena_shrinkage", arenas.c_str());
    }
  }

  const ModelInfo& info() const override { return info_; }
  ExecutionProvider provider() const override { return provider_; }

  Result<std::vector<TensorView>> Run(std::span<const ConstTensorView> inputs) override {
    ZD_RETURN_IF_ERROR(ValidateInputs(inputs));
    try {
      for (size_t i = 0; i < inputs.size(); ++i) {
        const ConstTensorView& in = inputs[i];
        // ONNX Runtime's C++ API takes inputs as void*, but a bound input is only read.
        Ort::Value value =
            Ort::Value::CreateTensor(cpu_memory_, const_cast<void*>(in.data), in.size_bytes(),
                                     in.shape.data(), in.shape.size(), ToOrtType(in.dtype));
        binding_.BindInput(info_.inputs[i].name.c_str(), value);
      }
      if (!outputs_bound_ || !SameShapes(inputs)) {
        BindOutputs(inputs);
      } else {
        RebindDynamicOutputs();
      }
      session_.Run(run_options_, binding_);
      if (provider_ != ExecutionProvider::kCpu) binding_.SynchronizeOutputs();
      return CollectOutputs();
    } catch (const Ort::Exception& e) {
      // A failed run may leave output bindings in an unknown state: rebind next time.
      outputs_bound_ = false;
      return InternalError(info_.path.filename().string() +
                           ": ONNX Runtime run failed: " + e.what());
    } catch (const OutputTooLarge& e) {
      outputs_bound_ = false;
      return ResourceExhaustedError(info_.path.filename().string() + ": " + e.message);
    } catch (const std::bad_alloc&) {
      outputs_bound_ = false;
      return ResourceExhaustedError(info_.path.filename().string() +
                                    ": out of memory for the model's tensors");
    } catch (const std::exception& e) {
      outputs_bound_ = false;
      return InternalError(info_.path.filename().string() + ": " + e.what());
    }
  }

 private:
  // Thrown inside Run (and caught there) when a model declares an output over the limit.
  struct OutputTooLarge {
    std::string message;
  };

  struct OutputSlot {
    AlignedBuffer buffer;  // set when the output shape is static for the bound input shapes
    size_t capacity_bytes = 0;
    std::vector<int64_t> shape;
    bool preallocated = false;
  };

  Status ValidateInputs(std::span<const ConstTensorView> inputs) const {
    const std::string model = info_.path.filename().string();
    if (inputs.size() != info_.inputs.size()) {
      return InvalidArgumentError(model + ": expected " + std::to_string(info_.inputs.size()) +
                                  " input tensor(s), got " + std::to_string(inputs.size()));
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      const TensorInfo& want = info_.inputs[i];
      const ConstTensorView& got = inputs[i];
      if (got.dtype != want.dtype) {
        return InvalidArgumentError(model + ": input '" + want.name + "' must be " +
                                    std::string(DTypeName(want.dtype)) + ", got " +
                                    std::string(DTypeName(got.dtype)));
      }
      bool shape_ok = got.shape.size() == want.shape.size();
      for (size_t d = 0; shape_ok && d < got.shape.size(); ++d) {
        shape_ok = got.shape[d] > 0 && (want.shape[d] < 0 || want.shape[d] == got.shape[d]);
      }
      if (!shape_ok) {
        return InvalidArgumentError(model + ": input '" + want.name + "' must have shape " +
                                    ShapeToString(want.shape) + ", got " +
                                    ShapeToString(got.shape));
      }
      if (got.data == nullptr) {
        return InvalidArgumentError(model + ": input '" + want.name + "' has no data");
      }
    }
    return Status::Ok();
  }

  bool SameShapes(std::span<const ConstTensorView> inputs) const {
    if (bound_input_shapes_.size() != inputs.size()) return false;
    for (size_t i = 0; i < inputs.size(); ++i) {
      if (bound_input_shapes_[i] != inputs[i].shape) return false;
    }
    return true;
  }

  // The shape of output `index` for these inputs, or nullopt when a dimension is only known
  // after running (data-dependent, or a symbol no input shares).
  std::optional<std::vector<int64_t>> ResolveOutputShape(
      size_t index, std::span<const ConstTensorView> inputs) const {
    std::vector<int64_t> shape = info_.outputs[index].shape;
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] > 0) continue;
      const std::string& symbol = output_symbols_[index][d];
      if (symbol.empty()) return std::nullopt;
      bool resolved = false;
      for (size_t i = 0; i < inputs.size() && !resolved; ++i) {
        for (size_t j = 0; j < input_symbols_[i].size(); ++j) {
          if (input_symbols_[i][j] == symbol) {
            shape[d] = inputs[i].shape[j];
            resolved = true;
            break;
          }
        }
      }
      if (!resolved) return std::nullopt;
    }
    return shape;
  }

  // Binds every output either to a backend-owned buffer of the resolved shape or to ONNX
  // Runtime's CPU allocator. Throws Ort::Exception.
  void BindOutputs(std::span<const ConstTensorView> inputs) {
    ort_outputs_.clear();
    binding_.ClearBoundOutputs();
    for (size_t i = 0; i < outputs_.size(); ++i) {
      const TensorInfo& out = info_.outputs[i];
      OutputSlot& slot = outputs_[i];
      auto shape = ResolveOutputShape(i, inputs);
      slot.preallocated = shape.has_value();
      if (!slot.preallocated) {
        binding_.BindOutput(out.name.c_str(), cpu_memory_);
        continue;
      }
      slot.shape = std::move(*shape);
      TensorView view{nullptr, out.dtype, slot.shape};
      const std::optional<uint64_t> elements = CheckedElementCount(slot.shape);
      if (!elements || *elements > max_output_bytes_ / DTypeSize(out.dtype)) {
        throw OutputTooLarge{"output '" + out.name + "' of shape " + ShapeToString(slot.shape) +
                             " is larger than the limit of " + std::to_string(max_output_bytes_) +
                             " bytes (BackendOptions::max_output_bytes)"};
      }
      const size_t bytes = std::max<size_t>(view.size_bytes(), 1);
      if (bytes > slot.capacity_bytes) {
        slot.buffer = AllocateAligned(bytes);
        slot.capacity_bytes = bytes;
      }
      Ort::Value value =
          Ort::Value::CreateTensor(cpu_memory_, slot.buffer.get(), view.size_bytes(),
                                   slot.shape.data(), slot.shape.size(), ToOrtType(out.dtype));
      binding_.BindOutput(out.name.c_str(), value);
    }
    bound_input_shapes_.clear();
    for (const auto& in : inputs) bound_input_shapes_.push_back(in.shape);
    outputs_bound_ = true;
  }

  // An output bound to an allocator keeps the value of the last Run, which ONNX Runtime would
  // then treat as pre-allocated with that shape: bind the allocator again so each Run allocates
  // a value of the shape it computes. The previous values are released (their views end here).
  void RebindDynamicOutputs() {
    ort_outputs_.clear();
    for (size_t i = 0; i < outputs_.size(); ++i) {
      if (!outputs_[i].preallocated) {
        binding_.BindOutput(info_.outputs[i].name.c_str(), cpu_memory_);
      }
    }
  }

  Result<std::vector<TensorView>> CollectOutputs() {
    const bool any_dynamic = std::any_of(outputs_.begin(), outputs_.end(),
                                         [](const auto& s) { return !s.preallocated; });
    ort_outputs_.clear();
    if (any_dynamic) ort_outputs_ = binding_.GetOutputValues();
    std::vector<TensorView> views(outputs_.size());
    for (size_t i = 0; i < outputs_.size(); ++i) {
      views[i].dtype = info_.outputs[i].dtype;
      if (outputs_[i].preallocated) {
        views[i].data = outputs_[i].buffer.get();
        views[i].shape = outputs_[i].shape;
      } else {
        Ort::Value& value = ort_outputs_[i];
        views[i].data = value.GetTensorMutableRawData();
        views[i].shape = value.GetTensorTypeAndShapeInfo().GetShape();
      }
    }
    return views;
  }

  Ort::Session session_;
  Ort::IoBinding binding_;
  Ort::MemoryInfo cpu_memory_;
  Ort::RunOptions run_options_;
  ModelInfo info_;
  ExecutionProvider provider_;
  uint64_t max_output_bytes_;
  std::vector<std::vector<std::string>> input_symbols_;
  std::vector<std::vector<std::string>> output_symbols_;
  std::vector<OutputSlot> outputs_;
  std::vector<Ort::Value> ort_outputs_;  // ONNX Runtime-allocated outputs of the last Run
  std::vector<std::vector<int64_t>> bound_input_shapes_;
  bool outputs_bound_ = false;
};

// Adds the execution provider to the session options. Throws Ort::Exception.
void AppendProvider(Ort::SessionOptions& session_options, ExecutionProvider provider, int device_id,
                    const std::map<std::string, std::string>& provider_options) {
  const OrtApi& api = Ort::GetApi();
  const std::string device = std::to_string(device_id);
  std::vector<const char*> keys = {"device_id"};
  std::vector<const char*> values = {device.c_str()};
  for (const auto& [key, value] : provider_options) {
    if (key == "device_id") continue;
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  if (provider == ExecutionProvider::kTensorRT) {
    OrtTensorRTProviderOptionsV2* trt = nullptr;
    Ort::ThrowOnError(api.CreateTensorRTProviderOptions(&trt));
    std::unique_ptr<OrtTensorRTProviderOptionsV2, decltype(api.ReleaseTensorRTProviderOptions)>
        trt_owner(trt, api.ReleaseTensorRTProviderOptions);
    Ort::ThrowOnError(
        api.UpdateTensorRTProviderOptions(trt, keys.data(), values.data(), keys.size()));
    session_options.AppendExecutionProvider_TensorRT_V2(*trt);
  }
  // TensorRT falls back to CUDA for the nodes it does not take, so both are appended.
  if (provider == ExecutionProvider::kCuda || provider == ExecutionProvider::kTensorRT) {
    OrtCUDAProviderOptionsV2* cuda = nullptr;
    Ort::ThrowOnError(api.CreateCUDAProviderOptions(&cuda));
    std::unique_ptr<OrtCUDAProviderOptionsV2, decltype(api.ReleaseCUDAProviderOptions)> cuda_owner(
        cuda, api.ReleaseCUDAProviderOptions);
    // TensorRT's options are not CUDA's: the CUDA fallback gets the device only.
    const size_t count = provider == ExecutionProvider::kCuda ? keys.size() : 1;
    Ort::ThrowOnError(api.UpdateCUDAProviderOptions(cuda, keys.data(), values.data(), count));
    session_options.AppendExecutionProvider_CUDA_V2(*cuda);
  }
}

Result<GraphOptimizationLevel> ToOrtOptimizationLevel(int level) {
  switch (level) {
    case 0:
      return GraphOptimizationLevel::ORT_DISABLE_ALL;
    case 1:
      return GraphOptimizationLevel::ORT_ENABLE_BASIC;
    case 2:
      return GraphOptimizationLevel::ORT_ENABLE_EXTENDED;
    case 3:
      return GraphOptimizationLevel::ORT_ENABLE_ALL;
    default:
      return InvalidArgumentError("graph_optimization_level must be 0..3, got " +
                                  std::to_string(level));
  }
}

// ONNX Runtime would block forever opening a FIFO: the type is checked without blocking.
Status CheckModelFile(const std::filesystem::path& path) {
  ZD_ASSIGN_OR_RETURN(UniqueFd fd, OpenRegularFile(path));
  struct stat st {};
  // ONNX Runtime parses an empty file as a model without a graph and fails generically.
  if (::fstat(fd.get(), &st) == 0 && st.st_size == 0) {
    return CorruptDataError(path.string() + ": the file is empty (not a valid ONNX model)");
  }
  return Status::Ok();
}

Result<std::unique_ptr<Backend>> CreateOnnxBackendOrThrow(const std::filesystem::path& path,
                                                          const BackendOptions& options) {
  const std::string model = path.filename().string();
  std::vector<std::string> ort_available = Ort::GetAvailableProviders();
  if (options.provider != ExecutionProvider::kCpu) {
    const char* needed = options.provider == ExecutionProvider::kCuda ? kOrtCuda : kOrtTensorRT;
    if (std::find(ort_available.begin(), ort_available.end(), needed) == ort_available.end()) {
      std::vector<std::string> available;
      for (const auto& name : ort_available) available.push_back(ProviderShortName(name));
      return UnimplementedError(
          model + ": execution provider '" + std::string(ExecutionProviderName(options.provider)) +
          "' is not in this ONNX Runtime build (available: " + JoinNames(available) +
          "); use an ONNX Runtime build with that provider, or --provider cpu");
    }
  }
  for (const int threads : {options.intra_op_threads, options.inter_op_threads}) {
    if (threads < 0 || threads > kMaxBackendThreads) {
      return InvalidArgumentError("thread count " + std::to_string(threads) + " is outside 0.." +
                                  std::to_string(kMaxBackendThreads) +
                                  " (0 = ONNX Runtime's default)");
    }
  }
  ZD_ASSIGN_OR_RETURN(GraphOptimizationLevel level,
                      ToOrtOptimizationLevel(options.graph_optimization_level));

  if (options.shared_thread_pool &&
      (options.intra_op_threads != 0 || options.inter_op_threads != 0)) {
    return InvalidArgumentError(
        "a backend on the shared thread pools cannot ask for threads of its own (intra_op_threads "
        "and inter_op_threads must be 0)");
  }
  ZD_RETURN_IF_ERROR(CheckModelFile(path));
  Ort::Env* env = &OrtEnv();
  if (options.shared_thread_pool) {
    ZD_ASSIGN_OR_RETURN(env, OrtEnvironment::Get().EnvWithSharedPools(std::nullopt));
  }

  // Session options for a session built from the model (level as asked) or from its saved
  // optimized graph (no optimizations: they were applied before it was saved). Throws
  // Ort::Exception; provider failures are returned.
  auto make_session_options =
      [&](GraphOptimizationLevel graph_level) -> Result<Ort::SessionOptions> {
    Ort::SessionOptions session_options;
    if (options.shared_thread_pool) {
      session_options.DisablePerSessionThreads();
    } else {
      session_options.SetIntraOpNumThreads(options.intra_op_threads);
      session_options.SetInterOpNumThreads(options.inter_op_threads);
    }
    session_options.SetGraphOptimizationLevel(graph_level);
    if (options.inter_op_threads > 1) session_options.SetExecutionMode(ORT_PARALLEL);
    if (options.provider != ExecutionProvider::kCpu) {
      try {
        AppendProvider(session_options, options.provider, options.device_id,
                       options.provider_options);
      } catch (const Ort::Exception& e) {
        return UnavailableError(model + ": cannot start execution provider '" +
                                std::string(ExecutionProviderName(options.provider)) +
                                "' on device " + std::to_string(options.device_id) + ": " +
                                e.what());
      }
    }
    return session_options;
  };

  std::optional<Ort::Session> session;
  bool from_optimized_graph = false;
  const std::filesystem::path& graph_path = options.optimized_graph_path;
  const bool use_graph_cache =
      !graph_path.empty() && options.provider != ExecutionProvider::kTensorRT;
  if (use_graph_cache && CheckModelFile(graph_path).ok()) {
    ZD_ASSIGN_OR_RETURN(Ort::SessionOptions cached_options,
                        make_session_options(GraphOptimizationLevel::ORT_DISABLE_ALL));
    try {
      session.emplace(*env, graph_path.c_str(), cached_options);
      from_optimized_graph = true;
    } catch (const Ort::Exception& e) {
      // A damaged or foreign cache file is rebuilt from the model below.
      spdlog::warn("{}: optimized graph {} cannot be loaded ({}); rebuilding it", model,
                   graph_path.string(), e.what());
      std::error_code ignored;
      std::filesystem::remove(graph_path, ignored);
    }
  }
  std::filesystem::path graph_temp;
  if (!session) {
    ZD_ASSIGN_OR_RETURN(Ort::SessionOptions session_options, make_session_options(level));
    if (use_graph_cache) {
      // ONNX Runtime writes the file while it builds the session: into a name of this thread's
      // own, renamed into place only when the session (and so the file) is complete.
      graph_temp = graph_path;
      graph_temp += ".tmp." + std::to_string(::getpid()) + "." +
                    std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
      session_options.SetOptimizedModelFilePath(graph_temp.c_str());
    }
    try {
      session.emplace(*env, path.c_str(), session_options);
    } catch (const Ort::Exception& e) {
      if (!graph_temp.empty()) {
        std::error_code ignored;
        std::filesystem::remove(graph_temp, ignored);
      }
      return LoadError(e, path);
    }
    if (!graph_temp.empty()) {
      std::error_code error;
      std::filesystem::rename(graph_temp, graph_path, error);
      if (error) {
        spdlog::warn("{}: cannot save its optimized graph to {}: {}", model, graph_path.string(),
                     error.message());
        std::filesystem::remove(graph_temp, error);
      }
    }
  }

  ModelInfo info;
  info.path = path;
  info.loaded_from_optimized_graph = from_optimized_graph;
  Ort::AllocatorWithDefaultOptions allocator;
  std::vector<std::vector<std::string>> input_symbols;
  std::vector<std::vector<std::string>> output_symbols;
  for (size_t i = 0; i < session->GetInputCount(); ++i) {
    std::string name = session->GetInputNameAllocated(i, allocator).get();
    auto decl = DescribeTensor(name, session->GetInputTypeInfo(i));
    if (!decl.ok()) return decl.status().WithContext(model);
    info.inputs.push_back(std::move(decl->info));
    input_symbols.push_back(std::move(decl->symbols));
  }
  for (size_t i = 0; i < session->GetOutputCount(); ++i) {
    std::string name = session->GetOutputNameAllocated(i, allocator).get();
    auto decl = DescribeTensor(name, session->GetOutputTypeInfo(i));
    if (!decl.ok()) return decl.status().WithContext(model);
    info.outputs.push_back(std::move(decl->info));
    output_symbols.push_back(std::move(decl->symbols));
  }
  Ort::ModelMetadata metadata = session->GetModelMetadata();
  for (const auto& key : metadata.GetCustomMetadataMapKeysAllocated(allocator)) {
    auto value = metadata.LookupCustomMetadataMapAllocated(key.get(), allocator);
    info.metadata[key.get()] = value ? value.get() : "";
  }
  spdlog::debug("{}: loaded on {} ({} input(s), {} output(s))", model,
                ExecutionProviderName(options.provider), info.inputs.size(), info.outputs.size());
  return std::unique_ptr<Backend>(new OnnxBackend(std::move(*session), std::move(info), options,
                                                  std::move(input_symbols),
                                                  std::move(output_symbols)));
}

}  // namespace

Result<ExecutionProvider> ParseExecutionProvider(std::string_view name) {
  if (name == "cpu") return ExecutionProvider::kCpu;
  if (name == "cuda") return ExecutionProvider::kCuda;
  if (name == "tensorrt" || name == "trt") return ExecutionProvider::kTensorRT;
  return InvalidArgumentError("unknown execution provider '" + std::string(name) +
                              "' (expected cpu, cuda or tensorrt)");
}

std::string_view ExecutionProviderName(ExecutionProvider provider) {
  switch (provider) {
    case ExecutionProvider::kCpu:
      return "cpu";
    case ExecutionProvider::kCuda:
      return "cuda";
    case ExecutionProvider::kTensorRT:
      return "tensorrt";
  }
  return "unknown";
}

Status ConfigureSharedThreadPool(const SharedThreadPoolOptions& options) {
  for (const int threads : {options.intra_op_threads, options.inter_op_threads}) {
    if (threads < 0 || threads > kMaxBackendThreads) {
      return InvalidArgumentError("shared thread pool size " + std::to_string(threads) +
                                  " is outside 0.." + std::to_string(kMaxBackendThreads) +
                                  " (0 = ONNX Runtime's default)");
    }
  }
  try {
    return OrtEnvironment::Get().EnvWithSharedPools(options).status();
  } catch (const Ort::Exception& e) {
    return InternalError(std::string("cannot create ONNX Runtime's environment: ") + e.what());
  }
}

std::string OnnxRuntimeVersion() {
  return Ort::GetVersionString();
}

std::vector<std::string> AvailableExecutionProviders() {
  std::vector<std::string> names;
  try {
    for (const auto& name : Ort::GetAvailableProviders()) {
      names.push_back(ProviderShortName(name));
    }
  } catch (const Ort::Exception& e) {
    spdlog::warn("cannot list ONNX Runtime execution providers: {}", e.what());
  }
  return names;
}

Result<std::unique_ptr<Backend>> CreateOnnxBackend(const std::filesystem::path& model_path,
                                                   const BackendOptions& options) {
  // ONNX Runtime reports errors by exception; none may cross the module boundary.
  try {
    return CreateOnnxBackendOrThrow(model_path, options);
  } catch (const Ort::Exception& e) {
    return LoadError(e, model_path);
  } catch (const std::exception& e) {
    return InternalError(model_path.string() + ": " + e.what());
  }
}

}  // namespace zerodet

#if defined(ZERODET_ASAN)
// ONNX Runtime 1.29 leaks one 14-byte allocation when the first Ort::Env is created (reproduced
// with a bare Ort::Env in an otherwise empty program). The library is not ours to fix, and every
// program that uses a backend would fail LeakSanitizer on it, so its allocations are exempted.
// The hook lives here because this file is linked into every such program.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libonnxruntime.so\n";
}
#endif

#if defined(ZERODET_TSAN)
// ONNX Runtime is not built with ThreadSanitizer: its own threads synchronize through code TSan
// does not see (its thread pool's lock-free queues and spin-waits), so TSan reports races between
// them inside the library (first seen when a shared thread pool starts its threads). The races
// it can judge are zerodet's; those inside the library are not ours to fix, and are suppressed.
extern "C" const char* __tsan_default_suppressions() {
  return "race:libonnxruntime.so\n";
}
#endif

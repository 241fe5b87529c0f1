#include "zerodet/models/model_loader.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <utility>

#include "zerodet/core/stopwatch.h"
#include "zerodet/models/graph_cache.h"
#include "zerodet/models/memory_probe.h"

namespace zerodet {
namespace {

std::string Label(const LoadRequest& request) {
  return request.name + ":" + std::to_string(request.version);
}

std::string DimsText(const std::vector<int64_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  return out + "]";
}

// The tensors the config declares (Triton's input/output) must exist in the model with those
// dimensions (-1 matches anything; with max_batch_size > 0 the batch dimension is not declared).
Status CheckDeclaredTensors(const LoadRequest& request, const ModelInfo& info) {
  const auto check = [&](const std::vector<DeclaredTensor>& declared,
                         const std::vector<TensorInfo>& actual, const char* kind) -> Status {
    for (const DeclaredTensor& want : declared) {
      const TensorInfo* found = nullptr;
      for (const TensorInfo& have : actual) {
        if (have.name == want.name) found = &have;
      }
      if (!found) {
        return InvalidArgumentError(Label(request) + ": the config declares " + kind + " '" +
                                    want.name + "', which the model does not have");
      }
      if (want.dims.empty()) continue;
      std::vector<int64_t> shape = found->shape;
      if (request.config.config_batch_dim && !shape.empty()) shape.erase(shape.begin());
      bool same = shape.size() == want.dims.size();
      for (size_t d = 0; same && d < shape.size(); ++d) {
        same = want.dims[d] < 0 || shape[d] < 0 || want.dims[d] == shape[d];
      }
      if (!same) {
        return InvalidArgumentError(Label(request) + ": " + kind + " '" + want.name +
                                    "' is declared " + DimsText(want.dims) + " but the model has " +
                                    DimsText(shape));
      }
    }
    return Status::Ok();
  };
  ZD_RETURN_IF_ERROR(check(request.config.inputs, info.inputs, "input"));
  return check(request.config.outputs, info.outputs, "output");
}

uint64_t ResidentBytesOrZero() {
  Result<uint64_t> rss = ProcessResidentBytes();
  return rss.ok() ? *rss : 0;
}

// Runs the model on a gray image at its input shape.
Status WarmUp(Detector& detector) {
  const ModelSpec& spec = detector.spec();
  const int64_t batch_dim = detector.model_info().inputs[0].shape[0];
  const int64_t batch = batch_dim > 0 ? batch_dim : 1;
  std::vector<float> input(static_cast<size_t>(batch) * 3 * static_cast<size_t>(spec.input_width) *
                               static_cast<size_t>(spec.input_height),
                           114.0f / 255.0f);
  const ConstTensorView view{
      input.data(), DType::kFloat32, {batch, 3, spec.input_height, spec.input_width}};
  return detector.backend().Run(std::span<const ConstTensorView>(&view, 1)).status();
}

class OnnxModelLoader final : public ModelLoader {
 public:
  explicit OnnxModelLoader(OnnxLoaderOptions options) : options_(std::move(options)) {}

  Result<LoadedModel> Load(const LoadRequest& request) override {
    const std::string label = Label(request);
    const std::string device = ConfigDevice(request.config);
    const bool gpu = request.config.provider != ExecutionProvider::kCpu;
    // One GPU load at a time per device, so the device's memory growth is this model's.
    std::unique_lock<std::mutex> gpu_lock;
    if (gpu) gpu_lock = std::unique_lock(GpuMutex(request.config.device_id));

    const uint64_t starts_before = starts_.fetch_add(1) + 1;
    const bool overlapped_at_start = active_.fetch_add(1) > 0;
    struct ActiveGuard {
      std::atomic<int>& active;
      ~ActiveGuard() { active.fetch_sub(1); }
    } guard{active_};

    const uint64_t rss_before = ResidentBytesOrZero();
    Result<uint64_t> gpu_before =
        gpu ? GpuUsedBytes(request.config.device_id) : Result<uint64_t>(uint64_t{0});

    DetectorOptions detector_options = request.config.ToDetectorOptions();
    if (!options_.graph_cache_dir.empty() &&
        request.config.provider != ExecutionProvider::kTensorRT) {
      auto graph = OptimizedGraphPath(options_.graph_cache_dir, request.model_path, request.config);
      if (graph.ok()) {
        detector_options.backend.optimized_graph_path = *graph;
      } else {
        spdlog::warn("{}: no optimized-graph cache: {}", label, graph.status().ToString());
      }
    }

    LoadedModel loaded;
    Stopwatch watch;
    for (int i = 0; i < std::max(1, request.config.instances); ++i) {
      if (request.deadline.expired()) {
        return DeadlineExceededError(label + ": the load timed out while creating instance " +
                                     std::to_string(i + 1));
      }
      auto detector = Detector::Create(request.model_path, detector_options);
      if (!detector.ok()) return detector.status();
      if (i == 0) {
        ZD_RETURN_IF_ERROR(CheckDeclaredTensors(request, (*detector)->model_info()));
        loaded.from_graph_cache = (*detector)->model_info().loaded_from_optimized_graph;
      }
      loaded.instances.push_back(std::move(detector).value());
    }
    loaded.create_ms = watch.ElapsedMs();
    watch.Reset();
    for (auto& instance : loaded.instances) {
      for (int run = 0; run < request.config.warmup_runs; ++run) {
        if (request.deadline.expired()) {
          return DeadlineExceededError(label + ": the load timed out during warm-up");
        }
        Status status = WarmUp(*instance);
        if (!status.ok()) return status.WithContext(label + ": warm-up run failed");
      }
    }
    loaded.warmup_ms = watch.ElapsedMs();

    const uint64_t rss_after = ResidentBytesOrZero();
    const uint64_t rss_growth = rss_after > rss_before ? rss_after - rss_before : 0;
    const bool overlapped = overlapped_at_start || starts_.load() != starts_before;
    const std::string key = request.model_path.string() + "|" + device;
    {
      std::lock_guard lock(mu_);
      if (!overlapped) {
        solo_cpu_charge_[key] = rss_growth;
        loaded.charge["cpu"] = rss_growth;
        loaded.charge_source = "rss";
      } else if (auto it = solo_cpu_charge_.find(key); it != solo_cpu_charge_.end()) {
        loaded.charge["cpu"] = it->second;
        loaded.charge_source = "rss-solo";
      } else {
        loaded.charge["cpu"] = rss_growth;
        loaded.charge_source = "rss-shared";
      }
    }
    if (gpu) {
      Result<uint64_t> gpu_after = GpuUsedBytes(request.config.device_id);
      if (gpu_before.ok() && gpu_after.ok()) {
        loaded.charge[device] = *gpu_after > *gpu_before ? *gpu_after - *gpu_before : 0;
        loaded.charge_source += "+gpu";
      } else {
        spdlog::warn("{}: GPU memory not measured: {}", label,
                     (gpu_before.ok() ? gpu_after.status() : gpu_before.status()).ToString());
        loaded.charge[device] = 0;
      }
    }
    return loaded;
  }

 private:
  static std::mutex& GpuMutex(int device) {
    static std::mutex table_mu;
    static std::map<int, std::unique_ptr<std::mutex>> table;
    std::lock_guard lock(table_mu);
    auto& entry = table[device];
    if (!entry) entry = std::make_unique<std::mutex>();
    return *entry;
  }

  OnnxLoaderOptions options_;
  std::atomic<uint64_t> starts_{0};
  std::atomic<int> active_{0};
  std::mutex mu_;
  std::map<std::string, uint64_t> solo_cpu_charge_;
};

}  // namespace

std::shared_ptr<ModelLoader> CreateOnnxModelLoader(const OnnxLoaderOptions& options) {
  return std::make_shared<OnnxModelLoader>(options);
}

}  // namespace zerodet

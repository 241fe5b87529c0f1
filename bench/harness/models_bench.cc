#include "models_bench.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "latency_summary.h"
#include "zerodet/codec/decode.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/core/stopwatch.h"
#include "zerodet/models/memory_probe.h"
#include "zerodet/models/model_manager.h"

namespace zerodet::bench {
namespace {

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n == 0 ? 0 : n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// Peak RSS since the last ResetPeakRss (VmHWM), in MiB.
double PeakRssMib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

void ResetPeakRss() {
  std::ofstream("/proc/self/clear_refs") << "5";
}

ManagerOptions BaseOptions(const ModelsBenchOptions& bench) {
  ManagerOptions options;
  options.repository = bench.repo;
  options.watch = false;
  options.thread_pool.intra_op_threads = bench.threads;
  options.loader_threads = 1;  // loads measured one at a time
  return options;
}

// One Run of the model on a gray input at its input shape, in ms.
Result<double> TimeOneRun(ModelHandle& handle) {
  const ModelSpec& spec = handle.detector().spec();
  std::vector<float> input(
      3 * static_cast<size_t>(spec.input_width) * static_cast<size_t>(spec.input_height),
      114.0f / 255.0f);
  const ConstTensorView view{
      input.data(), DType::kFloat32, {1, 3, spec.input_height, spec.input_width}};
  Stopwatch watch;
  ZD_RETURN_IF_ERROR(
      handle.detector().backend().Run(std::span<const ConstTensorView>(&view, 1)).status());
  return watch.ElapsedMs();
}

// The last load's session creation and warm-up times, in ms.
struct LoadTimes {
  double session_ms = 0;
  double warmup_ms = 0;
};
LoadTimes LastLoad(ModelManager& manager, const std::string& name) {
  for (const ModelStats& m : manager.Stats().models) {
    if (m.name == name) return {m.last_load_ms - m.last_warmup_ms, m.last_warmup_ms};
  }
  return {};
}

Result<nlohmann::ordered_json> ColdLoads(const ModelsBenchOptions& bench,
                                         const std::vector<std::string>& models) {
  ZD_ASSIGN_OR_RETURN(auto plain, ModelManager::Create(BaseOptions(bench)));
  const auto cache_dir = std::filesystem::temp_directory_path() /
                         ("zerodet_bench_graph_cache_" + std::to_string(::getpid()));
  ManagerOptions cached_options = BaseOptions(bench);
  cached_options.graph_cache_dir = cache_dir;
  ZD_ASSIGN_OR_RETURN(auto cached, ModelManager::Create(cached_options));
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const std::string& name : models) {
    // The first cached load writes the optimized graph; it is not timed.
    ZD_RETURN_IF_ERROR(cached->Load(name));
    ZD_RETURN_IF_ERROR(cached->Unload(name));
    std::vector<double> from_onnx, from_cache, session_onnx, session_cache, warmup, run;
    for (int round = 0; round < bench.rounds; ++round) {
      // Alternated, so drift (other load on the machine) favours neither.
      ZD_RETURN_IF_ERROR(plain->Load(name));
      const LoadTimes onnx = LastLoad(*plain, name);
      from_onnx.push_back(onnx.session_ms + onnx.warmup_ms);
      session_onnx.push_back(onnx.session_ms);
      warmup.push_back(onnx.warmup_ms);
      {
        ZD_ASSIGN_OR_RETURN(ModelHandle handle, plain->Acquire(name));
        ZD_ASSIGN_OR_RETURN(double ms, TimeOneRun(handle));
        run.push_back(ms);
      }
      ZD_RETURN_IF_ERROR(plain->Unload(name));
      ZD_RETURN_IF_ERROR(cached->Load(name));
      const LoadTimes cache = LastLoad(*cached, name);
      from_cache.push_back(cache.session_ms + cache.warmup_ms);
      session_cache.push_back(cache.session_ms);
      warmup.push_back(cache.warmup_ms);
      ZD_RETURN_IF_ERROR(cached->Unload(name));
    }
    const double run_ms = Median(run);
    out.push_back(
        {{"model", name},
         {"session_from_onnx_ms", RoundTo(Median(session_onnx), 2)},
         {"session_from_cache_ms", RoundTo(Median(session_cache), 2)},
         {"session_cache_speedup", RoundTo(Median(session_onnx) / Median(session_cache), 2)},
         {"warmup_run_ms", RoundTo(Median(warmup), 2)},
         {"load_from_onnx_ms", RoundTo(Median(from_onnx), 2)},
         {"load_from_cache_ms", RoundTo(Median(from_cache), 2)},
         {"run_ms", RoundTo(run_ms, 2)},
         {"cold_switch_runs_onnx", RoundTo(Median(from_onnx) / run_ms, 2)},
         {"cold_switch_runs_cache", RoundTo(Median(from_cache) / run_ms, 2)},
         {"load_cache_speedup", RoundTo(Median(from_onnx) / Median(from_cache), 2)}});
  }
  std::error_code ignored;
  std::filesystem::remove_all(cache_dir, ignored);
  return out;
}

// The process's threads with one model loaded and with all of them (one shared ONNX Runtime
// pool, the manager's loader and watcher threads).
Result<nlohmann::ordered_json> Threads(const ModelsBenchOptions& bench,
                                       const std::vector<std::string>& models) {
  ManagerOptions options = BaseOptions(bench);
  options.watch = true;
  ZD_ASSIGN_OR_RETURN(auto manager, ModelManager::Create(options));
  ZD_RETURN_IF_ERROR(manager->Load(models[0]));
  ZD_ASSIGN_OR_RETURN(int one, ProcessThreadCount());
  for (const std::string& name : models) ZD_RETURN_IF_ERROR(manager->Load(name));
  ZD_ASSIGN_OR_RETURN(int all, ProcessThreadCount());
  return nlohmann::ordered_json{
      {"one_model_loaded", one}, {"models_loaded", models.size()}, {"all_models_loaded", all}};
}

// Acquire + release of `name`, `iterations` times, one sample per pair (ns).
Result<std::vector<double>> HitLoop(ModelManager& manager, const std::string& name,
                                    int iterations) {
  std::vector<double> ns;
  ns.reserve(static_cast<size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    const auto start = MonotonicClock::now();
    auto handle = manager.Acquire(name);
    if (!handle.ok()) return handle.status();
    handle->Release();
    ns.push_back(static_cast<double>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(MonotonicClock::now() - start)
            .count()));
  }
  return ns;
}

Result<nlohmann::ordered_json> CacheHits(const ModelsBenchOptions& bench,
                                         const std::vector<std::string>& models) {
  ZD_ASSIGN_OR_RETURN(auto manager, ModelManager::Create(BaseOptions(bench)));
  const std::string& a = models[0];
  const std::string& b = models.size() > 1 ? models[1] : models[0];
  ZD_RETURN_IF_ERROR(manager->Load(a));
  ZD_RETURN_IF_ERROR(manager->Load(b));
  ZD_ASSIGN_OR_RETURN(std::vector<double> warm, HitLoop(*manager, a, 1000));
  ZD_ASSIGN_OR_RETURN(std::vector<double> one, HitLoop(*manager, a, bench.hit_iterations));
  Result<std::vector<double>> first = std::vector<double>{};
  Result<std::vector<double>> second = std::vector<double>{};
  std::thread other([&] { second = HitLoop(*manager, b, bench.hit_iterations); });
  first = HitLoop(*manager, a, bench.hit_iterations);
  other.join();
  ZD_RETURN_IF_ERROR(first.status());
  ZD_RETURN_IF_ERROR(second.status());
  std::vector<double> two = std::move(first).value();
  two.insert(two.end(), second->begin(), second->end());
  nlohmann::ordered_json out;
  out["models"] = {a, b};
  out["one_thread"] = ToJson(SummarizeNs(std::move(one)));
  out["two_threads_two_models"] = ToJson(SummarizeNs(std::move(two)));
  return out;
}

Result<nlohmann::ordered_json> Stream(const ModelsBenchOptions& bench,
                                      const std::vector<std::string>& models, uint64_t max_models,
                                      const DecodedImage& image) {
  // The same request sequence in every mode: Zipf-like popularity, rank k weighs 1 / k^s.
  std::vector<double> weights;
  for (size_t k = 0; k < models.size(); ++k) {
    weights.push_back(1.0 / std::pow(static_cast<double>(k + 1), bench.zipf_exponent));
  }
  std::mt19937 random(42);
  std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
  std::vector<size_t> requests;
  for (int i = 0; i < bench.stream_requests; ++i) requests.push_back(pick(random));

  ManagerOptions options = BaseOptions(bench);
  if (max_models > 0) options.budgets["cpu"] = {max_models, 0};
  ReleaseFreedMemoryToSystem();
  ResetPeakRss();
  ZD_ASSIGN_OR_RETURN(auto manager, ModelManager::Create(options));
  if (max_models == 0) {
    for (const std::string& name : models) ZD_RETURN_IF_ERROR(manager->Load(name));
  }
  std::vector<double> ns;
  for (size_t index : requests) {
    const auto start = MonotonicClock::now();
    ZD_ASSIGN_OR_RETURN(ModelHandle handle, manager->Acquire(models[index]));
    ZD_RETURN_IF_ERROR(handle.detector()
                           .Detect(image.image.view(), image.source_width, image.source_height)
                           .status());
    ns.push_back(static_cast<double>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(MonotonicClock::now() - start)
            .count()));
  }
  const ManagerStats stats = manager->Stats();
  uint64_t loads = 0;
  for (const ModelStats& m : stats.models) loads += m.loads;
  const LatencySummary latency = SummarizeNs(std::move(ns));
  nlohmann::ordered_json out;
  if (max_models == 0) {
    out["budget_models"] = "all";
  } else {
    out["budget_models"] = max_models;
  }
  out["peak_rss_mib"] = RoundTo(PeakRssMib(), 1);
  out["hit_rate"] = RoundTo(stats.hit_rate, 3);
  out["loads"] = loads;
  out["latency_ms"] = {{"p50", RoundTo(latency.p50_us / 1000, 2)},
                       {"p99", RoundTo(latency.p99_us / 1000, 2)},
                       {"mean", RoundTo(latency.mean_us / 1000, 2)}};
  return out;
}

}  // namespace

Result<nlohmann::ordered_json> MeasureModels(const ModelsBenchOptions& bench) {
  if (bench.rounds < 1 || bench.hit_iterations < 1 || bench.stream_requests < 1) {
    return InvalidArgumentError("rounds, hit iterations and stream requests must be >= 1");
  }
  RepositoryScanner scanner(bench.repo, {});
  ZD_ASSIGN_OR_RETURN(RepositoryIndex index, scanner.Scan());
  std::vector<std::string> models;
  for (const ModelEntry& model : index.models) {
    if (model.config_ok && !model.served.empty() && models.size() < 6) {
      models.push_back(model.name);
    }
  }
  if (models.empty()) return NotFoundError(bench.repo.string() + ": no model to serve");
  const std::filesystem::path image_path =
      bench.image.empty() ? std::filesystem::path(ZERODET_SHARED_DIR) / "images" / "dog.jpg"
                          : bench.image;
  ZD_ASSIGN_OR_RETURN(DecodedImage image, DecodeImageFile(image_path, {}));

  nlohmann::ordered_json out = {{"repo", bench.repo.string()},
                                {"models", models},
                                {"onnxruntime", OnnxRuntimeVersion()},
                                {"shared_intra_op_threads", bench.threads}};
  ZD_ASSIGN_OR_RETURN(out["threads"], Threads(bench, models));
  ZD_ASSIGN_OR_RETURN(out["cold_load"], ColdLoads(bench, models));
  ZD_ASSIGN_OR_RETURN(out["cache_hit"], CacheHits(bench, models));
  nlohmann::ordered_json stream = nlohmann::ordered_json::object();
  stream["requests"] = bench.stream_requests;
  stream["zipf_exponent"] = bench.zipf_exponent;
  ZD_ASSIGN_OR_RETURN(stream["all_resident"], Stream(bench, models, 0, image));
  ZD_ASSIGN_OR_RETURN(stream["budget_2"], Stream(bench, models, 2, image));
  const double resident = stream["all_resident"]["peak_rss_mib"].get<double>();
  const double budget = stream["budget_2"]["peak_rss_mib"].get<double>();
  stream["peak_rss_ratio_budget_vs_resident"] = RoundTo(budget / resident, 3);
  out["stream"] = stream;
  return out;
}

}  // namespace zerodet::bench

// Statistics the model manager keeps for the server's metrics: per model (state, versions,
// bytes charged per device, loads and their times, hits, misses, evictions, failures) and
// totals (loaded models, bytes used and budget per device, hit rate). ModelManager::Stats()
// returns them as plain values (a snapshot); ToJson renders them for `zerodet models --json`,
// the bench and the server.
//
// DurationHistogram is a plain value, not thread-safe (the manager updates it under the model's
// lock).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace zerodet {

// Counts of durations in fixed buckets (upper bounds in milliseconds, Prometheus style: each
// count is of samples <= its bound; the last bucket is +Inf).
class DurationHistogram {
 public:
  static constexpr std::array<double, 13> kBoundsMs = {1,   2,   5,    10,   20,   50,   100,
                                                       200, 500, 1000, 2000, 5000, 10000};
  void Add(double ms);
  // Per-bucket (non-cumulative) counts; size kBoundsMs.size() + 1.
  const std::array<uint64_t, kBoundsMs.size() + 1>& counts() const { return counts_; }
  uint64_t count() const { return count_; }
  double sum_ms() const { return sum_ms_; }

 private:
  std::array<uint64_t, kBoundsMs.size() + 1> counts_{};
  uint64_t count_ = 0;
  double sum_ms_ = 0;
};

enum class ModelState { kUnloaded, kLoading, kReady, kFailed };
std::string_view ModelStateName(ModelState state);

struct VersionStats {
  int64_t version = 0;
  ModelState state = ModelState::kUnloaded;
  std::string reason;                      // why kFailed (or the last failure)
  std::map<std::string, uint64_t> charge;  // device -> bytes, while loaded
  std::string charge_source;               // how the charge was measured: "rss", "gpu", ...
  int handles = 0;                         // instances leased now
  bool from_graph_cache = false;
};

struct ModelStats {
  std::string name;
  ModelState state = ModelState::kUnloaded;  // the most advanced state of its versions
  std::string reason;
  std::vector<VersionStats> versions;     // loaded, loading or failed versions
  std::map<std::string, uint64_t> bytes;  // device -> bytes charged (all loaded versions)
  bool pinned = false;
  uint64_t loads = 0;
  uint64_t failed_loads = 0;
  double last_load_ms = 0;    // session creation + warm-up of the last load
  double last_warmup_ms = 0;  // warm-up alone
  DurationHistogram load_ms;
  uint64_t hits = 0;        // Acquire served by a ready version
  uint64_t misses = 0;      // Acquire that waited for a load
  double miss_wait_ms = 0;  // total time misses waited
  uint64_t evictions = 0;
  double last_eviction_age_s = 0;  // how long the evicted version had been loaded
  double eviction_age_sum_s = 0;
};

struct DeviceStats {
  uint64_t bytes_used = 0;     // charged by loaded (and draining) versions
  uint64_t bytes_budget = 0;   // 0: unbounded
  uint64_t models_loaded = 0;  // loaded versions charged to this device
  uint64_t models_budget = 0;  // 0: unbounded
};

struct ManagerStats {
  std::vector<ModelStats> models;  // by name
  std::map<std::string, DeviceStats> devices;
  uint64_t loaded_versions = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  double hit_rate = 0;  // hits / (hits + misses); 0 before any request
};

nlohmann::ordered_json ToJson(const DurationHistogram& histogram);
nlohmann::ordered_json ToJson(const ModelStats& stats);
nlohmann::ordered_json ToJson(const ManagerStats& stats);

}  // namespace zerodet

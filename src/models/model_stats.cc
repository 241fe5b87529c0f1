#include "zerodet/models/model_stats.h"

#include <algorithm>
#include <cmath>

namespace zerodet {
namespace {

double Round3(double value) {
  return std::round(value * 1000) / 1000;
}

}  // namespace

void DurationHistogram::Add(double ms) {
  const auto it = std::lower_bound(kBoundsMs.begin(), kBoundsMs.end(), ms);
  ++counts_[static_cast<size_t>(it - kBoundsMs.begin())];
  ++count_;
  sum_ms_ += ms;
}

std::string_view ModelStateName(ModelState state) {
  switch (state) {
    case ModelState::kUnloaded:
      return "unloaded";
    case ModelState::kLoading:
      return "loading";
    case ModelState::kReady:
      return "ready";
    case ModelState::kFailed:
      return "failed";
  }
  return "unknown";
}

nlohmann::ordered_json ToJson(const DurationHistogram& histogram) {
  nlohmann::ordered_json buckets = nlohmann::ordered_json::array();
  uint64_t cumulative = 0;
  for (size_t i = 0; i < histogram.counts().size(); ++i) {
    cumulative += histogram.counts()[i];
    const std::string bound =
        i < DurationHistogram::kBoundsMs.size()
            ? std::to_string(static_cast<int>(DurationHistogram::kBoundsMs[i]))
            : "+Inf";
    buckets.push_back({{"le_ms", bound}, {"count", cumulative}});
  }
  return {
      {"count", histogram.count()}, {"sum_ms", Round3(histogram.sum_ms())}, {"buckets", buckets}};
}

nlohmann::ordered_json ToJson(const ModelStats& s) {
  nlohmann::ordered_json versions = nlohmann::ordered_json::array();
  for (const VersionStats& v : s.versions) {
    nlohmann::ordered_json version = {
        {"version", v.version}, {"state", ModelStateName(v.state)},
        {"bytes", v.charge},    {"charge_source", v.charge_source},
        {"handles", v.handles}, {"from_graph_cache", v.from_graph_cache}};
    if (!v.reason.empty()) version["reason"] = v.reason;
    versions.push_back(std::move(version));
  }
  nlohmann::ordered_json out = {{"name", s.name}, {"state", ModelStateName(s.state)}};
  if (!s.reason.empty()) out["reason"] = s.reason;
  out["versions"] = versions;
  out["bytes"] = s.bytes;
  out["pinned"] = s.pinned;
  out["loads"] = s.loads;
  out["failed_loads"] = s.failed_loads;
  out["last_load_ms"] = Round3(s.last_load_ms);
  out["last_warmup_ms"] = Round3(s.last_warmup_ms);
  out["load_ms"] = ToJson(s.load_ms);
  out["hits"] = s.hits;
  out["misses"] = s.misses;
  out["miss_wait_ms"] = Round3(s.miss_wait_ms);
  out["evictions"] = s.evictions;
  out["last_eviction_age_s"] = Round3(s.last_eviction_age_s);
  out["eviction_age_sum_s"] = Round3(s.eviction_age_sum_s);
  return out;
}

nlohmann::ordered_json ToJson(const ManagerStats& s) {
  nlohmann::ordered_json devices = nlohmann::ordered_json::object();
  for (const auto& [name, d] : s.devices) {
    devices[name] = {{"bytes_used", d.bytes_used},
                     {"bytes_budget", d.bytes_budget},
                     {"models_loaded", d.models_loaded},
                     {"models_budget", d.models_budget}};
  }
  nlohmann::ordered_json models = nlohmann::ordered_json::array();
  for (const ModelStats& m : s.models) models.push_back(ToJson(m));
  return {{"loaded_versions", s.loaded_versions}, {"hits", s.hits},     {"misses", s.misses},
          {"hit_rate", Round3(s.hit_rate)},       {"devices", devices}, {"models", models}};
}

}  // namespace zerodet

// Latency percentiles for the `zerodet bench` commands: one definition, so that every bench's
// JSON means the same by "p99" (nearest rank over the sorted samples).
#pragma once

#include <algorithm>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <vector>

namespace zerodet::cli {

struct LatencySummary {
  double p50_us = 0;
  double p99_us = 0;
  double max_us = 0;
  double mean_us = 0;
  size_t samples = 0;
};

// `ns`: one duration per sample, in nanoseconds (any arithmetic type). Empty gives zeros.
template <typename T>
LatencySummary SummarizeNs(std::vector<T> ns) {
  LatencySummary s;
  if (ns.empty()) return s;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    const size_t i =
        std::min(ns.size() - 1, static_cast<size_t>(q * static_cast<double>(ns.size())));
    return static_cast<double>(ns[i]) / 1e3;
  };
  double sum = 0;
  for (const T& v : ns) sum += static_cast<double>(v);
  s.p50_us = at(0.50);
  s.p99_us = at(0.99);
  s.max_us = static_cast<double>(ns.back()) / 1e3;
  s.mean_us = sum / static_cast<double>(ns.size()) / 1e3;
  s.samples = ns.size();
  return s;
}

inline nlohmann::json ToJson(const LatencySummary& s) {
  return {{"p50_us", s.p50_us},
          {"p99_us", s.p99_us},
          {"max_us", s.max_us},
          {"mean_us", s.mean_us},
          {"samples", s.samples}};
}

}  // namespace zerodet::cli

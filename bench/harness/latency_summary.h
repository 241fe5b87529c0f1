// Latency percentiles for the `zerodet bench` commands and bench programs: one definition, so
// that every bench's JSON means the same by "p99" (nearest rank over the sorted samples).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <vector>

namespace zerodet::bench {

struct LatencySummary {
  double p50_us = 0;
  double p99_us = 0;
  double max_us = 0;
  double mean_us = 0;
  size_t samples = 0;
};

// `ns`: one duration per sample, in nanoseconds. Empty gives zeros.
LatencySummary SummarizeNs(std::vector<double> ns);

// The same for any arithmetic sample type (int64_t nanoseconds from the clock, ...).
template <typename T>
LatencySummary SummarizeNs(const std::vector<T>& ns) {
  return SummarizeNs(std::vector<double>(ns.begin(), ns.end()));
}

nlohmann::json ToJson(const LatencySummary& summary);

}  // namespace zerodet::bench

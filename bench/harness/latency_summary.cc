#include "latency_summary.h"

#include <algorithm>

namespace zerodet::bench {

LatencySummary SummarizeNs(std::vector<double> ns) {
  LatencySummary s;
  if (ns.empty()) return s;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    const auto i = std::min(ns.size() - 1, static_cast<size_t>(q * static_cast<double>(ns.size())));
    return ns[i] / 1e3;
  };
  double sum = 0;
  for (const double v : ns) sum += v;
  s.p50_us = at(0.50);
  s.p99_us = at(0.99);
  s.max_us = ns.back() / 1e3;
  s.mean_us = sum / static_cast<double>(ns.size()) / 1e3;
  s.samples = ns.size();
  return s;
}

nlohmann::json ToJson(const LatencySummary& s) {
  return {{"p50_us", s.p50_us},
          {"p99_us", s.p99_us},
          {"max_us", s.max_us},
          {"mean_us", s.mean_us},
          {"samples", s.samples}};
}

}  // namespace zerodet::bench

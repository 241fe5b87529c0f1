// Elapsed-time measurement for the per-stage breakdowns that detect, the servers and benches
// report, on the one monotonic clock (core/clock.h). A Stopwatch is a plain value: use each
// from one thread at a time.
#pragma once

#include <chrono>

#include "zerodet/core/clock.h"

namespace zerodet {

class Stopwatch {
 public:
  Stopwatch() : start_(MonotonicClock::now()) {}
  void Reset() { start_ = MonotonicClock::now(); }
  double ElapsedMs() const {
    return std::chrono::duration<double, std::milli>(MonotonicClock::now() - start_).count();
  }
  // Milliseconds since the last Reset (or construction), then resets: one call per stage.
  double LapMs() {
    const auto now = MonotonicClock::now();
    const double ms = std::chrono::duration<double, std::milli>(now - start_).count();
    start_ = now;
    return ms;
  }

 private:
  MonotonicClock::time_point start_;
};

}  // namespace zerodet

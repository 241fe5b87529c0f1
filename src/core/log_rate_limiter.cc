#include "zerodet/core/log_rate_limiter.h"

namespace zerodet {

bool LogRateLimiter::Admit(uint64_t* suppressed) {
  std::lock_guard lock(mutex_);
  const auto now = MonotonicClock::now();
  if (in_window_ == 0 || now - window_start_ >= interval_) {
    window_start_ = now;
    in_window_ = 0;
  }
  if (in_window_ >= burst_) {
    ++suppressed_;
    ++total_suppressed_;
    return false;
  }
  ++in_window_;
  *suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

uint64_t LogRateLimiter::total_suppressed() const {
  std::lock_guard lock(mutex_);
  return total_suppressed_;
}

}  // namespace zerodet

#include "zerodet/core/clock.h"

#include <algorithm>
#include <limits>

namespace zerodet {

int64_t MonotonicNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             MonotonicClock::now().time_since_epoch())
      .count();
}

Deadline Deadline::After(std::chrono::nanoseconds timeout) {
  Deadline deadline;
  const auto now = MonotonicClock::now();
  // Room left before the clock's representation overflows, with a century of margin
  // below it treated as "never" too.
  const auto room = MonotonicClock::time_point::max() - now;
  constexpr auto kCentury = std::chrono::hours(24 * 365 * 100);
  if (timeout >= room || timeout >= kCentury) return deadline;
  deadline.never_ = false;
  deadline.at_ = now + std::max(timeout, std::chrono::nanoseconds(0));
  return deadline;
}

Deadline Deadline::FromTimeoutMs(int64_t timeout_ms) {
  if (timeout_ms < 0) return Never();
  // Milliseconds to nanoseconds overflows int64 above about 292 years: that is never anyway.
  constexpr int64_t kMaxMs = std::numeric_limits<int64_t>::max() / 1'000'000;
  if (timeout_ms >= kMaxMs) return Never();
  return After(std::chrono::milliseconds(timeout_ms));
}

int Deadline::RemainingMs(int cap_ms) const {
  cap_ms = std::max(cap_ms, 0);
  if (never_) return cap_ms;
  const auto left = at_ - MonotonicClock::now();
  if (left <= MonotonicClock::duration::zero()) return 0;
  // Round up, so that a poll that returns at the deadline finds it expired.
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<int64_t>(ms, cap_ms));
}

}  // namespace zerodet

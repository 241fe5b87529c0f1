// The one monotonic clock of zerodet, and deadlines that cannot overflow.
//
// Every module measures time with MonotonicClock (CLOCK_MONOTONIC on Linux: it never jumps,
// and its readings are comparable across the processes of one machine, so a frame stamped by an
// ingest process can be aged by a worker). Timeouts that come from users or peers (a store GET
// with a timeout of 3e9 ms, or INT64_MAX) go through Deadline, which saturates instead of
// overflowing: a huge timeout means "never", a negative one "already expired".
//
// Thread-safety: free functions and Deadline values are safe to use from any thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace zerodet {

// libstdc++'s steady_clock reads CLOCK_MONOTONIC.
using MonotonicClock = std::chrono::steady_clock;

// Nanoseconds of CLOCK_MONOTONIC: comparable across processes of this machine.
int64_t MonotonicNowNs();

// A point in MonotonicClock time, or "never".
class Deadline {
 public:
  // A deadline that never expires.
  static Deadline Never() { return Deadline(); }
  // `timeout` from now. Negative or zero: already expired. Timeouts beyond about 100 years
  // (anything that would overflow the clock's range) mean Never().
  static Deadline After(std::chrono::nanoseconds timeout);
  // A timeout in milliseconds as peers send it: negative means Never() (wait forever), zero
  // expires at once, and values too large to add to the clock mean Never().
  static Deadline FromTimeoutMs(int64_t timeout_ms);

  bool never() const { return never_; }
  bool expired() const { return !never_ && MonotonicClock::now() >= at_; }
  // REQUIRES: !never().
  MonotonicClock::time_point time_point() const { return at_; }

  // Time left, rounded up to whole milliseconds and clamped to [0, cap_ms]; cap_ms when never.
  // Meant for poll/epoll timeouts, which must stay a non-negative int.
  int RemainingMs(int cap_ms) const;

  friend bool operator<(const Deadline& a, const Deadline& b) {
    if (a.never_ || b.never_) return !a.never_ && b.never_;
    return a.at_ < b.at_;
  }

 private:
  Deadline() = default;
  bool never_ = true;
  MonotonicClock::time_point at_{};
};

}  // namespace zerodet

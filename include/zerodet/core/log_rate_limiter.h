// LogRateLimiter: lets at most `burst` messages of one kind through per `interval` and counts
// the rest, so a condition that repeats thousands of times a second (accept() failing with
// EMFILE, a flood of refused peers) costs a few log lines instead of filling the disk. The next
// message let through says how many were dropped: "(N similar messages suppressed)".
//
// One limiter per kind of message; a plain value owned by whoever logs. Thread-safe: Admit()
// takes a mutex.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

#include "zerodet/core/clock.h"

namespace zerodet {

class LogRateLimiter {
 public:
  // REQUIRES: interval > 0, burst >= 1.
  explicit LogRateLimiter(std::chrono::milliseconds interval = std::chrono::seconds(1),
                          uint32_t burst = 5)
      : interval_(interval), burst_(burst) {}

  // Whether a message may be logged now. When it may, *suppressed is set to the number of
  // messages refused since the last one let through (and that count restarts).
  bool Admit(uint64_t* suppressed);

  // Messages refused so far, in all.
  uint64_t total_suppressed() const;

 private:
  mutable std::mutex mutex_;
  std::chrono::milliseconds interval_;
  uint32_t burst_;
  MonotonicClock::time_point window_start_{};
  uint32_t in_window_ = 0;
  uint64_t suppressed_ = 0;
  uint64_t total_suppressed_ = 0;
};

// Logs through the default spdlog logger at `level` unless `limiter` refuses (the message is
// then not even formatted).
template <typename... Args>
void LogRateLimited(LogRateLimiter& limiter, spdlog::level::level_enum level,
                    fmt::format_string<Args...> format, Args&&... args) {
  if (!spdlog::default_logger_raw()->should_log(level)) return;
  uint64_t suppressed = 0;
  if (!limiter.Admit(&suppressed)) return;
  std::string message = fmt::format(format, std::forward<Args>(args)...);
  if (suppressed > 0) message += fmt::format(" ({} similar messages suppressed)", suppressed);
  spdlog::log(level, "{}", message);
}

}  // namespace zerodet

#include "zerodet/core/clock.h"

#include <gtest/gtest.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <limits>

namespace zerodet {
namespace {

using namespace std::chrono_literals;

TEST(ClockTest, MonotonicNowNsMatchesTheClock) {
  const int64_t before =
      std::chrono::duration_cast<std::chrono::nanoseconds>(MonotonicClock::now().time_since_epoch())
          .count();
  const int64_t now = MonotonicNowNs();
  EXPECT_GE(now, before);
  EXPECT_GE(MonotonicNowNs(), now);
}

TEST(DeadlineTest, NeverAndExpired) {
  EXPECT_TRUE(Deadline::Never().never());
  EXPECT_FALSE(Deadline::Never().expired());
  EXPECT_TRUE(Deadline::After(0ns).expired());
  EXPECT_TRUE(Deadline::After(-5s).expired());
  EXPECT_FALSE(Deadline::After(1h).expired());
}

// Timeouts as peers send them: negative waits forever, zero expires at once, and values that
// would overflow the clock (3e9 ms, INT64_MAX) mean never instead of wrapping into the past.
TEST(DeadlineTest, TimeoutsFromPeersSaturate) {
  EXPECT_TRUE(Deadline::FromTimeoutMs(-1).never());
  EXPECT_TRUE(Deadline::FromTimeoutMs(0).expired());
  EXPECT_FALSE(Deadline::FromTimeoutMs(3'000'000'000).expired());
  EXPECT_FALSE(Deadline::FromTimeoutMs(std::numeric_limits<int64_t>::max()).expired());
  EXPECT_TRUE(Deadline::FromTimeoutMs(std::numeric_limits<int64_t>::max()).never());
  EXPECT_TRUE(Deadline::FromTimeoutMs(std::numeric_limits<int64_t>::min()).never());
  EXPECT_FALSE(Deadline::FromTimeoutMs(200).never());
}

// RemainingMs feeds epoll_wait: never negative, never above the cap, rounded up.
TEST(DeadlineTest, RemainingMsIsClampedForPoll) {
  EXPECT_EQ(Deadline::Never().RemainingMs(1000), 1000);
  EXPECT_EQ(Deadline::After(-1s).RemainingMs(1000), 0);
  EXPECT_EQ(Deadline::FromTimeoutMs(3'000'000'000).RemainingMs(1000), 1000);
  EXPECT_EQ(Deadline::FromTimeoutMs(3'000'000'000).RemainingMs(INT_MAX), INT_MAX);
  const int left = Deadline::After(150ms).RemainingMs(1000);
  EXPECT_GT(left, 0);
  EXPECT_LE(left, 150);
  EXPECT_EQ(Deadline::After(1ns).RemainingMs(1000) <= 1, true);
  EXPECT_EQ(Deadline::After(1h).RemainingMs(-5), 0);
}

TEST(DeadlineTest, Ordering) {
  const Deadline soon = Deadline::After(1s);
  const Deadline later = Deadline::After(1h);
  EXPECT_TRUE(soon < later);
  EXPECT_FALSE(later < soon);
  EXPECT_TRUE(later < Deadline::Never());
  EXPECT_FALSE(Deadline::Never() < later);
  EXPECT_FALSE(Deadline::Never() < Deadline::Never());
}

}  // namespace
}  // namespace zerodet

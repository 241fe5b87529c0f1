#include "zerodet/core/log_rate_limiter.h"

#include <gtest/gtest.h>

#include "test_support.h"

namespace zerodet {
namespace {

TEST(LogRateLimiterTest, LetsABurstThroughThenCountsWhatItDrops) {
  LogRateLimiter limiter(std::chrono::hours(1), 3);
  uint64_t suppressed = 99;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limiter.Admit(&suppressed));
    EXPECT_EQ(suppressed, 0u);
  }
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(limiter.Admit(&suppressed));
  EXPECT_EQ(limiter.total_suppressed(), 1000u);
}

TEST(LogRateLimiterTest, TheNextWindowReportsTheDroppedCount) {
  LogRateLimiter limiter(std::chrono::milliseconds(1), 1);
  uint64_t suppressed = 0;
  ASSERT_TRUE(limiter.Admit(&suppressed));
  uint64_t dropped = 0;
  // Within the window everything else is dropped; once it has passed, one message gets through
  // and carries the count.
  ASSERT_TRUE(testing::WaitFor([&] {
    if (limiter.Admit(&suppressed)) return true;
    ++dropped;
    return false;
  }));
  EXPECT_EQ(suppressed, dropped);
}

}  // namespace
}  // namespace zerodet

#include "zerodet/store/tlsf_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <map>
#include <random>
#include <vector>

namespace zerodet::store {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

TEST(TlsfAllocatorTest, AllocatesAlignedDistinctBlocks) {
  TlsfAllocator allocator(kMiB);
  auto a = allocator.Allocate(1);
  auto b = allocator.Allocate(100);
  auto c = allocator.Allocate(0);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(*a % TlsfAllocator::kAlignment, 0u);
  EXPECT_EQ(*b % TlsfAllocator::kAlignment, 0u);
  EXPECT_NE(*a, *b);
  EXPECT_NE(*b, *c);
  EXPECT_EQ(allocator.BlockSize(*a), 64u);
  EXPECT_EQ(allocator.BlockSize(*b), 128u);
  EXPECT_EQ(allocator.BlockSize(*c), 64u);  // zero-size objects still get a distinct block
  EXPECT_EQ(allocator.bytes_allocated(), 256u);
  EXPECT_TRUE(allocator.CheckInvariants().ok());
}

TEST(TlsfAllocatorTest, WholeCapacityAndNothingMore) {
  TlsfAllocator allocator(kMiB);
  EXPECT_FALSE(allocator.Allocate(kMiB + 1));
  auto all = allocator.Allocate(kMiB);
  ASSERT_TRUE(all);
  EXPECT_EQ(allocator.bytes_free(), 0u);
  EXPECT_FALSE(allocator.Allocate(1));
  EXPECT_FALSE(allocator.Allocate(UINT64_MAX));
  EXPECT_TRUE(allocator.Free(*all));
  EXPECT_EQ(allocator.largest_free_block(), kMiB);
}

TEST(TlsfAllocatorTest, RejectsDoubleFreeAndForeignOffsets) {
  TlsfAllocator allocator(kMiB);
  auto a = allocator.Allocate(1000);
  ASSERT_TRUE(a);
  EXPECT_FALSE(allocator.Free(*a + 64));
  EXPECT_TRUE(allocator.Free(*a));
  EXPECT_FALSE(allocator.Free(*a));
  EXPECT_TRUE(allocator.CheckInvariants().ok());
}

TEST(TlsfAllocatorTest, CoalescesBackToOneBlock) {
  TlsfAllocator allocator(kMiB);
  std::vector<uint64_t> offsets;
  while (auto offset = allocator.Allocate(1000)) offsets.push_back(*offset);
  EXPECT_GT(offsets.size(), 900u);
  // Free in an order that exercises merging with the previous, the next and both neighbours.
  for (size_t i = 0; i < offsets.size(); i += 2) ASSERT_TRUE(allocator.Free(offsets[i]));
  ASSERT_TRUE(allocator.CheckInvariants().ok());
  for (size_t i = 1; i < offsets.size(); i += 2) ASSERT_TRUE(allocator.Free(offsets[i]));
  ASSERT_TRUE(allocator.CheckInvariants().ok());
  EXPECT_EQ(allocator.free_blocks(), 1u);
  EXPECT_EQ(allocator.largest_free_block(), kMiB);
  EXPECT_EQ(allocator.bytes_allocated(), 0u);
}

TEST(TlsfAllocatorTest, GoodFitFindsAnExactHole) {
  TlsfAllocator allocator(64 * kMiB);
  std::vector<uint64_t> offsets;
  for (int i = 0; i < 64; ++i) offsets.push_back(*allocator.Allocate(kMiB - 64 * 3));
  // Punch holes of 3 * (kMiB - 192) = one size class region, then ask for exactly that.
  for (size_t i = 10; i < 13; ++i) ASSERT_TRUE(allocator.Free(offsets[i]));
  const uint64_t hole = allocator.largest_free_block();
  EXPECT_GE(hole, 3 * (kMiB - 192));
  auto fit = allocator.Allocate(hole);
  ASSERT_TRUE(fit) << "a free block of " << hole << " bytes exists";
  EXPECT_TRUE(allocator.CheckInvariants().ok());
}

// Random churn against a model of which bytes are in use: no two live blocks overlap, every
// block lies inside the arena, and the invariants hold throughout.
TEST(TlsfAllocatorTest, RandomChurnKeepsInvariants) {
  TlsfAllocator allocator(16 * kMiB);
  std::mt19937_64 rng(7);
  std::map<uint64_t, uint64_t> live;  // offset -> size
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || rng() % 100 < 55) {
      const uint64_t size = rng() % 4 == 0 ? rng() % (1 << 20) : rng() % 4096;
      auto offset = allocator.Allocate(size);
      if (!offset) {
        EXPECT_LT(allocator.largest_free_block(), std::max<uint64_t>(size, 1));
        continue;
      }
      const uint64_t block = allocator.BlockSize(*offset);
      ASSERT_GE(block, size);
      ASSERT_LE(*offset + block, allocator.capacity());
      auto next = live.lower_bound(*offset);
      if (next != live.end()) {
        ASSERT_LE(*offset + block, next->first);
      }
      if (next != live.begin()) {
        auto prev = std::prev(next);
        ASSERT_LE(prev->first + prev->second, *offset);
      }
      live[*offset] = block;
    } else {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      ASSERT_TRUE(allocator.Free(it->first));
      live.erase(it);
    }
    if (step % 1000 == 0) {
      ASSERT_TRUE(allocator.CheckInvariants().ok()) << step;
    }
  }
  for (auto [offset, size] : live) ASSERT_TRUE(allocator.Free(offset));
  EXPECT_TRUE(allocator.CheckInvariants().ok());
  EXPECT_EQ(allocator.largest_free_block(), allocator.capacity());
}

// The Plasma/Ray failure mode: "store full" while the store is mostly empty. Run a
// store-like workload (mixed image-sized objects, oldest evicted first when an allocation
// fails) and record how full the arena was each time an allocation failed. A fragmenting
// allocator fails at low occupancy; TLSF with immediate coalescing must keep failures to
// genuinely full arenas.
TEST(TlsfAllocatorTest, FragmentationUnderStoreWorkload) {
  const uint64_t capacity = 256 * kMiB;
  TlsfAllocator allocator(capacity);
  std::mt19937_64 rng(42);
  std::deque<uint64_t> fifo;
  // Sizes of decoded images and letterboxed tensors: 50 KiB .. 5 MiB, log-uniform.
  std::uniform_real_distribution<double> log_size(std::log(50.0 * 1024), std::log(5.0 * kMiB));
  double min_occupancy_at_failure = 1.0, sum_occupancy_at_failure = 0;
  int failures = 0;
  for (int step = 0; step < 20000; ++step) {
    const auto size = static_cast<uint64_t>(std::exp(log_size(rng)));
    std::optional<uint64_t> offset = allocator.Allocate(size);
    if (!offset) {
      // Occupancy when the request first failed (later retries follow our own evictions).
      const double occupancy = static_cast<double>(allocator.bytes_allocated()) / capacity;
      min_occupancy_at_failure = std::min(min_occupancy_at_failure, occupancy);
      sum_occupancy_at_failure += occupancy;
      ++failures;
    }
    while (!offset) {
      ASSERT_FALSE(fifo.empty());
      // Evict a random one of the oldest few (LRU is not strictly FIFO in a real store).
      const size_t victim = rng() % std::min<size_t>(fifo.size(), 8);
      ASSERT_TRUE(allocator.Free(fifo[victim]));
      fifo.erase(fifo.begin() + static_cast<std::ptrdiff_t>(victim));
      offset = allocator.Allocate(size);
    }
    fifo.push_back(*offset);
  }
  const double mean_occupancy_at_failure = sum_occupancy_at_failure / failures;
  ASSERT_TRUE(allocator.CheckInvariants().ok());
  EXPECT_GT(failures, 1000);  // the workload really ran the arena full, many times
  // Allocations fail only when the arena is nearly full: on average above 90%, never below 70%
  // (measured: 0.92 and 0.74 at seed 42).
  EXPECT_GT(mean_occupancy_at_failure, 0.90) << "failures: " << failures;
  EXPECT_GT(min_occupancy_at_failure, 0.70) << "failures: " << failures;
  std::printf("fragmentation: %d failed requests, occupancy at failure mean %.3f min %.3f\n",
              failures, mean_occupancy_at_failure, min_occupancy_at_failure);
}

}  // namespace
}  // namespace zerodet::store

namespace zerodet::store {
namespace {

TEST(TlsfAllocatorTest, AllocateHighTakesTheTopOfTheHighestFittingBlock) {
  TlsfAllocator allocator(1 << 20);
  auto low = allocator.Allocate(4096);
  ASSERT_TRUE(low.has_value());
  auto high = allocator.AllocateHigh(100);
  ASSERT_TRUE(high.has_value());
  EXPECT_EQ(*high, (1u << 20) - 128);
  EXPECT_EQ(allocator.BlockSize(*high), 128u);
  auto next_low = allocator.Allocate(4096);
  ASSERT_TRUE(next_low.has_value());
  EXPECT_EQ(*next_low, 4096u);  // ordinary blocks keep coming from below
  EXPECT_TRUE(allocator.CheckInvariants().ok()) << allocator.CheckInvariants().ToString();
  ASSERT_TRUE(allocator.Free(*high));
  ASSERT_TRUE(allocator.Free(*low));
  ASSERT_TRUE(allocator.Free(*next_low));
  EXPECT_EQ(allocator.largest_free_block(), 1u << 20);
  EXPECT_TRUE(allocator.CheckInvariants().ok());
  EXPECT_FALSE(allocator.AllocateHigh((1 << 20) + 64).has_value());
}

}  // namespace
}  // namespace zerodet::store

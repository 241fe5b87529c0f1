// The ring benchmark's harness: a short run measures every handoff and leaves nothing behind in
// /dev/shm; the /proc memory reader reads this process and names a process that is gone.
#include "ring_bench.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "process_memory.h"
#include "test_support.h"

namespace zerodet::bench {
namespace {

// Entries of /dev/shm a benchmark of this process could have left.
int LeftoversOf(pid_t pid) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("zerodet-bench-", 0) == 0 ||
        name.rfind("zerodet-ring-bench-" + std::to_string(pid) + "-", 0) == 0) {
      ++count;
    }
  }
  return count;
}

TEST(RingBenchTest, AShortRunMeasuresEveryHandoffAndCleansUp) {
  const int before = LeftoversOf(::getpid());
  RingBenchOptions options;
  options.image = zerodet::testing::SharedImage("bus.jpg").string();
  options.ring_iterations = 10;
  options.socket_iterations = 10;
  options.jpeg_iterations = 10;
  options.spin_us = 100;
  options.e2e_iterations = 0;
  options.memory_workers = 0;
  auto result = RunRingBench(options);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ((*result)["handoff"].size(), 3u);
  for (const auto& size : (*result)["handoff"]) {
    for (const char* path : {"ring_futex", "ring_spin", "unix_socket", "tmpfs_jpeg"}) {
      ASSERT_TRUE(size.contains(path)) << path;
      EXPECT_EQ(size[path]["samples"], 10) << path;
      EXPECT_GT(size[path]["p50_us"].get<double>(), 0.0) << path;
    }
  }
  EXPECT_EQ(LeftoversOf(::getpid()), before);
}

TEST(RingBenchTest, AMissingInputIsOneErrorNamingIt) {
  RingBenchOptions options;
  options.image = "/nonexistent/photo.jpg";
  auto missing = RunRingBench(options);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/photo.jpg"), std::string::npos);
}

TEST(ProcessMemoryTest, ReadsThisProcessAndNamesAGoneOne) {
  auto own = ReadProcessMemory();
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  EXPECT_GT(own->peak_rss_mib, 0.0);
  EXPECT_GT(own->pss_mib, 0.0);
  const pid_t gone = zerodet::testing::ForkChild([] { return 0; });
  ASSERT_EQ(zerodet::testing::WaitChild(gone), 0);
  auto missing = ReadProcessMemory(gone);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status().ToString();
  EXPECT_NE(missing.status().message().find(std::to_string(gone)), std::string::npos);
}

}  // namespace
}  // namespace zerodet::bench

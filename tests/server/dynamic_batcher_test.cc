// DynamicBatcher's rules on plain jobs, with real threads (ThreadSanitizer runs this suite): who
// batches with whom, preferred sizes, rows of multi-row jobs, deadlines in the queue, an Execute
// that misbehaves. The service batching real models is tests/server/dynamic_batching_test.cc.
#include "zerodet/server/dynamic_batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>

namespace zerodet::server {
namespace {

struct CountingJob : DynamicBatcher::Job {
  int id = 0;
};

BatchingPolicy Policy(int max_batch, std::vector<int> preferred, uint64_t delay_us) {
  return BatchingPolicy{max_batch, DynamicBatching{std::move(preferred), delay_us}};
}

// Runs `jobs` from one thread each at once and returns the batches Execute saw (job ids).
std::vector<std::vector<int>> SubmitConcurrently(DynamicBatcher& batcher, const std::string& queue,
                                                 std::vector<CountingJob>& jobs,
                                                 const BatchingPolicy& policy) {
  std::mutex mu;
  std::vector<std::vector<int>> batches;
  const DynamicBatcher::Execute execute = [&](DynamicBatcher::Gathering& gathering) {
    std::vector<int> ids;
    for (DynamicBatcher::Job* job : gathering.Take()) {
      ids.push_back(static_cast<CountingJob*>(job)->id);
      job->status = Status::Ok();
    }
    const std::lock_guard lock(mu);
    batches.push_back(std::move(ids));
  };
  std::vector<std::thread> threads;
  for (CountingJob& job : jobs) {
    threads.emplace_back([&] { EXPECT_TRUE(batcher.Submit(queue, job, policy, execute).ok()); });
  }
  for (std::thread& t : threads) t.join();
  return batches;
}

TEST(DynamicBatcherTest, FullPreferredBatchesRunWithoutWaitingForTheDelay) {
  DynamicBatcher batcher;
  std::vector<CountingJob> jobs(8);
  for (size_t i = 0; i < 8; ++i) jobs[i].id = static_cast<int>(i);
  // A delay of 10 s: the batches can only have gone out because they were full.
  const auto batches = SubmitConcurrently(batcher, "m", jobs, Policy(8, {4}, 10'000'000));
  ASSERT_EQ(batches.size(), 2u);
  for (const auto& batch : batches) EXPECT_EQ(batch.size(), 4u);
  for (const CountingJob& job : jobs) EXPECT_EQ(job.batch_rows, 4);
}

TEST(DynamicBatcherTest, RowsOfMultiRowJobsAddUpToMaxBatch) {
  DynamicBatcher batcher;
  std::vector<CountingJob> jobs(3);
  for (size_t i = 0; i < 3; ++i) {
    jobs[i].id = static_cast<int>(i);
    jobs[i].rows = 2;
  }
  // 6 rows, max 4: two jobs fill a batch of 4; the third waits out the delay alone.
  const auto batches = SubmitConcurrently(batcher, "m", jobs, Policy(4, {}, 200'000));
  ASSERT_EQ(batches.size(), 2u);
  std::vector<size_t> sizes = {batches[0].size(), batches[1].size()};
  std::sort(sizes.begin(), sizes.end());
  EXPECT_EQ(sizes, (std::vector<size_t>{1, 2}));
}

TEST(DynamicBatcherTest, IncompatibleJobsNeverShareABatch) {
  DynamicBatcher batcher;
  std::vector<CountingJob> jobs(6);
  for (size_t i = 0; i < 6; ++i) {
    jobs[i].id = static_cast<int>(i);
    jobs[i].compatibility = i % 2 == 0 ? "640x640" : "320x320";
  }
  const auto batches = SubmitConcurrently(batcher, "m", jobs, Policy(6, {3}, 10'000'000));
  ASSERT_EQ(batches.size(), 2u);
  for (const auto& batch : batches) {
    ASSERT_EQ(batch.size(), 3u);
    for (int id : batch) EXPECT_EQ(id % 2, batch.front() % 2);
  }
}

TEST(DynamicBatcherTest, AJobWhoseDeadlinePassesInTheQueueLeavesWithItsStatus) {
  DynamicBatcher batcher;
  CountingJob job;
  job.deadline = Deadline::After(std::chrono::milliseconds(50));
  job.expired_status = UnavailableError("queue timeout");
  bool ran = false;
  // The batch would wait 10 s for a second job; the job's deadline comes first.
  const Status status =
      batcher.Submit("m", job, Policy(2, {}, 10'000'000),
                     [&](DynamicBatcher::Gathering& g) { ran = !g.Take().empty(); });
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_FALSE(ran);
}

TEST(DynamicBatcherTest, RefusesJobsLargerThanMaxBatch) {
  DynamicBatcher batcher;
  CountingJob job;
  job.rows = 9;
  const Status status =
      batcher.Submit("m", job, Policy(8, {}, 0), [](DynamicBatcher::Gathering&) {});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("max_batch (8)"), std::string::npos) << status.message();
}

TEST(DynamicBatcherTest, AnExecuteThatNeverTakesItsBatchFailsItInsteadOfStalling) {
  DynamicBatcher batcher;
  CountingJob job;
  const Status status =
      batcher.Submit("m", job, Policy(4, {}, 0), [](DynamicBatcher::Gathering&) {});
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  // The queue still works.
  CountingJob next;
  EXPECT_TRUE(batcher
                  .Submit("m", next, Policy(4, {}, 0),
                          [](DynamicBatcher::Gathering& g) {
                            for (auto* j : g.Take()) j->status = Status::Ok();
                          })
                  .ok());
}

}  // namespace
}  // namespace zerodet::server

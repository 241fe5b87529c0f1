#include "zerodet/server/dynamic_batcher.h"

#include <algorithm>
#include <deque>

namespace zerodet::server {

struct DynamicBatcher::Queue {
  std::deque<Job*> pending;  // in arrival order
  bool gathering = false;    // a submitter is gathering the next batch
  int users = 0;             // submitters inside Submit (the queue goes with the last)
  std::condition_variable changed;
};

void DynamicBatcher::ExpirePending(Queue& queue) {
  bool expired = false;
  for (auto it = queue.pending.begin(); it != queue.pending.end();) {
    if ((*it)->deadline.expired()) {
      (*it)->status = (*it)->expired_status;
      (*it)->done = true;
      it = queue.pending.erase(it);
      expired = true;
    } else {
      ++it;
    }
  }
  if (expired) queue.changed.notify_all();
}

DynamicBatcher::DynamicBatcher() = default;
DynamicBatcher::~DynamicBatcher() = default;

std::vector<DynamicBatcher::Job*> DynamicBatcher::Gathering::Take() {
  if (called_) return {};
  called_ = true;
  std::unique_lock lock(batcher_.mu_);
  Queue& queue = queue_;
  const int64_t max_batch = std::max(1, policy_.max_batch);
  const std::vector<int>& preferred = policy_.batching.preferred_batch_sizes;
  const int64_t target =
      preferred.empty()
          ? max_batch
          : std::min<int64_t>(max_batch, *std::max_element(preferred.begin(), preferred.end()));
  const auto delay = std::chrono::microseconds(policy_.batching.max_queue_delay_us);
  while (true) {
    ExpirePending(queue);
    if (queue.pending.empty()) break;
    const Job& first = *queue.pending.front();
    const std::string key = first.compatibility;
    int64_t available = 0;
    for (const Job* job : queue.pending) {
      if (job->compatibility == key && available + job->rows <= max_batch) available += job->rows;
    }
    const auto now = MonotonicClock::now();
    const auto due = first.queued_at + delay;
    if (available >= target || now >= due) {
      // A full preferred batch goes as it is; after the delay, as much as max_batch allows. The
      // oldest job always goes (its rows alone are within max_batch).
      const int64_t cap = std::max(available >= target ? target : max_batch, first.rows);
      int64_t rows = 0;
      for (auto it = queue.pending.begin(); it != queue.pending.end();) {
        Job* job = *it;
        if (job->compatibility == key && rows + job->rows <= cap) {
          rows += job->rows;
          job->taken = true;
          job->taken_at = now;
          taken_.push_back(job);
          it = queue.pending.erase(it);
        } else {
          ++it;
        }
      }
      for (Job* job : taken_) job->batch_rows = rows;
      break;
    }
    // Woken early by every new job; otherwise at the delay or the first pending deadline.
    auto wake = due;
    for (const Job* job : queue.pending) {
      if (!job->deadline.never()) wake = std::min(wake, job->deadline.time_point());
    }
    queue.changed.wait_until(lock, wake);
  }
  queue.gathering = false;
  queue.changed.notify_all();
  return taken_;
}

Status DynamicBatcher::Submit(const std::string& queue_name, Job& job, const BatchingPolicy& policy,
                              const Execute& execute) {
  if (job.rows < 1 || job.rows > policy.max_batch) {
    return InvalidArgumentError("a request of batch " + std::to_string(job.rows) +
                                " is outside 1..max_batch (" + std::to_string(policy.max_batch) +
                                ") of its model");
  }
  std::unique_lock lock(mu_);
  auto it = queues_.find(queue_name);
  if (it == queues_.end()) it = queues_.emplace(queue_name, std::make_unique<Queue>()).first;
  Queue& queue = *it->second;
  queue.users += 1;
  job.queued_at = MonotonicClock::now();
  job.taken = false;
  job.done = false;
  queue.pending.push_back(&job);
  queue.changed.notify_all();
  while (!job.done) {
    if (!job.taken && !queue.gathering) {
      queue.gathering = true;
      Gathering gathering(*this, queue, policy);
      lock.unlock();
      execute(gathering);
      if (!gathering.called_) {
        // An Execute that never took its batch: take it now, or the queue would stall.
        for (Job* taken : gathering.Take()) {
          taken->status = InternalError("the batch was not run");
        }
      }
      lock.lock();
      for (Job* taken : gathering.taken_) taken->done = true;
      queue.changed.notify_all();
      continue;
    }
    if (!job.taken && !job.deadline.never()) {
      if (queue.changed.wait_until(lock, job.deadline.time_point()) == std::cv_status::timeout) {
        ExpirePending(queue);
      }
    } else {
      queue.changed.wait(lock);
    }
  }
  Status status = job.status;
  if (--queue.users == 0) queues_.erase(queue_name);
  return status;
}

}  // namespace zerodet::server

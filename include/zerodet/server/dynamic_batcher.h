// DynamicBatcher: gathers requests for one model that arrive close together into one batch, as
// Triton's dynamic batcher does, so a model whose batch dimension is dynamic serves them with one
// Run instead of one Run each.
//
// There is no scheduler thread: the threads that submit requests take turns. A thread whose
// request is pending and finds nobody gathering becomes the gatherer: its Execute first gets
// what the batch needs (a model instance: while it waits, more requests queue up) and then calls
// Gathering::Take, which waits until the pending requests fill the largest preferred batch size
// (or max_batch) or until the oldest of them has waited max_queue_delay, and takes them. From
// then on the next thread may gather the next batch while this one runs, so a model with several
// instances runs several batches at once. Every submitter returns when its own request is done,
// whichever thread ran it.
//
// Requests batch only with requests of the same queue (a model and version, per kind of
// request) and the same compatibility key (the shapes and datatypes of their inputs, the
// detection parameters); one that does not fit the batch waits for a later one, in arrival order.
//
// Ownership: jobs are the caller's, borrowed until Submit returns; Execute writes each job's
// results before Submit returns to its owner. Thread-safety: Submit may be called from any thread
// concurrently; Execute runs on one submitter's thread without the batcher's lock.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "zerodet/core/clock.h"
#include "zerodet/core/status.h"
#include "zerodet/models/model_manager.h"

namespace zerodet::server {

class DynamicBatcher {
  struct Queue;  // the pending jobs of one queue name

 public:
  // One request's part of a batch; callers derive their own job types (inputs, results) from it.
  struct Job {
    virtual ~Job() = default;
    std::string compatibility;  // jobs batch together only with equal keys
    int64_t rows = 1;           // its share of the batch dimension (an image, or its own batch)
    // While the job is pending: past it, the job leaves the queue with `expired_status`.
    Deadline deadline = Deadline::Never();
    Status expired_status = DeadlineExceededError("the request's deadline passed in the queue");

    // Results, written by Execute (or by the batcher for an expired job).
    Status status;
    int64_t batch_rows = 0;  // rows of the batch it ran in

    // Set by the batcher: when the job was queued and when a gatherer took it.
    MonotonicClock::time_point queued_at;
    MonotonicClock::time_point taken_at;

   private:
    friend class DynamicBatcher;
    bool taken = false;
    bool done = false;
  };

  // What a gatherer's Execute calls once it is ready to run a batch.
  class Gathering {
   public:
    // Waits as the file comment says and takes the batch (empty when every pending job of the
    // queue expired meanwhile). Call at most once.
    std::vector<Job*> Take();

   private:
    friend class DynamicBatcher;
    Gathering(DynamicBatcher& batcher, Queue& queue, const BatchingPolicy& policy)
        : batcher_(batcher), queue_(queue), policy_(policy) {}
    DynamicBatcher& batcher_;
    Queue& queue_;
    const BatchingPolicy& policy_;
    std::vector<Job*> taken_;
    bool called_ = false;
  };

  // Runs one batch: gets what the batch needs, calls gathering.Take() once, and sets the status
  // (and results) of each job it took. A gatherer that fails before Take (its model cannot be
  // loaded) still takes the batch and fails each job with that status.
  using Execute = std::function<void(Gathering& gathering)>;

  DynamicBatcher();
  ~DynamicBatcher();
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // Queues `job` under `queue` and returns once a batch that holds it has run: job.status then
  // says how it went. Returns job.expired_status for a job whose deadline passed while it was
  // pending (it never ran). Errors: kInvalidArgument for job.rows outside 1..policy.max_batch.
  // REQUIRES: every Submit to one queue passes the same policy and an Execute for the same kind
  // of job.
  Status Submit(const std::string& queue, Job& job, const BatchingPolicy& policy,
                const Execute& execute);

 private:
  // Fails the pending jobs whose deadlines passed: they leave the queue and their submitters
  // return. REQUIRES: mu_ held.
  static void ExpirePending(Queue& queue);

  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Queue>, std::less<>> queues_;
};

}  // namespace zerodet::server

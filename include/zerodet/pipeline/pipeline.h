// The multi-process detection pipeline: one ingest process per source decodes frames once into
// a frame ring; N worker processes per model read the rings as a work group (each frame to one
// worker of the model; every model sees every frame) and run the detector on the frame in
// shared memory; the supervisor (the calling process) writes the workers' results as JSON lines
// and restarts processes that die.
//
// Result line (one per frame and model), keys in this order:
//   {"source":"gate","sequence":12,"timestamp_ns":...,"model":"yolov8n","worker":1,
//    "width":640,"height":480,"detections":[{"class_id":16,"class":"dog","score":0.9559,
//    "box":[131.13,219.11,308.27,539.73]}],"latency_ms":{"decode":..,"queue":..,
//    "preprocess":..,"infer":..,"postprocess":..,"total":..}}
// "detections" is the one detection format of zerodet (core/detection_json.h, the same as
// `zerodet detect`): box [x1, y1, x2, y2] in the frame's pixels, class names from the model.
// "model" is the models[] entry (its work group). For an entry of a repository model, the model
// and version that produced the line follow it: "repository_model":"yolo11n","version":2 (they
// change when the source is switched, pipeline/control.h, or a new version is swapped in).
// A frame the detector failed on has "error" (the message) instead of "detections" and
// "latency_ms". timestamp_ns is CLOCK_MONOTONIC when the ingest started decoding the frame;
// "decode" runs from then to publication in the ring, "queue" from publication to a worker
// taking it, "total" from timestamp_ns to the result (milliseconds, 2 decimals).
//
// With output.results_ring set, the supervisor also publishes each line (FrameFormat::kEncoded,
// 64 KiB slots, newest 64 kept) into a ring of that name, for local consumers that attach with
// RingReader (broadcast: every consumer sees every line). The ring closes when the run ends.
// Ring names live in /dev/shm, which every local user shares: the frame rings of a run get
// unpredictable names (zp-<pid>-<random>-<source>), but a results ring has the name the config
// gives it, so that consumers can find it, and another user can create that name first. The
// pipeline then refuses to start (kPermissionDenied naming the owner; it never uses a segment
// of another user) and the name must change: on a shared machine pick one that is not easy to
// guess.
//
// Repository models: each worker process has its own ModelManager (models/model_manager.h) over
// the config's repository, with its budgets (max_models / max_bytes per worker process), watching
// it for new versions. A worker loads its models before it takes a frame. The control socket
// (config's control.socket; pipeline/control.h) switches a source's model while it runs.
//
// Supervision: a worker that dies (crash, kill -9) is restarted after a backoff; the frame it
// was working on is counted in frames_lost_in_flight, and the ring reclaims the slot it held.
// A dead ingest (or one whose stream dropped) is restarted too, with exponential backoff: it
// reopens its source (from the start, for a file) and resumes its ring, whose sequence numbers
// continue. A network stream (an rtsp:// URL) that ends or drops is reconnected that way; it
// only ends on stop. Backoff and max_restarts count failures in a row: a process that ran 30 s
// starts a new series. The ingest never waits for workers. A stream that stalls (no data for
// 10 s) counts as dropped; opening one may take 30 s.
//
// Children never outlive the supervisor: each gets SIGTERM when the thread that called
// RunPipeline ends, also when it is killed with SIGKILL (an ingest then closes and unlinks its
// ring). The supervisor waits only for its own children (by pid): the calling program's other
// children are left to it. Warnings (skipped images, restarts, FFmpeg's messages at their
// mapped levels) go to spdlog's default logger; the result lines go to output.results, one
// flushed line each, and a failed write there ends the run with kIoError.
//
// Live metrics: with PipelineOptions::metrics the supervisor keeps a PipelineMetrics
// (pipeline_metrics.h) up to date while it runs (`zerodet pipeline --metrics HOST:PORT`).
//
// RunPipeline forks; call it from a single-threaded process, on a thread that lives until it
// returns (the one exception: the thread of a metrics exposer serving options.metrics, whose
// locks the children never take). Not reentrant. Ownership: the children, their pipes and the rings
// are the supervisor's and are gone when RunPipeline returns (on success and on error).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "zerodet/core/status.h"
#include "zerodet/pipeline/config.h"

namespace zerodet::pipeline {

class PipelineMetrics;

struct SourceSummary {
  uint64_t frames_published = 0;
  uint64_t frames_dropped = 0;      // not published: ring full under drop_newest
  uint64_t frames_overwritten = 0;  // published, replaced before some model's workers took them
  int ingest_restarts = 0;
};

struct ModelSummary {
  uint64_t results = 0;
  uint64_t frames_lost_in_flight = 0;  // being processed by a worker that died
  int worker_restarts = 0;
};

struct PipelineSummary {
  std::map<std::string, SourceSummary> sources;
  std::map<std::string, ModelSummary> models;
  uint64_t results_ring_oversized = 0;  // result lines too long for a results-ring slot
  uint64_t mqtt_published = 0;          // result lines queued for the MQTT broker
  uint64_t mqtt_dropped = 0;  // not delivered: the queue was full, or unacknowledged at the end
};

// Optional hooks into the supervisor (tests and tools); called on the supervisor's thread.
struct PipelineObserver {
  // The ingest process of `source` started (again, after a restart).
  std::function<void(const std::string& source, pid_t pid)> on_ingest_started;
  // A worker process of `model` started (again, after a restart).
  std::function<void(const std::string& model, int worker, pid_t pid)> on_worker_started;
  // A worker delivered a result for frame `sequence` of `source`.
  std::function<void(const std::string& model, int worker, pid_t pid, const std::string& source,
                     uint64_t sequence)>
      on_result;
};

struct PipelineOptions {
  // Set to true (e.g. from a signal handler) to stop: ingests close their rings, workers finish
  // the frames in them, then everything exits; processes still running 30 s later are killed.
  // Honoured from the start, also while sources are still opening (a stream that does not
  // answer): no worker is started then.
  std::atomic<bool>* stop = nullptr;
  PipelineObserver observer;
  // Name prefix of this run's rings (default "zp-<pid>-<8 random hex digits>-"); must be a
  // valid ring name prefix.
  std::string ring_prefix;
  // Ingests wait this long for every worker to attach before the first frame, so a finite file
  // is processed from its first frame (model loading takes a while).
  int attach_timeout_ms = 60'000;
  // Live metrics, updated by the supervisor while it runs (borrowed: must outlive the call).
  PipelineMetrics* metrics = nullptr;
};

// Runs until every source has ended (non-looping) and the workers have processed what is in
// the rings, or until *options.stop. Returns what happened.
// Errors: kInvalidArgument for a config RunPipeline cannot run; kPermissionDenied when another
// user holds output.results_ring's name; kUnavailable when a process
// keeps dying (more than max_restarts); the errors of opening the output file or a source
// (reported by the ingest before the first frame), naming it.
Result<PipelineSummary> RunPipeline(const PipelineConfig& config,
                                    const PipelineOptions& options = {});

}  // namespace zerodet::pipeline

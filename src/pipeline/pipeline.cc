// The supervisor: forks the ingests and workers, relays results, restarts what dies.
#include "zerodet/pipeline/pipeline.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <set>
#include <thread>

#include "control_server.h"
#include "mqtt_relay.h"
#include "processes.h"
#include "protocol.h"
#include "zerodet/core/child_process.h"
#include "zerodet/core/clock.h"
#include "zerodet/models/repository.h"
#include "zerodet/pipeline/pipeline_metrics.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::pipeline {
namespace {

using Clock = MonotonicClock;

// A result line with 300 detections is about 30 KB.
constexpr size_t kResultSlotBytes = 64 * 1024;
// A restarted process that runs this long is considered recovered.
constexpr auto kStableRun = std::chrono::seconds(30);
// After a stop request, children still running this much later are killed.
constexpr auto kStopGrace = std::chrono::seconds(30);
// A model switch whose workers have not all loaded the new model by then fails (the workers'
// own load timeout is 2 minutes).
constexpr auto kSwitchTimeout = std::chrono::seconds(150);

// "zp-<pid>-<8 random hex digits>-". /dev/shm is shared by every user of the machine: a
// predictable name (zp-<pid>-<source>) could be created first by another user, and the ring
// would then be refused (never used: RingWriter only opens segments of its own user), keeping
// the pipeline from starting. The pid keeps names readable and lets RemoveStaleRings("zp-")
// find them.
std::string DefaultRingPrefix() {
  uint32_t random = 0;
  if (::getrandom(&random, sizeof(random), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(random))) {
    // No entropy yet (early boot): the clock is unpredictable enough against a name squatter.
    random = static_cast<uint32_t>(MonotonicNowNs() ^ (MonotonicNowNs() >> 32));
  }
  char hex[9];
  std::snprintf(hex, sizeof(hex), "%08x", random);
  return "zp-" + std::to_string(::getpid()) + "-" + hex + "-";
}

// "exit code 4", "killed by signal 9 (Killed)".
std::string ExitDescription(int wait_status) {
  if (WIFSIGNALED(wait_status)) {
    return "killed by signal " + std::to_string(WTERMSIG(wait_status)) + " (" +
           ::strsignal(WTERMSIG(wait_status)) + ")";
  }
  return "exit code " + std::to_string(WEXITSTATUS(wait_status));
}

enum class Kind { kIngest, kWorker };

// Closes both ends of a pipe or socket pair, if it was made.
void CloseBoth(int (&fds)[2]) {
  for (int& fd : fds) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

// Signal dispositions of a fresh child, whatever the embedding program set: a handler
// inherited from it would only set that program's flag (and make the child deaf to SIGTERM, the
// supervisor's request and the parent-death signal), and a blocked signal would stay blocked.
//   SIGPIPE: ignored, so a write to a supervisor that is gone fails instead of killing.
//   SIGINT:  ignored by workers (Ctrl-C reaches the whole process group; the supervisor stops
//            the sources and lets the workers drain them); the ingest installs its own.
//   SIGTERM: the default (ends a worker); the ingest installs its own.
void PrepareChildSignals(Kind kind) {
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction action = {};
  action.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &action, nullptr);
  action.sa_handler = kind == Kind::kWorker ? SIG_IGN : SIG_DFL;
  ::sigaction(SIGINT, &action, nullptr);
  action.sa_handler = SIG_DFL;
  ::sigaction(SIGTERM, &action, nullptr);
}

struct Child {
  Kind kind = Kind::kIngest;
  int index = 0;        // source index (ingest) or model index (worker)
  int worker = 0;       // worker number within its model
  pid_t pid = -1;       // -1: not running
  int fd = -1;          // read end of its message pipe
  int control_fd = -1;  // repository workers: the supervisor's end of their control channel
  detail::MessageReader messages;
  bool in_flight = false;  // took a frame and has not delivered its result
  int restarts = 0;        // in a row: reset once a restarted process has run a while
  int launches = 0;
  Clock::time_point started{};
  bool done = false;               // exited for good
  Clock::time_point restart_at{};  // pid == -1 && !done: restart then
};

// A model switch waiting for the workers of its entry to load the new model.
struct PendingSwitch {
  uint64_t client = 0;  // the control connection to answer
  int model = 0;        // entry index in PipelineConfig::models
  int source = 0;       // source index
  std::string reference;
  std::set<int> waiting;  // worker numbers that have not answered PREPARE
  Status failure;         // the first worker's error
  Deadline deadline = Deadline::Never();
};

class Supervisor {
 public:
  Supervisor(const PipelineConfig& config, const PipelineOptions& options, FILE* out,
             ring::RingWriter* results_ring, detail::MqttRelay* mqtt)
      : config_(config), options_(options), out_(out), results_ring_(results_ring), mqtt_(mqtt) {
    prefix_ = options.ring_prefix.empty() ? DefaultRingPrefix() : options.ring_prefix;
    for (const SourceConfig& s : config.sources) summary_.sources[s.name] = {};
    for (const ModelConfig& m : config.models) summary_.models[m.name] = {};
    for (size_t m = 0; m < config.models.size(); ++m) {
      if (config.models[m].reference.empty()) continue;
      for (const std::string& name : config.models[m].sources) {
        assignment_[{static_cast<int>(m), SourceIndex(name)}] = config.models[m].reference;
      }
    }
  }

  // On an error path children may still run: ask them to stop (an ingest then closes and
  // unlinks its ring), and kill what has not exited after a grace period.
  ~Supervisor() {
    for (Child& c : children_) {
      if (c.pid > 0) ::kill(c.pid, SIGTERM);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(2);
    for (Child& c : children_) {
      while (c.pid > 0) {
        if (::waitpid(c.pid, nullptr, WNOHANG) != 0) {
          c.pid = -1;
        } else if (Clock::now() >= deadline) {
          ::kill(c.pid, SIGKILL);
          ::waitpid(c.pid, nullptr, 0);
          c.pid = -1;
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      }
      if (c.fd >= 0) ::close(c.fd);
      if (c.control_fd >= 0) ::close(c.control_fd);
    }
    // Rings whose ingest was killed above are not left behind in /dev/shm.
    for (size_t s = 0; s < config_.sources.size(); ++s) {
      (void)ring::CloseAbandonedRing(RingName(static_cast<int>(s))).status();
    }
  }

  Result<PipelineSummary> Run() {
    if (config_.control_socket && !config_.control_socket->empty()) {
      auto control = detail::ControlServer::Listen(*config_.control_socket);
      if (!control.ok()) return control.status().WithContext("control socket");
      control_ = std::move(control).value();
    }
    for (size_t s = 0; s < config_.sources.size(); ++s) {
      Child c;
      c.kind = Kind::kIngest;
      c.index = static_cast<int>(s);
      children_.push_back(c);
    }
    // Rings first: every ingest must report READY (its ring exists) before workers attach.
    for (Child& c : children_) ZD_RETURN_IF_ERROR(Spawn(c));
    for (Child& c : children_) ZD_RETURN_IF_ERROR(AwaitReady(c));
    // Asked to stop while the sources were opening: no worker is needed any more.
    const size_t model_count = StopRequested() ? 0 : config_.models.size();
    for (size_t m = 0; m < model_count; ++m) {
      for (int w = 0; w < config_.models[m].workers; ++w) {
        Child c;
        c.kind = Kind::kWorker;
        c.index = static_cast<int>(m);
        c.worker = w;
        children_.push_back(c);
      }
    }
    for (Child& c : children_) {
      if (c.kind == Kind::kWorker) ZD_RETURN_IF_ERROR(Spawn(c));
    }
    bool stopping = false;
    Deadline stop_grace = Deadline::Never();
    while (!AllDone()) {
      if (!stopping && StopRequested()) {
        // Ingests close their rings; workers drain them and exit. Nothing is restarted.
        stopping = true;
        stop_grace = Deadline::After(kStopGrace);
        for (const PendingSwitch& pending : switches_) {
          if (control_)
            control_->Reply(pending.client, UnavailableError("the pipeline is stopping"));
        }
        switches_.clear();
        for (Child& c : children_) {
          if (c.kind == Kind::kIngest && c.pid > 0) ::kill(c.pid, SIGTERM);
          if (c.pid < 0 && !c.done) {
            c.done = true;
            // An ingest waiting for its restart left its ring open: end it for the workers.
            if (c.kind == Kind::kIngest) CloseSourceRing(c.index);
          }
        }
      }
      if (stopping && stop_grace.expired()) {
        // A child that ignores the request (stuck in a driver, a model that takes minutes per
        // frame) must not keep the pipeline from ending.
        for (Child& c : children_) {
          if (c.pid > 0) {
            spdlog::warn("zerodet pipeline: {} did not stop within {} s; killing it", Describe(c),
                         kStopGrace.count());
            ::kill(c.pid, SIGKILL);
          }
        }
        stop_grace = Deadline::Never();
      }
      PollMessages(100);
      ZD_RETURN_IF_ERROR(fatal_);
      ZD_RETURN_IF_ERROR(ReapChildren(stopping));
      if (!stopping) ZD_RETURN_IF_ERROR(RestartDue());
      ServeControl(stopping);
      PublishMetrics();
    }
    // A message read with the last exit can carry the last error.
    ZD_RETURN_IF_ERROR(fatal_);
    PublishMetrics();
    return summary_;
  }

 private:
  // Ends the ring of source `s` after its ingest died for good (see ring::CloseAbandonedRing):
  // its workers drain it and exit.
  // Its final counters are the source's summary: the dead ingest could not report them.
  void CloseSourceRing(int s) {
    const std::string& name = config_.sources[static_cast<size_t>(s)].name;
    auto closed = ring::CloseAbandonedRing(RingName(s));
    if (closed.ok()) {
      SourceSummary& summary = summary_.sources[name];
      summary.frames_published = closed->frames_published;
      summary.frames_dropped = closed->frames_dropped;
      summary.frames_overwritten = closed->frames_overwritten;
    } else if (closed.status().code() != StatusCode::kNotFound) {
      spdlog::warn("zerodet pipeline: closing the ring of source {}: {}", name,
                   closed.status().ToString());
    }
  }

  bool StopRequested() const { return options_.stop != nullptr && options_.stop->load(); }

  // The live metrics (options_.metrics): the summary and the running processes, once per pass
  // of the loop (a copy of a few small maps).
  void PublishMetrics() {
    if (options_.metrics == nullptr) return;
    PipelineState state;
    state.summary = summary_;
    for (const SourceConfig& s : config_.sources) state.ingest_running[s.name] = false;
    for (const ModelConfig& m : config_.models) state.workers_running[m.name] = 0;
    for (const Child& c : children_) {
      if (c.pid <= 0) continue;
      if (c.kind == Kind::kIngest) {
        state.ingest_running[config_.sources[static_cast<size_t>(c.index)].name] = true;
      } else {
        ++state.workers_running[config_.models[static_cast<size_t>(c.index)].name];
      }
    }
    options_.metrics->Publish(state);
  }

  // Counts a result in the live metrics, with its stage times unless the frame failed.
  void ObserveResult(const std::string& model, const std::string& source,
                     const detail::ResultMessage& result) {
    if (options_.metrics == nullptr) return;
    if (result.failed) {
      options_.metrics->ObserveResult(model, source, nullptr);
      return;
    }
    const auto seconds = [](uint64_t ns) { return static_cast<double>(ns) / 1e9; };
    const detail::FrameTimes& t = result.times;
    const FrameStageSeconds stages{seconds(t.decode_ns),      seconds(t.queue_ns),
                                   seconds(t.preprocess_ns),  seconds(t.infer_ns),
                                   seconds(t.postprocess_ns), seconds(t.total_ns)};
    options_.metrics->ObserveResult(model, source, &stages);
  }

  int SourceIndex(const std::string& name) const {
    for (size_t s = 0; s < config_.sources.size(); ++s) {
      if (config_.sources[s].name == name) return static_cast<int>(s);
    }
    return -1;
  }

  int ModelIndex(const std::string& name) const {
    for (size_t m = 0; m < config_.models.size(); ++m) {
      if (config_.models[m].name == name) return static_cast<int>(m);
    }
    return -1;
  }

  bool Reads(int model, int source) const {
    const std::vector<std::string>& names = config_.models[static_cast<size_t>(model)].sources;
    return std::find(names.begin(), names.end(),
                     config_.sources[static_cast<size_t>(source)].name) != names.end();
  }

  // ---- Control socket (pipeline/control.h) ----

  void ServeControl(bool stopping) {
    if (!control_) return;
    for (detail::ControlServer::Incoming& in : control_->Service()) {
      if (in.request.kind == detail::ControlRequest::Kind::kModels) {
        control_->Reply(in.client, Assignments());
      } else if (stopping) {
        control_->Reply(in.client, UnavailableError("the pipeline is stopping"));
      } else {
        Status started = StartSwitch(in.client, in.request.switch_request);
        if (!started.ok()) control_->Reply(in.client, started);
      }
    }
    for (auto it = switches_.begin(); it != switches_.end();) {
      if (it->deadline.expired()) {
        control_->Reply(it->client,
                        DeadlineExceededError("the workers did not load " + it->reference +
                                              " within " + std::to_string(kSwitchTimeout.count()) +
                                              " s; the source keeps its model"));
        it = switches_.erase(it);
      } else {
        ++it;
      }
    }
  }

  std::vector<ModelAssignment> Assignments() const {
    std::vector<ModelAssignment> out;
    for (size_t m = 0; m < config_.models.size(); ++m) {
      const ModelConfig& model = config_.models[m];
      for (const std::string& source : model.sources) {
        ModelAssignment a{model.name, source, model.path.string(), false};
        const auto it = assignment_.find({static_cast<int>(m), SourceIndex(source)});
        if (it != assignment_.end()) {
          a.model = it->second;
          a.switchable = true;
        }
        out.push_back(std::move(a));
      }
    }
    return out;
  }

  // Checks a switch request, then asks every running worker of the entry to load the model
  // (PREPARE); the switch completes in OnPrepared. Errors are the request's reply.
  Status StartSwitch(uint64_t client, const SwitchRequest& request) {
    const int source = SourceIndex(request.source);
    if (source < 0) return NotFoundError("no source is named '" + request.source + "'");
    int model = -1;
    if (!request.entry.empty()) {
      model = ModelIndex(request.entry);
      if (model < 0) return NotFoundError("no model entry is named '" + request.entry + "'");
      if (!Reads(model, source)) {
        return InvalidArgumentError("model entry '" + request.entry + "' does not read source '" +
                                    request.source + "'");
      }
      if (config_.models[static_cast<size_t>(model)].reference.empty()) {
        return InvalidArgumentError("model entry '" + request.entry +
                                    "' runs a model file; only repository models (model: "
                                    "NAME) switch");
      }
    } else {
      std::string candidates;
      for (size_t m = 0; m < config_.models.size(); ++m) {
        if (!Reads(static_cast<int>(m), source) || config_.models[m].reference.empty()) continue;
        candidates += (candidates.empty() ? "" : ", ") + config_.models[m].name;
        model = model < 0 ? static_cast<int>(m) : -2;
      }
      if (model == -1) {
        return InvalidArgumentError("source '" + request.source +
                                    "' is read by no repository model (model: NAME); only those "
                                    "switch");
      }
      if (model == -2) {
        return InvalidArgumentError("source '" + request.source + "' is read by model entries " +
                                    candidates + ": name the one to switch");
      }
    }
    auto ref = ParseModelRef(request.model);
    if (!ref.ok()) return ref.status();
    for (const PendingSwitch& other : switches_) {
      if (other.model == model && other.source == source) {
        return FailedPreconditionError("a switch of source '" + request.source + "' to " +
                                       other.reference + " is in progress");
      }
    }
    PendingSwitch pending;
    pending.client = client;
    pending.model = model;
    pending.source = source;
    pending.reference = request.model;
    pending.deadline = Deadline::After(kSwitchTimeout);
    const detail::PrepareMessage prepare{static_cast<uint32_t>(source), request.model};
    for (const Child& c : children_) {
      if (c.kind != Kind::kWorker || c.index != model || c.pid <= 0 || c.control_fd < 0) continue;
      // A worker that cannot be told is dying: its replacement starts with the outcome.
      if (detail::SendMessage(c.control_fd, prepare)) pending.waiting.insert(c.worker);
    }
    spdlog::info("zerodet pipeline: switching source {} of model entry {} to {}", request.source,
                 config_.models[static_cast<size_t>(model)].name, request.model);
    switches_.push_back(std::move(pending));
    if (switches_.back().waiting.empty()) FinishSwitch(switches_.size() - 1);
    return Status::Ok();
  }

  // A worker answered PREPARE.
  void OnPrepared(const Child& c, const detail::PreparedMessage& message) {
    for (size_t i = 0; i < switches_.size(); ++i) {
      PendingSwitch& pending = switches_[i];
      if (pending.model != c.index || pending.source != static_cast<int>(message.source) ||
          pending.reference != message.model || pending.waiting.count(c.worker) == 0) {
        continue;
      }
      pending.waiting.erase(c.worker);
      if (!message.status.ok() && pending.failure.ok()) pending.failure = message.status;
      if (pending.waiting.empty()) FinishSwitch(i);
      return;
    }
  }

  // A worker of a pending switch died: its replacement starts with whatever the switch decides.
  void ForgetWorker(const Child& c) {
    for (size_t i = 0; i < switches_.size(); ++i) {
      if (switches_[i].model == c.index && switches_[i].waiting.erase(c.worker) != 0 &&
          switches_[i].waiting.empty()) {
        FinishSwitch(i);
        return;
      }
    }
  }

  // Every worker answered: commit the switch (all of them loaded the model) or not at all.
  void FinishSwitch(size_t i) {
    PendingSwitch pending = std::move(switches_[i]);
    switches_.erase(switches_.begin() + static_cast<std::ptrdiff_t>(i));
    const ModelConfig& entry = config_.models[static_cast<size_t>(pending.model)];
    const std::string& source = config_.sources[static_cast<size_t>(pending.source)].name;
    if (!pending.failure.ok()) {
      spdlog::warn("zerodet pipeline: switching source {} of model entry {} to {} failed: {}",
                   source, entry.name, pending.reference, pending.failure.ToString());
      control_->Reply(pending.client, pending.failure);
      return;
    }
    assignment_[{pending.model, pending.source}] = pending.reference;
    const detail::CommitMessage commit{static_cast<uint32_t>(pending.source), pending.reference};
    for (const Child& c : children_) {
      if (c.kind == Kind::kWorker && c.index == pending.model && c.pid > 0 && c.control_fd >= 0) {
        detail::SendMessage(c.control_fd, commit);
      }
    }
    spdlog::info("zerodet pipeline: source {} of model entry {} now runs {}", source, entry.name,
                 pending.reference);
    control_->Reply(pending.client,
                    std::vector<ModelAssignment>{{entry.name, source, pending.reference, true}});
  }

  bool SourceEnded(int s) const {
    for (const Child& c : children_) {
      if (c.kind == Kind::kIngest && c.index == s) return c.done;
    }
    return true;
  }

  bool AllDone() const {
    for (const Child& c : children_) {
      if (!c.done) return false;
    }
    return true;
  }

  std::string RingName(int s) const {
    return prefix_ + config_.sources[static_cast<size_t>(s)].name;
  }

  std::string Describe(const Child& c) const {
    if (c.kind == Kind::kIngest)
      return "ingest of source " + config_.sources[static_cast<size_t>(c.index)].name;
    return "worker " + std::to_string(c.worker) + " of model " +
           config_.models[static_cast<size_t>(c.index)].name;
  }

  Status Spawn(Child& c) {
    // Workers of repository models get a control channel (model switches): a socket pair, so
    // that a write to a worker that died fails (MSG_NOSIGNAL) instead of raising SIGPIPE.
    int control[2] = {-1, -1};
    if (c.kind == Kind::kWorker &&
        !config_.models[static_cast<size_t>(c.index)].reference.empty() &&
        ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, control) != 0) {
      return ErrnoError("socketpair", errno);
    }
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      const int err = errno;
      CloseBoth(control);
      return ErrnoError("pipe", err);
    }
    std::fflush(nullptr);
    ++c.launches;  // before fork: the child reads it
    const pid_t supervisor = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int err = errno;
      ::close(fds[0]);
      ::close(fds[1]);
      CloseBoth(control);
      return ErrnoError("fork " + Describe(c), err);
    }
    if (pid == 0) {
      // Children die with the supervisor, also when it is killed with SIGKILL: an ingest
      // left behind would keep its camera and its ring in /dev/shm. SIGTERM lets an ingest
      // close and unlink its ring; a worker just ends.
      if (!TieToParent(supervisor, SIGTERM)) ::_exit(detail::kExitFatal);
      ::close(fds[0]);
      if (control[0] >= 0) ::close(control[0]);
      for (const Child& other : children_) {
        if (other.fd >= 0) ::close(other.fd);
        if (other.control_fd >= 0) ::close(other.control_fd);
      }
      // The child must not hold the control socket (nor unlink it: it is the supervisor's),
      // nor the MQTT relay's (the relay ends when the supervisor's end closes).
      if (control_) control_->CloseAfterFork();
      if (mqtt_ != nullptr) mqtt_->CloseInChild();
      PrepareChildSignals(c.kind);
      ::_exit(RunChildContained(c, fds[1], control[1]));
    }
    ::close(fds[1]);
    if (c.control_fd >= 0) ::close(c.control_fd);
    c.control_fd = control[0];
    if (control[1] >= 0) ::close(control[1]);
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
    if (c.fd >= 0) ::close(c.fd);
    c.fd = fds[0];
    c.pid = pid;
    c.started = Clock::now();
    c.messages = detail::MessageReader();
    c.in_flight = false;
    if (c.kind == Kind::kIngest && options_.observer.on_ingest_started) {
      options_.observer.on_ingest_started(config_.sources[static_cast<size_t>(c.index)].name, pid);
    }
    if (c.kind == Kind::kWorker && options_.observer.on_worker_started) {
      options_.observer.on_worker_started(config_.models[static_cast<size_t>(c.index)].name,
                                          c.worker, pid);
    }
    return Status::Ok();
  }

  // The child's module boundary: an exception (memory, a bug) becomes the child's reported
  // error instead of std::terminate's abort, which supervision would restart again and again.
  int RunChildContained(const Child& c, int fd, int control_fd) {
    Status failed;
    try {
      return RunChild(c, fd, control_fd);
    } catch (const std::bad_alloc&) {
      failed = ResourceExhaustedError(Describe(c) + ": out of memory");
    } catch (const std::exception& e) {
      failed = InternalError(Describe(c) + ": unexpected exception: " + e.what());
    } catch (...) {
      failed = InternalError(Describe(c) + ": unexpected exception");
    }
    detail::SendMessage(fd, detail::ErrorMessage{failed});
    return detail::kExitFatal;
  }

  int RunChild(const Child& c, int fd, int control_fd) {
    if (c.kind == Kind::kIngest) {
      detail::IngestArgs args;
      args.source = config_.sources[static_cast<size_t>(c.index)];
      args.ring_name = RingName(c.index);
      for (const ModelConfig& m : config_.models) {
        for (const std::string& s : m.sources) {
          if (s == args.source.name) args.expected_readers += m.workers;
        }
      }
      // After a restart the workers are attached already.
      args.attach_timeout_ms = c.launches == 1 ? options_.attach_timeout_ms : 0;
      args.restarted = c.launches > 1;
      args.fd = fd;
      return detail::RunIngest(args);
    }
    detail::WorkerArgs args;
    args.model = config_.models[static_cast<size_t>(c.index)];
    args.repository = config_.repository;
    args.worker = c.worker;
    for (const std::string& name : args.model.sources) {
      const int s = SourceIndex(name);
      // A restarted worker starts with the source's current model (after any switch).
      const auto assigned = assignment_.find({c.index, s});
      args.sources.push_back({static_cast<uint32_t>(s), name, RingName(s),
                              assigned == assignment_.end() ? std::string() : assigned->second});
    }
    if (args.model.reference.empty()) args.repository = {};
    args.annotated_dir = config_.annotated_dir;
    args.fd = fd;
    args.control_fd = control_fd;
    return detail::RunWorker(args);
  }

  Status AwaitReady(Child& c) {
    for (;;) {
      pollfd p{c.fd, POLLIN, 0};
      ::poll(&p, 1, 100);
      ReadMessages(c);
      ZD_RETURN_IF_ERROR(fatal_);
      if (ready_.count(c.index) != 0) return Status::Ok();
      int status = 0;
      if (::waitpid(c.pid, &status, WNOHANG) == c.pid) {
        ReadMessages(c);
        ZD_RETURN_IF_ERROR(fatal_);
        c.pid = -1;
        c.done = true;
        // It saw the stop request first (Ctrl-C reaches the whole process group).
        if (StopRequested()) return Status::Ok();
        return UnavailableError(Describe(c) + " exited before its ring was ready (" +
                                ExitDescription(status) + ")");
      }
      if (StopRequested()) return Status::Ok();  // Run stops it
    }
  }

  void PollMessages(int timeout_ms) {
    std::vector<pollfd> polls;
    std::vector<Child*> owners;
    for (Child& c : children_) {
      if (c.fd >= 0) {
        polls.push_back({c.fd, POLLIN, 0});
        owners.push_back(&c);
      }
    }
    const size_t child_polls = polls.size();
    if (control_) control_->AppendPollFds(polls);
    if (polls.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
      return;
    }
    ::poll(polls.data(), polls.size(), timeout_ms);
    for (size_t i = 0; i < child_polls; ++i) {
      if (polls[i].revents != 0) ReadMessages(*owners[i]);
    }
  }

  // Reads what the child wrote and handles each complete message. A child that breaks the
  // protocol is faulty: it is killed, and supervision restarts it like any crashed child.
  void ReadMessages(Child& c) {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(c.fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      c.messages.Append(std::string_view(buf, static_cast<size_t>(n)));
      for (;;) {
        auto message = c.messages.Next();
        if (!message.ok()) {
          spdlog::warn("zerodet pipeline: {}: {}; killing it", Describe(c),
                       message.status().ToString());
          if (c.pid > 0) ::kill(c.pid, SIGKILL);
          return;
        }
        if (!message->has_value()) break;
        Handle(c, **message);
      }
    }
  }

  void Handle(Child& c, const detail::Message& message) {
    if (const auto* error = std::get_if<detail::ErrorMessage>(&message)) {
      if (fatal_.ok()) fatal_ = error->status;
    } else if (std::holds_alternative<detail::ReadyMessage>(message)) {
      if (c.kind == Kind::kIngest) ready_.insert(c.index);
    } else if (const auto* stats = std::get_if<detail::StatsMessage>(&message)) {
      if (c.kind != Kind::kIngest) return;
      SourceSummary& s = summary_.sources[config_.sources[static_cast<size_t>(c.index)].name];
      s.frames_published = stats->frames_published;
      s.frames_dropped = stats->frames_dropped;
      s.frames_overwritten = stats->frames_overwritten;
    } else if (std::holds_alternative<detail::BeginMessage>(message)) {
      c.in_flight = true;
    } else if (const auto* prepared = std::get_if<detail::PreparedMessage>(&message)) {
      if (c.kind == Kind::kWorker) OnPrepared(c, *prepared);
    } else if (const auto* result = std::get_if<detail::ResultMessage>(&message)) {
      if (c.kind != Kind::kWorker || result->source >= config_.sources.size()) return;
      c.in_flight = false;
      WriteResult(result->json);
      if (results_ring_ != nullptr) PublishResult(result->json);
      // Full queue (the broker away too long): dropped and counted in the summary.
      if (mqtt_ != nullptr) mqtt_->Send(config_.sources[result->source].name, result->json);
      const std::string& model = config_.models[static_cast<size_t>(c.index)].name;
      ++summary_.models[model].results;
      ObserveResult(model, config_.sources[result->source].name, *result);
      if (options_.observer.on_result) {
        options_.observer.on_result(model, c.worker, c.pid, config_.sources[result->source].name,
                                    result->sequence);
      }
    }
  }

  // Writes one result line and flushes it: consumers of a live pipeline see each result when
  // it happens (stdio would hold a pipe's output in 4 KiB blocks), and a failed write (a full
  // disk, a closed pipe) stops the pipeline instead of losing results without a word.
  void WriteResult(std::string_view json) {
    if (std::fwrite(json.data(), 1, json.size(), out_) == json.size() &&
        std::fputc('\n', out_) != EOF && std::fflush(out_) == 0) {
      return;
    }
    const int err = errno;
    if (fatal_.ok()) {
      fatal_ = ErrnoError(
          "cannot write results to " + (config_.results == "-" ? "stdout" : config_.results), err);
    }
  }

  // One result line per ring frame (kEncoded). Lines longer than a slot are left out of the
  // ring (they still go to the output) and counted as drops.
  void PublishResult(std::string_view json) {
    auto slot = results_ring_->BeginFrame();
    if (!slot.ok()) return;  // counted by the ring
    if (json.size() > slot->size()) {
      results_ring_->Abandon();
      ++summary_.results_ring_oversized;
      return;
    }
    std::memcpy(slot->data(), json.data(), json.size());
    ring::FrameInfo info;
    info.format = ring::FrameFormat::kEncoded;
    info.payload_bytes = json.size();
    info.timestamp_ns = 0;
    (void)results_ring_->Publish(info);
  }

  // Handles the children that exited. Each is waited for by its pid: the program around the
  // supervisor may have children of its own, whose exit status is not ours to collect.
  Status ReapChildren(bool stopping) {
    for (Child& child : children_) {
      if (child.pid <= 0) continue;
      int status = 0;
      pid_t got;
      do {
        got = ::waitpid(child.pid, &status, WNOHANG);
      } while (got < 0 && errno == EINTR);
      if (got != child.pid) continue;
      Child* c = &child;
      ReadMessages(*c);  // what it wrote before exiting
      ZD_RETURN_IF_ERROR(fatal_);
      c->pid = -1;
      if (c->control_fd >= 0) {
        ::close(c->control_fd);
        c->control_fd = -1;
      }
      if (c->kind == Kind::kWorker) ForgetWorker(*c);
      const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (WIFEXITED(status) && WEXITSTATUS(status) == detail::kExitFatal) {
        return UnavailableError(Describe(*c) + " failed and cannot be restarted");
      }
      const std::string why = ExitDescription(status);
      if (c->kind == Kind::kIngest) {
        if (clean || stopping) {
          c->done = true;
          // Gone without closing its ring (killed, or exiting to be restarted): end it for the
          // workers, who would otherwise wait for a new writer.
          if (!clean) CloseSourceRing(c->index);
          continue;
        }
        ++summary_.sources[config_.sources[static_cast<size_t>(c->index)].name].ingest_restarts;
      } else {
        ModelSummary& model = summary_.models[config_.models[static_cast<size_t>(c->index)].name];
        if (c->in_flight) ++model.frames_lost_in_flight;
        // Nothing is restarted once stopping: a worker left waiting for a restart would keep
        // the run from ever ending.
        if (clean || stopping) {
          c->done = true;
          continue;
        }
        bool any_source_running = false;
        for (const std::string& name : config_.models[static_cast<size_t>(c->index)].sources) {
          for (size_t s = 0; s < config_.sources.size(); ++s) {
            if (config_.sources[s].name == name && !SourceEnded(static_cast<int>(s))) {
              any_source_running = true;
            }
          }
        }
        if (!any_source_running) {
          // Its rings are closed and unlinked: a new worker could not attach to them.
          spdlog::warn("zerodet pipeline: {} died ({}) after its sources ended", Describe(*c), why);
          c->done = true;
          continue;
        }
        ++model.worker_restarts;
      }
      // A process that ran a good while before stopping (a camera stream that dropped after
      // an hour) starts a new series: backoff and max_restarts count failures in a row.
      if (Clock::now() - c->started > kStableRun) c->restarts = 0;
      if (c->restarts >= config_.max_restarts) {
        return UnavailableError(Describe(*c) + " died " + std::to_string(c->restarts + 1) +
                                " times (last: " + why + "); supervision.max_restarts is " +
                                std::to_string(config_.max_restarts));
      }
      ++c->restarts;
      // Exponential backoff (a stream that keeps dropping is retried less and less often).
      const int backoff_ms = config_.restart_backoff_ms << std::min(c->restarts - 1, 6);
      spdlog::warn("zerodet pipeline: {} stopped ({}); restarting in {} ms", Describe(*c), why,
                   backoff_ms);
      c->restart_at = Clock::now() + std::chrono::milliseconds(backoff_ms);
    }
    return Status::Ok();
  }

  Status RestartDue() {
    const auto now = Clock::now();
    for (Child& c : children_) {
      if (c.pid < 0 && !c.done && now >= c.restart_at) ZD_RETURN_IF_ERROR(Spawn(c));
    }
    return Status::Ok();
  }

  const PipelineConfig& config_;
  const PipelineOptions& options_;
  FILE* out_;
  ring::RingWriter* results_ring_;
  detail::MqttRelay* mqtt_;
  std::string prefix_;
  std::vector<Child> children_;
  std::set<int> ready_;
  Status fatal_;
  PipelineSummary summary_;
  std::unique_ptr<detail::ControlServer> control_;
  // Repository entries: (entry, source) -> the NAME[:VERSION] its frames go to.
  std::map<std::pair<int, int>, std::string> assignment_;
  std::vector<PendingSwitch> switches_;
};

Result<PipelineSummary> Run(const PipelineConfig& config, const PipelineOptions& options) {
  if (config.sources.empty() || config.models.empty()) {
    return InvalidArgumentError("a pipeline needs at least one source and one model");
  }
  // Rings of earlier runs whose processes all died (crash, kill -9) are removed first.
  (void)ring::RemoveStaleRings("zp-");
  if (!config.annotated_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(config.annotated_dir, ec);
    if (ec) {
      return IoError("cannot create output.annotated_dir " + config.annotated_dir + ": " +
                     ec.message());
    }
  }
  std::unique_ptr<FILE, int (*)(FILE*)> file(nullptr, std::fclose);
  FILE* out = stdout;
  if (config.results != "-") {
    file.reset(std::fopen(config.results.c_str(), "w"));
    if (!file) return ErrnoError("cannot write results to " + config.results, errno);
    out = file.get();
  }
  std::unique_ptr<ring::RingWriter> results_ring;
  if (!config.results_ring.empty()) {
    ring::RingOptions ring_options;
    ring_options.name = config.results_ring;
    ring_options.slot_count = 64;
    ring_options.slot_bytes = kResultSlotBytes;
    auto opened = ring::RingWriter::Open(ring_options);
    if (!opened.ok()) {
      Status status =
          opened.status().WithContext("output.results_ring '" + config.results_ring + "'");
      if (status.code() == StatusCode::kPermissionDenied) {
        // Ring names are machine-wide: another user's process holds this one.
        status = PermissionDeniedError(status.message() + "; choose another name");
      }
      return status;
    }
    results_ring = std::move(opened).value();
  }
  // The MQTT client runs in a relay child forked now, while this process has no other thread:
  // its threads could otherwise hold a lock across the forks of the ingests and workers.
  std::unique_ptr<detail::MqttRelay> mqtt;
  if (config.mqtt) {
    ZD_RETURN_IF_ERROR(ValidateMqttOptions(*config.mqtt).WithContext("output.mqtt"));
    ZD_ASSIGN_OR_RETURN(mqtt, detail::MqttRelay::Start(*config.mqtt));
  }
  Result<PipelineSummary> summary = [&] {
    Supervisor supervisor(config, options, out, results_ring.get(), mqtt.get());
    return supervisor.Run();
  }();
  if (mqtt) {
    // Results still on their way get a few seconds to reach the broker.
    const detail::MqttRelay::Counts counts = mqtt->Finish(std::chrono::seconds(10));
    if (summary.ok()) {
      summary->mqtt_published = counts.published;
      summary->mqtt_dropped = counts.dropped;
    }
  }
  return summary;
}

}  // namespace

Result<PipelineSummary> RunPipeline(const PipelineConfig& config, const PipelineOptions& options) {
  // The module boundary: no exception leaves it (memory, a bug, an observer that throws). The
  // supervisor's destructor has stopped the children by the time one arrives here.
  try {
    return Run(config, options);
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("pipeline: out of memory");
  } catch (const std::exception& e) {
    return InternalError(std::string("pipeline: unexpected exception: ") + e.what());
  }
}

}  // namespace zerodet::pipeline

// A worker process of one model: takes frames from its sources' rings as a member of the
// model's work group and runs the detector on the pixels in shared memory (preprocessing
// writes straight into the model's input buffer; the frame itself is never copied).
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "processes.h"
#include "protocol.h"
#include "zerodet/codec/annotate.h"
#include "zerodet/core/clock.h"
#include "zerodet/core/detection.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/infer/detector.h"
#include "zerodet/models/model_manager.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::pipeline::detail {
namespace {

// Milliseconds with 2 decimals, for the latency fields.
double Ms(int64_t ns) {
  return RoundTo(static_cast<double>(ns) / 1e6, 2);
}

// The model that runs one frame: a worker's own Detector (a model file), or an instance of a
// repository model held for the frame.
struct FrameModel {
  Detector* detector = nullptr;
  ModelHandle handle;  // repository models: keeps the instance (and version) for the frame
  std::string name;    // repository models: the model's name; empty for a file
  int64_t version = 0;
};

// The models a worker runs, per source: one Detector from a file for every source, or for each
// source a model of the repository through this process's ModelManager (loaded on first use,
// kept within the configured budget, swapped when the repository changes), which the
// supervisor may switch (PREPARE loads in the background while the current model serves;
// COMMIT makes the next frames use it).
class WorkerModels {
 public:
  static Result<std::unique_ptr<WorkerModels>> Create(const WorkerArgs& args) {
    auto models = std::unique_ptr<WorkerModels>(new WorkerModels(args));
    ZD_RETURN_IF_ERROR(models->Init());
    return models;
  }

  // The model for the next frame of source slot `slot`. Errors: as ModelManager::Acquire.
  Result<FrameModel> Acquire(size_t slot) {
    FrameModel model;
    if (detector_) {
      model.detector = detector_.get();
      return model;
    }
    const ModelRef& ref = current_[slot];
    AcquireOptions options;
    options.version = ref.version;
    options.deadline = Deadline::After(kAcquireTimeout);
    ZD_ASSIGN_OR_RETURN(model.handle, manager_->Acquire(ref.name, options));
    model.handle->set_params(params_);
    model.detector = &model.handle.detector();
    model.name = model.handle.name();
    model.version = model.handle.version();
    return model;
  }

  // Reads the supervisor's PREPARE and COMMIT messages and answers the prepares that finished.
  // Never blocks. Errors: kCorruptData when the supervisor sent something malformed.
  Status Poll() {
    if (args_.control_fd < 0) return Status::Ok();
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(args_.control_fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EAGAIN: nothing more; 0: the supervisor is gone (we die with it)
      control_.Append(std::string_view(buf, static_cast<size_t>(n)));
    }
    for (;;) {
      ZD_ASSIGN_OR_RETURN(std::optional<Message> message, control_.Next());
      if (!message) break;
      if (const auto* prepare = std::get_if<PrepareMessage>(&*message)) {
        StartPrepare(*prepare);
      } else if (const auto* commit = std::get_if<CommitMessage>(&*message)) {
        Commit(*commit);
      } else {
        return CorruptDataError("unexpected message from the supervisor");
      }
    }
    FinishPrepares();
    return Status::Ok();
  }

 private:
  // A frame waits at most this long for its model (a load, or a free instance).
  static constexpr auto kAcquireTimeout = std::chrono::minutes(2);

  struct Prepare {
    uint32_t source = 0;
    std::string model;
    std::future<Status> loaded;
  };

  explicit WorkerModels(const WorkerArgs& args) : args_(args) {
    params_.conf_threshold = args.model.conf;
    params_.iou_threshold = args.model.iou;
  }

  Status Init() {
    if (args_.repository.path.empty()) {
      DetectorOptions options;
      options.backend.intra_op_threads = args_.model.threads;
      options.backend.inter_op_threads = 1;
      options.params = params_;
      ZD_ASSIGN_OR_RETURN(detector_, Detector::Create(args_.model.path, options));
      return Status::Ok();
    }
    ManagerOptions options;
    options.repository = args_.repository.path;
    options.budgets["cpu"] = {args_.repository.max_models, args_.repository.max_bytes};
    options.graph_cache_dir = args_.repository.graph_cache;
    options.thread_pool.intra_op_threads = args_.model.threads;
    options.thread_pool.inter_op_threads = 1;
    options.loader_threads = 1;
    ZD_ASSIGN_OR_RETURN(manager_, ModelManager::Create(std::move(options)));
    for (const WorkerSource& source : args_.sources) {
      ZD_ASSIGN_OR_RETURN(ModelRef ref, ParseModelRef(source.model));
      current_.push_back(std::move(ref));
    }
    // Every model is ready before the first frame, and one that cannot load fails the worker
    // at start (a restart would not fix it).
    for (const ModelRef& ref : current_) ZD_RETURN_IF_ERROR(LoadSettled(*manager_, ref));
    return Status::Ok();
  }

  // Loads `ref`, waiting a few settle periods for a model file that was copied in moments ago
  // (the repository holds back files that still change, see repository.h).
  static Status LoadSettled(ModelManager& manager, const ModelRef& ref) {
    Status loaded = manager.Load(ref.name, ref.version);
    for (int attempt = 0; attempt < 5 && loaded.code() == StatusCode::kUnavailable; ++attempt) {
      std::this_thread::sleep_for(ManagerOptions().settle);
      (void)manager.Rescan();
      loaded = manager.Load(ref.name, ref.version);
    }
    return loaded;
  }

  std::optional<size_t> SlotOf(uint32_t source) const {
    for (size_t slot = 0; slot < args_.sources.size(); ++slot) {
      if (args_.sources[slot].index == source) return slot;
    }
    return std::nullopt;
  }

  void StartPrepare(const PrepareMessage& message) {
    auto reply = [&](Status status) {
      SendMessage(args_.fd, PreparedMessage{message.source, message.model, std::move(status)});
    };
    if (!manager_ || !SlotOf(message.source)) {
      reply(InvalidArgumentError("worker " + std::to_string(args_.worker) + " of model " +
                                 args_.model.name +
                                 " does not serve that source from a repository"));
      return;
    }
    auto ref = ParseModelRef(message.model);
    if (!ref.ok()) {
      reply(ref.status());
      return;
    }
    Prepare prepare{message.source, message.model, {}};
    try {
      ModelManager* manager = manager_.get();
      prepare.loaded = std::async(std::launch::async, [manager, ref = *ref] {
        // A model copied into the repository just before the switch is seen now, not at the
        // watcher's next poll.
        (void)manager->Rescan();
        return LoadSettled(*manager, ref);
      });
    } catch (const std::system_error& e) {
      reply(ResourceExhaustedError(std::string("cannot start a loader thread: ") + e.what()));
      return;
    }
    prepares_.push_back(std::move(prepare));
  }

  void FinishPrepares() {
    for (auto it = prepares_.begin(); it != prepares_.end();) {
      if (it->loaded.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        ++it;
        continue;
      }
      Status status = it->loaded.get();
      if (!status.ok()) status = status.WithContext("worker " + std::to_string(args_.worker));
      SendMessage(args_.fd, PreparedMessage{it->source, it->model, std::move(status)});
      it = prepares_.erase(it);
    }
  }

  void Commit(const CommitMessage& message) {
    const std::optional<size_t> slot = SlotOf(message.source);
    auto ref = ParseModelRef(message.model);
    if (!manager_ || !slot || !ref.ok()) {
      spdlog::warn("zerodet pipeline: worker {} of model {} ignores a switch it cannot apply",
                   args_.worker, args_.model.name);
      return;
    }
    current_[*slot] = std::move(ref).value();
  }

  const WorkerArgs& args_;
  DetectParams params_;
  std::unique_ptr<Detector> detector_;     // a model file
  std::unique_ptr<ModelManager> manager_;  // repository models
  std::vector<ModelRef> current_;          // per source slot (repository models)
  MessageReader control_;
  std::vector<Prepare> prepares_;
};

struct Input {
  WorkerSource source;
  std::unique_ptr<ring::RingReader> reader;  // null once the source has ended
};

// The result line of one frame (see pipeline.h); detections in the one format of
// core/detection_json.h.
// Nanoseconds from `from_ns` to `to_ns` (0 if the clock readings are out of order).
uint64_t Elapsed(int64_t from_ns, int64_t to_ns) {
  return to_ns > from_ns ? static_cast<uint64_t>(to_ns - from_ns) : 0;
}

uint64_t MsToNs(double ms) {
  return ms > 0 ? static_cast<uint64_t>(std::llround(ms * 1e6)) : 0;
}

// The frame's stage times (all 0 when the detector failed), as its line's latency_ms.
FrameTimes TimesOf(const ring::FrameInfo& info, int64_t taken_ns, int64_t done_ns,
                   const Result<DetectionResult>& result) {
  FrameTimes times;
  if (!result.ok()) return times;
  times.decode_ns = Elapsed(info.timestamp_ns, info.publish_time_ns);
  times.queue_ns = Elapsed(info.publish_time_ns, taken_ns);
  times.preprocess_ns = MsToNs(result->timing.preprocess_ms);
  times.infer_ns = MsToNs(result->timing.infer_ms);
  times.postprocess_ns = MsToNs(result->timing.postprocess_ms);
  times.total_ns = Elapsed(info.timestamp_ns, done_ns);
  return times;
}

nlohmann::ordered_json ResultJson(const WorkerArgs& args, const FrameModel* model,
                                  const Input& input, const ring::FrameInfo& info, int64_t taken_ns,
                                  int64_t done_ns, const Result<DetectionResult>& result) {
  nlohmann::ordered_json line;
  line["source"] = input.source.name;
  line["sequence"] = info.sequence;
  line["timestamp_ns"] = info.timestamp_ns;
  line["model"] = args.model.name;
  if (model != nullptr && !model->name.empty()) {
    line["repository_model"] = model->name;
    line["version"] = model->version;
  }
  line["worker"] = args.worker;
  line["width"] = info.width;
  line["height"] = info.height;
  if (!result.ok()) {
    line["error"] = result.status().ToString();
    return line;
  }
  line["detections"] = DetectionsToJson(result->detections, model->detector->spec().class_names);
  const StageTimings& t = result->timing;
  line["latency_ms"] = {{"decode", Ms(info.publish_time_ns - info.timestamp_ns)},
                        {"queue", Ms(taken_ns - info.publish_time_ns)},
                        {"preprocess", RoundTo(t.preprocess_ms, 2)},
                        {"infer", RoundTo(t.infer_ms, 2)},
                        {"postprocess", RoundTo(t.postprocess_ms, 2)},
                        {"total", Ms(done_ns - info.timestamp_ns)}};
  return line;
}

// Runs the model on a frame (held by `lease`) and writes its annotated JPEG when asked to.
Result<DetectionResult> ProcessFrame(const WorkerArgs& args, const Input& input,
                                     const ring::FrameLease& lease, FrameModel& model) {
  auto result = model.detector->Detect(lease.image());
  if (result.ok() && !args.annotated_dir.empty()) {
    // Drawn from the slot while the lease still holds it.
    char name[64];
    std::snprintf(name, sizeof(name), "-%08llu.jpg",
                  static_cast<unsigned long long>(lease.info().sequence));
    const std::filesystem::path path = std::filesystem::path(args.annotated_dir) /
                                       (input.source.name + "-" + args.model.name + name);
    const Status written = WriteAnnotatedJpeg(lease.image(), result->detections,
                                              model.detector->spec().class_names, path);
    if (!written.ok()) spdlog::warn("zerodet pipeline: {}", written.ToString());
  }
  return result;
}

}  // namespace

int RunWorker(const WorkerArgs& args) {
  auto models = WorkerModels::Create(args);
  if (!models.ok()) {
    SendMessage(args.fd, ErrorMessage{models.status().WithContext("model " + args.model.name)});
    return kExitFatal;
  }

  std::vector<Input> inputs;
  for (const WorkerSource& source : args.sources) {
    ring::ReaderOptions reader_options;
    reader_options.ring_name = source.ring_name;
    reader_options.mode = ring::ReaderMode::kWorkGroup;
    reader_options.group = args.model.name;
    auto reader = ring::RingReader::Attach(reader_options);
    Input input{source, nullptr};
    if (reader.ok()) {
      input.reader = std::move(reader).value();
    } else if (reader.status().code() != StatusCode::kNotFound) {  // not found: already ended
      SendMessage(args.fd, ErrorMessage{reader.status().WithContext("source " + source.name)});
      return kExitFatal;
    }
    inputs.push_back(std::move(input));
  }

  // One source: block on its ring. Several: look at each without waiting, then wait a little
  // on the next one in turn, so no source starves. Between frames, the supervisor's switch
  // messages are handled (at most one wait late).
  size_t turn = 0;
  for (;;) {
    const Status polled = (*models)->Poll();
    if (!polled.ok()) {
      SendMessage(args.fd, ErrorMessage{polled});
      return kExitFatal;
    }
    size_t open = 0;
    for (const Input& input : inputs) {
      if (input.reader) ++open;
    }
    if (open == 0) return 0;
    const auto wait = open == 1 ? std::chrono::milliseconds(200) : std::chrono::milliseconds(10);
    bool any = false;
    for (size_t k = 0; k < inputs.size(); ++k) {
      const size_t i = (turn + k) % inputs.size();
      Input& input = inputs[i];
      if (!input.reader) continue;
      const bool waiting_here = !any && k + 1 == inputs.size();
      auto lease =
          input.reader->Read(open == 1 || waiting_here ? wait : std::chrono::milliseconds(0));
      if (!lease.ok()) {
        if (lease.status().code() == StatusCode::kUnavailable) {
          if (input.reader->WriterClosed()) {
            input.reader.reset();  // the source ended and its ring is drained
          } else {
            // The ingest died; the supervisor restarts it and it resumes the ring.
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          }
        }
        continue;
      }
      any = true;
      const int64_t taken = MonotonicNowNs();
      const ring::FrameInfo info = lease->info();
      SendMessage(args.fd, BeginMessage{input.source.index, info.sequence});
      auto model = (*models)->Acquire(i);
      Result<DetectionResult> result = model.ok() ? ProcessFrame(args, input, *lease, *model)
                                                  : Result<DetectionResult>(model.status());
      lease->Release();
      const int64_t done = MonotonicNowNs();
      SendMessage(args.fd, ResultMessage{input.source.index, info.sequence,
                                         ToJsonLine(ResultJson(args, model.ok() ? &*model : nullptr,
                                                               input, info, taken, done, result)),
                                         !result.ok(), TimesOf(info, taken, done, result)});
    }
    turn = (turn + 1) % inputs.size();
  }
}

}  // namespace zerodet::pipeline::detail

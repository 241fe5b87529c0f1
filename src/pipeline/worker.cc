// A worker process of one model: takes frames from its sources' rings as a member of the
// model's work group and runs the detector on the pixels in shared memory (preprocessing
// writes straight into the model's input buffer; the frame itself is never copied).
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "processes.h"
#include "protocol.h"
#include "zerodet/codec/annotate.h"
#include "zerodet/core/clock.h"
#include "zerodet/core/detection.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/infer/detector.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::pipeline::detail {
namespace {

// Milliseconds with 2 decimals, for the latency fields.
double Ms(int64_t ns) {
  return RoundTo(static_cast<double>(ns) / 1e6, 2);
}

struct Input {
  WorkerSource source;
  std::unique_ptr<ring::RingReader> reader;  // null once the source has ended
};

// The result line of one frame (see pipeline.h); detections in the one format of
// core/detection_json.h.
nlohmann::ordered_json ResultJson(const WorkerArgs& args, const Detector& detector,
                                  const Input& input, const ring::FrameInfo& info, int64_t taken_ns,
                                  const Result<DetectionResult>& result) {
  nlohmann::ordered_json line;
  line["source"] = input.source.name;
  line["sequence"] = info.sequence;
  line["timestamp_ns"] = info.timestamp_ns;
  line["model"] = args.model.name;
  line["worker"] = args.worker;
  line["width"] = info.width;
  line["height"] = info.height;
  if (!result.ok()) {
    line["error"] = result.status().ToString();
    return line;
  }
  line["detections"] = DetectionsToJson(result->detections, detector.spec().class_names);
  const StageTimings& t = result->timing;
  line["latency_ms"] = {{"decode", Ms(info.publish_time_ns - info.timestamp_ns)},
                        {"queue", Ms(taken_ns - info.publish_time_ns)},
                        {"preprocess", RoundTo(t.preprocess_ms, 2)},
                        {"infer", RoundTo(t.infer_ms, 2)},
                        {"postprocess", RoundTo(t.postprocess_ms, 2)},
                        {"total", Ms(MonotonicNowNs() - info.timestamp_ns)}};
  return line;
}

}  // namespace

int RunWorker(const WorkerArgs& args) {
  DetectorOptions options;
  options.backend.intra_op_threads = args.model.threads;
  options.backend.inter_op_threads = 1;
  options.params.conf_threshold = args.model.conf;
  options.params.iou_threshold = args.model.iou;
  auto detector = Detector::Create(args.model.path, options);
  if (!detector.ok()) {
    SendMessage(args.fd, ErrorMessage{detector.status().WithContext("model " + args.model.name)});
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
  // on the next one in turn, so no source starves.
  size_t turn = 0;
  for (;;) {
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
      auto result = (*detector)->Detect(lease->image());
      if (result.ok() && !args.annotated_dir.empty()) {
        // Drawn from the slot while the lease still holds it.
        char name[64];
        std::snprintf(name, sizeof(name), "-%08llu.jpg",
                      static_cast<unsigned long long>(info.sequence));
        const std::filesystem::path path = std::filesystem::path(args.annotated_dir) /
                                           (input.source.name + "-" + args.model.name + name);
        const Status written = WriteAnnotatedJpeg(lease->image(), result->detections,
                                                  (*detector)->spec().class_names, path);
        if (!written.ok()) {
          spdlog::warn("zerodet pipeline: {}", written.ToString());
        }
      }
      lease->Release();
      SendMessage(
          args.fd,
          ResultMessage{input.source.index, info.sequence,
                        ToJsonLine(ResultJson(args, **detector, input, info, taken, result))});
    }
    turn = (turn + 1) % inputs.size();
  }
}

}  // namespace zerodet::pipeline::detail

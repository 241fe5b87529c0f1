// Pieces the detection commands share (detect, eval, bench detect): the detector flags and the
// JSON lines they print. Detections themselves are written by core/detection_json.h, the one
// format of every zerodet output.
//
// Everything here runs on the command's one thread; nothing is shared between threads.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "zerodet/codec/decode.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/core/status.h"
#include "zerodet/infer/detector.h"

namespace zerodet::cli {

// The flags that choose and configure the model, common to every detection command.
struct DetectorFlags {
  std::string model;
  std::string format = "auto";
  std::string provider = "cpu";
  int threads = 0;
  bool fast_jpeg = false;
  float conf = 0.25f;
  float iou = 0.45f;
  int max_det = 300;
  bool agnostic = false;

  // Adds the flags to `cmd`; the current member values are the defaults shown in --help.
  void AddTo(CLI::App* cmd) {
    cmd->add_option("-m,--model", model, "ONNX model file (YOLOv5/v8/v10/v11, YOLOX)")->required();
    cmd->add_option("--conf", conf, "Confidence threshold")->capture_default_str();
    cmd->add_option("--iou", iou, "NMS IoU threshold")->capture_default_str();
    cmd->add_option("--max-det", max_det, "Most detections per image")->capture_default_str();
    cmd->add_flag("--agnostic", agnostic, "Class-agnostic NMS");
    cmd->add_option("--format", format, "Output layout: auto, v8 (v11), v5, end2end (v10), yolox")
        ->capture_default_str();
    cmd->add_option("--ep,--provider", provider, "Execution provider: cpu, cuda or tensorrt")
        ->capture_default_str();
    cmd->add_option("--threads", threads,
                    "ONNX Runtime intra-op threads (0 = one per core; at most " +
                        std::to_string(kMaxBackendThreads) + ")")
        ->capture_default_str();
    cmd->add_flag("--fast-jpeg", fast_jpeg,
                  "Decode large JPEGs DCT-scaled to about the model size (faster; not "
                  "bit-identical to a full decode)");
  }

  // Errors: kInvalidArgument for an unknown format or provider, or out-of-range values.
  Result<DetectorOptions> ToOptions() const {
    DetectorOptions options;
    ZD_ASSIGN_OR_RETURN(options.format, ParseYoloFormat(format));
    ZD_ASSIGN_OR_RETURN(options.backend.provider, ParseExecutionProvider(provider));
    if (threads < 0 || threads > kMaxBackendThreads) {
      return InvalidArgumentError("--threads must be in 0.." + std::to_string(kMaxBackendThreads));
    }
    if (!(conf >= 0 && conf <= 1)) return InvalidArgumentError("--conf must be in [0, 1]");
    if (!(iou >= 0 && iou <= 1)) return InvalidArgumentError("--iou must be in [0, 1]");
    if (max_det < 1) return InvalidArgumentError("--max-det must be >= 1");
    options.backend.intra_op_threads = threads;
    options.params.conf_threshold = conf;
    options.params.iou_threshold = iou;
    options.params.max_detections = max_det;
    options.params.class_agnostic = agnostic;
    return options;
  }

  // Loads the model named by the flags. Errors as ToOptions and Detector::Create.
  Result<std::unique_ptr<Detector>> CreateDetector(int max_batch = 1) const {
    ZD_ASSIGN_OR_RETURN(DetectorOptions options, ToOptions());
    options.max_batch = max_batch;
    return Detector::Create(model, options);
  }

  // How images are decoded for `detector`: its limits, plus DCT scaling down to the model's
  // input size with --fast-jpeg.
  DecodeOptions DecodeOptionsFor(const Detector& detector) const {
    DecodeOptions options = detector.options().decode;
    if (fast_jpeg) {
      options.jpeg_scale_min_side =
          std::max(detector.spec().input_width, detector.spec().input_height);
    }
    return options;
  }
};

// Writes one JSON document as one line on stdout and flushes, so readers get it at once.
inline void PrintJsonLine(const nlohmann::ordered_json& json) {
  const std::string text = ToJsonLine(json);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

inline nlohmann::ordered_json TimingJson(const StageTimings& t) {
  return {{"decode", RoundTo(t.decode_ms, 3)},
          {"preprocess", RoundTo(t.preprocess_ms, 3)},
          {"infer", RoundTo(t.infer_ms, 3)},
          {"postprocess", RoundTo(t.postprocess_ms, 3)}};
}

// The JSON line of one detected image, as `zerodet detect` prints it.
inline nlohmann::ordered_json ImageResultJson(const std::string& image, const DetectionResult& r,
                                              const std::vector<std::string>& names) {
  return {{"image", image},
          {"width", r.width},
          {"height", r.height},
          {"detections", DetectionsToJson(r.detections, names)},
          {"timing_ms", TimingJson(r.timing)}};
}

}  // namespace zerodet::cli

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
#include <utility>
#include <vector>

#include "zerodet/codec/decode.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/core/status.h"
#include "zerodet/infer/detector.h"
#include "zerodet/models/model_manager.h"

namespace zerodet::cli {

// The detector a command runs: a model file loaded directly, or a model of a repository acquired
// through the model manager, which then lives as long as this object.
class CommandDetector {
 public:
  explicit CommandDetector(std::unique_ptr<Detector> owned) : owned_(std::move(owned)) {}
  explicit CommandDetector(OpenedModel opened) : opened_(std::move(opened)) {}

  Detector& get() { return owned_ ? *owned_ : opened_.handle.detector(); }
  Detector& operator*() { return get(); }
  Detector* operator->() { return &get(); }

 private:
  std::unique_ptr<Detector> owned_;
  OpenedModel opened_;
};

// The flags that choose and configure the model, common to every detection command.
struct DetectorFlags {
  std::string model;
  std::string repo;
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
    cmd->add_option("-m,--model", model,
                    "ONNX model file (YOLOv5/v8/v10/v11, YOLOX), or NAME[:VERSION] with --repo")
        ->required();
    cmd->add_option("--repo", repo,
                    "Model repository (REPO/<model>/<version>/model.onnx, as Triton's): --model "
                    "names a model of it, configured by its config.yaml / config.pbtxt");
    cmd->add_option("--conf", conf, "Confidence threshold")->capture_default_str();
    cmd->add_option("--iou", iou, "NMS IoU threshold")->capture_default_str();
    cmd->add_option("--max-det", max_det, "Most detections per image")->capture_default_str();
    cmd->add_flag("--agnostic", agnostic, "Class-agnostic NMS");
    model_options_.push_back(
        cmd->add_option("--format", format,
                        "Output layout: auto, v8 (v11), v5, end2end (v10), yolox")
            ->capture_default_str());
    model_options_.push_back(
        cmd->add_option("--ep,--provider", provider, "Execution provider: cpu, cuda or tensorrt")
            ->capture_default_str());
    model_options_.push_back(
        cmd->add_option("--threads", threads,
                        "ONNX Runtime intra-op threads (0 = one per core; at most " +
                            std::to_string(kMaxBackendThreads) + ")")
            ->capture_default_str());
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

  // Loads the model named by the flags: the file, or with --repo the repository's model through
  // the model manager (its config decides layout, provider, threads and batch; the thresholds
  // come from the flags). `max_batch` sizes a file model's batch; with --repo, a `max_batch`
  // above 1 must fit the model's configured batch. Errors as ToOptions, Detector::Create and
  // OpenModelFromRepository; kInvalidArgument for --format/--ep/--threads with --repo.
  Result<CommandDetector> Open(int max_batch = 1) const {
    ZD_ASSIGN_OR_RETURN(DetectorOptions options, ToOptions());
    if (repo.empty()) {
      options.max_batch = max_batch;
      ZD_ASSIGN_OR_RETURN(std::unique_ptr<Detector> detector, Detector::Create(model, options));
      return CommandDetector(std::move(detector));
    }
    for (const CLI::Option* option : model_options_) {
      if (option->count() > 0) {
        return InvalidArgumentError(option->get_name() +
                                    " configures a model file; with --repo the model's config "
                                    "sets it (config.yaml or config.pbtxt)");
      }
    }
    ZD_ASSIGN_OR_RETURN(OpenedModel opened, OpenModelFromRepository(repo, model));
    CommandDetector detector(std::move(opened));
    if (static_cast<size_t>(max_batch) > detector->batch_capacity()) {
      return InvalidArgumentError("--batch " + std::to_string(max_batch) + " is more than the " +
                                  std::to_string(detector->batch_capacity()) +
                                  " images per run model '" + model +
                                  "' is configured for (max_batch in its config)");
    }
    detector->set_params(options.params);
    return detector;
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

 private:
  // The flags that configure a model file, refused with --repo.
  std::vector<CLI::Option*> model_options_;
};

// Writes one JSON document as one line on stdout and flushes, so readers get it at once.
inline void PrintJsonLine(const nlohmann::ordered_json& json) {
  const std::string text = ToJsonLine(json);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

inline nlohmann::ordered_json TimingJson(const StageTimings& t) {
  return StageTimesToJson(t.decode_ms, t.preprocess_ms, t.infer_ms, t.postprocess_ms);
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

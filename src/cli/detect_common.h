// Pieces the detection commands share (detect, eval, bench detect): the detector flags, decoding
// an image file for a model, and the JSON shapes of detections and stage timings.
//
// Everything here runs on the command's one thread; nothing is shared between threads.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/codec/decode.h"
#include "zerodet/core/detection.h"
#include "zerodet/core/status.h"
#include "zerodet/core/stopwatch.h"
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
    cmd->add_option("--threads", threads, "ONNX Runtime intra-op threads (0 = one per core)")
        ->capture_default_str();
    cmd->add_flag("--fast-jpeg", fast_jpeg,
                  "Decode large JPEGs DCT-scaled to about the model size (faster; not "
                  "bit-identical to a full decode)");
  }

  // Errors: kInvalidArgument for an unknown format or provider, or out-of-range thresholds.
  Result<DetectorOptions> ToOptions() const {
    DetectorOptions options;
    ZD_ASSIGN_OR_RETURN(options.format, ParseYoloFormat(format));
    ZD_ASSIGN_OR_RETURN(options.backend.provider, ParseExecutionProvider(provider));
    if (threads < 0) return InvalidArgumentError("--threads must be >= 0");
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
  Result<std::unique_ptr<Detector>> CreateDetector(int max_batch = 16) const {
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

// Prints "zerodet <command>: <message>" as one line on stderr (line breaks in the message, as
// ONNX Runtime writes some, become spaces).
inline void PrintError(std::string_view command, std::string_view message) {
  std::string line(message);
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::fprintf(stderr, "zerodet %.*s: %s\n", static_cast<int>(command.size()), command.data(),
               line.c_str());
}

inline void PrintError(std::string_view command, const Status& status) {
  PrintError(command, status.ToString());
}

// Writes one JSON document as one line on stdout and flushes, so readers get it at once.
inline void PrintJsonLine(const nlohmann::ordered_json& json) {
  const std::string text =
      json.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// `value` rounded to `decimals` places, so the JSON shows 0.956 rather than 0.95600003004074.
inline double Rounded(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

inline nlohmann::ordered_json DetectionsJson(const std::vector<Detection>& detections,
                                             const std::vector<std::string>& names) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const Detection& d : detections) {
    const bool named = d.class_id >= 0 && static_cast<size_t>(d.class_id) < names.size();
    list.push_back({{"class_id", d.class_id},
                    {"class", named ? names[d.class_id] : "class" + std::to_string(d.class_id)},
                    {"score", Rounded(d.score, 4)},
                    {"box",
                     {Rounded(d.box.x1, 2), Rounded(d.box.y1, 2), Rounded(d.box.x2, 2),
                      Rounded(d.box.y2, 2)}}});
  }
  return list;
}

inline nlohmann::ordered_json TimingJson(const StageTimings& t) {
  return {{"decode", Rounded(t.decode_ms, 3)},
          {"preprocess", Rounded(t.preprocess_ms, 3)},
          {"infer", Rounded(t.infer_ms, 3)},
          {"postprocess", Rounded(t.postprocess_ms, 3)}};
}

// An image decoded for detection, with the time it took.
struct DecodedFile {
  DecodedImage decoded;
  double decode_ms = 0;
};

// Reads and decodes `path`. Errors as DecodeImageFile (they name the file).
inline Result<DecodedFile> DecodeFile(const std::filesystem::path& path,
                                      const DecodeOptions& options) {
  Stopwatch watch;
  ZD_ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImageFile(path, options));
  return DecodedFile{std::move(decoded), watch.ElapsedMs()};
}

// Detects on a decoded file; boxes in the encoded image's pixels, decode time included.
inline Result<DetectionResult> DetectDecoded(Detector& detector, const DecodedFile& file) {
  auto result = detector.Detect(file.decoded.image.view(), file.decoded.source_width,
                                file.decoded.source_height);
  if (result.ok()) result->timing.decode_ms = file.decode_ms;
  return result;
}

}  // namespace zerodet::cli

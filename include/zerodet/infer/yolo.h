// YOLO model families: recognizing a model's output layout and decoding it into detections.
//
// Layouts (per image; batch is the leading dimension):
//   kV8    Ultralytics v8/v11:  (4 + nc) x N, rows cx, cy, w, h, class scores (no objectness).
//   kV5    Ultralytics v5:      N x (5 + nc), cx, cy, w, h, objectness, class scores.
//   kEnd2End  v10 / end-to-end: N x 6, x1, y1, x2, y2, score, class (NMS already applied).
//   kYolox Megvii YOLOX:        N x (5 + nc) raw grid outputs; decoded with strides 8/16/32:
//          cx = (x + grid_x) * s, w = exp(w) * s, score = obj * cls.
// Coordinates decode into model-input pixels; the detector maps them to the source image.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "zerodet/codec/letterbox.h"
#include "zerodet/core/detection.h"
#include "zerodet/core/status.h"
#include "zerodet/core/tensor.h"
#include "zerodet/infer/backend.h"

namespace zerodet {

enum class YoloFormat { kAuto, kV8, kV5, kEnd2End, kYolox };

// "auto", "v8" (also "v11"), "v5", "v10" (also "end2end"), "yolox".
Result<YoloFormat> ParseYoloFormat(std::string_view name);
std::string_view YoloFormatName(YoloFormat format);

// Everything needed to preprocess for and decode one model, derived from its ModelInfo.
struct ModelSpec {
  YoloFormat format = YoloFormat::kV8;
  int input_width = 640;
  int input_height = 640;
  bool dynamic_batch = false;  // the input's batch dimension is dynamic
  LetterboxStyle letterbox = LetterboxStyle::kUltralytics;
  std::vector<std::string> class_names;    // from metadata "names", else COCO-80
  std::vector<int> strides = {8, 16, 32};  // YOLOX grids
};

// Chooses the layout from the output shape and metadata_props (names, imgsz, stride, end2end),
// unless `format` forces one. Errors: kInvalidArgument when the model has not exactly one image
// input (N x 3 x H x W float) or an output shape that fits no layout (message gives the shape).
Result<ModelSpec> InferModelSpec(const ModelInfo& info, YoloFormat format = YoloFormat::kAuto);

struct DetectParams {
  float conf_threshold = 0.25f;
  float iou_threshold = 0.45f;
  int max_detections = 300;
  bool class_agnostic = false;  // NMS across classes
};

// Decodes image `batch_index` of the model's output tensor into detections in model-input
// pixels, thresholded and NMS-filtered (except kEnd2End, which is only thresholded), sorted by
// descending score, at most max_detections.
// Errors: kInvalidArgument when the output shape does not fit spec.format.
Result<std::vector<Detection>> DecodeYoloOutput(const ModelSpec& spec, const TensorView& output,
                                                int batch_index, const DetectParams& params);

}  // namespace zerodet

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

// Parses class names as Ultralytics and YOLOv5 store them in metadata_props: a Python dict literal
// "{0: 'person', 1: 'bicycle'}" or list "['person', 'bicycle']" (' or " quotes, backslash
// escapes). Errors: kInvalidArgument for other text or keys that are not exactly 0..n-1.
Result<std::vector<std::string>> ParseClassNames(std::string_view text);

// Largest model input side accepted (from the input's shape, or its imgsz metadata when H and W
// are dynamic). YOLO exports run at 320..1536; this bounds what a hostile model can make the
// detector allocate per image.
inline constexpr int kMaxModelInputSide = 8192;

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

// Chooses the layout of the first output from its shape and metadata_props, unless `format`
// forces one. Rules for kAuto, in order:
//   1. metadata end2end == "True", or 6 columns in N x 6 rows (N > 6) without end2end == "False"
//      and not a single-class 'names' -> kEnd2End.
//   2. (4 + nc) x N with channels < anchors -> kV8 (anchors always outnumber channels).
//   3. N x (5 + nc) rows: kYolox when the model has no 'names' metadata and N equals the number
//      of grid cells at strides 8/16/32 (anchor-free, one row per cell); otherwise kV5 (YOLOv5
//      has 3 anchors per cell, and v5-style wrappers such as yolox-nano-v5format.onnx carry
//      'names').
//   4. Dynamic candidate dimensions: decided by the class count in 'names'.
// Input size from the input shape (metadata imgsz, else 640, for dynamic H/W). Class names from
// metadata 'names' when their count fits the output, else COCO-80 (80 classes) or "class<i>".
// Errors: kInvalidArgument when the model has not exactly one image input (N x 3 x H x W float)
// or its output fits no layout (message gives the shape), or an input side outside
// 1..kMaxModelInputSide; kUnimplemented for a metadata task
// other than "detect" (segmentation, pose, ...).
Result<ModelSpec> InferModelSpec(const ModelInfo& info, YoloFormat format = YoloFormat::kAuto);

struct DetectParams {
  float conf_threshold = 0.25f;
  float iou_threshold = 0.45f;
  int max_detections = 300;
  bool class_agnostic = false;  // NMS across classes
};

// Decodes image `batch_index` of the model's output tensor into detections in model-input
// pixels, thresholded and NMS-filtered (except kEnd2End, which is only thresholded), sorted by
// descending score, at most max_detections. Thresholds follow each family's reference code:
// v8 keeps max class score > conf; v5 obj > conf and obj * cls > conf; YOLOX obj * cls >= conf;
// end2end score > conf. Thread-safe (no shared state).
// Errors: kInvalidArgument when the output shape does not fit spec.format.
Result<std::vector<Detection>> DecodeYoloOutput(const ModelSpec& spec, const TensorView& output,
                                                int batch_index, const DetectParams& params);

}  // namespace zerodet

// Detector: decode -> letterbox -> run -> decode outputs -> NMS -> boxes in source pixels.
//
// The detector owns one Backend and one input buffer; preprocessing writes straight into that
// buffer, which is bound as the model input (no intermediate copies). Not thread-safe: use one
// Detector per worker thread (sessions share nothing, so N detectors scale across cores).
#pragma once

#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "zerodet/codec/decode.h"
#include "zerodet/codec/letterbox.h"
#include "zerodet/core/detection.h"
#include "zerodet/core/image.h"
#include "zerodet/core/status.h"
#include "zerodet/infer/backend.h"
#include "zerodet/infer/yolo.h"

namespace zerodet {

struct DetectorOptions {
  BackendOptions backend;
  YoloFormat format = YoloFormat::kAuto;  // override the detected layout
  DetectParams params;
  DecodeOptions decode;  // limits and the opt-in JPEG DCT scaling (set from the model size)
  // Most images per Run in DetectBatch when the model's batch dimension is dynamic (bounds the
  // input buffer: each image is 3 x H x W floats, 4.9 MB at 640 x 640).
  int max_batch = 16;
  // Largest input buffer (batch x 3 x H x W floats) the detector allocates. A model whose
  // static batch or image size (from its shape or its imgsz metadata) needs more is refused
  // with kResourceExhausted at Create.
  uint64_t max_input_bytes = uint64_t{1} << 30;
  // Input size for a model whose height and width are dynamic, instead of its imgsz metadata
  // (or 640). 0 and 0: the model's. A model with a static size must be asked for that size.
  int input_width = 0;
  int input_height = 0;
  // Class names instead of those in the model's metadata; empty: the model's. REQUIRES as many
  // names as the model's output has classes (checked at Create).
  std::vector<std::string> class_names;
};

// Milliseconds per stage. In DetectBatch, infer_ms is the batched Run's time divided by the number
// of images in it.
struct StageTimings {
  double decode_ms = 0;
  double preprocess_ms = 0;
  double infer_ms = 0;
  double postprocess_ms = 0;
};

// Width and height of an image in pixels.
struct ImageSize {
  int width = 0;
  int height = 0;
};

struct DetectionResult {
  int width = 0;  // source image size (before any DCT scaling)
  int height = 0;
  std::vector<Detection> detections;  // source pixels, clipped to the image, by score
  StageTimings timing;
};

class Detector {
 public:
  // Loads the model and derives its ModelSpec. Errors as CreateOnnxBackend and InferModelSpec;
  // kInvalidArgument for max_batch < 1, an input size that the model's static size or
  // kMaxModelInputSide rules out, or class names of another count than the model's classes;
  // kResourceExhausted when the input buffer would exceed options.max_input_bytes.
  static Result<std::unique_ptr<Detector>> Create(const std::filesystem::path& model_path,
                                                  const DetectorOptions& options = {});
  ~Detector();

  const ModelSpec& spec() const;
  const ModelInfo& model_info() const;
  const DetectorOptions& options() const;
  // Thresholds, NMS and the detection cap for the detections that follow (Create took them from
  // options.params): a command's flags applied to a model a repository configured.
  void set_params(const DetectParams& params);
  // The backend the detector runs, e.g. to time the bare model run next to Detect on the same
  // session. Not thread-safe, like the detector; outputs of a direct Run are invalidated by the
  // next Detect call.
  Backend& backend();

  // Reads, decodes and detects one image file. Errors name the file.
  Result<DetectionResult> DetectFile(const std::filesystem::path& path);
  // Detects on encoded bytes (JPEG/PNG/BMP); `source_name` appears in errors.
  Result<DetectionResult> DetectEncoded(std::span<const uint8_t> bytes,
                                        std::string_view source_name);
  // Detects on decoded pixels. `source_width/height` is the size boxes are reported in
  // (0 = the image's own size; set it when the image was DCT-downscaled).
  Result<DetectionResult> Detect(const ImageView& image, int source_width = 0,
                                 int source_height = 0);
  // One Run for all images (in chunks of options().max_batch) when the model has a dynamic batch
  // dimension, else one Run per model batch. Results are in the order of `images`, each identical
  // to what Detect gives for it alone. `source_sizes` is empty (boxes in each image's own pixels)
  // or holds one size per image, as source_width/height of Detect (0 = the image's own size).
  // Errors: kInvalidArgument for an empty image, or source_sizes of another length.
  Result<std::vector<DetectionResult>> DetectBatch(std::span<const ImageView> images,
                                                   std::span<const ImageSize> source_sizes = {});

  // Batched detection one image at a time, for callers that decode images one by one: Stage
  // letterboxes an image straight into slot `slot` of the model input (the caller may free the
  // image as soon as it returns), and RunStaged runs the model on slots [0, count) and decodes
  // their detections, exactly as DetectBatch would for those images. A failed RunStaged clears
  // the staged slots.
  // The number of slots: the model's static batch, or options().max_batch when dynamic.
  size_t batch_capacity() const;
  // `source` is the size boxes are reported in (0 = the image's own size). Errors:
  // kInvalidArgument for slot >= batch_capacity(), an empty image or a negative size.
  Status Stage(size_t slot, const ImageView& image, ImageSize source = {});
  // Errors: kInvalidArgument unless 1 <= count <= batch_capacity(); kFailedPrecondition when a
  // slot below count was not staged since the last run; the backend's errors.
  Result<std::vector<DetectionResult>> RunStaged(size_t count);

  // Runs on an input that is already letterboxed (3 x H x W float32 in caller memory, e.g. a
  // store object or shared-memory region): no preprocessing, no copy. `geometry` (as
  // ComputeLetterbox / Letterboxer::Run gave it for the source) maps boxes back to a source of
  // source_width x source_height; they are clipped to it.
  // REQUIRES: chw holds 3 * spec().input_height * spec().input_width floats laid out as
  // spec().letterbox prescribes. Errors: kInvalidArgument for a null input or a non-positive
  // size; kFailedPrecondition for a model whose static batch is larger than 1.
  Result<DetectionResult> DetectPreprocessed(const float* chw, const LetterboxGeometry& geometry,
                                             int source_width, int source_height);

 private:
  struct Impl;
  explicit Detector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace zerodet

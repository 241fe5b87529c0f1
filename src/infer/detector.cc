#include "zerodet/infer/detector.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <new>
#include <string>
#include <utility>

#include "zerodet/core/stopwatch.h"

namespace zerodet {
namespace {

// Maps boxes from model-input pixels to source pixels the way the reference post-processing
// does, so results match it to the pixel:
//   Ultralytics scale_boxes: gain = min(H / h, W / w), pad = round((W - w * gain) / 2 - 0.1)
//     (Python round: half to even), box = (box - pad) / gain.
//   YOLOX demo: box = box / gain (the image sits at the top-left, no padding).
// `image` is the size of the image that was letterboxed; when it was DCT-downscaled from the
// source, boxes are scaled by source / image afterwards. Boxes are clipped to the source.
void MapToSource(std::vector<Detection>& detections, LetterboxStyle style, int input_width,
                 int input_height, ImageSize image, ImageSize source) {
  const double gain = std::min(static_cast<double>(input_height) / image.height,
                               static_cast<double>(input_width) / image.width);
  double pad_x = 0;
  double pad_y = 0;
  if (style == LetterboxStyle::kUltralytics) {
    pad_x = std::nearbyint((input_width - image.width * gain) / 2 - 0.1);
    pad_y = std::nearbyint((input_height - image.height * gain) / 2 - 0.1);
  }
  const double sx = static_cast<double>(source.width) / image.width;
  const double sy = static_cast<double>(source.height) / image.height;
  const float max_x = static_cast<float>(source.width);
  const float max_y = static_cast<float>(source.height);
  auto map_x = [&](float x) {
    return std::clamp(static_cast<float>((x - pad_x) / gain * sx), 0.0f, max_x);
  };
  auto map_y = [&](float y) {
    return std::clamp(static_cast<float>((y - pad_y) / gain * sy), 0.0f, max_y);
  };
  for (Detection& d : detections) {
    d.box = Box{map_x(d.box.x1), map_y(d.box.y1), map_x(d.box.x2), map_y(d.box.y2)};
  }
}

void ClipToSource(std::vector<Detection>& detections, ImageSize source) {
  const float max_x = static_cast<float>(source.width);
  const float max_y = static_cast<float>(source.height);
  for (Detection& d : detections) {
    d.box.x1 = std::clamp(d.box.x1, 0.0f, max_x);
    d.box.x2 = std::clamp(d.box.x2, 0.0f, max_x);
    d.box.y1 = std::clamp(d.box.y1, 0.0f, max_y);
    d.box.y2 = std::clamp(d.box.y2, 0.0f, max_y);
  }
}

// Applies the input size and class names of `options` to the spec derived from the model.
Status ApplyOverrides(const ModelInfo& info, const DetectorOptions& options,
                      const std::string& model_name, ModelSpec& spec) {
  if (options.input_width != 0 || options.input_height != 0) {
    const int width = options.input_width;
    const int height = options.input_height;
    if (width < 1 || height < 1 || width > kMaxModelInputSide || height > kMaxModelInputSide) {
      return InvalidArgumentError(fmt::format("{}: input size {}x{} is outside 1..{}", model_name,
                                              width, height, kMaxModelInputSide));
    }
    const std::vector<int64_t>& shape = info.inputs[0].shape;
    if ((shape[2] > 0 && shape[2] != height) || (shape[3] > 0 && shape[3] != width)) {
      return InvalidArgumentError(
          fmt::format("{}: the model's input is {}x{} (static), so it cannot run at {}x{}",
                      model_name, shape[3], shape[2], width, height));
    }
    spec.input_width = width;
    spec.input_height = height;
  }
  if (!options.class_names.empty()) {
    // An end-to-end output carries class ids without a class count to check against.
    if (spec.format != YoloFormat::kEnd2End &&
        options.class_names.size() != spec.class_names.size()) {
      return InvalidArgumentError(
          fmt::format("{}: {} class names given, but the model has {} classes", model_name,
                      options.class_names.size(), spec.class_names.size()));
    }
    spec.class_names = options.class_names;
  }
  return Status::Ok();
}

}  // namespace

struct Detector::Impl {
  DetectorOptions options;
  std::unique_ptr<Backend> backend;
  ModelSpec spec;
  std::string model_name;
  // The batch dimension the model requires (1 for the usual exports), or -1 when dynamic.
  int64_t static_batch = 1;
  Letterboxer letterboxer;
  // The model input, batch x 3 x H x W. Preprocessing writes here; it is bound to the session as
  // is, so nothing copies it again.
  std::vector<float> input;

  size_t PlaneFloats() const {
    return 3 * static_cast<size_t>(spec.input_width) * static_cast<size_t>(spec.input_height);
  }

  // Images per Run: the static batch, or up to options.max_batch when dynamic.
  size_t BatchCapacity() const {
    return static_batch > 0 ? static_cast<size_t>(static_batch)
                            : static_cast<size_t>(std::max(1, options.max_batch));
  }

  // What Stage recorded about the image in each slot of the next Run.
  struct StagedImage {
    bool staged = false;
    ImageSize image;   // the letterboxed pixels' size
    ImageSize source;  // the size boxes are reported in
    double preprocess_ms = 0;
  };
  std::vector<StagedImage> staged;

  Result<std::vector<TensorView>> RunInput(const float* data, int64_t batch) {
    const ConstTensorView view{
        data, DType::kFloat32, {batch, 3, spec.input_height, spec.input_width}};
    auto outputs = backend->Run(std::span<const ConstTensorView>(&view, 1));
    if (!outputs.ok()) return outputs.status();
    if (outputs->empty()) return InternalError(model_name + ": the model produced no outputs");
    return outputs;
  }

  Status Stage(size_t slot, const ImageView& image, ImageSize source) {
    if (slot >= BatchCapacity()) {
      return InvalidArgumentError(model_name + ": slot " + std::to_string(slot) +
                                  " is beyond the batch of " + std::to_string(BatchCapacity()));
    }
    if (image.empty()) return InvalidArgumentError(model_name + ": empty image");
    if (source.width < 0 || source.height < 0) {
      return InvalidArgumentError(model_name + ": source size must be >= 0 (0 = the image's own)");
    }
    Stopwatch watch;
    const size_t plane = PlaneFloats();
    auto geometry = letterboxer.Run(image, spec.letterbox, spec.input_width, spec.input_height,
                                    input.data() + slot * plane, plane);
    if (!geometry.ok()) return geometry.status().WithContext(model_name + ": preprocessing");
    StagedImage& s = staged[slot];
    s.staged = true;
    s.image = ImageSize{image.width, image.height};
    s.source = ImageSize{source.width > 0 ? source.width : image.width,
                         source.height > 0 ? source.height : image.height};
    s.preprocess_ms = watch.ElapsedMs();
    return Status::Ok();
  }

  Result<std::vector<DetectionResult>> RunStaged(size_t n) {
    if (n == 0 || n > BatchCapacity()) {
      return InvalidArgumentError(model_name + ": cannot run " + std::to_string(n) +
                                  " images in a batch of " + std::to_string(BatchCapacity()));
    }
    for (size_t i = 0; i < n; ++i) {
      if (!staged[i].staged) {
        return FailedPreconditionError(model_name + ": slot " + std::to_string(i) +
                                       " was not staged since the last run");
      }
    }
    const int64_t batch = static_batch > 0 ? static_batch : static_cast<int64_t>(n);
    const size_t plane = PlaneFloats();
    // A static batch larger than the number of images: the unused slots get a blank input.
    std::fill(input.begin() + static_cast<ptrdiff_t>(n * plane),
              input.begin() + static_cast<ptrdiff_t>(static_cast<size_t>(batch) * plane), 0.0f);

    Stopwatch watch;
    auto outputs = RunInput(input.data(), batch);
    for (StagedImage& s : staged) s.staged = false;
    if (!outputs.ok()) return outputs.status();
    const double infer_ms = watch.ElapsedMs() / static_cast<double>(n);

    std::vector<DetectionResult> results(n);
    for (size_t i = 0; i < n; ++i) {
      watch.Reset();
      auto detections = DecodeYoloOutput(spec, (*outputs)[0], static_cast<int>(i), options.params);
      if (!detections.ok()) return detections.status().WithContext(model_name);
      MapToSource(*detections, spec.letterbox, spec.input_width, spec.input_height, staged[i].image,
                  staged[i].source);
      results[i].width = staged[i].source.width;
      results[i].height = staged[i].source.height;
      results[i].detections = std::move(detections).value();
      results[i].timing.preprocess_ms = staged[i].preprocess_ms;
      results[i].timing.infer_ms = infer_ms;
      results[i].timing.postprocess_ms = watch.ElapsedMs();
    }
    return results;
  }

  // Letterboxes, runs and decodes up to BatchCapacity() images in one Run.
  Result<std::vector<DetectionResult>> DetectChunk(std::span<const ImageView> images,
                                                   std::span<const ImageSize> sources) {
    for (size_t i = 0; i < images.size(); ++i) {
      Status status = Stage(i, images[i], sources[i]);
      if (!status.ok()) return status.WithContext("image " + std::to_string(i));
    }
    return RunStaged(images.size());
  }
};

Detector::Detector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Detector::~Detector() = default;

Result<std::unique_ptr<Detector>> Detector::Create(const std::filesystem::path& model_path,
                                                   const DetectorOptions& options) {
  if (options.max_batch < 1) {
    return InvalidArgumentError("max_batch must be >= 1, got " + std::to_string(options.max_batch));
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->model_name = model_path.filename().string();
  ZD_ASSIGN_OR_RETURN(impl->backend, CreateOnnxBackend(model_path, options.backend));
  ZD_ASSIGN_OR_RETURN(impl->spec, InferModelSpec(impl->backend->info(), options.format));
  ZD_RETURN_IF_ERROR(ApplyOverrides(impl->backend->info(), options, impl->model_name, impl->spec));
  const int64_t batch_dim = impl->backend->info().inputs[0].shape[0];
  impl->static_batch = batch_dim > 0 ? batch_dim : -1;
  // The input buffer's size comes from the model (a static batch, or imgsz metadata for dynamic
  // H/W) and from max_batch: a hostile model must not make it unbounded.
  const uint64_t plane_bytes = impl->PlaneFloats() * sizeof(float);
  const uint64_t batch = impl->static_batch > 0 ? static_cast<uint64_t>(impl->static_batch)
                                                : static_cast<uint64_t>(options.max_batch);
  if (batch > options.max_input_bytes / plane_bytes) {
    const std::string why = impl->static_batch > 0 ? std::string("the model's static batch")
                                                   : fmt::format("max_batch {}", options.max_batch);
    return ResourceExhaustedError(fmt::format(
        "{}: an input batch of {} x 3 x {} x {} floats ({}) is larger than the limit of {} "
        "bytes (DetectorOptions::max_input_bytes)",
        impl->model_name, batch, impl->spec.input_height, impl->spec.input_width, why,
        options.max_input_bytes));
  }
  try {
    impl->input.resize(impl->BatchCapacity() * impl->PlaneFloats());
    impl->staged.resize(impl->BatchCapacity());
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(impl->model_name + ": out of memory for the input buffer of " +
                                  std::to_string(batch * plane_bytes) + " bytes");
  }
  return std::unique_ptr<Detector>(new Detector(std::move(impl)));
}

size_t Detector::batch_capacity() const {
  return impl_->BatchCapacity();
}

Status Detector::Stage(size_t slot, const ImageView& image, ImageSize source) {
  return impl_->Stage(slot, image, source);
}

Result<std::vector<DetectionResult>> Detector::RunStaged(size_t count) {
  return impl_->RunStaged(count);
}

const ModelSpec& Detector::spec() const {
  return impl_->spec;
}
const ModelInfo& Detector::model_info() const {
  return impl_->backend->info();
}
const DetectorOptions& Detector::options() const {
  return impl_->options;
}
void Detector::set_params(const DetectParams& params) {
  impl_->options.params = params;
}
Backend& Detector::backend() {
  return *impl_->backend;
}

Result<DetectionResult> Detector::DetectFile(const std::filesystem::path& path) {
  Stopwatch watch;
  ZD_ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImageFile(path, impl_->options.decode));
  const double decode_ms = watch.ElapsedMs();
  auto result = Detect(decoded.image.view(), decoded.source_width, decoded.source_height);
  if (!result.ok()) return result.status().WithContext(path.string());
  result->timing.decode_ms = decode_ms;
  return result;
}

Result<DetectionResult> Detector::DetectEncoded(std::span<const uint8_t> bytes,
                                                std::string_view source_name) {
  Stopwatch watch;
  ZD_ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImage(bytes, source_name, impl_->options.decode));
  const double decode_ms = watch.ElapsedMs();
  auto result = Detect(decoded.image.view(), decoded.source_width, decoded.source_height);
  if (!result.ok()) return result.status().WithContext(std::string(source_name));
  result->timing.decode_ms = decode_ms;
  return result;
}

Result<DetectionResult> Detector::Detect(const ImageView& image, int source_width,
                                         int source_height) {
  if (image.empty()) return InvalidArgumentError(impl_->model_name + ": empty image");
  if (source_width < 0 || source_height < 0) {
    return InvalidArgumentError("source size must be >= 0 (0 = the image's own size)");
  }
  const ImageSize source{source_width > 0 ? source_width : image.width,
                         source_height > 0 ? source_height : image.height};
  ZD_ASSIGN_OR_RETURN(std::vector<DetectionResult> results,
                      impl_->DetectChunk(std::span<const ImageView>(&image, 1),
                                         std::span<const ImageSize>(&source, 1)));
  return std::move(results[0]);
}

Result<std::vector<DetectionResult>> Detector::DetectBatch(
    std::span<const ImageView> images, std::span<const ImageSize> source_sizes) {
  if (!source_sizes.empty() && source_sizes.size() != images.size()) {
    return InvalidArgumentError(impl_->model_name + ": " + std::to_string(source_sizes.size()) +
                                " source sizes for " + std::to_string(images.size()) + " images");
  }
  std::vector<ImageSize> sources;
  for (size_t i = 0; i < images.size(); ++i) {
    if (images[i].empty()) {
      return InvalidArgumentError(impl_->model_name + ": image " + std::to_string(i) +
                                  " of the batch is empty");
    }
    ImageSize size{images[i].width, images[i].height};
    if (!source_sizes.empty()) {
      if (source_sizes[i].width < 0 || source_sizes[i].height < 0) {
        return InvalidArgumentError(impl_->model_name + ": source size of image " +
                                    std::to_string(i) + " is negative");
      }
      if (source_sizes[i].width > 0) size.width = source_sizes[i].width;
      if (source_sizes[i].height > 0) size.height = source_sizes[i].height;
    }
    sources.push_back(size);
  }
  std::vector<DetectionResult> results;
  results.reserve(images.size());
  const size_t capacity = impl_->BatchCapacity();
  for (size_t start = 0; start < images.size(); start += capacity) {
    const size_t count = std::min(capacity, images.size() - start);
    ZD_ASSIGN_OR_RETURN(
        std::vector<DetectionResult> chunk,
        impl_->DetectChunk(images.subspan(start, count),
                           std::span<const ImageSize>(sources).subspan(start, count)));
    for (auto& r : chunk) results.push_back(std::move(r));
  }
  return results;
}

Result<DetectionResult> Detector::DetectPreprocessed(const float* chw,
                                                     const LetterboxGeometry& geometry,
                                                     int source_width, int source_height) {
  if (chw == nullptr) return InvalidArgumentError(impl_->model_name + ": null input");
  if (source_width <= 0 || source_height <= 0) {
    return InvalidArgumentError(impl_->model_name + ": source size must be positive, got " +
                                std::to_string(source_width) + "x" + std::to_string(source_height));
  }
  if (impl_->static_batch > 1) {
    return FailedPreconditionError(impl_->model_name + ": the model needs a batch of " +
                                   std::to_string(impl_->static_batch) +
                                   " inputs; DetectPreprocessed binds exactly one");
  }
  DetectionResult result;
  result.width = source_width;
  result.height = source_height;
  Stopwatch watch;
  // The caller's buffer is bound as the model input directly; ONNX Runtime only reads it.
  ZD_ASSIGN_OR_RETURN(std::vector<TensorView> outputs, impl_->RunInput(chw, 1));
  result.timing.infer_ms = watch.LapMs();
  auto detections = DecodeYoloOutput(impl_->spec, outputs[0], 0, impl_->options.params);
  if (!detections.ok()) return detections.status().WithContext(impl_->model_name);
  for (Detection& d : *detections) d.box = geometry.ToSource(d.box);
  ClipToSource(*detections, ImageSize{source_width, source_height});
  result.detections = std::move(detections).value();
  result.timing.postprocess_ms = watch.ElapsedMs();
  return result;
}

}  // namespace zerodet

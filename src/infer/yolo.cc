// YOLO layouts: recognition from ModelInfo and decoding of output tensors.
//
// Thresholds follow each family's reference post-processing so results match it:
//   v8/v11  (Ultralytics non_max_suppression): keep max class score > conf.
//   v5      (YOLOv5 non_max_suppression): keep obj > conf, then obj * max cls > conf.
//   YOLOX   (yolox.utils.postprocess): keep obj * max cls >= conf.
//   end2end (Ultralytics, NMS inside the model): keep score > conf.
#include "zerodet/infer/yolo.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "zerodet/infer/nms.h"

namespace zerodet {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

const std::string* FindMetadata(const ModelInfo& info, const std::string& key) {
  auto it = info.metadata.find(key);
  return it == info.metadata.end() ? nullptr : &it->second;
}

// Parses "[640, 640]" (height, width) or "640" into height and width.
bool ParseImageSize(std::string_view text, int& height, int& width) {
  std::vector<int> values;
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    if (std::isdigit(static_cast<unsigned char>(*p))) {
      int v = 0;
      auto [next, ec] = std::from_chars(p, end, v);
      if (ec != std::errc()) return false;
      values.push_back(v);
      p = next;
    } else {
      ++p;
    }
  }
  if (values.size() == 1) values.push_back(values[0]);
  if (values.size() != 2 || values[0] <= 0 || values[1] <= 0) return false;
  height = values[0];
  width = values[1];
  return true;
}

int SumGridCells(int height, int width, const std::vector<int>& strides) {
  int cells = 0;
  for (int s : strides) cells += (height / s) * (width / s);
  return cells;
}

std::vector<std::string> DefaultNames(int num_classes) {
  if (num_classes < 0 || num_classes == 80) return Coco80Names();
  std::vector<std::string> names;
  for (int i = 0; i < num_classes; ++i) names.push_back("class" + std::to_string(i));
  return names;
}

std::string LayoutHelp() {
  return "expected v8/v11 1x(4+nc)xN, v5 or YOLOX 1xNx(5+nc), or end-to-end 1xNx6; pass a "
         "format (v8, v5, v10, yolox) to force one";
}

// The row-layout families need at least box, objectness and one class.
Status CheckShapeFits(YoloFormat format, int64_t d1, int64_t d2, const std::string& where) {
  bool fits = true;
  switch (format) {
    case YoloFormat::kV8:
      fits = d1 < 0 || d1 >= 5;
      break;
    case YoloFormat::kV5:
    case YoloFormat::kYolox:
    case YoloFormat::kEnd2End:
      fits = d2 < 0 || d2 >= 6;
      break;
    case YoloFormat::kAuto:
      break;
  }
  if (fits) return Status::Ok();
  return InvalidArgumentError(where + " does not fit the " + std::string(YoloFormatName(format)) +
                              " layout (" + LayoutHelp() + ")");
}

Status CheckOutput(const ModelSpec& spec, const TensorView& output, int batch_index,
                   int64_t min_cols) {
  if (output.dtype != DType::kFloat32) {
    return InvalidArgumentError("YOLO output must be FP32, got " +
                                std::string(DTypeName(output.dtype)));
  }
  if (output.shape.size() != 3 || output.data == nullptr) {
    return InvalidArgumentError("YOLO output must be a rank-3 tensor, got shape " +
                                ShapeToString(output.shape));
  }
  if (batch_index < 0 || batch_index >= output.shape[0]) {
    return InvalidArgumentError("batch index " + std::to_string(batch_index) +
                                " out of range for output shape " + ShapeToString(output.shape));
  }
  const int64_t cols = spec.format == YoloFormat::kV8 ? output.shape[1] : output.shape[2];
  if (cols < min_cols) {
    return InvalidArgumentError("output shape " + ShapeToString(output.shape) +
                                " does not fit the " + std::string(YoloFormatName(spec.format)) +
                                " layout (" + LayoutHelp() + ")");
  }
  return Status::Ok();
}

Box FromCenter(float cx, float cy, float w, float h) {
  return Box{cx - w * 0.5f, cy - h * 0.5f, cx + w * 0.5f, cy + h * 0.5f};
}

// v8/v11: channels-first (4 + nc) x N. Reading candidate by candidate would stride N floats per
// class; instead the class rows are scanned in order, keeping a running max per candidate, so
// every read is sequential (and the inner loop vectorizes).
std::vector<Detection> CandidatesV8(const float* base, int64_t channels, int64_t count,
                                    float conf) {
  const auto nc = static_cast<size_t>(channels - 4);
  const auto n = static_cast<size_t>(count);
  std::vector<float> best(base + 4 * n, base + 5 * n);
  std::vector<int32_t> best_class(n, 0);
  for (size_t c = 1; c < nc; ++c) {
    const float* row = base + (4 + c) * n;
    for (size_t i = 0; i < n; ++i) {
      const bool higher = row[i] > best[i];
      best[i] = higher ? row[i] : best[i];
      best_class[i] = higher ? static_cast<int32_t>(c) : best_class[i];
    }
  }
  std::vector<Detection> out;
  for (size_t i = 0; i < n; ++i) {
    if (!(best[i] > conf)) continue;
    out.push_back(Detection{best_class[i], best[i],
                            FromCenter(base[i], base[n + i], base[2 * n + i], base[3 * n + i])});
  }
  return out;
}

// v5: rows of cx, cy, w, h, obj, nc class scores.
std::vector<Detection> CandidatesV5(const float* base, int64_t rows, int64_t cols, float conf) {
  const int64_t nc = cols - 5;
  std::vector<Detection> out;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = base + r * cols;
    const float obj = row[4];
    if (!(obj > conf)) continue;
    const float* cls = row + 5;
    const int64_t best = std::max_element(cls, cls + nc) - cls;
    const float score = obj * cls[best];
    if (!(score > conf)) continue;
    out.push_back(
        Detection{static_cast<int>(best), score, FromCenter(row[0], row[1], row[2], row[3])});
  }
  return out;
}

// YOLOX raw heads: rows in grid order (stride 8 cells row-major, then 16, then 32).
std::vector<Detection> CandidatesYolox(const ModelSpec& spec, const float* base, int64_t cols,
                                       float conf) {
  const int64_t nc = cols - 5;
  std::vector<Detection> out;
  const float* row = base;
  for (int stride : spec.strides) {
    const int grid_h = spec.input_height / stride;
    const int grid_w = spec.input_width / stride;
    const float s = static_cast<float>(stride);
    for (int gy = 0; gy < grid_h; ++gy) {
      for (int gx = 0; gx < grid_w; ++gx, row += cols) {
        const float* cls = row + 5;
        const int64_t best = std::max_element(cls, cls + nc) - cls;
        const float score = row[4] * cls[best];
        if (!(score >= conf)) continue;
        const float cx = (row[0] + static_cast<float>(gx)) * s;
        const float cy = (row[1] + static_cast<float>(gy)) * s;
        const float w = std::exp(row[2]) * s;
        const float h = std::exp(row[3]) * s;
        out.push_back(Detection{static_cast<int>(best), score, FromCenter(cx, cy, w, h)});
      }
    }
  }
  return out;
}

}  // namespace

Result<YoloFormat> ParseYoloFormat(std::string_view name) {
  const std::string n = Lower(name);
  if (n == "auto") return YoloFormat::kAuto;
  if (n == "v8" || n == "v11" || n == "yolov8" || n == "yolo11") return YoloFormat::kV8;
  if (n == "v5" || n == "yolov5") return YoloFormat::kV5;
  if (n == "v10" || n == "yolov10" || n == "end2end" || n == "e2e") return YoloFormat::kEnd2End;
  if (n == "yolox") return YoloFormat::kYolox;
  return InvalidArgumentError("unknown YOLO format '" + std::string(name) +
                              "' (expected auto, v8, v11, v5, v10, end2end or yolox)");
}

std::string_view YoloFormatName(YoloFormat format) {
  switch (format) {
    case YoloFormat::kAuto:
      return "auto";
    case YoloFormat::kV8:
      return "v8";
    case YoloFormat::kV5:
      return "v5";
    case YoloFormat::kEnd2End:
      return "end2end";
    case YoloFormat::kYolox:
      return "yolox";
  }
  return "unknown";
}

Result<std::vector<std::string>> ParseClassNames(std::string_view text) {
  // Python literal of a dict {0: 'person', 1: "o'clock"} or a list ['person', ...], as
  // Ultralytics and YOLOv5 write it. Strings use ' or " quotes with backslash escapes.
  std::vector<std::pair<int, std::string>> entries;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  };
  auto fail = [&](const std::string& why) {
    return InvalidArgumentError("cannot parse class names (" + why + " at offset " +
                                std::to_string(i) + ")");
  };
  skip_space();
  if (i >= text.size() || (text[i] != '{' && text[i] != '[')) return fail("expected { or [");
  const bool is_dict = text[i] == '{';
  const char close = is_dict ? '}' : ']';
  ++i;
  int next_index = 0;
  while (true) {
    skip_space();
    if (i < text.size() && text[i] == close) break;
    int index = next_index;
    if (is_dict) {
      auto [p, ec] = std::from_chars(text.data() + i, text.data() + text.size(), index);
      if (ec != std::errc()) return fail("expected an integer key");
      i = static_cast<size_t>(p - text.data());
      skip_space();
      if (i >= text.size() || text[i] != ':') return fail("expected ':'");
      ++i;
      skip_space();
    }
    if (i >= text.size() || (text[i] != '\'' && text[i] != '"')) return fail("expected a string");
    const char quote = text[i++];
    std::string name;
    while (i < text.size() && text[i] != quote) {
      if (text[i] == '\\' && i + 1 < text.size()) ++i;
      name += text[i++];
    }
    if (i >= text.size()) return fail("unterminated string");
    ++i;
    entries.emplace_back(index, std::move(name));
    next_index = index + 1;
    skip_space();
    if (i < text.size() && text[i] == ',') {
      ++i;
      continue;
    }
    if (i < text.size() && text[i] == close) break;
    return fail("expected ',' or closing bracket");
  }
  std::vector<std::string> names(entries.size());
  for (auto& [index, name] : entries) {
    const auto slot = static_cast<size_t>(index);
    if (index < 0 || slot >= entries.size() || !names[slot].empty()) {
      return InvalidArgumentError("cannot parse class names: keys must be 0..n-1, each once");
    }
    names[slot] = std::move(name);
  }
  return names;
}

Result<ModelSpec> InferModelSpec(const ModelInfo& info, YoloFormat format) {
  const std::string model = info.path.filename().string();
  if (info.inputs.size() != 1) {
    return InvalidArgumentError(model + ": has " + std::to_string(info.inputs.size()) +
                                " inputs; a detector needs exactly one image input (N x 3 x H "
                                "x W float)");
  }
  const TensorInfo& input = info.inputs[0];
  if (input.dtype != DType::kFloat32 || input.shape.size() != 4 ||
      (input.shape[1] != 3 && input.shape[1] != -1)) {
    return InvalidArgumentError(
        model + ": input '" + input.name + "' is " + std::string(DTypeName(input.dtype)) + " " +
        ShapeToString(input.shape) + "; a detector needs an N x 3 x H x W FP32 image input");
  }
  if (const std::string* task = FindMetadata(info, "task"); task && *task != "detect") {
    return UnimplementedError(model + ": is a '" + *task +
                              "' model; only detection models (task 'detect') are supported");
  }
  if (info.outputs.empty()) return InvalidArgumentError(model + ": has no outputs");

  ModelSpec spec;
  spec.dynamic_batch = input.shape[0] < 0;
  int meta_h = 0;
  int meta_w = 0;
  const std::string* imgsz = FindMetadata(info, "imgsz");
  const bool has_imgsz = imgsz && ParseImageSize(*imgsz, meta_h, meta_w);
  spec.input_height =
      input.shape[2] > 0 ? static_cast<int>(input.shape[2]) : (has_imgsz ? meta_h : 640);
  spec.input_width =
      input.shape[3] > 0 ? static_cast<int>(input.shape[3]) : (has_imgsz ? meta_w : 640);
  if (input.shape[2] > kMaxModelInputSide || input.shape[3] > kMaxModelInputSide ||
      spec.input_height < 1 || spec.input_height > kMaxModelInputSide || spec.input_width < 1 ||
      spec.input_width > kMaxModelInputSide) {
    const bool from_metadata = input.shape[2] <= 0 || input.shape[3] <= 0;
    return InvalidArgumentError(
        fmt::format("{}: input size {}x{}{} is outside 1..{} pixels per side", model,
                    input.shape[2] > 0 ? input.shape[2] : spec.input_height,
                    input.shape[3] > 0 ? input.shape[3] : spec.input_width,
                    from_metadata ? " (from the imgsz metadata)" : "", kMaxModelInputSide));
  }

  std::vector<std::string> meta_names;
  const std::string* names_text = FindMetadata(info, "names");
  if (names_text) {
    auto parsed = ParseClassNames(*names_text);
    if (parsed.ok()) {
      meta_names = std::move(parsed).value();
    } else {
      spdlog::warn("{}: ignoring metadata 'names': {}", model, parsed.status().message());
    }
  }
  const int meta_nc = meta_names.empty() ? -1 : static_cast<int>(meta_names.size());

  const TensorInfo& output = info.outputs[0];
  const std::string where =
      model + ": output '" + output.name + "' of shape " + ShapeToString(output.shape);
  if (output.shape.size() != 3) {
    return InvalidArgumentError(where + " fits no YOLO layout (" + LayoutHelp() + ")");
  }
  const int64_t d1 = output.shape[1];
  const int64_t d2 = output.shape[2];

  if (format == YoloFormat::kAuto) {
    const std::string* end2end = FindMetadata(info, "end2end");
    const bool meta_e2e = end2end && Lower(*end2end) == "true";
    const bool meta_not_e2e = end2end && Lower(*end2end) == "false";
    const int cells = SumGridCells(spec.input_height, spec.input_width, spec.strides);
    if (meta_e2e || (d2 == 6 && d1 > d2 && !meta_not_e2e && meta_nc != 1)) {
      // A 6-column row layout is the end-to-end one unless metadata says otherwise (a
      // single-class v5 model also has 6 columns: force v5 for it).
      format = YoloFormat::kEnd2End;
    } else if (d1 > 0 && d2 > 0) {
      // Anchors always outnumber channels, so the larger dimension is the candidate axis.
      if (d1 < d2) {
        format = YoloFormat::kV8;
      } else if (!names_text && d1 == cells) {
        // YOLOX vs v5 rows: both are N x (5 + nc). YOLOX is anchor-free with exactly one row
        // per grid cell at strides 8/16/32 and its exports carry no metadata; YOLOv5 has 3
        // anchors per cell (N = 3 x cells) and Ultralytics/YOLOv5 exports (and wrappers of
        // YOLOX into the v5 layout, like yolox-nano-v5format.onnx) write 'names'.
        format = YoloFormat::kYolox;
      } else {
        format = YoloFormat::kV5;
      }
    } else if (meta_nc > 0 && d1 == 4 + meta_nc) {
      format = YoloFormat::kV8;
    } else if (meta_nc > 0 && d2 == 5 + meta_nc) {
      format = YoloFormat::kV5;
    } else {
      return InvalidArgumentError(where +
                                  " has dynamic dimensions and no class count in "
                                  "its metadata to tell the layout (" +
                                  LayoutHelp() + ")");
    }
    if (format != YoloFormat::kEnd2End && d1 > 0 && d2 > 0 &&
        (std::min(d1, d2) < (format == YoloFormat::kV8 ? 5 : 6))) {
      return InvalidArgumentError(where + " fits no YOLO layout (" + LayoutHelp() + ")");
    }
  }
  ZD_RETURN_IF_ERROR(CheckShapeFits(format, d1, d2, where));
  spec.format = format;

  int nc = -1;
  switch (format) {
    case YoloFormat::kV8:
      nc = d1 > 0 ? static_cast<int>(d1 - 4) : -1;
      break;
    case YoloFormat::kV5:
    case YoloFormat::kYolox:
      nc = d2 > 0 ? static_cast<int>(d2 - 5) : -1;
      break;
    default:
      break;
  }
  if (format == YoloFormat::kYolox) {
    spec.letterbox = LetterboxStyle::kYolox;
    const int cells = SumGridCells(spec.input_height, spec.input_width, spec.strides);
    if (d1 > 0 && d1 != cells) {
      return InvalidArgumentError(where + " does not match YOLOX grids for a " +
                                  std::to_string(spec.input_width) + "x" +
                                  std::to_string(spec.input_height) + " input (expected " +
                                  std::to_string(cells) + " rows for strides 8/16/32)");
    }
  }
  if (!meta_names.empty() && (nc < 0 || meta_nc == nc)) {
    spec.class_names = std::move(meta_names);
  } else {
    if (!meta_names.empty()) {
      spdlog::warn("{}: metadata names {} classes but the output has {}; using default names",
                   model, meta_nc, nc);
    }
    spec.class_names = DefaultNames(nc);
  }
  return spec;
}

Result<std::vector<Detection>> DecodeYoloOutput(const ModelSpec& spec, const TensorView& output,
                                                int batch_index, const DetectParams& params) {
  const float conf = params.conf_threshold;
  std::vector<Detection> candidates;
  switch (spec.format) {
    case YoloFormat::kV8: {
      ZD_RETURN_IF_ERROR(CheckOutput(spec, output, batch_index, 5));
      const int64_t channels = output.shape[1];
      const int64_t n = output.shape[2];
      candidates = CandidatesV8(output.f32() + batch_index * channels * n, channels, n, conf);
      break;
    }
    case YoloFormat::kV5:
    case YoloFormat::kYolox: {
      ZD_RETURN_IF_ERROR(CheckOutput(spec, output, batch_index, 6));
      const int64_t rows = output.shape[1];
      const int64_t cols = output.shape[2];
      const float* base = output.f32() + batch_index * rows * cols;
      if (spec.format == YoloFormat::kV5) {
        candidates = CandidatesV5(base, rows, cols, conf);
      } else {
        const int cells = SumGridCells(spec.input_height, spec.input_width, spec.strides);
        if (rows != cells) {
          return InvalidArgumentError(
              "YOLOX output " + ShapeToString(output.shape) + " has " + std::to_string(rows) +
              " rows; the grids of a " + std::to_string(spec.input_width) + "x" +
              std::to_string(spec.input_height) + " input have " + std::to_string(cells));
        }
        candidates = CandidatesYolox(spec, base, cols, conf);
      }
      break;
    }
    case YoloFormat::kEnd2End: {
      ZD_RETURN_IF_ERROR(CheckOutput(spec, output, batch_index, 6));
      const int64_t rows = output.shape[1];
      const int64_t cols = output.shape[2];
      const float* base = output.f32() + batch_index * rows * cols;
      std::vector<Detection> kept;
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = base + r * cols;
        if (!(row[4] > conf)) continue;
        kept.push_back(Detection{static_cast<int>(std::lround(row[5])), row[4],
                                 Box{row[0], row[1], row[2], row[3]}});
      }
      // Already suppressed inside the model: only order and cap.
      std::stable_sort(kept.begin(), kept.end(),
                       [](const Detection& a, const Detection& b) { return a.score > b.score; });
      if (params.max_detections >= 0 && kept.size() > static_cast<size_t>(params.max_detections)) {
        kept.resize(static_cast<size_t>(params.max_detections));
      }
      return kept;
    }
    case YoloFormat::kAuto:
      return InvalidArgumentError("DecodeYoloOutput needs a resolved format (from InferModelSpec)");
  }
  return NonMaxSuppression(std::move(candidates), params.iou_threshold, params.max_detections,
                           params.class_agnostic);
}

}  // namespace zerodet

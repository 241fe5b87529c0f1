#include "zerodet/codec/letterbox.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

namespace zerodet {
namespace {

constexpr uint8_t kPadValue = 114;

// Python's round(): halves go to the even neighbour (nearbyint in the default rounding mode).
int RoundHalfEven(double value) {
  return static_cast<int>(std::nearbyint(value));
}

// Value of each 8-bit level in the model input: Ultralytics divides by 255 in float32, YOLOX
// keeps 0..255. A table is exact (same float as the division) and cheaper per element.
std::array<float, 256> ValueTable(LetterboxStyle style) {
  std::array<float, 256> table{};
  for (int v = 0; v < 256; ++v) {
    table[size_t(v)] =
        style == LetterboxStyle::kUltralytics ? static_cast<float>(v) / 255.0f : float(v);
  }
  return table;
}

// Source channel feeding each output plane.
std::array<int, 3> PlaneChannels(PixelFormat format, LetterboxStyle style) {
  const bool want_rgb = style == LetterboxStyle::kUltralytics;
  switch (format) {
    case PixelFormat::kGray8:
      return {0, 0, 0};
    case PixelFormat::kBGR8:
      return want_rgb ? std::array<int, 3>{2, 1, 0} : std::array<int, 3>{0, 1, 2};
    case PixelFormat::kRGB8:
    case PixelFormat::kRGBA8:
      break;
  }
  return want_rgb ? std::array<int, 3>{0, 1, 2} : std::array<int, 3>{2, 1, 0};
}

// Writes one output row of all three planes: pad, resized pixels, pad.
template <int kChannels>
void WriteRow(const uint8_t* src, int left, int width, int dst_width,
              const std::array<int, 3>& channels, const std::array<float, 256>& table,
              std::array<float*, 3> planes) {
  const float pad = table[kPadValue];
  for (int c = 0; c < 3; ++c) {
    float* out = planes[size_t(c)];
    std::fill(out, out + left, pad);
    const uint8_t* in = src + channels[size_t(c)];
    float* pixels = out + left;
    for (int x = 0; x < width; ++x) pixels[x] = table[in[x * kChannels]];
    std::fill(out + left + width, out + dst_width, pad);
  }
}

}  // namespace

Box LetterboxGeometry::ToSource(const Box& model_box) const {
  return Box{(model_box.x1 - pad_x) / scale, (model_box.y1 - pad_y) / scale,
             (model_box.x2 - pad_x) / scale, (model_box.y2 - pad_y) / scale};
}

LetterboxGeometry ComputeLetterbox(int src_width, int src_height, int dst_width, int dst_height,
                                   LetterboxStyle style) {
  LetterboxGeometry geometry;
  if (src_width <= 0 || src_height <= 0 || dst_width <= 0 || dst_height <= 0) return geometry;
  const double ratio = std::min(double(dst_height) / src_height, double(dst_width) / src_width);
  geometry.scale = static_cast<float>(ratio);
  if (style == LetterboxStyle::kUltralytics) {
    geometry.resized_width = std::clamp(RoundHalfEven(src_width * ratio), 1, dst_width);
    geometry.resized_height = std::clamp(RoundHalfEven(src_height * ratio), 1, dst_height);
    const double half_dw = (dst_width - geometry.resized_width) / 2.0;
    const double half_dh = (dst_height - geometry.resized_height) / 2.0;
    geometry.pad_x = float(RoundHalfEven(half_dw - 0.1));
    geometry.pad_y = float(RoundHalfEven(half_dh - 0.1));
  } else {
    geometry.resized_width = std::clamp(static_cast<int>(src_width * ratio), 1, dst_width);
    geometry.resized_height = std::clamp(static_cast<int>(src_height * ratio), 1, dst_height);
  }
  return geometry;
}

Result<LetterboxGeometry> Letterboxer::Run(const ImageView& src, LetterboxStyle style,
                                           int dst_width, int dst_height, float* dst,
                                           size_t dst_capacity_floats) {
  if (src.empty()) return InvalidArgumentError("letterbox: empty source image");
  if (dst_width <= 0 || dst_height <= 0) {
    return InvalidArgumentError(
        fmt::format("letterbox: invalid destination size {}x{}", dst_width, dst_height));
  }
  const size_t plane = size_t(dst_width) * size_t(dst_height);
  if (dst == nullptr || dst_capacity_floats < 3 * plane) {
    return InvalidArgumentError(
        fmt::format("letterbox: destination holds {} floats, {}x{}x3 needs {}",
                    dst == nullptr ? 0 : dst_capacity_floats, dst_width, dst_height, 3 * plane));
  }
  const int channels = src.channels();
  if (src.stride < size_t(src.width) * size_t(channels)) {
    return InvalidArgumentError(fmt::format("letterbox: stride {} is below width {} x {} channels",
                                            src.stride, src.width, channels));
  }
  const LetterboxGeometry geometry =
      ComputeLetterbox(src.width, src.height, dst_width, dst_height, style);
  const int width = geometry.resized_width;
  const int height = geometry.resized_height;

  // The resized image (not the full-size source) is the only intermediate.
  const uint8_t* pixels = src.data;
  size_t stride = src.stride;
  if (width != src.width || height != src.height) {
    const size_t row_bytes = size_t(width) * size_t(channels);
    resized_.resize(row_bytes * size_t(height));
    const cv::Mat in(src.height, src.width, CV_8UC(channels), const_cast<uint8_t*>(src.data),
                     src.stride);
    cv::Mat out(height, width, CV_8UC(channels), resized_.data(), row_bytes);
    cv::resize(in, out, out.size(), 0, 0, cv::INTER_LINEAR);
    pixels = resized_.data();
    stride = row_bytes;
  }

  static const std::array<float, 256> kUltralyticsTable = ValueTable(LetterboxStyle::kUltralytics);
  static const std::array<float, 256> kYoloxTable = ValueTable(LetterboxStyle::kYolox);
  const auto& table = style == LetterboxStyle::kUltralytics ? kUltralyticsTable : kYoloxTable;
  const auto plane_channels = PlaneChannels(src.format, style);
  const int top = static_cast<int>(geometry.pad_y);
  const int left = static_cast<int>(geometry.pad_x);
  const float pad = table[kPadValue];

  for (int c = 0; c < 3; ++c) {
    float* out = dst + size_t(c) * plane;
    std::fill(out, out + size_t(top) * size_t(dst_width), pad);
    std::fill(out + size_t(top + height) * size_t(dst_width), out + plane, pad);
  }
  for (int y = 0; y < height; ++y) {
    const size_t offset = size_t(top + y) * size_t(dst_width);
    const std::array<float*, 3> planes{dst + offset, dst + plane + offset,
                                       dst + 2 * plane + offset};
    const uint8_t* row = pixels + size_t(y) * stride;
    switch (channels) {
      case 1:
        WriteRow<1>(row, left, width, dst_width, plane_channels, table, planes);
        break;
      case 3:
        WriteRow<3>(row, left, width, dst_width, plane_channels, table, planes);
        break;
      default:
        WriteRow<4>(row, left, width, dst_width, plane_channels, table, planes);
        break;
    }
  }
  return geometry;
}

}  // namespace zerodet

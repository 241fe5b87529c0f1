#include "zerodet/codec/annotate.h"

#include <fmt/format.h>
#include <turbojpeg.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "zerodet/core/detection_json.h"
#include "zerodet/core/file.h"

namespace zerodet {
namespace {

// Ultralytics' default palette, so annotated images look familiar to its users (RGB).
constexpr std::array<std::array<uint8_t, 3>, 20> kPalette = {{
    {255, 56, 56},  {255, 157, 151}, {255, 112, 31}, {255, 178, 29},  {207, 210, 49},
    {72, 249, 10},  {146, 204, 23},  {61, 219, 134}, {26, 147, 52},   {0, 212, 187},
    {44, 153, 168}, {0, 194, 255},   {52, 69, 147},  {100, 115, 255}, {0, 24, 236},
    {132, 56, 255}, {82, 0, 133},    {203, 56, 255}, {255, 149, 200}, {255, 55, 199},
}};

cv::Mat ToRgbCopy(const ImageView& image) {
  const cv::Mat src(image.height, image.width, CV_8UC(image.channels()),
                    const_cast<uint8_t*>(image.data), image.stride);
  cv::Mat rgb;
  switch (image.format) {
    case PixelFormat::kGray8:
      cv::cvtColor(src, rgb, cv::COLOR_GRAY2RGB);
      break;
    case PixelFormat::kBGR8:
      cv::cvtColor(src, rgb, cv::COLOR_BGR2RGB);
      break;
    case PixelFormat::kRGBA8:
      cv::cvtColor(src, rgb, cv::COLOR_RGBA2RGB);
      break;
    case PixelFormat::kRGB8:
      rgb = src.clone();
      break;
  }
  return rgb;
}

}  // namespace

Result<std::vector<uint8_t>> EncodeAnnotatedJpeg(const ImageView& image,
                                                 const std::vector<Detection>& detections,
                                                 const std::vector<std::string>& names) {
  if (image.empty()) return InvalidArgumentError("annotate: empty image");
  cv::Mat canvas = ToRgbCopy(image);
  const int thickness =
      std::max(2, static_cast<int>(std::lround((canvas.cols + canvas.rows) / 2.0 * 0.003)));
  const double font_scale = thickness / 3.0;
  for (const Detection& d : detections) {
    const auto& color = kPalette[size_t(std::max(d.class_id, 0)) % kPalette.size()];
    const cv::Scalar rgb(color[0], color[1], color[2]);
    const cv::Point p1(static_cast<int>(d.box.x1), static_cast<int>(d.box.y1));
    const cv::Point p2(static_cast<int>(d.box.x2), static_cast<int>(d.box.y2));
    cv::rectangle(canvas, p1, p2, rgb, thickness, cv::LINE_AA);

    const std::string label = fmt::format("{} {:.2f}", ClassName(d.class_id, names), d.score);
    int baseline = 0;
    const cv::Size text = cv::getTextSize(label, cv::FONT_HERSHEY_SIMPLEX, font_scale,
                                          std::max(thickness - 1, 1), &baseline);
    const bool above = p1.y - text.height - 3 >= 0;
    const cv::Point corner(p1.x, above ? p1.y - text.height - 3 : p1.y + text.height + 3);
    cv::rectangle(canvas, p1, cv::Point(p1.x + text.width, corner.y), rgb, cv::FILLED, cv::LINE_AA);
    cv::putText(canvas, label, cv::Point(p1.x, above ? p1.y - 2 : p1.y + text.height + 2),
                cv::FONT_HERSHEY_SIMPLEX, font_scale, cv::Scalar(255, 255, 255),
                std::max(thickness - 1, 1), cv::LINE_AA);
  }

  std::unique_ptr<void, int (*)(tjhandle)> tj(tjInitCompress(), tjDestroy);
  if (!tj) return InternalError(fmt::format("TurboJPEG: {}", tjGetErrorStr2(nullptr)));
  unsigned char* jpeg = nullptr;
  unsigned long jpeg_size = 0;
  if (tjCompress2(tj.get(), canvas.data, canvas.cols, static_cast<int>(canvas.step), canvas.rows,
                  TJPF_RGB, &jpeg, &jpeg_size, TJSAMP_420, 90, 0) != 0) {
    tjFree(jpeg);
    return InternalError(
        fmt::format("annotate: JPEG encoding failed: {}", tjGetErrorStr2(tj.get())));
  }
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> owned(jpeg, tjFree);
  return std::vector<uint8_t>(owned.get(), owned.get() + jpeg_size);
}

Status WriteAnnotatedJpeg(const ImageView& image, const std::vector<Detection>& detections,
                          const std::vector<std::string>& names,
                          const std::filesystem::path& path) {
  ZD_ASSIGN_OR_RETURN(const std::vector<uint8_t> jpeg,
                      EncodeAnnotatedJpeg(image, detections, names));
  return WriteFileAtomically(path, jpeg);
}

}  // namespace zerodet

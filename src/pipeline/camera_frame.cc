#include "camera_frame.h"

#include <cstring>
#include <opencv2/imgproc.hpp>

#include "zerodet/codec/decode.h"

namespace zerodet::pipeline::detail {

std::string FourCcName(uint32_t fourcc) {
  std::string name(4, '?');
  for (int i = 0; i < 4; ++i) {
    const char c = static_cast<char>((fourcc >> (8 * i)) & 0xff);
    if (c >= 0x20 && c < 0x7f) name[static_cast<size_t>(i)] = c;
  }
  return name;
}

Result<uint32_t> ParseFourCc(const std::string& name) {
  if (name.size() != 4) {
    return InvalidArgumentError("pixel format '" + name + "' is not a four-character code");
  }
  const uint32_t fourcc = FourCc(name[0], name[1], name[2], name[3]);
  if (!IsSupportedCameraFormat(fourcc)) {
    return InvalidArgumentError("pixel format '" + name +
                                "' is not one of: RGB3, BGR3, YUYV, UYVY, GREY, MJPG, JPEG");
  }
  return fourcc;
}

bool IsSupportedCameraFormat(uint32_t fourcc) {
  switch (fourcc) {
    case kFourCcRgb24:
    case kFourCcBgr24:
    case kFourCcYuyv:
    case kFourCcUyvy:
    case kFourCcGrey:
    case kFourCcMjpeg:
    case kFourCcJpeg:
      return true;
    default:
      return false;
  }
}

namespace {

size_t BytesPerPixel(uint32_t fourcc) {
  switch (fourcc) {
    case kFourCcRgb24:
    case kFourCcBgr24:
      return 3;
    case kFourCcYuyv:
    case kFourCcUyvy:
      return 2;
    default:
      return 1;
  }
}

Status ConvertJpeg(const CameraFrameLayout& layout, std::span<const uint8_t> src,
                   std::span<uint8_t> dst, const std::string& source) {
  // The codec decodes into its own image: one extra copy of the RGB frame into the slot.
  ZD_ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImage(src, source));
  const Image& image = decoded.image;
  if (image.width() != layout.width || image.height() != layout.height) {
    return CorruptDataError(source + ": JPEG frame is " + std::to_string(image.width()) + "x" +
                            std::to_string(image.height()) + ", the device said " +
                            std::to_string(layout.width) + "x" + std::to_string(layout.height));
  }
  const size_t row = static_cast<size_t>(layout.width) * 3;
  for (int y = 0; y < layout.height; ++y) {
    std::memcpy(dst.data() + static_cast<size_t>(y) * row,
                image.data() + static_cast<size_t>(y) * image.stride(), row);
  }
  return Status::Ok();
}

Status ConvertWithOpenCv(const CameraFrameLayout& layout, std::span<const uint8_t> src,
                         std::span<uint8_t> dst, size_t line, size_t min_line,
                         const std::string& source) {
  void* in = const_cast<uint8_t*>(src.data());
  cv::Mat rgb(layout.height, layout.width, CV_8UC3, dst.data());
  switch (layout.fourcc) {
    case kFourCcRgb24:
      for (int y = 0; y < layout.height; ++y) {
        std::memcpy(dst.data() + static_cast<size_t>(y) * min_line,
                    src.data() + static_cast<size_t>(y) * line, min_line);
      }
      break;
    case kFourCcBgr24:
      cv::cvtColor(cv::Mat(layout.height, layout.width, CV_8UC3, in, line), rgb, cv::COLOR_BGR2RGB);
      break;
    case kFourCcYuyv:
      cv::cvtColor(cv::Mat(layout.height, layout.width, CV_8UC2, in, line), rgb,
                   cv::COLOR_YUV2RGB_YUYV);
      break;
    case kFourCcUyvy:
      cv::cvtColor(cv::Mat(layout.height, layout.width, CV_8UC2, in, line), rgb,
                   cv::COLOR_YUV2RGB_UYVY);
      break;
    case kFourCcGrey:
      cv::cvtColor(cv::Mat(layout.height, layout.width, CV_8UC1, in, line), rgb,
                   cv::COLOR_GRAY2RGB);
      break;
    default:
      break;
  }
  if (rgb.data != dst.data()) return InternalError(source + ": OpenCV reallocated the frame");
  return Status::Ok();
}

}  // namespace

Status ConvertCameraFrame(const CameraFrameLayout& layout, std::span<const uint8_t> src,
                          std::span<uint8_t> dst, const std::string& source) {
  if (layout.width <= 0 || layout.height <= 0) {
    return InvalidArgumentError(source + ": frame size " + std::to_string(layout.width) + "x" +
                                std::to_string(layout.height));
  }
  const size_t rgb_bytes =
      static_cast<size_t>(layout.width) * static_cast<size_t>(layout.height) * 3;
  if (dst.size() < rgb_bytes) {
    return InvalidArgumentError(source + ": frame of " + std::to_string(rgb_bytes) +
                                " bytes does not fit " + std::to_string(dst.size()) + " bytes");
  }
  if (!IsSupportedCameraFormat(layout.fourcc)) {
    return InvalidArgumentError(source + ": unsupported pixel format " + FourCcName(layout.fourcc));
  }
  if (layout.fourcc == kFourCcMjpeg || layout.fourcc == kFourCcJpeg) {
    return ConvertJpeg(layout, src, dst, source);
  }
  const bool packed_422 = layout.fourcc == kFourCcYuyv || layout.fourcc == kFourCcUyvy;
  if (packed_422 && layout.width % 2 != 0) {
    return InvalidArgumentError(source + ": " + FourCcName(layout.fourcc) +
                                " needs an even width, not " + std::to_string(layout.width));
  }
  const size_t min_line = static_cast<size_t>(layout.width) * BytesPerPixel(layout.fourcc);
  const size_t line = layout.bytes_per_line == 0 ? min_line : layout.bytes_per_line;
  if (line < min_line) {
    return InvalidArgumentError(source + ": bytes per line " + std::to_string(line) +
                                " is less than a row of " + std::to_string(min_line));
  }
  const size_t needed = line * static_cast<size_t>(layout.height - 1) + min_line;
  if (src.size() < needed) {
    return CorruptDataError(source + ": " + FourCcName(layout.fourcc) + " frame of " +
                            std::to_string(src.size()) + " bytes, " + std::to_string(layout.width) +
                            "x" + std::to_string(layout.height) + " needs " +
                            std::to_string(needed));
  }

  // OpenCV converts straight from the mapped buffer into dst; the Mats only wrap the memory.
  // OpenCV reports through exceptions; the checks above should leave none, and any that still
  // comes is this frame's error, not the ingest's end.
  try {
    return ConvertWithOpenCv(layout, src, dst, line, min_line, source);
  } catch (const cv::Exception& e) {
    return InternalError(source + ": OpenCV: " + e.what());
  }
}

}  // namespace zerodet::pipeline::detail

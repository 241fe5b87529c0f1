#include "zerodet/core/image.h"

#include <cassert>

namespace zerodet {

int ChannelCount(PixelFormat format) {
  switch (format) {
    case PixelFormat::kGray8:
      return 1;
    case PixelFormat::kRGB8:
    case PixelFormat::kBGR8:
      return 3;
    case PixelFormat::kRGBA8:
      return 4;
  }
  return 0;
}

std::string_view PixelFormatName(PixelFormat format) {
  switch (format) {
    case PixelFormat::kGray8:
      return "gray8";
    case PixelFormat::kRGB8:
      return "rgb8";
    case PixelFormat::kBGR8:
      return "bgr8";
    case PixelFormat::kRGBA8:
      return "rgba8";
  }
  return "unknown";
}

Image::Image(int width, int height, PixelFormat format)
    : width_(width), height_(height), format_(format) {
  assert(width > 0 && height > 0);
  stride_ = static_cast<size_t>(width) * static_cast<size_t>(ChannelCount(format));
  // for-overwrite: decoders fill every byte, zeroing would be a wasted pass.
  pixels_ = std::make_unique_for_overwrite<uint8_t[]>(stride_ * static_cast<size_t>(height));
}

}  // namespace zerodet

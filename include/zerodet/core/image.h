// Images: a non-owning ImageView over 8-bit interleaved pixels, and an owning Image.
//
// ImageView is what every stage takes (letterbox, annotate, ring slots, store objects): it
// points at memory someone else owns: a decoded Image, a shared-memory slot, a store object.
// The viewer must keep that memory alive while the view is in use. Views are cheap to copy.
// Image owns its pixels; moving it keeps the pixel pointer stable (no reallocation).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace zerodet {

enum class PixelFormat : uint8_t {
  kGray8 = 1,  // 1 channel
  kRGB8 = 2,   // 3 channels, R first
  kBGR8 = 3,   // 3 channels, B first (OpenCV order)
  kRGBA8 = 4,  // 4 channels, R first
};

int ChannelCount(PixelFormat format);
std::string_view PixelFormatName(PixelFormat format);

struct ImageView {
  const uint8_t* data = nullptr;
  int width = 0;
  int height = 0;
  size_t stride = 0;  // bytes from one row to the next, >= width * channels
  PixelFormat format = PixelFormat::kRGB8;

  int channels() const { return ChannelCount(format); }
  bool empty() const { return data == nullptr || width <= 0 || height <= 0; }
  const uint8_t* row(int y) const { return data + static_cast<size_t>(y) * stride; }
};

class Image {
 public:
  Image() = default;
  // Allocates uninitialized width x height pixels with tightly packed rows.
  // REQUIRES: width > 0, height > 0.
  Image(int width, int height, PixelFormat format);

  Image(Image&&) noexcept = default;
  Image& operator=(Image&&) noexcept = default;
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;

  int width() const { return width_; }
  int height() const { return height_; }
  PixelFormat format() const { return format_; }
  size_t stride() const { return stride_; }
  size_t size_bytes() const { return stride_ * static_cast<size_t>(height_); }
  uint8_t* data() { return pixels_.get(); }
  const uint8_t* data() const { return pixels_.get(); }
  bool empty() const { return pixels_ == nullptr; }

  ImageView view() const { return ImageView{pixels_.get(), width_, height_, stride_, format_}; }

 private:
  std::unique_ptr<uint8_t[]> pixels_;
  int width_ = 0;
  int height_ = 0;
  size_t stride_ = 0;
  PixelFormat format_ = PixelFormat::kRGB8;
};

}  // namespace zerodet

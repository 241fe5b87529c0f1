// Conversion of one V4L2 capture buffer to tightly packed RGB8, in one pass from the driver's
// mapped buffer into the caller's memory (a ring slot). Separate from the device code so that
// it can be tested on real images without a camera.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "zerodet/core/status.h"

namespace zerodet::pipeline::detail {

// The pixel formats zerodet reads from cameras, in the order it prefers them when the config
// does not name one: uncompressed first (no decode), then (M)JPEG.
//   RGB24, BGR24:  3 bytes per pixel
//   YUYV, UYVY:    4:2:2 packed, BT.601 limited range (what V4L2 drivers deliver as
//                  V4L2_COLORSPACE_SMPTE170M); REQUIRES an even width
//   GREY:          8-bit luma
//   MJPG, JPEG:    one JPEG per buffer (Huffman tables may be missing, as from many webcams)
inline constexpr uint32_t FourCc(char a, char b, char c, char d) {
  return static_cast<uint32_t>(static_cast<uint8_t>(a)) |
         (static_cast<uint32_t>(static_cast<uint8_t>(b)) << 8) |
         (static_cast<uint32_t>(static_cast<uint8_t>(c)) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(d)) << 24);
}
inline constexpr uint32_t kFourCcRgb24 = FourCc('R', 'G', 'B', '3');
inline constexpr uint32_t kFourCcBgr24 = FourCc('B', 'G', 'R', '3');
inline constexpr uint32_t kFourCcYuyv = FourCc('Y', 'U', 'Y', 'V');
inline constexpr uint32_t kFourCcUyvy = FourCc('U', 'Y', 'V', 'Y');
inline constexpr uint32_t kFourCcGrey = FourCc('G', 'R', 'E', 'Y');
inline constexpr uint32_t kFourCcMjpeg = FourCc('M', 'J', 'P', 'G');
inline constexpr uint32_t kFourCcJpeg = FourCc('J', 'P', 'E', 'G');

// "YUYV" for kFourCcYuyv; unprintable bytes as '?'.
std::string FourCcName(uint32_t fourcc);
// Parses a four-character code ("YUYV", "MJPG", ...). Errors: kInvalidArgument.
Result<uint32_t> ParseFourCc(const std::string& name);
bool IsSupportedCameraFormat(uint32_t fourcc);

struct CameraFrameLayout {
  uint32_t fourcc = 0;
  int width = 0;
  int height = 0;
  size_t bytes_per_line = 0;  // uncompressed formats; rows may be padded
};

// Writes the frame in `src` (bytesused bytes of a capture buffer) as RGB8 with stride
// width * 3 into `dst`. Errors: kInvalidArgument for a dst smaller than width * height * 3, an
// unsupported format or an odd width in a 4:2:2 format; kCorruptData for a buffer shorter than
// the layout needs, or a JPEG that does not decode to width x height (names `source`).
Status ConvertCameraFrame(const CameraFrameLayout& layout, std::span<const uint8_t> src,
                          std::span<uint8_t> dst, const std::string& source);

}  // namespace zerodet::pipeline::detail

#include "jpeg_markers.h"

#include <cstddef>

namespace zerodet::codec_internal {
namespace {

constexpr uint8_t kSoi = 0xD8, kEoi = 0xD9, kSos = 0xDA, kTem = 0x01;

bool IsRestart(uint8_t marker) {
  return marker >= 0xD0 && marker <= 0xD7;
}

}  // namespace

int CountJpegScans(std::span<const uint8_t> jpeg, int stop_after) {
  int scans = 0;
  size_t pos = 0;
  const size_t size = jpeg.size();
  while (pos + 1 < size) {
    if (jpeg[pos] != 0xFF) {
      ++pos;  // garbage between markers: libjpeg skips it too (with a warning)
      continue;
    }
    const uint8_t marker = jpeg[pos + 1];
    if (marker == 0xFF) {  // fill byte before a marker
      ++pos;
      continue;
    }
    pos += 2;
    if (marker == kEoi) break;
    if (marker == kSoi || marker == kTem || IsRestart(marker) || marker == 0x00) continue;
    if (pos + 1 >= size) break;
    const size_t length = size_t{jpeg[pos]} << 8 | jpeg[pos + 1];
    if (length < 2) break;
    pos += length;  // the segment, including its two length bytes
    if (marker != kSos) continue;
    if (++scans > stop_after) break;
    // Entropy-coded data follows the SOS header, up to the next marker that is neither a
    // stuffed zero nor a restart marker.
    while (pos + 1 < size) {
      if (jpeg[pos] == 0xFF && jpeg[pos + 1] != 0x00 && jpeg[pos + 1] != 0xFF &&
          !IsRestart(jpeg[pos + 1])) {
        break;
      }
      ++pos;
    }
  }
  return scans;
}

}  // namespace zerodet::codec_internal

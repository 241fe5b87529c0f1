#include "exif.h"

#include <cstddef>
#include <cstring>

namespace zerodet::codec_internal {
namespace {

// Bounds-checked reads in the TIFF byte order of the EXIF block.
class TiffReader {
 public:
  TiffReader(std::span<const uint8_t> data, bool little_endian)
      : data_(data), little_endian_(little_endian) {}

  bool U16(size_t offset, uint16_t* out) const {
    if (offset + 2 > data_.size()) return false;
    const uint8_t* p = data_.data() + offset;
    *out = little_endian_ ? static_cast<uint16_t>(p[0] | p[1] << 8)
                          : static_cast<uint16_t>(p[0] << 8 | p[1]);
    return true;
  }
  bool U32(size_t offset, uint32_t* out) const {
    uint16_t a = 0;
    uint16_t b = 0;
    if (!U16(offset, &a) || !U16(offset + 2, &b)) return false;
    *out = little_endian_ ? (uint32_t{b} << 16 | a) : (uint32_t{a} << 16 | b);
    return true;
  }

 private:
  std::span<const uint8_t> data_;
  bool little_endian_;
};

int OrientationFromTiff(std::span<const uint8_t> tiff) {
  if (tiff.size() < 8) return 1;
  bool little_endian;
  if (tiff[0] == 'I' && tiff[1] == 'I') {
    little_endian = true;
  } else if (tiff[0] == 'M' && tiff[1] == 'M') {
    little_endian = false;
  } else {
    return 1;
  }
  TiffReader reader(tiff, little_endian);
  uint32_t ifd0 = 0;
  uint16_t entries = 0;
  if (!reader.U32(4, &ifd0) || !reader.U16(ifd0, &entries)) return 1;
  constexpr uint16_t kOrientationTag = 0x0112;
  for (uint32_t i = 0; i < entries; ++i) {
    const size_t entry = size_t{ifd0} + 2 + size_t{i} * 12;
    uint16_t tag = 0;
    uint16_t value = 0;
    if (!reader.U16(entry, &tag)) return 1;
    if (tag != kOrientationTag) continue;
    if (!reader.U16(entry + 8, &value)) return 1;  // SHORT value, left-justified in the field
    return value >= 1 && value <= 8 ? value : 1;
  }
  return 1;
}

}  // namespace

int ReadJpegExifOrientation(std::span<const uint8_t> jpeg) {
  if (jpeg.size() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8) return 1;
  size_t pos = 2;
  // Walk the marker segments before the image data; EXIF is an APP1 segment.
  while (pos + 4 <= jpeg.size()) {
    if (jpeg[pos] != 0xFF) return 1;
    const uint8_t marker = jpeg[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0xDA || marker == 0xD9) return 1;  // start of scan / end of image
    const size_t length = size_t{jpeg[pos + 2]} << 8 | jpeg[pos + 3];
    if (length < 2 || pos + 2 + length > jpeg.size()) return 1;
    const size_t body = pos + 4;
    const size_t body_size = length - 2;
    static constexpr uint8_t kExifHeader[6] = {'E', 'x', 'i', 'f', 0, 0};
    if (marker == 0xE1 && body_size > sizeof(kExifHeader) &&
        std::memcmp(jpeg.data() + body, kExifHeader, sizeof(kExifHeader)) == 0) {
      return OrientationFromTiff(
          jpeg.subspan(body + sizeof(kExifHeader), body_size - sizeof(kExifHeader)));
    }
    pos += 2 + length;
  }
  return 1;
}

}  // namespace zerodet::codec_internal

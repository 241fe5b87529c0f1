// libFuzzer target for the image decoders (src/codec): every byte string a user could hand
// `zerodet detect`, a preload or an image-folder source must decode or give an error, never
// crash, read out of bounds (ASan+UBSan) or run away: the pixel limit is small here so that
// header-declared sizes cannot make each input slow, and the JPEG scan limit is the default.
#include <cstddef>
#include <cstdint>
#include <span>

#include "jpeg_markers.h"
#include "zerodet/codec/decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  zerodet::DecodeOptions options;
  options.max_pixels = 4'000'000;
  (void)zerodet::ReadImageInfo(bytes, "fuzz");
  (void)zerodet::codec_internal::CountJpegScans(bytes, options.max_jpeg_scans);
  auto decoded = zerodet::DecodeImage(bytes, "fuzz", options);
  if (decoded.ok()) {
    const auto& image = decoded->image;
    if (image.width() <= 0 || image.height() <= 0) __builtin_trap();
  }
  // The DCT-scaled path too.
  options.jpeg_scale_min_side = 64;
  (void)zerodet::DecodeImage(bytes, "fuzz", options);
  return 0;
}

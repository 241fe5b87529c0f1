// Image decoding: JPEG (libjpeg-turbo), PNG, BMP into 8-bit RGB.
//
// Every decoder output is normalized to PixelFormat::kRGB8 (gray, RGBA, CMYK/YCCK JPEGs and
// palette/16-bit PNGs are converted), so later stages handle exactly one layout.
// Hostile input is expected: dimensions are checked against DecodeOptions::max_pixels from the
// header, before any pixel buffer is allocated (decompression bombs); JPEG scans are counted
// before decoding (DecodeOptions::max_jpeg_scans); truncated or corrupt data gives kCorruptData
// naming the source: a JPEG whose scan data is cut short or damaged is an error even where
// libjpeg would only warn and fill the rest with gray. Thread-safe: functions keep no shared state.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>

#include "zerodet/core/image.h"
#include "zerodet/core/status.h"

namespace zerodet {

enum class ImageFormat { kUnknown, kJpeg, kPng, kBmp };

// Sniffs the format from the first bytes (magic numbers), not from a file name.
ImageFormat DetectImageFormat(std::span<const uint8_t> bytes);

// Whether a folder entry should be taken as an image: .jpg, .jpeg, .png or .bmp, any case. The
// one rule for detect, preload and image-folder sources; decoding still sniffs the bytes.
bool HasImageFileExtension(const std::filesystem::path& path);

struct DecodeOptions {
  // Largest width*height accepted; larger images are refused with kResourceExhausted.
  uint64_t max_pixels = 64'000'000;
  // Opt-in fast mode for JPEG, set to the model input side S: when the letterbox would shrink
  // the image by 2x or more (min(S/w, S/h) <= 1/2), decode with libjpeg-turbo's DCT-domain
  // scaling to the smallest of 1/2, 1/4, 1/8 that still leaves the image at least as large as
  // the letterbox resizes it to, so the final resize still only shrinks. Boxes stay in
  // original pixels (DecodedImage keeps the original size). 0 = off: full decode, identical to
  // the reference (cv::imread).
  int jpeg_scale_min_side = 0;
  // Most scans a JPEG may hold. libjpeg's standard progressive script has 10 (6 for gray), and
  // real encoders stay near that; each scan costs a pass over the whole image, so a file that
  // repeats scans (a progressive-JPEG decode bomb) is refused up front with kResourceExhausted,
  // from a count of its markers, before any pixel is decoded.
  int max_jpeg_scans = 64;
};

struct DecodedImage {
  Image image;  // kRGB8, possibly DCT-downscaled
  // Size of the encoded image. Differs from image.width()/height() only after DCT scaling.
  int source_width = 0;
  int source_height = 0;
};

// Image header information without decoding pixels.
struct ImageInfo {
  ImageFormat format = ImageFormat::kUnknown;
  int width = 0;
  int height = 0;
};

// Reads only the header. Errors: kCorruptData for unknown or malformed headers.
Result<ImageInfo> ReadImageInfo(std::span<const uint8_t> bytes, std::string_view source_name);

// Decodes `bytes`. `source_name` (file name, URL, object id) is used in error messages.
Result<DecodedImage> DecodeImage(std::span<const uint8_t> bytes, std::string_view source_name,
                                 const DecodeOptions& options = {});

// Reads and decodes a file; errors name the path.
Result<DecodedImage> DecodeImageFile(const std::filesystem::path& path,
                                     const DecodeOptions& options = {});

}  // namespace zerodet

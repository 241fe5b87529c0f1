// Letterbox preprocessing: resize keeping the aspect ratio, pad to the model input size, and
// write the model's input tensor (planar CHW float32) in one pass.
//
// Two conventions exist in the wild and both are supported exactly:
//   kUltralytics (YOLOv5/v8/v10/v11 exports): r = min(S_h/h, S_w/w), new size round(w*r) x
//     round(h*r), cv::resize INTER_LINEAR, pad 114 split as round(d/2 -+ 0.1) (centered), RGB,
//     values / 255.
//   kYolox (Megvii YOLOX exports): same r, resize to int(w*r) x int(h*r), INTER_LINEAR, pad 114
//     at the right and bottom only (top-left aligned), BGR, values 0..255 (no scaling).
// The destination is caller-owned memory (a session input, a shared-memory region, a pinned
// buffer): nothing larger than the resized image is allocated, and Letterboxer keeps that
// scratch between calls. A Letterboxer is not thread-safe; use one per thread.
#pragma once

#include <cstddef>
#include <vector>

#include "zerodet/core/detection.h"
#include "zerodet/core/image.h"
#include "zerodet/core/status.h"

namespace zerodet {

enum class LetterboxStyle { kUltralytics, kYolox };

// How the source image was placed into the model input; maps boxes back to source pixels.
struct LetterboxGeometry {
  float scale = 1.0f;  // model pixels per source pixel
  float pad_x = 0.0f;  // left padding in model pixels
  float pad_y = 0.0f;  // top padding in model pixels
  int resized_width = 0;
  int resized_height = 0;

  // Maps a box from model-input pixels to source pixels (not clipped).
  Box ToSource(const Box& model_box) const;
};

// Pure geometry of a letterbox, without touching pixels.
LetterboxGeometry ComputeLetterbox(int src_width, int src_height, int dst_width, int dst_height,
                                   LetterboxStyle style);

class Letterboxer {
 public:
  // Writes the 3 x dst_height x dst_width float32 planes of `src` into `dst` (CHW; channel order
  // and value range per `style`). Accepts kRGB8, kBGR8, kGray8 and kRGBA8 sources.
  // REQUIRES: dst has room for 3 * dst_width * dst_height floats (dst_capacity_floats).
  // Errors: kInvalidArgument for an empty source, non-positive sizes or a too small dst.
  Result<LetterboxGeometry> Run(const ImageView& src, LetterboxStyle style, int dst_width,
                                int dst_height, float* dst, size_t dst_capacity_floats);

 private:
  std::vector<uint8_t> resized_;  // scratch: the resized image, reused across calls
};

}  // namespace zerodet

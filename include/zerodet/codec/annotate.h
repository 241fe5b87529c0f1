// Drawing detections onto an image (boxes and "class score" labels) and writing it as JPEG.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "zerodet/core/detection.h"
#include "zerodet/core/image.h"
#include "zerodet/core/status.h"

namespace zerodet {

// Draws `detections` (boxes in `image` pixels) on a copy of `image` and encodes it as JPEG
// (quality 90). Labels use ClassName (detection_json.h). Errors: kInvalidArgument for an empty
// image; kInternal when the encoder fails.
Result<std::vector<uint8_t>> EncodeAnnotatedJpeg(const ImageView& image,
                                                 const std::vector<Detection>& detections,
                                                 const std::vector<std::string>& names);

// EncodeAnnotatedJpeg, written to `path` atomically (WriteFileAtomically).
// Errors: as EncodeAnnotatedJpeg; as WriteFileAtomically, naming the path (kNotFound for a
// missing directory).
Status WriteAnnotatedJpeg(const ImageView& image, const std::vector<Detection>& detections,
                          const std::vector<std::string>& names, const std::filesystem::path& path);

}  // namespace zerodet

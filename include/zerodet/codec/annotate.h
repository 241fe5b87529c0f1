// Drawing detections onto an image (boxes and "class score" labels) and writing it as JPEG.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "zerodet/core/detection.h"
#include "zerodet/core/image.h"
#include "zerodet/core/status.h"

namespace zerodet {

// Draws `detections` (boxes in `image` pixels) on a copy of `image` and writes it to `path` as
// JPEG (quality 90), atomically (WriteFileAtomically). Labels use ClassName (detection_json.h).
// Errors: as WriteFileAtomically, naming the path (kNotFound for a missing directory).
Status WriteAnnotatedJpeg(const ImageView& image, const std::vector<Detection>& detections,
                          const std::vector<std::string>& names, const std::filesystem::path& path);

}  // namespace zerodet

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
// JPEG (quality 90). Class names come from `names` (index = class_id; "class N" when missing).
// Errors: kIoError naming the path when it cannot be written.
Status WriteAnnotatedJpeg(const ImageView& image, const std::vector<Detection>& detections,
                          const std::vector<std::string>& names, const std::filesystem::path& path);

}  // namespace zerodet

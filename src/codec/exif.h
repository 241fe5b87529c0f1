// EXIF orientation of JPEG files (internal to the codec module).
//
// Cameras store portrait photos unrotated with an orientation tag; cv2.imread, and so the
// reference pipeline, applies it. libjpeg-turbo does not, so the decoder reads the tag itself.
#pragma once

#include <cstdint>
#include <span>

namespace zerodet::codec_internal {

// The EXIF orientation (1..8, TIFF tag 0x0112) of a JPEG stream; 1 (as stored) when the stream
// has no EXIF block, no tag, or a malformed one. Reads only within `jpeg`.
int ReadJpegExifOrientation(std::span<const uint8_t> jpeg);

}  // namespace zerodet::codec_internal

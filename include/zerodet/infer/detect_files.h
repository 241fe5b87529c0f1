// DetectFiles: detection over a list of image files, as `zerodet detect` and `zerodet bench
// detect` run it. Decoding overlaps inference (an ImagePrefetcher decodes file N+1 while the
// model runs on file N); each decoded image is letterboxed straight into its slot of the next
// batched Run and freed at once, so memory holds one batch of model inputs plus at most
// prefetch_depth + 1 decoded images, whatever the batch size.
//
// Thread-safety: runs on the caller's thread (plus the prefetcher's); the detector must not be
// used elsewhere meanwhile.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <vector>

#include "zerodet/codec/decode.h"
#include "zerodet/core/status.h"
#include "zerodet/infer/detector.h"

namespace zerodet {

struct DetectFilesOptions {
  DecodeOptions decode;
  size_t prefetch_depth = 1;  // decoded images waiting ahead of the model; 0 decodes in line
};

struct FileDetection {
  std::filesystem::path path;
  // The detections (timing.decode_ms included), or an error naming the file.
  Result<DetectionResult> result = InternalError("not run");
};

// Detects on `files` in batches of detector.batch_capacity(), calling `on_result` once per
// file in input order. A file that cannot be read, decoded or detected is reported through
// on_result and does not stop the others; a failed Run fails every file of its batch.
void DetectFiles(Detector& detector, const std::vector<std::filesystem::path>& files,
                 const DetectFilesOptions& options,
                 const std::function<void(FileDetection&&)>& on_result);

}  // namespace zerodet

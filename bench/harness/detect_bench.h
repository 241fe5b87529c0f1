// The measurements behind `zerodet bench detect`, side by side in one process and on one
// session, so that their ratios hold on a noisy machine:
//   MeasureDetectOverhead: the bare model Run on an input letterboxed once, alternated with the
//     full path of `zerodet detect` on one image (read, decode, letterbox, Run, decode + NMS);
//   MeasureFolderThroughput: images per second over a folder for the bare Run, for detect with
//     decode in line (image N+1 decoded after image N's Run), and for detect with decode
//     overlapped with inference (DetectFiles' prefetch), alternated round by round.
// Both return one JSON object. The detector must not be used elsewhere meanwhile.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "zerodet/codec/decode.h"
#include "zerodet/core/status.h"
#include "zerodet/infer/detector.h"

namespace zerodet::bench {

// REQUIRES: iterations >= 1, warmup >= 0.
Result<nlohmann::ordered_json> MeasureDetectOverhead(Detector& detector,
                                                     const std::filesystem::path& image,
                                                     const DecodeOptions& decode, int iterations,
                                                     int warmup);

// REQUIRES: !files.empty(), rounds >= 1. A warm-up pass over the files runs first.
Result<nlohmann::ordered_json> MeasureFolderThroughput(
    Detector& detector, const std::vector<std::filesystem::path>& files,
    const DecodeOptions& decode, int rounds);

}  // namespace zerodet::bench

// The one JSON shape of detections. `zerodet detect`, eval's detection dumps, the pipeline's
// results, the server and the Python package all write detections through these functions:
//
//   {"class_id": 16, "class": "dog", "score": 0.9559, "box": [131.13, 219.11, 308.27, 539.73]}
//
// "box" is [x1, y1, x2, y2]: top-left and bottom-right corners in the source image's pixels
// (what the camera or file holds, before any letterbox or DCT scaling), 2 decimals. "score" has
// 4 decimals. "class" is the model's name for class_id, or "class<N>" when the model has none.
// Thread-safe: pure functions.
#pragma once

#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "zerodet/core/detection.h"

namespace zerodet {

// The model's name of `class_id`, or "class<N>" when `names` has no entry for it.
std::string ClassName(int class_id, const std::vector<std::string>& names);

// `value` rounded to `decimals` places (0.956 rather than 0.95600003004074).
double RoundTo(double value, int decimals);

nlohmann::ordered_json DetectionToJson(const Detection& detection,
                                       const std::vector<std::string>& names);
// A JSON array of DetectionToJson objects, in order.
nlohmann::ordered_json DetectionsToJson(std::span<const Detection> detections,
                                        const std::vector<std::string>& names);

// Per-image stage times as every detection result reports them ("timing_ms" of `zerodet detect`
// and /v1/detect): {"decode", "preprocess", "infer", "postprocess"} in milliseconds, 3 decimals.
nlohmann::ordered_json StageTimesToJson(double decode_ms, double preprocess_ms, double infer_ms,
                                        double postprocess_ms);

// `json` as one line of text without a trailing newline. Never throws: invalid UTF-8 in strings
// (file names, class names from a model) is replaced by U+FFFD instead of failing.
std::string ToJsonLine(const nlohmann::ordered_json& json);

}  // namespace zerodet

// Non-maximum suppression.
#pragma once

#include <vector>

#include "zerodet/core/detection.h"

namespace zerodet {

// Greedy NMS: keeps the highest-scoring box, drops every remaining box of the same class (or any
// class when class_agnostic) whose IoU with it exceeds iou_threshold (strictly, as torchvision),
// and repeats. Returns kept detections sorted by descending score, at most max_detections
// (none when max_detections <= 0). Ties keep input order. Candidates with a NaN score are
// dropped. O(n log n) for the sort plus O(n * k) IoU tests, k the kept boxes of a class.
// Thread-safe (no shared state).
std::vector<Detection> NonMaxSuppression(std::vector<Detection> candidates, float iou_threshold,
                                         int max_detections, bool class_agnostic);

}  // namespace zerodet

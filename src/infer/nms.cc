// Greedy NMS in one pass over the candidates in descending score order.
//
// Each candidate is compared only with the boxes already kept for its class (one bucket per
// class; a single bucket when class-agnostic). That is exactly per-class greedy NMS followed by a
// merge by score, which is what torchvision's batched_nms (the class-offset trick Ultralytics
// uses) computes, but without comparing boxes of different classes at all. Kept boxes are stored
// as structure-of-arrays with their areas precomputed, so the inner IoU loop is a tight scan.
// The pass stops as soon as max_detections boxes are kept: later candidates score lower.
#include "zerodet/infer/nms.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <unordered_map>
#include <utility>

namespace zerodet {
namespace {

struct KeptBoxes {
  std::vector<float> x1, y1, x2, y2, area;

  void Add(const Box& b, float box_area) {
    x1.push_back(b.x1);
    y1.push_back(b.y1);
    x2.push_back(b.x2);
    y2.push_back(b.y2);
    area.push_back(box_area);
  }

  // True when some kept box overlaps `b` with IoU > threshold. IoU as torchvision computes it:
  // inter / (area_a + area_b - inter), with no +1 pixel convention.
  bool Suppresses(const Box& b, float b_area, float threshold) const {
    const size_t n = x1.size();
    for (size_t i = 0; i < n; ++i) {
      const float iw = std::min(x2[i], b.x2) - std::max(x1[i], b.x1);
      const float ih = std::min(y2[i], b.y2) - std::max(y1[i], b.y1);
      if (iw <= 0.0f || ih <= 0.0f) continue;
      const float inter = iw * ih;
      const float uni = area[i] + b_area - inter;
      // Divides like torchvision does, so results agree with it even at the threshold.
      if (inter / uni > threshold) return true;
    }
    return false;
  }
};

}  // namespace

std::vector<Detection> NonMaxSuppression(std::vector<Detection> candidates, float iou_threshold,
                                         int max_detections, bool class_agnostic) {
  std::vector<Detection> kept;
  if (candidates.empty() || max_detections <= 0) return kept;

  // NaN scores would break the sort's ordering; they cannot be ranked, so they are dropped.
  std::vector<uint32_t> order;
  order.reserve(candidates.size());
  for (uint32_t i = 0; i < candidates.size(); ++i) {
    if (!std::isnan(candidates[i].score)) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return candidates[a].score > candidates[b].score;
  });

  // Class ids are small non-negative integers for every YOLO model, so a vector indexed by class
  // is the common case; anything else (negative or huge ids) goes to a hash map.
  constexpr int kDenseClassLimit = 4096;
  std::vector<KeptBoxes> dense_buckets;
  std::unordered_map<int, KeptBoxes> sparse_buckets;
  KeptBoxes agnostic_bucket;
  auto bucket_for = [&](int class_id) -> KeptBoxes& {
    if (class_agnostic) return agnostic_bucket;
    if (class_id >= 0 && class_id < kDenseClassLimit) {
      if (static_cast<size_t>(class_id) >= dense_buckets.size()) {
        dense_buckets.resize(static_cast<size_t>(class_id) + 1);
      }
      return dense_buckets[static_cast<size_t>(class_id)];
    }
    return sparse_buckets[class_id];
  };

  const size_t limit = static_cast<size_t>(max_detections);
  kept.reserve(std::min(limit, candidates.size()));
  for (uint32_t index : order) {
    const Detection& candidate = candidates[index];
    const float area = candidate.box.area();
    KeptBoxes& bucket = bucket_for(candidate.class_id);
    if (bucket.Suppresses(candidate.box, area, iou_threshold)) continue;
    bucket.Add(candidate.box, area);
    kept.push_back(candidate);
    if (kept.size() == limit) break;
  }
  return kept;
}

}  // namespace zerodet

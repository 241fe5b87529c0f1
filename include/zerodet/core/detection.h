// Detection results shared by the detector, the evaluator, the CLI and the servers.
#pragma once

#include <string>
#include <vector>

namespace zerodet {

// Axis-aligned box in pixels, corners (x1, y1) top-left and (x2, y2) bottom-right.
struct Box {
  float x1 = 0, y1 = 0, x2 = 0, y2 = 0;

  float width() const { return x2 - x1; }
  float height() const { return y2 - y1; }
  float area() const { return (x2 > x1 && y2 > y1) ? (x2 - x1) * (y2 - y1) : 0.0f; }
};

// Intersection over union; 0 when either box is empty.
float IoU(const Box& a, const Box& b);

struct Detection {
  int class_id = 0;
  float score = 0;
  Box box;  // in original image pixels
};

// The 80 COCO class names in the usual YOLO order (index = class_id).
const std::vector<std::string>& Coco80Names();

// COCO category id (1..90 with gaps) of a COCO-80 class index, or -1 when out of range.
int Coco80ToCategoryId(int class_id);

}  // namespace zerodet

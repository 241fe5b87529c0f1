// COCO bounding-box evaluation: mAP@[.5:.95] and mAP@.5 computed exactly as pycocotools'
// COCOeval (iouType "bbox") computes them, so numbers compare with published ones.
//
// What "exactly" means here (pycocotools 2.0, cocoeval.py and maskApi.c):
//   - IoU thresholds np.linspace(.5, .95, 10), recall thresholds np.linspace(0, 1, 101).
//   - Per image and category: detections sorted by descending score (stable, so ties keep
//     their input order) and cut to max_detections; ground truth with iscrowd = 1 is "ignore".
//     Greedy matching per threshold: each detection takes the best not-yet-matched regular box
//     with IoU >= threshold (ties go to the later box), else a crowd box; a crowd box may match
//     any number of detections and its IoU divides by the detection's area only. Detections
//     matched to ignored boxes count neither as true nor false positives.
//   - Per category: all detections of all images merged by descending score (stable, images in
//     ascending id order), precision made monotone, sampled at the 101 recall points.
//   - AP of a category = mean over thresholds and recall points; mAP = mean over the categories
//     that have at least one non-crowd ground-truth box in the evaluated images.
// Ground truth boxes use the annotation's "area" field for area ranges (as pycocotools does),
// detections their box area.
//
// Thread-safety: all functions are pure; concurrent calls are safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/core/detection.h"
#include "zerodet/core/status.h"

namespace zerodet {

// A box as COCO writes it: top-left corner, width and height, in pixels.
struct CocoBox {
  double x = 0, y = 0, width = 0, height = 0;
};

// The parts of a COCO instances_*.json file that box evaluation needs.
struct CocoGroundTruth {
  struct Image {
    int64_t id = 0;
    std::string file_name;
    int width = 0;
    int height = 0;
  };
  struct Category {
    int64_t id = 0;
    std::string name;
  };
  struct Annotation {
    int64_t id = 0;
    int64_t image_id = 0;
    int64_t category_id = 0;
    CocoBox bbox;
    double area = 0;  // the file's "area" (segment area), used only for area ranges
    bool iscrowd = false;
  };
  std::vector<Image> images;
  std::vector<Category> categories;
  std::vector<Annotation> annotations;
};

// Parses COCO annotation JSON. `source_name` (usually the path) appears in errors.
// Errors: kCorruptData for text that is not JSON or lacks "images", "categories" or
// "annotations", or whose entries miss a required field or have the wrong type (the message
// names the entry); kInvalidArgument for annotations of an image or category the file does not
// list, and for duplicate image ids.
Result<CocoGroundTruth> ParseCocoGroundTruth(std::string_view json_text,
                                             std::string_view source_name);

// Reads and parses an annotation file. Errors as ReadFileBytes and ParseCocoGroundTruth.
Result<CocoGroundTruth> LoadCocoGroundTruth(const std::filesystem::path& path);

// One detection in COCO terms (as a line of a COCO results file).
struct CocoDetection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  double score = 0;
  CocoBox bbox;
};

// Appends `detections` of image `image_id` (COCO-80 class ids, corner boxes) to `out`, mapping
// class ids to COCO category ids with Coco80ToCategoryId. Detections whose class id has no
// COCO category (outside 0..79) are skipped; the return value is how many were.
int AppendCoco80Detections(int64_t image_id, std::span<const Detection> detections,
                           std::vector<CocoDetection>& out);

struct CocoEvalParams {
  // IoU thresholds, ascending. Default: pycocotools' np.linspace(.5, .95, 10).
  std::vector<double> iou_thresholds = DefaultIouThresholds();
  // Most detections per image and category (pycocotools' maxDets[-1]).
  int max_detections = 100;
  // Area range of ground truth and of unmatched detections; default "all".
  double area_min = 0;
  double area_max = 1e10;
  // Images to evaluate; empty = every image of the ground truth.
  std::vector<int64_t> image_ids;

  static std::vector<double> DefaultIouThresholds();
};

struct CocoEvalResult {
  // -1 when no category has ground truth in the evaluated images (as pycocotools).
  double map50_95 = -1;  // mean AP over all iou_thresholds
  double map50 = -1;     // AP at IoU 0.5, -1 when 0.5 is not among iou_thresholds
  double map75 = -1;     // AP at IoU 0.75, likewise
  int images = 0;        // images evaluated
  // AP over all thresholds of each category that has ground truth (the ones the mean is over).
  std::map<int64_t, double> category_ap;
};

// Evaluates `detections` against `ground_truth`. Detections of categories the ground truth does
// not list, or of images outside params.image_ids, are ignored (as pycocotools does).
// Errors: kInvalidArgument for a detection of an image the ground truth does not have, a
// non-finite score or box, an evaluated image id that is not in the ground truth, empty or
// unsorted iou_thresholds, max_detections < 1 or area_min > area_max.
Result<CocoEvalResult> EvaluateCocoBoxes(const CocoGroundTruth& ground_truth,
                                         std::span<const CocoDetection> detections,
                                         const CocoEvalParams& params = {});

}  // namespace zerodet

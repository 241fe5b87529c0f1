#include "zerodet/eval/coco_eval.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "zerodet/core/file.h"

namespace zerodet {
namespace {

using Json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Parsing. Every accessor checks the type first, so nlohmann never throws and each error names
// the entry it is about.

std::string Describe(std::string_view source, std::string_view what) {
  return std::string(source) + ": " + std::string(what);
}

Result<const Json*> Member(const Json& object, const char* key, std::string_view where) {
  auto it = object.find(key);
  if (it == object.end()) {
    return CorruptDataError(std::string(where) + " has no \"" + key + "\"");
  }
  return &*it;
}

Result<int64_t> IntMember(const Json& object, const char* key, std::string_view where) {
  ZD_ASSIGN_OR_RETURN(const Json* value, Member(object, key, where));
  if (!value->is_number_integer()) {
    return CorruptDataError(std::string(where) + ": \"" + key + "\" is not an integer");
  }
  return value->get<int64_t>();
}

Result<double> NumberMember(const Json& object, const char* key, std::string_view where) {
  ZD_ASSIGN_OR_RETURN(const Json* value, Member(object, key, where));
  if (!value->is_number()) {
    return CorruptDataError(std::string(where) + ": \"" + key + "\" is not a number");
  }
  return value->get<double>();
}

Result<std::string> StringMember(const Json& object, const char* key, std::string_view where) {
  ZD_ASSIGN_OR_RETURN(const Json* value, Member(object, key, where));
  if (!value->is_string()) {
    return CorruptDataError(std::string(where) + ": \"" + key + "\" is not a string");
  }
  return value->get<std::string>();
}

Result<const Json*> ArrayMember(const Json& object, const char* key, std::string_view where) {
  ZD_ASSIGN_OR_RETURN(const Json* value, Member(object, key, where));
  if (!value->is_array()) {
    return CorruptDataError(std::string(where) + ": \"" + key + "\" is not an array");
  }
  return value;
}

Result<CocoGroundTruth::Image> ParseImage(const Json& entry, const std::string& where) {
  if (!entry.is_object()) return CorruptDataError(where + " is not an object");
  CocoGroundTruth::Image image;
  ZD_ASSIGN_OR_RETURN(image.id, IntMember(entry, "id", where));
  ZD_ASSIGN_OR_RETURN(image.file_name, StringMember(entry, "file_name", where));
  // Width and height are informative only; some hand-made files leave them out.
  if (entry.contains("width")) {
    ZD_ASSIGN_OR_RETURN(int64_t width, IntMember(entry, "width", where));
    image.width = static_cast<int>(width);
  }
  if (entry.contains("height")) {
    ZD_ASSIGN_OR_RETURN(int64_t height, IntMember(entry, "height", where));
    image.height = static_cast<int>(height);
  }
  return image;
}

Result<CocoGroundTruth::Category> ParseCategory(const Json& entry, const std::string& where) {
  if (!entry.is_object()) return CorruptDataError(where + " is not an object");
  CocoGroundTruth::Category category;
  ZD_ASSIGN_OR_RETURN(category.id, IntMember(entry, "id", where));
  if (entry.contains("name")) {
    ZD_ASSIGN_OR_RETURN(category.name, StringMember(entry, "name", where));
  }
  return category;
}

Result<CocoGroundTruth::Annotation> ParseAnnotation(const Json& entry, const std::string& where) {
  if (!entry.is_object()) return CorruptDataError(where + " is not an object");
  CocoGroundTruth::Annotation annotation;
  ZD_ASSIGN_OR_RETURN(annotation.id, IntMember(entry, "id", where));
  ZD_ASSIGN_OR_RETURN(annotation.image_id, IntMember(entry, "image_id", where));
  ZD_ASSIGN_OR_RETURN(annotation.category_id, IntMember(entry, "category_id", where));
  ZD_ASSIGN_OR_RETURN(const Json* bbox, ArrayMember(entry, "bbox", where));
  if (bbox->size() != 4 ||
      !std::all_of(bbox->begin(), bbox->end(), [](const Json& v) { return v.is_number(); })) {
    return CorruptDataError(where + ": \"bbox\" is not 4 numbers [x, y, width, height]");
  }
  annotation.bbox = CocoBox{(*bbox)[0].get<double>(), (*bbox)[1].get<double>(),
                            (*bbox)[2].get<double>(), (*bbox)[3].get<double>()};
  // pycocotools requires "area"; files without it get the box area.
  if (entry.contains("area")) {
    ZD_ASSIGN_OR_RETURN(annotation.area, NumberMember(entry, "area", where));
  } else {
    annotation.area = annotation.bbox.width * annotation.bbox.height;
  }
  if (entry.contains("iscrowd")) {
    ZD_ASSIGN_OR_RETURN(int64_t iscrowd, IntMember(entry, "iscrowd", where));
    annotation.iscrowd = iscrowd != 0;
  }
  return annotation;
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

// numpy.linspace(start, stop, num): start + i * ((stop - start) / (num - 1)), the last value
// set to stop exactly. Reproduced bit for bit because recall values are compared against these
// thresholds with >=, where one ulp decides.
std::vector<double> Linspace(double start, double stop, size_t num) {
  std::vector<double> values(num);
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (size_t i = 0; i < num; ++i) values[i] = static_cast<double>(i) * step + start;
  values[num - 1] = stop;
  return values;
}

constexpr int kRecallPoints = 101;

struct GtBox {
  CocoBox bbox;
  bool crowd = false;
  bool ignore = false;  // crowd, or area outside the range
};

struct DtBox {
  CocoBox bbox;
  double score = 0;
  double area = 0;
};

// The boxes of one image and one category.
struct Cell {
  std::vector<GtBox> gts;
  std::vector<DtBox> dts;
};

// pycocotools' evaluateImg result for one image and category.
struct ImageCategoryEval {
  std::vector<double> scores;       // D detections, descending
  std::vector<uint8_t> matched;     // T x D
  std::vector<uint8_t> dt_ignored;  // T x D
  int regular_gts = 0;              // ground truth boxes not ignored
};

// maskApi.c bbIou for one pair: a crowd box divides by the detection's area only.
double BoxIoU(const CocoBox& d, const CocoBox& g, bool crowd) {
  const double w = std::fmin(d.width + d.x, g.width + g.x) - std::fmax(d.x, g.x);
  if (w <= 0) return 0;
  const double h = std::fmin(d.height + d.y, g.height + g.y) - std::fmax(d.y, g.y);
  if (h <= 0) return 0;
  const double inter = w * h;
  const double d_area = d.width * d.height;
  const double union_area = crowd ? d_area : d_area + g.width * g.height - inter;
  return inter / union_area;
}

ImageCategoryEval EvaluateCell(const Cell& cell, const CocoEvalParams& params) {
  const size_t num_thresholds = params.iou_thresholds.size();
  std::vector<GtBox> gts = cell.gts;
  for (GtBox& g : gts) g.ignore = g.crowd || g.ignore;
  std::stable_partition(gts.begin(), gts.end(), [](const GtBox& g) { return !g.ignore; });

  std::vector<DtBox> dts = cell.dts;
  std::stable_sort(dts.begin(), dts.end(),
                   [](const DtBox& a, const DtBox& b) { return a.score > b.score; });
  if (dts.size() > static_cast<size_t>(params.max_detections)) {
    dts.resize(static_cast<size_t>(params.max_detections));
  }

  const size_t num_gt = gts.size();
  const size_t num_dt = dts.size();
  std::vector<double> ious(num_dt * num_gt);
  for (size_t d = 0; d < num_dt; ++d) {
    for (size_t g = 0; g < num_gt; ++g) {
      ious[d * num_gt + g] = BoxIoU(dts[d].bbox, gts[g].bbox, gts[g].crowd);
    }
  }

  ImageCategoryEval eval;
  eval.scores.reserve(num_dt);
  for (const DtBox& d : dts) eval.scores.push_back(d.score);
  eval.matched.assign(num_thresholds * num_dt, 0);
  eval.dt_ignored.assign(num_thresholds * num_dt, 0);
  for (const GtBox& g : gts) eval.regular_gts += g.ignore ? 0 : 1;

  std::vector<uint8_t> gt_matched(num_gt);
  for (size_t t = 0; t < num_thresholds; ++t) {
    std::fill(gt_matched.begin(), gt_matched.end(), 0);
    for (size_t d = 0; d < num_dt; ++d) {
      double best = std::min(params.iou_thresholds[t], 1 - 1e-10);
      int m = -1;
      for (size_t g = 0; g < num_gt; ++g) {
        // A matched regular box is taken; crowd boxes match any number of detections.
        if (gt_matched[g] && !gts[g].crowd) continue;
        // Once matched to a regular box, stop at the ignored ones (sorted last).
        if (m > -1 && !gts[static_cast<size_t>(m)].ignore && gts[g].ignore) break;
        if (ious[d * num_gt + g] < best) continue;
        best = ious[d * num_gt + g];
        m = static_cast<int>(g);
      }
      if (m == -1) continue;
      const auto matched = static_cast<size_t>(m);
      eval.dt_ignored[t * num_dt + d] = gts[matched].ignore ? 1 : 0;
      eval.matched[t * num_dt + d] = 1;
      gt_matched[matched] = 1;
    }
  }
  // Unmatched detections outside the area range are ignored.
  for (size_t d = 0; d < num_dt; ++d) {
    const bool outside = dts[d].area < params.area_min || dts[d].area > params.area_max;
    if (!outside) continue;
    for (size_t t = 0; t < num_thresholds; ++t) {
      if (!eval.matched[t * num_dt + d]) eval.dt_ignored[t * num_dt + d] = 1;
    }
  }
  return eval;
}

// pycocotools' accumulate for one category: the interpolated precision at the 101 recall points
// for each threshold (T x R), or nothing when the category has no regular ground truth.
std::optional<std::vector<double>> AccumulateCategory(
    const std::vector<const ImageCategoryEval*>& evals, size_t num_thresholds,
    const std::vector<double>& recall_thresholds) {
  if (evals.empty()) return std::nullopt;
  int regular_gts = 0;
  std::vector<double> scores;
  for (const ImageCategoryEval* e : evals) {
    regular_gts += e->regular_gts;
    scores.insert(scores.end(), e->scores.begin(), e->scores.end());
  }
  if (regular_gts == 0) return std::nullopt;

  // Position in the concatenation -> (eval, index within it), then a stable sort by score.
  std::vector<std::pair<const ImageCategoryEval*, size_t>> origin;
  origin.reserve(scores.size());
  for (const ImageCategoryEval* e : evals) {
    for (size_t d = 0; d < e->scores.size(); ++d) origin.emplace_back(e, d);
  }
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return scores[a] > scores[b]; });

  const size_t nd = order.size();
  const size_t num_recall = recall_thresholds.size();
  std::vector<double> precision_at(num_thresholds * num_recall, 0.0);
  std::vector<double> recall(nd);
  std::vector<double> precision(nd);
  for (size_t t = 0; t < num_thresholds; ++t) {
    double tp = 0;
    double fp = 0;
    for (size_t i = 0; i < nd; ++i) {
      const auto [e, d] = origin[order[i]];
      const size_t at = t * e->scores.size() + d;
      if (!e->dt_ignored[at]) {
        if (e->matched[at]) {
          tp += 1;
        } else {
          fp += 1;
        }
      }
      recall[i] = tp / regular_gts;
      precision[i] = tp / (fp + tp + std::numeric_limits<double>::epsilon());
    }
    for (size_t i = nd; i-- > 1;) {
      if (precision[i] > precision[i - 1]) precision[i - 1] = precision[i];
    }
    for (size_t r = 0; r < num_recall; ++r) {
      const size_t at = static_cast<size_t>(
          std::lower_bound(recall.begin(), recall.end(), recall_thresholds[r]) - recall.begin());
      if (at >= nd) break;  // recall never reaches this point: precision 0 from here on
      precision_at[t * num_recall + r] = precision[at];
    }
  }
  return precision_at;
}

std::optional<size_t> FindThreshold(const std::vector<double>& thresholds, double value) {
  for (size_t t = 0; t < thresholds.size(); ++t) {
    if (std::fabs(thresholds[t] - value) < 1e-9) return t;
  }
  return std::nullopt;
}

bool Finite(const CocoBox& b) {
  return std::isfinite(b.x) && std::isfinite(b.y) && std::isfinite(b.width) &&
         std::isfinite(b.height);
}

}  // namespace

std::vector<double> CocoEvalParams::DefaultIouThresholds() {
  return Linspace(0.5, 0.95, 10);
}

Result<CocoGroundTruth> ParseCocoGroundTruth(std::string_view json_text,
                                             std::string_view source_name) {
  const Json root = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return CorruptDataError(Describe(source_name, "not valid JSON"));
  }
  if (!root.is_object()) {
    return CorruptDataError(Describe(source_name, "the top level is not a JSON object"));
  }
  const std::string file(source_name);
  CocoGroundTruth gt;
  ZD_ASSIGN_OR_RETURN(const Json* images, ArrayMember(root, "images", file));
  ZD_ASSIGN_OR_RETURN(const Json* categories, ArrayMember(root, "categories", file));
  ZD_ASSIGN_OR_RETURN(const Json* annotations, ArrayMember(root, "annotations", file));

  std::unordered_map<int64_t, size_t> image_index;
  for (size_t i = 0; i < images->size(); ++i) {
    ZD_ASSIGN_OR_RETURN(auto image,
                        ParseImage((*images)[i], file + ": images[" + std::to_string(i) + "]"));
    if (!image_index.emplace(image.id, i).second) {
      return InvalidArgumentError(file + ": image id " + std::to_string(image.id) +
                                  " appears twice");
    }
    gt.images.push_back(std::move(image));
  }
  std::unordered_map<int64_t, size_t> category_index;
  for (size_t i = 0; i < categories->size(); ++i) {
    ZD_ASSIGN_OR_RETURN(
        auto category,
        ParseCategory((*categories)[i], file + ": categories[" + std::to_string(i) + "]"));
    category_index.emplace(category.id, i);
    gt.categories.push_back(std::move(category));
  }
  for (size_t i = 0; i < annotations->size(); ++i) {
    const std::string where = file + ": annotations[" + std::to_string(i) + "]";
    ZD_ASSIGN_OR_RETURN(auto annotation, ParseAnnotation((*annotations)[i], where));
    if (!image_index.contains(annotation.image_id)) {
      return InvalidArgumentError(where + " refers to image id " +
                                  std::to_string(annotation.image_id) + ", which is not listed");
    }
    if (!category_index.contains(annotation.category_id)) {
      return InvalidArgumentError(where + " refers to category id " +
                                  std::to_string(annotation.category_id) + ", which is not listed");
    }
    gt.annotations.push_back(annotation);
  }
  return gt;
}

Result<CocoGroundTruth> LoadCocoGroundTruth(const std::filesystem::path& path) {
  ZD_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileBytes(path));
  return ParseCocoGroundTruth(
      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path.string());
}

int AppendCoco80Detections(int64_t image_id, std::span<const Detection> detections,
                           std::vector<CocoDetection>& out) {
  int skipped = 0;
  for (const Detection& d : detections) {
    const int category_id = Coco80ToCategoryId(d.class_id);
    if (category_id < 0) {
      ++skipped;
      continue;
    }
    const double x1 = d.box.x1;
    const double y1 = d.box.y1;
    out.push_back(CocoDetection{
        image_id, category_id, d.score,
        CocoBox{x1, y1, static_cast<double>(d.box.x2) - x1, static_cast<double>(d.box.y2) - y1}});
  }
  return skipped;
}

Result<CocoEvalResult> EvaluateCocoBoxes(const CocoGroundTruth& ground_truth,
                                         std::span<const CocoDetection> detections,
                                         const CocoEvalParams& params) {
  const std::vector<double>& thresholds = params.iou_thresholds;
  if (thresholds.empty() || !std::is_sorted(thresholds.begin(), thresholds.end()) ||
      thresholds.front() < 0 || thresholds.back() > 1) {
    return InvalidArgumentError("iou_thresholds must be a non-empty ascending list in [0, 1]");
  }
  if (params.max_detections < 1) {
    return InvalidArgumentError("max_detections must be >= 1, got " +
                                std::to_string(params.max_detections));
  }
  if (!(params.area_min <= params.area_max)) {
    return InvalidArgumentError("area range is empty: area_min > area_max");
  }

  // Images in ascending id order (pycocotools sorts p.imgIds), categories likewise.
  std::unordered_map<int64_t, bool> known_image;
  for (const auto& image : ground_truth.images) known_image[image.id] = true;
  std::vector<int64_t> image_ids;
  if (params.image_ids.empty()) {
    for (const auto& image : ground_truth.images) image_ids.push_back(image.id);
  } else {
    for (int64_t id : params.image_ids) {
      if (!known_image.contains(id)) {
        return InvalidArgumentError("image id " + std::to_string(id) +
                                    " is not in the ground truth");
      }
      image_ids.push_back(id);
    }
  }
  std::sort(image_ids.begin(), image_ids.end());
  image_ids.erase(std::unique(image_ids.begin(), image_ids.end()), image_ids.end());
  std::vector<int64_t> category_ids;
  for (const auto& category : ground_truth.categories) category_ids.push_back(category.id);
  std::sort(category_ids.begin(), category_ids.end());
  category_ids.erase(std::unique(category_ids.begin(), category_ids.end()), category_ids.end());

  std::unordered_map<int64_t, size_t> image_slot;
  for (size_t i = 0; i < image_ids.size(); ++i) image_slot[image_ids[i]] = i;
  std::unordered_map<int64_t, size_t> category_slot;
  for (size_t k = 0; k < category_ids.size(); ++k) category_slot[category_ids[k]] = k;

  const size_t num_images = image_ids.size();
  const size_t num_categories = category_ids.size();
  std::vector<Cell> cells(num_images * num_categories);  // [category][image]
  auto cell_of = [&](int64_t image_id, int64_t category_id) -> Cell* {
    auto i = image_slot.find(image_id);
    auto k = category_slot.find(category_id);
    if (i == image_slot.end() || k == category_slot.end()) return nullptr;
    return &cells[k->second * num_images + i->second];
  };
  for (const auto& a : ground_truth.annotations) {
    Cell* cell = cell_of(a.image_id, a.category_id);
    if (cell == nullptr) continue;
    const bool outside = a.area < params.area_min || a.area > params.area_max;
    cell->gts.push_back(GtBox{a.bbox, a.iscrowd, outside});
  }
  for (size_t n = 0; n < detections.size(); ++n) {
    const CocoDetection& d = detections[n];
    if (!known_image.contains(d.image_id)) {
      return InvalidArgumentError("detection " + std::to_string(n) + " is of image id " +
                                  std::to_string(d.image_id) +
                                  ", which the ground truth does not have");
    }
    if (!std::isfinite(d.score) || !Finite(d.bbox)) {
      return InvalidArgumentError("detection " + std::to_string(n) + " of image id " +
                                  std::to_string(d.image_id) + " has a non-finite score or box");
    }
    Cell* cell = cell_of(d.image_id, d.category_id);
    if (cell == nullptr) continue;
    cell->dts.push_back(DtBox{d.bbox, d.score, d.bbox.width * d.bbox.height});
  }

  const std::vector<double> recall_thresholds = Linspace(0.0, 1.0, kRecallPoints);
  const size_t num_thresholds = thresholds.size();
  const std::optional<size_t> t50 = FindThreshold(thresholds, 0.5);
  const std::optional<size_t> t75 = FindThreshold(thresholds, 0.75);

  CocoEvalResult result;
  result.images = static_cast<int>(num_images);
  double sum_all = 0;
  double sum50 = 0;
  double sum75 = 0;
  size_t counted = 0;
  std::vector<ImageCategoryEval> evals;
  std::vector<const ImageCategoryEval*> present;
  for (size_t k = 0; k < num_categories; ++k) {
    evals.clear();
    evals.reserve(num_images);
    present.clear();
    for (size_t i = 0; i < num_images; ++i) {
      const Cell& cell = cells[k * num_images + i];
      if (cell.gts.empty() && cell.dts.empty()) continue;
      evals.push_back(EvaluateCell(cell, params));
    }
    for (const ImageCategoryEval& e : evals) present.push_back(&e);
    auto precision = AccumulateCategory(present, num_thresholds, recall_thresholds);
    if (!precision) continue;
    const double total = std::accumulate(precision->begin(), precision->end(), 0.0);
    const double ap = total / static_cast<double>(precision->size());
    result.category_ap[category_ids[k]] = ap;
    sum_all += ap;
    auto mean_at = [&](size_t t) {
      return std::accumulate(precision->begin() + static_cast<ptrdiff_t>(t * kRecallPoints),
                             precision->begin() + static_cast<ptrdiff_t>((t + 1) * kRecallPoints),
                             0.0) /
             kRecallPoints;
    };
    if (t50) sum50 += mean_at(*t50);
    if (t75) sum75 += mean_at(*t75);
    ++counted;
  }
  if (counted > 0) {
    result.map50_95 = sum_all / static_cast<double>(counted);
    if (t50) result.map50 = sum50 / static_cast<double>(counted);
    if (t75) result.map75 = sum75 / static_cast<double>(counted);
  }
  return result;
}

}  // namespace zerodet

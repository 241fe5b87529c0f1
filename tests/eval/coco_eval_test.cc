// COCO box evaluation on hand-made ground truth and detections whose AP follows by hand from
// pycocotools' definition (101 recall points; AP = mean over 10 IoU thresholds), and on the
// real annotations of ../shared/coco-val-tiny.
#include "zerodet/eval/coco_eval.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>

namespace zerodet {
namespace {

constexpr double kEps = 1e-9;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Ground truth builder: images 1..n, categories as given.
class GroundTruthBuilder {
 public:
  GroundTruthBuilder(int images, std::vector<int64_t> categories) {
    for (int i = 1; i <= images; ++i) {
      gt_.images.push_back({i, "image" + std::to_string(i) + ".jpg", 640, 480});
    }
    for (int64_t c : categories) gt_.categories.push_back({c, "category" + std::to_string(c)});
  }
  GroundTruthBuilder& Box(int64_t image, int64_t category, CocoBox box, bool crowd = false) {
    gt_.annotations.push_back({next_id_++, image, category, box, box.width * box.height, crowd});
    return *this;
  }
  const CocoGroundTruth& gt() const { return gt_; }

 private:
  CocoGroundTruth gt_;
  int64_t next_id_ = 1;
};

double Evaluate(const CocoGroundTruth& gt, const std::vector<CocoDetection>& dets,
                CocoEvalResult* out = nullptr, const CocoEvalParams& params = {}) {
  auto result = EvaluateCocoBoxes(gt, dets, params);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  if (!result.ok()) return -2;
  if (out) *out = *result;
  return result->map50_95;
}

TEST(CocoEvalTest, DefaultThresholdsAreNumpyLinspace) {
  const auto t = CocoEvalParams::DefaultIouThresholds();
  ASSERT_EQ(t.size(), 10u);
  EXPECT_EQ(t.front(), 0.5);
  EXPECT_EQ(t.back(), 0.95);
  EXPECT_EQ(t[5], 0.75);  // pycocotools finds AP75 by equality, so it must be exact
  for (size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], 0.05, 1e-12);
}

TEST(CocoEvalTest, PerfectDetectionsScoreOne) {
  GroundTruthBuilder b(2, {1, 2, 3});
  b.Box(1, 1, {10, 10, 50, 40}).Box(1, 2, {100, 100, 30, 30}).Box(2, 1, {0, 0, 640, 480});
  b.Box(2, 1, {300, 200, 20, 60});
  std::vector<CocoDetection> dets;
  double score = 0.9;
  for (const auto& a : b.gt().annotations)
    dets.push_back({a.image_id, a.category_id, score -= 0.1, a.bbox});
  CocoEvalResult r;
  EXPECT_NEAR(Evaluate(b.gt(), dets, &r), 1.0, kEps);
  EXPECT_NEAR(r.map50, 1.0, kEps);
  EXPECT_NEAR(r.map75, 1.0, kEps);
  EXPECT_EQ(r.images, 2);
  // Category 3 has no ground truth: not part of the mean.
  EXPECT_EQ(r.category_ap.size(), 2u);
  EXPECT_FALSE(r.category_ap.contains(3));
}

TEST(CocoEvalTest, NoDetectionsScoreZero) {
  GroundTruthBuilder b(1, {1});
  b.Box(1, 1, {10, 10, 50, 40});
  CocoEvalResult r;
  EXPECT_NEAR(Evaluate(b.gt(), {}, &r), 0.0, kEps);
  EXPECT_NEAR(r.map50, 0.0, kEps);
}

// Two boxes, one found: recall 0.5, so precision 1 at the 51 recall points 0, .01, ..., .50
// and 0 at the other 50, at every threshold.
TEST(CocoEvalTest, HalfTheBoxesFound) {
  GroundTruthBuilder b(1, {1});
  b.Box(1, 1, {10, 10, 50, 40}).Box(1, 1, {200, 200, 50, 40});
  const std::vector<CocoDetection> dets = {{1, 1, 0.9, {10, 10, 50, 40}}};
  CocoEvalResult r;
  EXPECT_NEAR(Evaluate(b.gt(), dets, &r), 51.0 / 101.0, kEps);
  EXPECT_NEAR(r.map50, 51.0 / 101.0, kEps);

  // A lower-scored false positive after the hit changes nothing: precision is still 1 up to
  // recall 0.5.
  auto with_fp = dets;
  with_fp.push_back({1, 1, 0.5, {400, 300, 30, 30}});
  EXPECT_NEAR(Evaluate(b.gt(), with_fp), 51.0 / 101.0, kEps);
}

// The same two detections in the other score order: the false positive first halves the
// precision at every recall point up to 0.5.
TEST(CocoEvalTest, ScoreOrderDecides) {
  GroundTruthBuilder b(1, {1});
  b.Box(1, 1, {10, 10, 50, 40}).Box(1, 1, {200, 200, 50, 40});
  const std::vector<CocoDetection> dets = {{1, 1, 0.5, {10, 10, 50, 40}},
                                           {1, 1, 0.9, {400, 300, 30, 30}}};
  EXPECT_NEAR(Evaluate(b.gt(), dets), 0.5 * 51.0 / 101.0, kEps);
}

// Two images merged by score: 0.9 hit, 0.8 miss, 0.6 hit over 2 boxes. Recall .5, .5, 1 and
// precision 1, .5, 2/3, made monotone 1, 2/3, 2/3: 51 points at 1 and 50 at 2/3.
TEST(CocoEvalTest, DetectionsOfAllImagesMergeByScore) {
  GroundTruthBuilder b(2, {1});
  b.Box(1, 1, {10, 10, 50, 40}).Box(2, 1, {100, 100, 60, 60});
  const std::vector<CocoDetection> dets = {{1, 1, 0.9, {10, 10, 50, 40}},
                                           {2, 1, 0.8, {300, 300, 60, 60}},
                                           {2, 1, 0.6, {100, 100, 60, 60}}};
  EXPECT_NEAR(Evaluate(b.gt(), dets), (51.0 + 50.0 * 2.0 / 3.0) / 101.0, kEps);
}

// IoU 0.72 (a 72 x 100 box inside a 100 x 100 one) matches at thresholds .50 ... .70 (5 of 10).
TEST(CocoEvalTest, IouThresholdsCount) {
  GroundTruthBuilder b(1, {1});
  b.Box(1, 1, {0, 0, 100, 100});
  const std::vector<CocoDetection> dets = {{1, 1, 0.9, {0, 0, 72, 100}}};
  CocoEvalResult r;
  EXPECT_NEAR(Evaluate(b.gt(), dets, &r), 0.5, kEps);
  EXPECT_NEAR(r.map50, 1.0, kEps);
  EXPECT_NEAR(r.map75, 0.0, kEps);
}

// Greedy matching in score order: the higher-scored of two detections on one box takes it (at
// IoU 0.6 it would lose to the better-fitting one under optimal matching); the other is a false
// positive at thresholds where it would have matched.
TEST(CocoEvalTest, GreedyMatchingTakesHighestScoreFirst) {
  GroundTruthBuilder b(1, {1});
  b.Box(1, 1, {0, 0, 100, 100});
  const std::vector<CocoDetection> dets = {{1, 1, 0.9, {0, 0, 82, 100}},    // IoU 0.82
                                           {1, 1, 0.8, {0, 0, 100, 100}}};  // IoU 1.0
  // Thresholds .50 ... .80 (7): the 0.9 detection matches first, precision 1 -> AP 1.
  // Thresholds .85, .90, .95 (3): 0.9 misses, 0.8 hits: precision 0.5 -> AP 0.5.
  EXPECT_NEAR(Evaluate(b.gt(), dets), (7 * 1.0 + 3 * 0.5) / 10.0, kEps);
}

// A crowd region: detections inside it are neither hits nor false positives, and a crowd box may
// absorb any number of them.
TEST(CocoEvalTest, CrowdRegionsAreIgnored) {
  GroundTruthBuilder b(1, {1});
  b.Box(1, 1, {0, 0, 50, 50}).Box(1, 1, {200, 0, 400, 400}, /*crowd=*/true);
  std::vector<CocoDetection> dets = {{1, 1, 0.8, {0, 0, 50, 50}},
                                     {1, 1, 0.95, {250, 50, 40, 40}},
                                     {1, 1, 0.9, {300, 100, 40, 40}}};
  CocoEvalResult r;
  EXPECT_NEAR(Evaluate(b.gt(), dets, &r), 1.0, kEps);
  EXPECT_EQ(r.category_ap.size(), 1u);

  // The same region not marked crowd: a second box to find, and the two detections inside it are
  // false positives scored above the hit (recall 0.5 at precision 1/3).
  GroundTruthBuilder plain(1, {1});
  plain.Box(1, 1, {0, 0, 50, 50}).Box(1, 1, {200, 0, 400, 400});
  EXPECT_NEAR(Evaluate(plain.gt(), dets), 51.0 / 101.0 / 3.0, 1e-6);
}

// Crowd IoU divides by the detection's area: a 100 x 100 detection reaching 62 px into the crowd
// box has crowd-IoU 0.62, so it is ignored at thresholds .50, .55, .60 and a false positive
// (scored above the one hit) at the other 7: AP = (3 * 1 + 7 * 0.5) / 10.
TEST(CocoEvalTest, CrowdIouUsesDetectionArea) {
  GroundTruthBuilder b(1, {1});
  b.Box(1, 1, {500, 400, 50, 50}).Box(1, 1, {0, 0, 200, 200}, /*crowd=*/true);
  const std::vector<CocoDetection> dets = {{1, 1, 0.8, {500, 400, 50, 50}},
                                           {1, 1, 0.95, {138, 0, 100, 100}}};
  EXPECT_NEAR(Evaluate(b.gt(), dets), (3 * 1.0 + 7 * 0.5) / 10.0, kEps);
}

// Categories only with crowd boxes, or with none, are left out of the mean; detections of
// categories the file does not list are ignored.
TEST(CocoEvalTest, CategoriesWithoutGroundTruthAreExcluded) {
  GroundTruthBuilder b(1, {1, 2, 3});
  b.Box(1, 1, {0, 0, 50, 50}).Box(1, 2, {100, 100, 50, 50}, /*crowd=*/true);
  const std::vector<CocoDetection> dets = {{1, 1, 0.9, {0, 0, 50, 50}},
                                           {1, 2, 0.9, {300, 300, 50, 50}},
                                           {1, 3, 0.9, {300, 300, 50, 50}},
                                           {1, 77, 0.99, {0, 0, 50, 50}}};
  CocoEvalResult r;
  EXPECT_NEAR(Evaluate(b.gt(), dets, &r), 1.0, kEps);
  EXPECT_EQ(r.category_ap.size(), 1u);
  EXPECT_TRUE(r.category_ap.contains(1));
}

// Two categories, one perfect and one half found: the mean of 1 and 51/101.
TEST(CocoEvalTest, MeanOverCategories) {
  GroundTruthBuilder b(1, {1, 2});
  b.Box(1, 1, {0, 0, 50, 50}).Box(1, 2, {100, 100, 50, 50}).Box(1, 2, {300, 300, 50, 50});
  const std::vector<CocoDetection> dets = {{1, 1, 0.9, {0, 0, 50, 50}},
                                           {1, 2, 0.9, {100, 100, 50, 50}},
                                           // right box, wrong category: a miss for category 1
                                           {1, 1, 0.3, {300, 300, 50, 50}}};
  CocoEvalResult r;
  EXPECT_NEAR(Evaluate(b.gt(), dets, &r), (1.0 + 51.0 / 101.0) / 2.0, kEps);
  EXPECT_NEAR(r.category_ap[1], 1.0, kEps);
  EXPECT_NEAR(r.category_ap[2], 51.0 / 101.0, kEps);
}

// max_detections applies per image and category, to the highest scores.
TEST(CocoEvalTest, MaxDetectionsKeepsTheBestScored) {
  GroundTruthBuilder b(1, {1});
  b.Box(1, 1, {0, 0, 50, 50});
  const std::vector<CocoDetection> dets = {{1, 1, 0.5, {0, 0, 50, 50}},
                                           {1, 1, 0.9, {300, 300, 50, 50}}};
  CocoEvalParams params;
  params.max_detections = 1;
  EXPECT_NEAR(Evaluate(b.gt(), dets, nullptr, params), 0.0, kEps);
  params.max_detections = 2;
  EXPECT_NEAR(Evaluate(b.gt(), dets, nullptr, params), 0.5, kEps);
}

// Only the chosen images count.
TEST(CocoEvalTest, ImageSubset) {
  GroundTruthBuilder b(2, {1});
  b.Box(1, 1, {0, 0, 50, 50}).Box(2, 1, {0, 0, 50, 50});
  const std::vector<CocoDetection> dets = {{1, 1, 0.9, {0, 0, 50, 50}}};
  EXPECT_NEAR(Evaluate(b.gt(), dets), 51.0 / 101.0, kEps);
  CocoEvalParams params;
  params.image_ids = {1};
  CocoEvalResult r;
  EXPECT_NEAR(Evaluate(b.gt(), dets, &r, params), 1.0, kEps);
  EXPECT_EQ(r.images, 1);
}

TEST(CocoEvalTest, BadInputsAreErrors) {
  GroundTruthBuilder b(1, {1});
  b.Box(1, 1, {0, 0, 50, 50});
  const std::vector<CocoDetection> unknown_image = {{7, 1, 0.9, {0, 0, 50, 50}}};
  auto r = EvaluateCocoBoxes(b.gt(), unknown_image);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "image id 7")) << r.status().message();

  const std::vector<CocoDetection> nan_score = {{1, 1, std::nan(""), {0, 0, 50, 50}}};
  EXPECT_EQ(EvaluateCocoBoxes(b.gt(), nan_score).status().code(), StatusCode::kInvalidArgument);

  CocoEvalParams params;
  params.iou_thresholds = {};
  EXPECT_EQ(EvaluateCocoBoxes(b.gt(), {}, params).status().code(), StatusCode::kInvalidArgument);
  params = {};
  params.max_detections = 0;
  EXPECT_EQ(EvaluateCocoBoxes(b.gt(), {}, params).status().code(), StatusCode::kInvalidArgument);
  params = {};
  params.image_ids = {5};
  EXPECT_EQ(EvaluateCocoBoxes(b.gt(), {}, params).status().code(), StatusCode::kInvalidArgument);

  // No ground truth at all: -1, as pycocotools reports it.
  GroundTruthBuilder empty(1, {1});
  auto none = EvaluateCocoBoxes(empty.gt(), {});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->map50_95, -1);
}

TEST(CocoEvalTest, Coco80ClassIdsMapToCategoryIds) {
  const std::vector<Detection> dets = {
      {0, 0.9f, {10, 20, 30, 60}}, {79, 0.5f, {0, 0, 1, 1}}, {80, 0.4f, {0, 0, 1, 1}}};
  std::vector<CocoDetection> out;
  EXPECT_EQ(AppendCoco80Detections(42, dets, out), 1);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].image_id, 42);
  EXPECT_EQ(out[0].category_id, 1);
  EXPECT_NEAR(out[0].score, 0.9, 1e-6);
  EXPECT_EQ(out[0].bbox.x, 10);
  EXPECT_EQ(out[0].bbox.y, 20);
  EXPECT_EQ(out[0].bbox.width, 20);
  EXPECT_EQ(out[0].bbox.height, 40);
  EXPECT_EQ(out[1].category_id, 90);
}

// ---------------------------------------------------------------------------------------------
// Parsing.

TEST(CocoGroundTruthTest, ParsesAMinimalFile) {
  const char* json = R"({
    "images": [{"id": 3, "file_name": "a.jpg", "width": 64, "height": 48}, {"id": 4, "file_name": "b.png"}],
    "categories": [{"id": 18, "name": "dog"}],
    "annotations": [{"id": 1, "image_id": 3, "category_id": 18, "bbox": [1.5, 2, 10, 20],
                     "area": 150.25, "iscrowd": 1}]})";
  auto gt = ParseCocoGroundTruth(json, "mini.json");
  ASSERT_TRUE(gt.ok()) << gt.status().ToString();
  ASSERT_EQ(gt->images.size(), 2u);
  EXPECT_EQ(gt->images[0].file_name, "a.jpg");
  EXPECT_EQ(gt->images[0].width, 64);
  EXPECT_EQ(gt->images[1].width, 0);
  ASSERT_EQ(gt->categories.size(), 1u);
  EXPECT_EQ(gt->categories[0].name, "dog");
  ASSERT_EQ(gt->annotations.size(), 1u);
  const auto& a = gt->annotations[0];
  EXPECT_EQ(a.image_id, 3);
  EXPECT_EQ(a.category_id, 18);
  EXPECT_EQ(a.bbox.x, 1.5);
  EXPECT_EQ(a.bbox.height, 20);
  EXPECT_EQ(a.area, 150.25);
  EXPECT_TRUE(a.iscrowd);
}

TEST(CocoGroundTruthTest, MalformedFilesAreErrorsNamingTheEntry) {
  struct Case {
    const char* json;
    StatusCode code;
    const char* message_part;
  };
  const Case cases[] = {
      {"{not json", StatusCode::kCorruptData, "not valid JSON"},
      {"[1, 2]", StatusCode::kCorruptData, "not a JSON object"},
      {R"({"images": [], "categories": []})", StatusCode::kCorruptData, "\"annotations\""},
      {R"({"images": [{"id": "x", "file_name": "a.jpg"}], "categories": [], "annotations": []})",
       StatusCode::kCorruptData, "images[0]: \"id\" is not an integer"},
      {R"({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}]})",
       StatusCode::kCorruptData, "annotations[0]: \"bbox\""},
      {R"({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1}],
           "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4]}]})",
       StatusCode::kInvalidArgument, "image id 2"},
      {R"({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4]}]})",
       StatusCode::kInvalidArgument, "category id 5"},
      {R"({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}],
           "categories": [], "annotations": []})",
       StatusCode::kInvalidArgument, "appears twice"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    auto gt = ParseCocoGroundTruth(c.json, "bad.json");
    ASSERT_FALSE(gt.ok());
    EXPECT_EQ(gt.status().code(), c.code);
    EXPECT_TRUE(Contains(gt.status().message(), "bad.json")) << gt.status().message();
    EXPECT_TRUE(Contains(gt.status().message(), c.message_part)) << gt.status().message();
  }
  auto missing = LoadCocoGroundTruth("/nonexistent/instances.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

// The real annotations of ../shared/coco-val-tiny: 80 images, 815 boxes (11 crowd), 80
// categories; the ground truth itself (non-crowd boxes) as detections scores 1.0, also with a
// lower-scored false positive per box behind all the hits.
TEST(CocoGroundTruthTest, RealCocoSubset) {
  const std::filesystem::path path =
      std::filesystem::path(ZERODET_SHARED_DIR) / "coco-val-tiny" / "instances_val2017.json";
  auto gt = LoadCocoGroundTruth(path);
  ASSERT_TRUE(gt.ok()) << gt.status().ToString();
  EXPECT_EQ(gt->images.size(), 80u);
  EXPECT_EQ(gt->categories.size(), 80u);
  EXPECT_EQ(gt->annotations.size(), 815u);
  int crowd = 0;
  std::vector<CocoDetection> dets;
  for (const auto& a : gt->annotations) {
    crowd += a.iscrowd;
    if (!a.iscrowd) dets.push_back({a.image_id, a.category_id, 0.9, a.bbox});
  }
  EXPECT_EQ(crowd, 11);
  CocoEvalResult r;
  EXPECT_NEAR(Evaluate(*gt, dets, &r), 1.0, kEps);
  EXPECT_EQ(r.images, 80);
  EXPECT_EQ(r.category_ap.size(), 80u);

  // Each box gets a twin shifted far away, scored lower: precision stays 1 up to full recall, so
  // AP stays 1 (false positives after the last hit do not count).
  auto with_tail = dets;
  for (const auto& d : dets) {
    with_tail.push_back({d.image_id,
                         d.category_id,
                         0.1,
                         {d.bbox.x + 10000, d.bbox.y, d.bbox.width, d.bbox.height}});
  }
  EXPECT_NEAR(Evaluate(*gt, with_tail), 1.0, kEps);
}

}  // namespace
}  // namespace zerodet

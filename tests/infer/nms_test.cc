#include "zerodet/infer/nms.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace zerodet {
namespace {

Detection Det(int class_id, float score, float x1, float y1, float x2, float y2) {
  return Detection{class_id, score, Box{x1, y1, x2, y2}};
}

// Reference greedy NMS written the slow, obvious way (quadratic, no early exit).
std::vector<Detection> SlowNms(std::vector<Detection> in, float iou, int max_det, bool agnostic) {
  std::stable_sort(in.begin(), in.end(),
                   [](const Detection& a, const Detection& b) { return a.score > b.score; });
  std::vector<bool> removed(in.size(), false);
  std::vector<Detection> out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (removed[i]) continue;
    out.push_back(in[i]);
    for (size_t j = i + 1; j < in.size(); ++j) {
      if ((agnostic || in[j].class_id == in[i].class_id) && IoU(in[i].box, in[j].box) > iou) {
        removed[j] = true;
      }
    }
  }
  if (out.size() > static_cast<size_t>(max_det)) out.resize(static_cast<size_t>(max_det));
  return out;
}

TEST(NmsTest, EmptyInput) {
  EXPECT_TRUE(NonMaxSuppression({}, 0.45f, 300, false).empty());
}

TEST(NmsTest, SuppressesOverlapOfSameClassOnly) {
  // Boxes 0 and 1 overlap with IoU 81/119 = 0.68; box 2 is box 1 with another class.
  std::vector<Detection> in = {Det(0, 0.9f, 0, 0, 10, 10), Det(0, 0.8f, 1, 1, 11, 11),
                               Det(1, 0.7f, 1, 1, 11, 11)};
  auto aware = NonMaxSuppression(in, 0.45f, 300, /*class_agnostic=*/false);
  ASSERT_EQ(aware.size(), 2u);
  EXPECT_EQ(aware[0].class_id, 0);
  EXPECT_FLOAT_EQ(aware[0].score, 0.9f);
  EXPECT_EQ(aware[1].class_id, 1);

  auto agnostic = NonMaxSuppression(in, 0.45f, 300, /*class_agnostic=*/true);
  ASSERT_EQ(agnostic.size(), 1u);
  EXPECT_FLOAT_EQ(agnostic[0].score, 0.9f);
}

TEST(NmsTest, IouThresholdIsStrict) {
  // a = [0,0,10,10], b = [0,0,10,5]: intersection 50, union 100, IoU exactly 0.5.
  std::vector<Detection> in = {Det(0, 0.9f, 0, 0, 10, 10), Det(0, 0.8f, 0, 0, 10, 5)};
  EXPECT_EQ(NonMaxSuppression(in, 0.5f, 300, false).size(), 2u);   // 0.5 is not > 0.5
  EXPECT_EQ(NonMaxSuppression(in, 0.49f, 300, false).size(), 1u);  // 0.5 > 0.49
}

TEST(NmsTest, NonOverlappingBoxesAllKeptInScoreOrder) {
  std::vector<Detection> in = {Det(0, 0.3f, 0, 0, 10, 10), Det(0, 0.9f, 20, 20, 30, 30),
                               Det(0, 0.6f, 40, 40, 50, 50)};
  auto out = NonMaxSuppression(in, 0.45f, 300, false);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_FLOAT_EQ(out[0].score, 0.9f);
  EXPECT_FLOAT_EQ(out[1].score, 0.6f);
  EXPECT_FLOAT_EQ(out[2].score, 0.3f);
}

TEST(NmsTest, MaxDetectionsCapsHighestScores) {
  std::vector<Detection> in;
  for (int i = 0; i < 10; ++i) {
    const float x = 20.0f * static_cast<float>(i);
    in.push_back(Det(0, 0.1f * static_cast<float>(i), x, 0, x + 10, 10));
  }
  auto out = NonMaxSuppression(in, 0.45f, 3, false);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_FLOAT_EQ(out[0].score, 0.9f);
  EXPECT_FLOAT_EQ(out[2].score, 0.7f);
  EXPECT_TRUE(NonMaxSuppression(in, 0.45f, 0, false).empty());
}

TEST(NmsTest, TiesKeepInputOrder) {
  // Same score and same box: the first one in the input survives.
  std::vector<Detection> in = {Det(3, 0.5f, 0, 0, 10, 10), Det(3, 0.5f, 0, 0, 10, 10)};
  in[1].box.x2 = 10.0001f;  // tell them apart
  auto out = NonMaxSuppression(in, 0.45f, 300, false);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].box.x2, 10.0f);

  // Equal scores without overlap come out in input order.
  std::vector<Detection> apart = {Det(1, 0.5f, 50, 0, 60, 10), Det(2, 0.5f, 0, 0, 10, 10)};
  auto kept = NonMaxSuppression(apart, 0.45f, 300, false);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].class_id, 1);
  EXPECT_EQ(kept[1].class_id, 2);
}

TEST(NmsTest, DegenerateAndNanCandidates) {
  std::vector<Detection> in = {Det(0, std::numeric_limits<float>::quiet_NaN(), 0, 0, 10, 10),
                               Det(0, 0.5f, 5, 5, 5, 5),  // empty box: overlaps nothing
                               Det(0, 0.4f, 0, 0, 10, 10)};
  auto out = NonMaxSuppression(in, 0.45f, 300, false);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_FLOAT_EQ(out[0].score, 0.5f);
  EXPECT_FLOAT_EQ(out[1].score, 0.4f);
}

TEST(NmsTest, NegativeAndLargeClassIds) {
  std::vector<Detection> in = {Det(-1, 0.9f, 0, 0, 10, 10), Det(100000, 0.8f, 0, 0, 10, 10),
                               Det(-1, 0.7f, 0, 0, 10, 10)};
  auto out = NonMaxSuppression(in, 0.45f, 300, false);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].class_id, -1);
  EXPECT_EQ(out[1].class_id, 100000);
}

TEST(NmsTest, MatchesReferenceOnRandomBoxes) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> pos(0, 200);
  std::uniform_real_distribution<float> size(5, 60);
  std::uniform_real_distribution<float> score(0, 1);
  std::uniform_int_distribution<int> cls(0, 4);
  for (int round = 0; round < 20; ++round) {
    std::vector<Detection> in;
    for (int i = 0; i < 400; ++i) {
      const float x = pos(rng), y = pos(rng);
      in.push_back(Det(cls(rng), score(rng), x, y, x + size(rng), y + size(rng)));
    }
    for (bool agnostic : {false, true}) {
      for (int max_det : {5, 300}) {
        auto fast = NonMaxSuppression(in, 0.45f, max_det, agnostic);
        auto slow = SlowNms(in, 0.45f, max_det, agnostic);
        ASSERT_EQ(fast.size(), slow.size()) << "round " << round;
        for (size_t i = 0; i < fast.size(); ++i) {
          EXPECT_EQ(fast[i].class_id, slow[i].class_id);
          EXPECT_EQ(fast[i].score, slow[i].score);
          EXPECT_EQ(fast[i].box.x1, slow[i].box.x1);
        }
      }
    }
  }
}

}  // namespace
}  // namespace zerodet

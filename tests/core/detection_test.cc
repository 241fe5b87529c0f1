#include "zerodet/core/detection.h"

#include <gtest/gtest.h>

namespace zerodet {
namespace {

TEST(DetectionTest, IoU) {
  Box a{0, 0, 10, 10};
  Box b{5, 0, 15, 10};
  EXPECT_FLOAT_EQ(IoU(a, a), 1.0f);
  EXPECT_FLOAT_EQ(IoU(a, b), 50.0f / 150.0f);
  EXPECT_FLOAT_EQ(IoU(a, Box{20, 20, 30, 30}), 0.0f);
  EXPECT_FLOAT_EQ(IoU(a, Box{3, 3, 3, 3}), 0.0f);
}

TEST(DetectionTest, CocoNamesAndIds) {
  ASSERT_EQ(Coco80Names().size(), 80u);
  EXPECT_EQ(Coco80Names()[16], "dog");
  EXPECT_EQ(Coco80ToCategoryId(0), 1);
  EXPECT_EQ(Coco80ToCategoryId(16), 18);
  EXPECT_EQ(Coco80ToCategoryId(79), 90);
  EXPECT_EQ(Coco80ToCategoryId(80), -1);
  EXPECT_EQ(Coco80ToCategoryId(-1), -1);
}

}  // namespace
}  // namespace zerodet

#include "zerodet/core/image.h"

#include <gtest/gtest.h>

namespace zerodet {
namespace {

TEST(ImageTest, AllocatesPackedRows) {
  Image img(7, 5, PixelFormat::kRGB8);
  EXPECT_EQ(img.stride(), 21u);
  EXPECT_EQ(img.size_bytes(), 105u);
  ImageView v = img.view();
  EXPECT_EQ(v.channels(), 3);
  EXPECT_EQ(v.row(2), img.data() + 42);
  EXPECT_FALSE(v.empty());
}

TEST(ImageTest, MoveKeepsPixels) {
  Image a(4, 4, PixelFormat::kGray8);
  const uint8_t* p = a.data();
  Image b = std::move(a);
  EXPECT_EQ(b.data(), p);
  EXPECT_TRUE(ImageView{}.empty());
}

TEST(ImageTest, ChannelCounts) {
  EXPECT_EQ(ChannelCount(PixelFormat::kGray8), 1);
  EXPECT_EQ(ChannelCount(PixelFormat::kBGR8), 3);
  EXPECT_EQ(ChannelCount(PixelFormat::kRGBA8), 4);
  EXPECT_EQ(PixelFormatName(PixelFormat::kRGBA8), "rgba8");
}

}  // namespace
}  // namespace zerodet

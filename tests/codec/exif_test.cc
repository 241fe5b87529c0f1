#include "exif.h"

#include <gtest/gtest.h>

#include "codec_test_util.h"

namespace zerodet::codec_internal {
namespace {

TEST(ExifOrientation, RealCameraFilesAreUpright) {
  // dog.jpg and bus.jpg carry EXIF blocks (Canon, iPhone) with orientation 1.
  for (const char* name : {"dog.jpg", "bus.jpg", "zidane.jpg"}) {
    EXPECT_EQ(ReadJpegExifOrientation(testing::ReadOrDie(testing::SharedImage(name))), 1) << name;
  }
}

TEST(ExifOrientation, MalformedSegmentsAreIgnored) {
  EXPECT_EQ(ReadJpegExifOrientation({}), 1);
  // APP1 whose length runs past the end of the data.
  const std::vector<uint8_t> overlong = {0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF, 'E', 'x', 'i', 'f'};
  EXPECT_EQ(ReadJpegExifOrientation(overlong), 1);
  // EXIF whose IFD offset points outside the block.
  const std::vector<uint8_t> bad_ifd = {0xFF, 0xD8, 0xFF, 0xE1, 0,  16, 'E',  'x',  'i', 'f',
                                        0,    0,    'I',  'I',  42, 0,  0xFF, 0xFF, 0,   0};
  EXPECT_EQ(ReadJpegExifOrientation(bad_ifd), 1);
  // Orientation value out of range.
  const std::vector<uint8_t> bad_value = {
      0xFF, 0xD8, 0xFF, 0xE1, 0, 32,   'E',  'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8,
      0,    0,    0,    1,    0, 0x12, 0x01, 3,   0,   1,   0, 0, 0,   9,   0,  0, 0};
  EXPECT_EQ(ReadJpegExifOrientation(bad_value), 1);
}

}  // namespace
}  // namespace zerodet::codec_internal

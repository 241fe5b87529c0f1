// V4L2 cameras: the frame conversions on real images (every pixel format zerodet reads, built
// from ../shared/images the way a driver lays it out), and the device errors. A capture test
// runs when the machine has a camera at /dev/video0 (or $ZERODET_TEST_CAMERA); CI machines have
// none, so there it is skipped and says so.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "camera_frame.h"
#include "test_media.h"
#include "test_support.h"
#include "zerodet/codec/decode.h"
#include "zerodet/core/file.h"
#include "zerodet/pipeline/source.h"

namespace zerodet::pipeline {
namespace {

using detail::CameraFrameLayout;
using detail::ConvertCameraFrame;

const std::string kShared = ZERODET_SHARED_DIR;

size_t AsSize(int value) {
  return static_cast<size_t>(value);
}

// bus.jpg cropped to an even width, tightly packed RGB.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;
  const uint8_t* at(int x, int y) const {
    return pixels.data() + (AsSize(y) * AsSize(width) + AsSize(x)) * 3;
  }
};

RgbImage LoadBus() {
  auto decoded = DecodeImageFile(kShared + "/images/bus.jpg");
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  RgbImage image;
  image.width = decoded->image.width() & ~1;
  image.height = decoded->image.height();
  image.pixels.resize(AsSize(image.width) * AsSize(image.height) * 3);
  for (int y = 0; y < image.height; ++y) {
    std::memcpy(image.pixels.data() + AsSize(y) * AsSize(image.width) * 3,
                decoded->image.data() + static_cast<size_t>(y) * decoded->image.stride(),
                static_cast<size_t>(image.width) * 3);
  }
  return image;
}

uint8_t Clamp(double v) {
  return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
}

// RGB -> 4:2:2 packed YUV, BT.601 limited range (V4L2_COLORSPACE_SMPTE170M), chroma averaged
// over each pixel pair; rows padded to `line` bytes with garbage.
std::vector<uint8_t> ToPacked422(const RgbImage& image, bool yuyv, size_t line) {
  std::vector<uint8_t> out(line * AsSize(image.height), 0xA5);
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; x += 2) {
      double ys[2], u = 0, v = 0;
      for (int i = 0; i < 2; ++i) {
        const uint8_t* p = image.at(x + i, y);
        const double r = p[0], g = p[1], b = p[2];
        ys[i] = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255;
        u += (128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255) / 2;
        v += (128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255) / 2;
      }
      uint8_t* q = out.data() + AsSize(y) * line + AsSize(x) * 2;
      if (yuyv) {
        q[0] = Clamp(ys[0]), q[1] = Clamp(u), q[2] = Clamp(ys[1]), q[3] = Clamp(v);
      } else {
        q[0] = Clamp(u), q[1] = Clamp(ys[0]), q[2] = Clamp(v), q[3] = Clamp(ys[1]);
      }
    }
  }
  return out;
}

double MeanAbsDiff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += std::abs(int{a[i]} - int{b[i]});
  return sum / static_cast<double>(a.size());
}

std::vector<uint8_t> Convert(const CameraFrameLayout& layout, const std::vector<uint8_t>& src) {
  std::vector<uint8_t> rgb(AsSize(layout.width) * AsSize(layout.height) * 3);
  const Status status = ConvertCameraFrame(layout, src, rgb, "test");
  EXPECT_TRUE(status.ok()) << status.ToString();
  return rgb;
}

TEST(CameraFrameTest, Packed422ComesBackAsTheImage) {
  const RgbImage bus = LoadBus();
  const size_t line = static_cast<size_t>(bus.width) * 2 + 64;
  for (const bool yuyv : {true, false}) {
    const std::vector<uint8_t> packed = ToPacked422(bus, yuyv, line);
    const CameraFrameLayout layout{yuyv ? detail::kFourCcYuyv : detail::kFourCcUyvy, bus.width,
                                   bus.height, line};
    // Only the chroma subsampling and rounding separate the result from the original.
    EXPECT_LT(MeanAbsDiff(Convert(layout, packed), bus.pixels), 3.0) << (yuyv ? "YUYV" : "UYVY");
    // The same bytes read in the other byte order are far off: the check above can fail.
    CameraFrameLayout swapped = layout;
    swapped.fourcc = yuyv ? detail::kFourCcUyvy : detail::kFourCcYuyv;
    EXPECT_GT(MeanAbsDiff(Convert(swapped, packed), bus.pixels), 20.0);
  }
}

TEST(CameraFrameTest, Rgb24BgrAndGreyWithPaddedRows) {
  const RgbImage bus = LoadBus();
  const size_t line = static_cast<size_t>(bus.width) * 3 + 32;
  std::vector<uint8_t> rgb_rows(line * AsSize(bus.height), 0x5A);
  std::vector<uint8_t> bgr_rows(line * AsSize(bus.height), 0x5A);
  std::vector<uint8_t> grey_rows(AsSize(bus.width + 16) * AsSize(bus.height), 0x5A);
  std::vector<uint8_t> grey_expected(bus.pixels.size());
  for (int y = 0; y < bus.height; ++y) {
    for (int x = 0; x < bus.width; ++x) {
      const uint8_t* p = bus.at(x, y);
      uint8_t* r = rgb_rows.data() + AsSize(y) * line + AsSize(x) * 3;
      uint8_t* b = bgr_rows.data() + AsSize(y) * line + AsSize(x) * 3;
      r[0] = p[0], r[1] = p[1], r[2] = p[2];
      b[0] = p[2], b[1] = p[1], b[2] = p[0];
      grey_rows[AsSize(y) * AsSize(bus.width + 16) + AsSize(x)] = p[1];
      uint8_t* g = grey_expected.data() + (AsSize(y) * AsSize(bus.width) + AsSize(x)) * 3;
      g[0] = g[1] = g[2] = p[1];
    }
  }
  EXPECT_EQ(Convert({detail::kFourCcRgb24, bus.width, bus.height, line}, rgb_rows), bus.pixels);
  EXPECT_EQ(Convert({detail::kFourCcBgr24, bus.width, bus.height, line}, bgr_rows), bus.pixels);
  EXPECT_EQ(
      Convert({detail::kFourCcGrey, bus.width, bus.height, static_cast<size_t>(bus.width) + 16},
              grey_rows),
      grey_expected);
}

TEST(CameraFrameTest, MjpegFrameDecodesLikeTheCodec) {
  auto bytes = ReadFileBytes(kShared + "/images/bus.jpg");
  ASSERT_TRUE(bytes.ok());
  auto expected = DecodeImage(*bytes, "bus.jpg");
  ASSERT_TRUE(expected.ok());
  const int w = expected->image.width(), h = expected->image.height();
  std::vector<uint8_t> rgb = Convert({detail::kFourCcMjpeg, w, h, 0}, *bytes);
  for (int y = 0; y < h; ++y) {
    ASSERT_EQ(
        std::memcmp(rgb.data() + AsSize(y) * AsSize(w) * 3,
                    expected->image.data() + static_cast<size_t>(y) * expected->image.stride(),
                    static_cast<size_t>(w) * 3),
        0)
        << "row " << y;
  }

  // A frame cut short by the device, and one of another size than negotiated, are errors.
  std::vector<uint8_t> truncated(bytes->begin(),
                                 bytes->begin() + static_cast<std::ptrdiff_t>(bytes->size() / 3));
  std::vector<uint8_t> out(rgb.size());
  const Status cut = ConvertCameraFrame({detail::kFourCcMjpeg, w, h, 0}, truncated, out, "cam");
  EXPECT_EQ(cut.code(), StatusCode::kCorruptData) << cut.ToString();
  const Status other =
      ConvertCameraFrame({detail::kFourCcMjpeg, w / 2, h / 2, 0}, *bytes, out, "cam");
  EXPECT_EQ(other.code(), StatusCode::kCorruptData);
  EXPECT_NE(other.message().find("the device said"), std::string::npos) << other.message();
}

TEST(CameraFrameTest, BadLayoutsAreErrors) {
  std::vector<uint8_t> src(640 * 480 * 2), dst(640 * 480 * 3);
  std::vector<uint8_t> small(100);
  EXPECT_EQ(ConvertCameraFrame({detail::kFourCcYuyv, 640, 480, 0}, src, small, "c").code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ConvertCameraFrame({detail::kFourCcYuyv, 640, 481, 0}, src, dst, "c").code(),
            StatusCode::kInvalidArgument);  // dst too small for 481 rows
  EXPECT_EQ(ConvertCameraFrame({detail::kFourCcYuyv, 639, 480, 0}, src, dst, "c").code(),
            StatusCode::kInvalidArgument);  // odd width in 4:2:2
  EXPECT_EQ(ConvertCameraFrame({detail::kFourCcYuyv, 640, 480, 1400}, src, dst, "c").code(),
            StatusCode::kCorruptData);  // padded rows need more bytes than the buffer has
  EXPECT_EQ(ConvertCameraFrame({detail::kFourCcYuyv, 640, 480, 100}, src, dst, "c").code(),
            StatusCode::kInvalidArgument);  // a line shorter than a row
  EXPECT_EQ(
      ConvertCameraFrame({detail::FourCc('N', 'V', '1', '2'), 640, 480, 0}, src, dst, "c").code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(ConvertCameraFrame({detail::kFourCcYuyv, 0, 480, 0}, src, dst, "c").code(),
            StatusCode::kInvalidArgument);
}

TEST(CameraFrameTest, FourCcNames) {
  EXPECT_EQ(detail::FourCcName(detail::kFourCcYuyv), "YUYV");
  EXPECT_EQ(detail::FourCcName(detail::kFourCcMjpeg), "MJPG");
  auto parsed = detail::ParseFourCc("UYVY");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, detail::kFourCcUyvy);
  EXPECT_EQ(detail::ParseFourCc("NV12").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(detail::ParseFourCc("YUY").status().code(), StatusCode::kInvalidArgument);
}

TEST(V4l2SourceTest, DeviceErrorsAreClear) {
  auto missing = OpenV4l2Source("/dev/zerodet-no-such-camera", {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/dev/zerodet-no-such-camera"), std::string::npos);

  // A character device that is not a camera.
  auto null_device = OpenV4l2Source("/dev/null", {});
  ASSERT_FALSE(null_device.ok());
  EXPECT_EQ(null_device.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(null_device.status().message().find("not a V4L2 device"), std::string::npos)
      << null_device.status().message();
  // Refused by its device number, before it is opened at all: opening some devices acts on
  // them (/dev/watchdog arms a reboot timer).
  EXPECT_NE(null_device.status().message().find("(device 1:3;"), std::string::npos)
      << null_device.status().message();

  const zerodet::testing::TempDir temp("camera");
  const std::string file = temp.File("video0");
  std::ofstream(file) << "not a device";
  auto regular = OpenV4l2Source(file, {});
  ASSERT_FALSE(regular.ok());
  EXPECT_NE(regular.status().message().find("not a character device"), std::string::npos);
  // A FIFO given as the camera is refused at once (opening it must not wait for a writer).
  const std::string fifo = temp.File("video1");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto from_fifo = OpenV4l2Source(fifo, {});
  EXPECT_EQ(from_fifo.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(from_fifo.status().message().find("not a character device"), std::string::npos);

  CameraOptions bad;
  bad.buffers = 1;
  EXPECT_EQ(OpenV4l2Source("/dev/null", bad).status().code(), StatusCode::kInvalidArgument);
}

TEST(V4l2SourceTest, CapturesFromARealCamera) {
  const char* env = std::getenv("ZERODET_TEST_CAMERA");
  const std::string device = env != nullptr ? env : "/dev/video0";
  if (!std::filesystem::exists(device)) {
    GTEST_SKIP() << "no camera at " << device << " (set ZERODET_TEST_CAMERA)";
  }
  auto source = OpenV4l2Source(device, {});
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  std::vector<uint8_t> rgb((*source)->max_frame_bytes());
  for (int i = 0; i < 5; ++i) {
    auto more = (*source)->Advance();
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    ASSERT_TRUE(*more);
    ASSERT_TRUE((*source)->WriteRgb(rgb).ok());
  }
  EXPECT_GT((*source)->width(), 0);
  EXPECT_GT((*source)->height(), 0);
}

}  // namespace
}  // namespace zerodet::pipeline

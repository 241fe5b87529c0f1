#include "zerodet/codec/letterbox.h"

#include <cmath>

#include "codec_test_util.h"
#include "zerodet/codec/decode.h"

namespace zerodet {
namespace {

using testing::SharedImage;

// Ultralytics' LetterBox + preprocess written step by step with OpenCV, as in its Python code:
// cv2.resize, cv2.copyMakeBorder(114), BGR->RGB, HWC->CHW, / 255 in float32. `rgb` is RGB.
std::vector<float> ReferenceUltralytics(const cv::Mat& rgb, int dst_w, int dst_h) {
  const double r = std::min(double(dst_h) / rgb.rows, double(dst_w) / rgb.cols);
  const int new_w = static_cast<int>(std::nearbyint(rgb.cols * r));  // Python round()
  const int new_h = static_cast<int>(std::nearbyint(rgb.rows * r));
  cv::Mat resized = rgb;
  if (new_w != rgb.cols || new_h != rgb.rows) {
    cv::resize(rgb, resized, cv::Size(new_w, new_h), 0, 0, cv::INTER_LINEAR);
  }
  const double dw = (dst_w - new_w) / 2.0, dh = (dst_h - new_h) / 2.0;
  cv::Mat padded;
  cv::copyMakeBorder(resized, padded, int(std::nearbyint(dh - 0.1)), int(std::nearbyint(dh + 0.1)),
                     int(std::nearbyint(dw - 0.1)), int(std::nearbyint(dw + 0.1)),
                     cv::BORDER_CONSTANT, cv::Scalar(114, 114, 114));
  const auto w = size_t(dst_w), h = size_t(dst_h);
  std::vector<float> chw(3 * w * h);
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < dst_h; ++y) {
      for (int x = 0; x < dst_w; ++x) {
        chw[(size_t(c) * h + size_t(y)) * w + size_t(x)] = padded.at<cv::Vec3b>(y, x)[c] / 255.0f;
      }
    }
  }
  return chw;
}

// YOLOX's preproc(): resize to int(w * r), paste top-left on a 114 canvas, BGR, 0..255.
std::vector<float> ReferenceYolox(const cv::Mat& rgb, int dst_w, int dst_h) {
  const double r = std::min(double(dst_h) / rgb.rows, double(dst_w) / rgb.cols);
  cv::Mat bgr, resized;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  cv::resize(bgr, resized, cv::Size(int(rgb.cols * r), int(rgb.rows * r)), 0, 0, cv::INTER_LINEAR);
  cv::Mat canvas(dst_h, dst_w, CV_8UC3, cv::Scalar(114, 114, 114));
  resized.copyTo(canvas(cv::Rect(0, 0, resized.cols, resized.rows)));
  const auto w = size_t(dst_w), h = size_t(dst_h);
  std::vector<float> chw(3 * w * h);
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < dst_h; ++y) {
      for (int x = 0; x < dst_w; ++x) {
        chw[(size_t(c) * h + size_t(y)) * w + size_t(x)] = canvas.at<cv::Vec3b>(y, x)[c];
      }
    }
  }
  return chw;
}

ImageView ViewOf(const cv::Mat& mat, PixelFormat format) {
  return ImageView{mat.data, mat.cols, mat.rows, mat.step, format};
}

std::vector<float> RunLetterbox(const ImageView& view, LetterboxStyle style, int w, int h,
                                LetterboxGeometry* geometry = nullptr) {
  Letterboxer letterboxer;
  std::vector<float> out(size_t(3) * size_t(w) * size_t(h), -1.0f);
  auto result = letterboxer.Run(view, style, w, h, out.data(), out.size());
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  if (geometry != nullptr && result.ok()) *geometry = *result;
  return out;
}

cv::Mat SharedRgb(const char* name) {
  auto decoded = DecodeImageFile(SharedImage(name));
  EXPECT_TRUE(decoded.ok());
  return testing::AsMat(decoded->image.view()).clone();
}

TEST(Letterbox, MatchesUltralyticsExactlyOnRealImages) {
  struct Case {
    const char* image;
    int w, h;
  };
  // Portrait, landscape, square, upscaling a small image, a non-square input, a 320 model.
  for (const Case& c :
       {Case{"bus.jpg", 640, 640}, Case{"zidane.jpg", 640, 640}, Case{"giraffe.jpg", 640, 640},
        Case{"scream.jpg", 1280, 1280}, Case{"dog.jpg", 640, 384}, Case{"kite.jpg", 320, 320}}) {
    SCOPED_TRACE(::testing::Message() << c.image << " -> " << c.w << "x" << c.h);
    const cv::Mat rgb = SharedRgb(c.image);
    EXPECT_EQ(RunLetterbox(ViewOf(rgb, PixelFormat::kRGB8), LetterboxStyle::kUltralytics, c.w, c.h),
              ReferenceUltralytics(rgb, c.w, c.h));
  }
}

TEST(Letterbox, MatchesYoloxExactly) {
  for (const char* name : {"bus.jpg", "zidane.jpg", "dog.jpg"}) {
    SCOPED_TRACE(name);
    const cv::Mat rgb = SharedRgb(name);
    EXPECT_EQ(RunLetterbox(ViewOf(rgb, PixelFormat::kRGB8), LetterboxStyle::kYolox, 416, 416),
              ReferenceYolox(rgb, 416, 416));
  }
}

TEST(Letterbox, GeometryOfKnownCases) {
  // bus.jpg: 810 x 1080 -> r = 640/1080, 480 x 640, 80 px left and right.
  auto g = ComputeLetterbox(810, 1080, 640, 640, LetterboxStyle::kUltralytics);
  EXPECT_FLOAT_EQ(g.scale, float(640.0 / 1080.0));
  EXPECT_EQ(g.resized_width, 480);
  EXPECT_EQ(g.resized_height, 640);
  EXPECT_EQ(g.pad_x, 80);
  EXPECT_EQ(g.pad_y, 0);
  // Python's round(2.5) == 2 (half to even), not 3.
  g = ComputeLetterbox(10, 40, 10, 10, LetterboxStyle::kUltralytics);
  EXPECT_EQ(g.resized_width, 2);
  // Odd padding: 641 x 640 -> 640 x 639, dh = 0.5: top round(0.4) = 0, bottom 1.
  g = ComputeLetterbox(641, 640, 640, 640, LetterboxStyle::kUltralytics);
  EXPECT_EQ(g.resized_height, 639);
  EXPECT_EQ(g.pad_y, 0);
  // YOLOX truncates and pads only right/bottom.
  g = ComputeLetterbox(810, 1080, 416, 416, LetterboxStyle::kYolox);
  EXPECT_EQ(g.resized_width, 312);
  EXPECT_EQ(g.pad_x, 0);
  EXPECT_EQ(g.pad_y, 0);
}

TEST(Letterbox, ToSourceInvertsThePlacement) {
  const auto g = ComputeLetterbox(810, 1080, 640, 640, LetterboxStyle::kUltralytics);
  const Box source{81.0f, 108.0f, 405.0f, 540.0f};
  const Box model{source.x1 * g.scale + g.pad_x, source.y1 * g.scale + g.pad_y,
                  source.x2 * g.scale + g.pad_x, source.y2 * g.scale + g.pad_y};
  const Box back = g.ToSource(model);
  EXPECT_NEAR(back.x1, source.x1, 1e-3);
  EXPECT_NEAR(back.y1, source.y1, 1e-3);
  EXPECT_NEAR(back.x2, source.x2, 1e-3);
  EXPECT_NEAR(back.y2, source.y2, 1e-3);
}

TEST(Letterbox, OtherPixelFormatsAndStridedViews) {
  const cv::Mat rgb = SharedRgb("dog.jpg");
  const auto expected = ReferenceUltralytics(rgb, 640, 640);

  cv::Mat bgr, rgba;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  cv::cvtColor(rgb, rgba, cv::COLOR_RGB2RGBA);
  EXPECT_EQ(RunLetterbox(ViewOf(bgr, PixelFormat::kBGR8), LetterboxStyle::kUltralytics, 640, 640),
            expected);
  EXPECT_EQ(RunLetterbox(ViewOf(rgba, PixelFormat::kRGBA8), LetterboxStyle::kUltralytics, 640, 640),
            expected);

  // A view into a wider buffer (e.g. a ring slot with row padding).
  cv::Mat wide(rgb.rows, rgb.cols + 13, CV_8UC3, cv::Scalar(1, 2, 3));
  rgb.copyTo(wide(cv::Rect(0, 0, rgb.cols, rgb.rows)));
  ImageView strided = ViewOf(wide, PixelFormat::kRGB8);
  strided.width = rgb.cols;
  EXPECT_EQ(RunLetterbox(strided, LetterboxStyle::kUltralytics, 640, 640), expected);

  cv::Mat gray, gray_rgb;
  cv::cvtColor(rgb, gray, cv::COLOR_RGB2GRAY);
  cv::cvtColor(gray, gray_rgb, cv::COLOR_GRAY2RGB);
  EXPECT_EQ(RunLetterbox(ViewOf(gray, PixelFormat::kGray8), LetterboxStyle::kUltralytics, 640, 640),
            ReferenceUltralytics(gray_rgb, 640, 640));
}

TEST(Letterbox, SameSizeSourceIsNotResized) {
  cv::Mat rgb(640, 640, CV_8UC3);
  cv::randu(rgb, 0, 256);
  LetterboxGeometry g;
  const auto out =
      RunLetterbox(ViewOf(rgb, PixelFormat::kRGB8), LetterboxStyle::kUltralytics, 640, 640, &g);
  EXPECT_EQ(g.scale, 1.0f);
  EXPECT_EQ(out, ReferenceUltralytics(rgb, 640, 640));
}

TEST(Letterbox, RejectsBadArguments) {
  Letterboxer letterboxer;
  std::vector<float> out(3 * 64 * 64);
  const cv::Mat rgb(32, 48, CV_8UC3, cv::Scalar(0));
  const ImageView view = ViewOf(rgb, PixelFormat::kRGB8);
  EXPECT_EQ(
      letterboxer.Run(ImageView{}, LetterboxStyle::kUltralytics, 64, 64, out.data(), out.size())
          .status()
          .code(),
      StatusCode::kInvalidArgument);
  auto small = letterboxer.Run(view, LetterboxStyle::kUltralytics, 64, 64, out.data(), 100);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("needs 12288"), std::string::npos);
  EXPECT_FALSE(
      letterboxer.Run(view, LetterboxStyle::kUltralytics, 0, 64, out.data(), out.size()).ok());
  EXPECT_FALSE(letterboxer.Run(view, LetterboxStyle::kUltralytics, 64, 64, nullptr, 0).ok());
  ImageView bad_stride = view;
  bad_stride.stride = 10;
  EXPECT_FALSE(
      letterboxer.Run(bad_stride, LetterboxStyle::kUltralytics, 64, 64, out.data(), out.size())
          .ok());
}

}  // namespace
}  // namespace zerodet

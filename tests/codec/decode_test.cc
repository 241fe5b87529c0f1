#include "zerodet/codec/decode.h"

#include <turbojpeg.h>

#include <fstream>

#include "codec_test_util.h"
#include "jpeg_markers.h"

namespace zerodet {
namespace {

using testing::AsMat;
using testing::DifferentBytes;
using testing::Encode;
using testing::ReadOrDie;
using testing::ReferenceRgb;
using testing::SharedImage;

TEST(DetectImageFormat, RecognizesMagicNumbers) {
  EXPECT_EQ(DetectImageFormat(ReadOrDie(SharedImage("dog.jpg"))), ImageFormat::kJpeg);
  const cv::Mat pixels(8, 8, CV_8UC3, cv::Scalar(1, 2, 3));
  EXPECT_EQ(DetectImageFormat(Encode(".png", pixels)), ImageFormat::kPng);
  EXPECT_EQ(DetectImageFormat(Encode(".bmp", pixels)), ImageFormat::kBmp);
  const std::string text = "hello, not an image";
  EXPECT_EQ(DetectImageFormat({reinterpret_cast<const uint8_t*>(text.data()), text.size()}),
            ImageFormat::kUnknown);
  EXPECT_EQ(DetectImageFormat({}), ImageFormat::kUnknown);
}

// Every shared image decodes to exactly the pixels cv::imread gives (the reference decoder).
TEST(DecodeImage, SharedJpegsMatchOpenCvExactly) {
  for (const char* name : {"bus.jpg", "dog.jpg", "zidane.jpg", "kite.jpg", "giraffe.jpg"}) {
    SCOPED_TRACE(name);
    const auto bytes = ReadOrDie(SharedImage(name));
    auto decoded = DecodeImage(bytes, name);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(decoded->image.format(), PixelFormat::kRGB8);
    EXPECT_EQ(decoded->source_width, decoded->image.width());
    EXPECT_EQ(decoded->source_height, decoded->image.height());
    EXPECT_EQ(DifferentBytes(AsMat(decoded->image.view()), ReferenceRgb(bytes)), 0);
  }
}

TEST(DecodeImage, ReadImageInfoReadsHeadersOnly) {
  auto info = ReadImageInfo(ReadOrDie(SharedImage("bus.jpg")), "bus.jpg");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->format, ImageFormat::kJpeg);
  EXPECT_EQ(info->width, 810);
  EXPECT_EQ(info->height, 1080);
  const cv::Mat pixels(7, 9, CV_8UC3, cv::Scalar(1, 2, 3));
  for (const char* ext : {".png", ".bmp"}) {
    auto other = ReadImageInfo(Encode(ext, pixels), ext);
    ASSERT_TRUE(other.ok()) << ext;
    EXPECT_EQ(other->width, 9);
    EXPECT_EQ(other->height, 7);
  }
}

cv::Mat DogBgr() {
  return cv::imread(SharedImage("dog.jpg").string(), cv::IMREAD_COLOR);
}

TEST(DecodeImage, PngVariantsMatchOpenCv) {
  const cv::Mat bgr = DogBgr();
  cv::Mat gray, bgra, bgr16, gray16;
  cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  cv::cvtColor(bgr, bgra, cv::COLOR_BGR2BGRA);
  for (int y = 0; y < bgra.rows; ++y) {
    for (int x = 0; x < bgra.cols; ++x) bgra.at<cv::Vec4b>(y, x)[3] = uint8_t(x ^ y);
  }
  bgr.convertTo(bgr16, CV_16UC3, 257.0, 3);  // low bytes non-zero: must be dropped, not rounded
  gray.convertTo(gray16, CV_16UC1, 257.0);
  struct Case {
    const char* name;
    cv::Mat mat;
    std::vector<int> params;
  };
  const std::vector<Case> cases = {
      {"rgb", bgr, {}},
      {"gray", gray, {}},
      {"rgba (alpha dropped)", bgra, {}},
      {"16-bit rgb", bgr16, {}},
      {"16-bit gray", gray16, {}},
      {"1-bit gray", gray > 128, {cv::IMWRITE_PNG_BILEVEL, 1}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto bytes = Encode(".png", c.mat, c.params);
    auto decoded = DecodeImage(bytes, c.name);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(DifferentBytes(AsMat(decoded->image.view()), ReferenceRgb(bytes)), 0);
  }
}

TEST(DecodeImage, BmpAndGrayJpegMatchOpenCv) {
  const cv::Mat bgr = DogBgr();
  cv::Mat gray;
  cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  for (const auto& bytes : {Encode(".bmp", bgr), Encode(".bmp", gray), Encode(".jpg", gray)}) {
    auto decoded = DecodeImage(bytes, "variant");
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(DifferentBytes(AsMat(decoded->image.view()), ReferenceRgb(bytes)), 0);
  }
}

std::vector<uint8_t> CompressWithTurboJpeg(const cv::Mat& pixels, int pixel_format,
                                           int subsampling) {
  tjhandle tj = tjInitCompress();
  unsigned char* jpeg = nullptr;
  unsigned long size = 0;
  EXPECT_EQ(tjCompress2(tj, pixels.data, pixels.cols, static_cast<int>(pixels.step), pixels.rows,
                        pixel_format, &jpeg, &size, subsampling, 90, 0),
            0)
      << tjGetErrorStr2(tj);
  std::vector<uint8_t> out(jpeg, jpeg + size);
  tjFree(jpeg);
  tjDestroy(tj);
  return out;
}

TEST(DecodeImage, CmykJpegIsConvertedLikeOpenCv) {
  cv::Mat cmyk(64, 96, CV_8UC4);
  cv::randu(cmyk, 0, 256);
  const auto bytes = CompressWithTurboJpeg(cmyk, TJPF_CMYK, TJSAMP_444);
  auto decoded = DecodeImage(bytes, "cmyk.jpg");
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->image.format(), PixelFormat::kRGB8);
  EXPECT_EQ(DifferentBytes(AsMat(decoded->image.view()), ReferenceRgb(bytes)), 0);
}

// Inserts an APP1 EXIF segment with the given orientation right after SOI.
std::vector<uint8_t> WithExifOrientation(const std::vector<uint8_t>& jpeg, uint16_t orientation) {
  const std::vector<uint8_t> tiff = {'M',
                                     'M',
                                     0,
                                     42,
                                     0,
                                     0,
                                     0,
                                     8,  // big-endian, IFD0 at 8
                                     0,
                                     1,  // one entry
                                     0x01,
                                     0x12,
                                     0,
                                     3,
                                     0,
                                     0,
                                     0,
                                     1,  // orientation, SHORT, count 1
                                     uint8_t(orientation >> 8),
                                     uint8_t(orientation),
                                     0,
                                     0,
                                     0,
                                     0,
                                     0,
                                     0};  // next IFD: none
  std::vector<uint8_t> segment = {0xFF, 0xE1, 0, 0, 'E', 'x', 'i', 'f', 0, 0};
  segment.insert(segment.end(), tiff.begin(), tiff.end());
  const size_t length = segment.size() - 2;
  segment[2] = uint8_t(length >> 8);
  segment[3] = uint8_t(length);
  std::vector<uint8_t> out;
  out.reserve(jpeg.size() + segment.size());
  out.push_back(jpeg[0]);
  out.push_back(jpeg[1]);
  out.insert(out.end(), segment.begin(), segment.end());
  out.insert(out.end(), jpeg.begin() + 2, jpeg.end());
  return out;
}

TEST(DecodeImage, AppliesExifOrientationLikeOpenCv) {
  cv::Mat small;
  cv::resize(DogBgr(), small, cv::Size(96, 64));
  const auto plain = Encode(".jpg", small);
  for (uint16_t orientation = 1; orientation <= 8; ++orientation) {
    SCOPED_TRACE(orientation);
    const auto bytes = WithExifOrientation(plain, orientation);
    auto decoded = DecodeImage(bytes, "oriented.jpg");
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(DifferentBytes(AsMat(decoded->image.view()), ReferenceRgb(bytes)), 0);
    EXPECT_EQ(decoded->source_width, orientation >= 5 ? 64 : 96);
  }
}

TEST(DecodeImage, DctScalingIsOptInAndKeepsSourceSize) {
  cv::Mat large;
  cv::resize(DogBgr(), large, cv::Size(1920, 1080));
  const auto bytes = Encode(".jpg", large);
  auto full = DecodeImage(bytes, "large.jpg");
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->image.width(), 1920);

  DecodeOptions fast;
  fast.jpeg_scale_min_side = 640;  // letterbox ratio 1/3: 1/2 is the smallest scale >= 1/3
  auto scaled = DecodeImage(bytes, "large.jpg", fast);
  ASSERT_TRUE(scaled.ok());
  EXPECT_EQ(scaled->image.width(), 960);
  EXPECT_EQ(scaled->image.height(), 540);
  EXPECT_EQ(scaled->source_width, 1920);
  EXPECT_EQ(scaled->source_height, 1080);

  fast.jpeg_scale_min_side = 240;  // ratio 1/8: 1/8 itself is allowed
  scaled = DecodeImage(bytes, "large.jpg", fast);
  ASSERT_TRUE(scaled.ok());
  EXPECT_EQ(scaled->image.width(), 240);

  fast.jpeg_scale_min_side = 1280;  // ratio 2/3 > 1/2: no scaling
  scaled = DecodeImage(bytes, "large.jpg", fast);
  ASSERT_TRUE(scaled.ok());
  EXPECT_EQ(scaled->image.width(), 1920);
}

void ExpectErrorAt(int line, const Result<DecodedImage>& result, StatusCode code,
                   const std::string& part) {
  SCOPED_TRACE(::testing::Message() << "called from line " << line);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), code) << result.status().ToString();
  EXPECT_NE(result.status().message().find(part), std::string::npos) << result.status().message();
}
#define ExpectError(...) ExpectErrorAt(__LINE__, __VA_ARGS__)

TEST(DecodeImageErrors, EmptyAndNonImageInput) {
  ExpectError(DecodeImage({}, "empty.jpg"), StatusCode::kCorruptData, "empty.jpg: empty file");
  const std::string text = "this is a text file named .jpg\n";
  ExpectError(DecodeImage({reinterpret_cast<const uint8_t*>(text.data()), text.size()}, "t.jpg"),
              StatusCode::kCorruptData, "t.jpg: not a JPEG, PNG or BMP");
}

TEST(DecodeImageErrors, TruncatedJpegAndPngAndBmp) {
  auto jpeg = ReadOrDie(SharedImage("dog.jpg"));
  jpeg.resize(jpeg.size() / 2);
  ExpectError(DecodeImage(jpeg, "cut.jpg"), StatusCode::kCorruptData, "cut.jpg: truncated JPEG");
  jpeg.resize(100);  // inside the EXIF segment, before the frame header
  ExpectError(DecodeImage(jpeg, "cut.jpg"), StatusCode::kCorruptData, "cut.jpg: truncated JPEG");

  auto png = Encode(".png", DogBgr());
  png.resize(png.size() / 2);
  ExpectError(DecodeImage(png, "cut.png"), StatusCode::kCorruptData, "cut.png: corrupt or trunc");
  png.resize(20);
  ExpectError(DecodeImage(png, "cut.png"), StatusCode::kCorruptData, "truncated PNG header");

  auto bmp = Encode(".bmp", DogBgr());
  bmp.resize(bmp.size() / 2);
  ExpectError(DecodeImage(bmp, "cut.bmp"), StatusCode::kCorruptData, "cut.bmp");
}

TEST(DecodeImageErrors, CorruptedJpegData) {
  auto jpeg = ReadOrDie(SharedImage("dog.jpg"));
  // Overwrite the SOF marker region with garbage: the header becomes unparseable.
  for (size_t i = 2; i < 600 && i < jpeg.size(); ++i) jpeg[i] = uint8_t(i * 7);
  jpeg[2] = 0xFF;
  auto result = DecodeImage(jpeg, "garbage.jpg");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kCorruptData);
}

// A 30000 x 30000 PNG header (900 Mpx) is refused from the header, before any allocation.
TEST(DecodeImageErrors, DecompressionBombIsRefused) {
  std::vector<uint8_t> png = {0x89, 'P',  'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0,    0, 0,
                              13,   'I',  'H', 'D', 'R',  0,    0,    0x75, 0x30, 0, 0,
                              0x75, 0x30, 8,   2,   0,    0,    0,    0,    0,    0, 0};
  ExpectError(DecodeImage(png, "bomb.png"), StatusCode::kResourceExhausted,
              "bomb.png: image is 30000x30000 (900000000 pixels), over the limit of 64000000");

  DecodeOptions tight;
  tight.max_pixels = 1000;
  ExpectError(DecodeImage(ReadOrDie(SharedImage("dog.jpg")), "dog.jpg", tight),
              StatusCode::kResourceExhausted, "over the limit of 1000 pixels");
}

// The position of the first marker `code` (FF code) at or after `from`, or npos.
size_t FindMarker(const std::vector<uint8_t>& jpeg, uint8_t code, size_t from = 2) {
  for (size_t i = from; i + 1 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == code) return i;
  }
  return std::string::npos;
}

std::vector<uint8_t> ProgressiveDog() {
  return Encode(".jpg", DogBgr(), {cv::IMWRITE_JPEG_PROGRESSIVE, 1, cv::IMWRITE_JPEG_QUALITY, 90});
}

TEST(CountJpegScans, CountsScansOfBaselineAndProgressiveFiles) {
  EXPECT_EQ(codec_internal::CountJpegScans(ReadOrDie(SharedImage("dog.jpg")), 100), 1);
  // libjpeg's standard progressive script for YCbCr has 10 scans.
  EXPECT_EQ(codec_internal::CountJpegScans(ProgressiveDog(), 100), 10);
  EXPECT_EQ(codec_internal::CountJpegScans(ProgressiveDog(), 3), 4);  // stops after the limit
  EXPECT_EQ(codec_internal::CountJpegScans({}, 100), 0);
}

TEST(DecodeImage, ProgressiveJpegMatchesOpenCv) {
  const auto bytes = ProgressiveDog();
  auto decoded = DecodeImage(bytes, "progressive.jpg");
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(DifferentBytes(AsMat(decoded->image.view()), ReferenceRgb(bytes)), 0);
}

// A progressive JPEG whose last AC scan is repeated 2000 times: each repeat is a full pass over
// the coefficients (seconds of work), so it is refused from its marker count, before decoding.
TEST(DecodeImageErrors, ProgressiveScanBombIsRefusedBeforeDecoding) {
  const auto jpeg = ProgressiveDog();
  size_t last_sos = std::string::npos;
  for (size_t at = FindMarker(jpeg, 0xDA); at != std::string::npos;
       at = FindMarker(jpeg, 0xDA, at + 2)) {
    last_sos = at;
  }
  const size_t eoi = FindMarker(jpeg, 0xD9, last_sos);
  ASSERT_NE(last_sos, std::string::npos);
  ASSERT_NE(eoi, std::string::npos);
  std::vector<uint8_t> bomb(jpeg.begin(), jpeg.begin() + static_cast<ptrdiff_t>(eoi));
  for (int i = 0; i < 2000; ++i) {
    bomb.insert(bomb.end(), jpeg.begin() + static_cast<ptrdiff_t>(last_sos),
                jpeg.begin() + static_cast<ptrdiff_t>(eoi));
  }
  bomb.push_back(0xFF);
  bomb.push_back(0xD9);
  ExpectError(DecodeImage(bomb, "bomb.jpg"), StatusCode::kResourceExhausted,
              "bomb.jpg: JPEG has more than 64 scans");
  // The limit is an option: a tighter one refuses the plain progressive file too.
  DecodeOptions tight;
  tight.max_jpeg_scans = 5;
  ExpectError(DecodeImage(jpeg, "p.jpg", tight), StatusCode::kResourceExhausted, "more than 5");
}

// A cut-off file with an end-of-image marker appended: libjpeg only warns ("premature end of
// data segment") and fills the rest with gray, which must not reach a detector.
TEST(DecodeImageErrors, TruncatedJpegWithEndMarkerIsAnError) {
  const auto bus = ReadOrDie(SharedImage("bus.jpg"));
  for (const size_t percent : {10u, 50u, 90u}) {
    SCOPED_TRACE(percent);
    std::vector<uint8_t> cut(bus.begin(),
                             bus.begin() + static_cast<ptrdiff_t>(bus.size() * percent / 100));
    cut.push_back(0xFF);
    cut.push_back(0xD9);
    ExpectError(DecodeImage(cut, "cut.jpg"), StatusCode::kCorruptData, "cut.jpg: truncated JPEG");
  }
  // The same through a progressive file (the damage shows up while consuming its scans).
  auto progressive = ProgressiveDog();
  progressive.resize(progressive.size() / 2);
  progressive.push_back(0xFF);
  progressive.push_back(0xD9);
  ExpectError(DecodeImage(progressive, "cut.jpg"), StatusCode::kCorruptData, "cut.jpg");
}

// A frame header that promises twice the rows its scan data holds.
TEST(DecodeImageErrors, FrameLargerThanItsScanDataIsAnError) {
  auto jpeg = ReadOrDie(SharedImage("dog.jpg"));
  const size_t sof = FindMarker(jpeg, 0xC0);
  ASSERT_NE(sof, std::string::npos);
  // SOF0: FF C0, length (2), precision (1), height (2), width (2).
  const int height = jpeg[sof + 5] << 8 | jpeg[sof + 6];
  jpeg[sof + 5] = static_cast<uint8_t>((height * 2) >> 8);
  jpeg[sof + 6] = static_cast<uint8_t>(height * 2);
  ExpectError(DecodeImage(jpeg, "tall.jpg"), StatusCode::kCorruptData, "tall.jpg");
}

// Stray bytes before a marker leave the pixels intact (libjpeg warns): common in real files.
TEST(DecodeImage, ExtraneousBytesBeforeAMarkerStillDecode) {
  auto jpeg = ReadOrDie(SharedImage("dog.jpg"));
  const auto reference = ReferenceRgb(jpeg);
  const size_t eoi = FindMarker(jpeg, 0xD9, jpeg.size() - 2);
  ASSERT_EQ(eoi, jpeg.size() - 2);
  jpeg.insert(jpeg.begin() + static_cast<ptrdiff_t>(eoi), {0x00, 0x17, 0x2A});
  auto decoded = DecodeImage(jpeg, "stray.jpg");
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(DifferentBytes(AsMat(decoded->image.view()), reference), 0);
}

TEST(DecodeImageErrors, FileErrorsNameThePath) {
  ExpectError(DecodeImageFile("/nonexistent/zerodet/none.jpg"), StatusCode::kNotFound,
              "/nonexistent/zerodet/none.jpg");
  const auto path = std::filesystem::temp_directory_path() / "zerodet_codec_text.jpg";
  std::ofstream(path) << "not an image";
  ExpectError(DecodeImageFile(path), StatusCode::kCorruptData, path.string());
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace zerodet

// The detector end to end on the real models and images of ../shared, and on generated models
// whose outputs are known exactly.
#include "zerodet/infer/detector.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

#include "test_models.h"
#include "zerodet/core/file.h"

namespace zerodet {
namespace {

using ::zerodet::testing::GeneratedModel;
using ::zerodet::testing::SharedImage;
using ::zerodet::testing::SharedModel;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

DetectorOptions CpuOptions() {
  DetectorOptions options;
  options.backend.intra_op_threads = 2;
  return options;
}

std::unique_ptr<Detector> MustCreate(const std::filesystem::path& model,
                                     const DetectorOptions& options = CpuOptions()) {
  auto detector = Detector::Create(model, options);
  EXPECT_TRUE(detector.ok()) << detector.status().ToString();
  return detector.ok() ? std::move(detector).value() : nullptr;
}

std::map<int, int> CountByClass(const std::vector<Detection>& detections) {
  std::map<int, int> counts;
  for (const Detection& d : detections) ++counts[d.class_id];
  return counts;
}

const Detection* FindClass(const std::vector<Detection>& detections, int class_id) {
  for (const Detection& d : detections) {
    if (d.class_id == class_id) return &d;
  }
  return nullptr;
}

void ExpectSortedAndInside(const DetectionResult& r) {
  for (size_t i = 0; i < r.detections.size(); ++i) {
    const Box& b = r.detections[i].box;
    EXPECT_GE(b.x1, 0);
    EXPECT_GE(b.y1, 0);
    EXPECT_LE(b.x2, r.width);
    EXPECT_LE(b.y2, r.height);
    EXPECT_LE(b.x1, b.x2);
    EXPECT_LE(b.y1, b.y2);
    if (i > 0) {
      EXPECT_GE(r.detections[i - 1].score, r.detections[i].score);
    }
  }
}

Image SolidImage(int width, int height, uint8_t value) {
  Image image(width, height, PixelFormat::kRGB8);
  std::fill_n(image.data(), image.size_bytes(), value);
  return image;
}

// ---------------------------------------------------------------------------------------------
// yolov8n.onnx: one detector for the suite.

class Yolov8nDetectorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { detector_ = MustCreate(SharedModel("yolov8n.onnx")).release(); }
  static void TearDownTestSuite() {
    delete detector_;
    detector_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(detector_, nullptr); }
  static Detector* detector_;
};
Detector* Yolov8nDetectorTest::detector_ = nullptr;

// The reference of ../shared/README.md: class, score, box as x, y, w, h in original pixels.
struct Expected {
  int class_id;
  float score;
  float x, y, w, h;
};

TEST_F(Yolov8nDetectorTest, DogMatchesReference) {
  EXPECT_EQ(detector_->spec().format, YoloFormat::kV8);
  EXPECT_EQ(detector_->spec().class_names[16], "dog");
  auto result = detector_->DetectFile(SharedImage("dog.jpg"));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->width, 768);
  EXPECT_EQ(result->height, 576);
  const Expected expected[] = {{16, 0.956f, 131, 219, 177, 320},
                               {1, 0.887f, 131, 136, 437, 283},
                               {2, 0.607f, 467, 74, 225, 96},
                               {7, 0.512f, 467, 75, 226, 96}};
  ASSERT_EQ(result->detections.size(), std::size(expected));
  for (size_t i = 0; i < std::size(expected); ++i) {
    const Detection& d = result->detections[i];
    const Expected& e = expected[i];
    SCOPED_TRACE("detection " + std::to_string(i));
    EXPECT_EQ(d.class_id, e.class_id);
    EXPECT_NEAR(d.score, e.score, 0.005);
    EXPECT_NEAR(d.box.x1, e.x, 1.0);
    EXPECT_NEAR(d.box.y1, e.y, 1.0);
    EXPECT_NEAR(d.box.width(), e.w, 1.0);
    EXPECT_NEAR(d.box.height(), e.h, 1.0);
  }
  EXPECT_GT(result->timing.decode_ms, 0);
  EXPECT_GT(result->timing.preprocess_ms, 0);
  EXPECT_GT(result->timing.infer_ms, 0);
  EXPECT_GE(result->timing.postprocess_ms, 0);
}

TEST_F(Yolov8nDetectorTest, BusAndZidane) {
  auto bus = detector_->DetectFile(SharedImage("bus.jpg"));
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  EXPECT_EQ(bus->width, 810);
  EXPECT_EQ(bus->height, 1080);
  EXPECT_EQ(CountByClass(bus->detections), (std::map<int, int>{{0, 4}, {5, 1}}));
  ExpectSortedAndInside(*bus);

  auto zidane = detector_->DetectFile(SharedImage("zidane.jpg"));
  ASSERT_TRUE(zidane.ok()) << zidane.status().ToString();
  EXPECT_EQ(CountByClass(zidane->detections), (std::map<int, int>{{0, 2}, {27, 1}}));
  ExpectSortedAndInside(*zidane);
}

TEST_F(Yolov8nDetectorTest, EncodedBytesAndBatchAgreeWithFile) {
  auto from_file = detector_->DetectFile(SharedImage("dog.jpg"));
  ASSERT_TRUE(from_file.ok());
  auto bytes = ReadFileBytes(SharedImage("dog.jpg"));
  ASSERT_TRUE(bytes.ok());
  auto from_bytes = detector_->DetectEncoded(*bytes, "dog.jpg");
  ASSERT_TRUE(from_bytes.ok()) << from_bytes.status().ToString();
  ASSERT_EQ(from_bytes->detections.size(), from_file->detections.size());

  // A static batch of 1: DetectBatch runs once per image, same results as one at a time.
  auto dog = DecodeImageFile(SharedImage("dog.jpg"));
  auto zidane = DecodeImageFile(SharedImage("zidane.jpg"));
  ASSERT_TRUE(dog.ok() && zidane.ok());
  const ImageView views[] = {dog->image.view(), zidane->image.view()};
  auto batch = detector_->DetectBatch(views);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  ASSERT_EQ(batch->size(), 2u);
  ASSERT_EQ((*batch)[0].detections.size(), from_file->detections.size());
  for (size_t i = 0; i < from_file->detections.size(); ++i) {
    EXPECT_EQ((*batch)[0].detections[i].class_id, from_file->detections[i].class_id);
    EXPECT_FLOAT_EQ((*batch)[0].detections[i].score, from_file->detections[i].score);
    EXPECT_FLOAT_EQ((*batch)[0].detections[i].box.x1, from_bytes->detections[i].box.x1);
  }
  EXPECT_EQ(CountByClass((*batch)[1].detections), (std::map<int, int>{{0, 2}, {27, 1}}));
  EXPECT_EQ((*batch)[1].width, zidane->image.width());
}

TEST_F(Yolov8nDetectorTest, PreprocessedInputInCallerMemory) {
  auto dog = DecodeImageFile(SharedImage("dog.jpg"));
  ASSERT_TRUE(dog.ok());
  const ModelSpec& spec = detector_->spec();
  std::vector<float> chw(3 * size_t(spec.input_width) * size_t(spec.input_height));
  Letterboxer letterboxer;
  auto geometry = letterboxer.Run(dog->image.view(), spec.letterbox, spec.input_width,
                                  spec.input_height, chw.data(), chw.size());
  ASSERT_TRUE(geometry.ok()) << geometry.status().ToString();
  auto pre = detector_->DetectPreprocessed(chw.data(), *geometry, 768, 576);
  ASSERT_TRUE(pre.ok()) << pre.status().ToString();
  auto full = detector_->Detect(dog->image.view());
  ASSERT_TRUE(full.ok());
  ASSERT_EQ(pre->detections.size(), full->detections.size());
  for (size_t i = 0; i < full->detections.size(); ++i) {
    EXPECT_EQ(pre->detections[i].class_id, full->detections[i].class_id);
    EXPECT_NEAR(pre->detections[i].box.x1, full->detections[i].box.x1, 1.0);
    EXPECT_NEAR(pre->detections[i].box.y2, full->detections[i].box.y2, 1.0);
  }
  EXPECT_EQ(detector_->DetectPreprocessed(nullptr, *geometry, 768, 576).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(detector_->DetectPreprocessed(chw.data(), *geometry, 0, 576).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(Yolov8nDetectorTest, BadImagesAreErrorsNamingTheSource) {
  auto missing = detector_->DetectFile("/nonexistent/picture.jpg");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(missing.status().message(), "picture.jpg"));

  const uint8_t garbage[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1};
  auto corrupt = detector_->DetectEncoded(garbage, "upload-42");
  ASSERT_FALSE(corrupt.ok());
  EXPECT_TRUE(Contains(corrupt.status().message(), "upload-42")) << corrupt.status().message();

  EXPECT_EQ(detector_->Detect(ImageView{}).status().code(), StatusCode::kInvalidArgument);
  const ImageView empty_in_batch[] = {ImageView{}};
  EXPECT_EQ(detector_->DetectBatch(empty_in_batch).status().code(), StatusCode::kInvalidArgument);
}

// Files that are not images, or hostile ones, give errors naming the file; the detector stays
// usable afterwards.
TEST_F(Yolov8nDetectorTest, BadFilesAreClearErrors) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("zerodet_detector_bad_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
    std::ofstream(dir / name, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    return dir / name;
  };
  auto dog = ReadFileBytes(SharedImage("dog.jpg"));
  ASSERT_TRUE(dog.ok());
  const std::string text = "this is not a picture\n";

  // A PNG whose header claims 30000 x 30000 pixels (900 MP, above the 64 MP default limit); the
  // IHDR CRC is valid, so only the size check can refuse it.
  const uint8_t ihdr[] = {'I', 'H', 'D', 'R', 0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30, 8, 2, 0, 0, 0};
  const uLong crc = crc32(0, ihdr, sizeof(ihdr));
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13};
  for (uint8_t byte : ihdr) png.push_back(byte);
  for (int shift : {24, 16, 8, 0}) png.push_back(static_cast<uint8_t>(crc >> shift));

  struct Case {
    std::filesystem::path path;
    StatusCode code;
  };
  const Case cases[] = {
      {write("empty.jpg", {}), StatusCode::kCorruptData},
      {write("truncated.jpg",
             std::vector<uint8_t>(dog->begin(),
                                  dog->begin() + static_cast<ptrdiff_t>(dog->size() / 2))),
       StatusCode::kCorruptData},
      {write("notes.jpg", std::vector<uint8_t>(text.begin(), text.end())),
       StatusCode::kCorruptData},
      {write("huge.png", png), StatusCode::kResourceExhausted},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path.filename().string());
    auto r = detector_->DetectFile(c.path);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), c.code) << r.status().ToString();
    EXPECT_TRUE(Contains(r.status().message(), c.path.filename().string())) << r.status().message();
  }
  // Still works after the failures.
  auto again = detector_->DetectFile(SharedImage("dog.jpg"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->detections.size(), 4u);

  // Files that are not ONNX models.
  for (const auto& model : {write("empty.onnx", {}),
                            write("text.onnx", std::vector<uint8_t>(text.begin(), text.end()))}) {
    SCOPED_TRACE(model.filename().string());
    auto r = Detector::Create(model);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kCorruptData) << r.status().ToString();
    EXPECT_TRUE(Contains(r.status().message(), model.filename().string())) << r.status().message();
  }
  std::filesystem::remove_all(dir);
}

// Opt-in DCT scaling: bus.jpg (810x1080) decodes at 1/2; boxes still come in source pixels.
TEST(DetectorTest, JpegDctScalingReportsSourcePixels) {
  DetectorOptions options = CpuOptions();
  options.decode.jpeg_scale_min_side = 320;
  auto scaled = MustCreate(SharedModel("yolov8n.onnx"), options);
  ASSERT_NE(scaled, nullptr);
  auto result = scaled->DetectFile(SharedImage("bus.jpg"));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->width, 810);
  EXPECT_EQ(result->height, 1080);
  ExpectSortedAndInside(*result);
  const Detection* bus = FindClass(result->detections, 5);
  ASSERT_NE(bus, nullptr);
  // Full-resolution yolov8n gives the bus at about x 35..798, y 230..775.
  EXPECT_GT(IoU(bus->box, Box{35, 230, 798, 775}), 0.85f);
  EXPECT_GE(CountByClass(result->detections)[0], 3);
}

// ---------------------------------------------------------------------------------------------
// The other shared models.

TEST(DetectorTest, Yolov10nEndToEndMatchesReference) {
  auto detector = MustCreate(SharedModel("yolov10n.onnx"));
  ASSERT_NE(detector, nullptr);
  EXPECT_EQ(detector->spec().format, YoloFormat::kEnd2End);
  auto result = detector->DetectFile(SharedImage("dog.jpg"));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const std::pair<int, float> expected[] = {{16, 0.919f}, {1, 0.910f}, {7, 0.713f}, {2, 0.352f}};
  ASSERT_EQ(result->detections.size(), std::size(expected));
  for (size_t i = 0; i < std::size(expected); ++i) {
    EXPECT_EQ(result->detections[i].class_id, expected[i].first);
    EXPECT_NEAR(result->detections[i].score, expected[i].second, 0.005);
  }
  ExpectSortedAndInside(*result);
}

TEST(DetectorTest, Yolo11nAt640And320) {
  for (const char* model : {"yolo11n.onnx", "yolo11n-320.onnx"}) {
    SCOPED_TRACE(model);
    auto detector = MustCreate(SharedModel(model));
    ASSERT_NE(detector, nullptr);
    EXPECT_EQ(detector->spec().format, YoloFormat::kV8);
    auto dog = detector->DetectFile(SharedImage("dog.jpg"));
    ASSERT_TRUE(dog.ok()) << dog.status().ToString();
    auto counts = CountByClass(dog->detections);
    EXPECT_EQ(counts[16], 1);  // dog
    EXPECT_EQ(counts[1], 1);   // bicycle
    const Detection* found = FindClass(dog->detections, 16);
    ASSERT_NE(found, nullptr);
    // yolov8n's dog box (reference): 131, 219, 177 x 320.
    EXPECT_GT(IoU(found->box, Box{131, 219, 308, 539}), 0.8f);
    auto bus = detector->DetectFile(SharedImage("bus.jpg"));
    ASSERT_TRUE(bus.ok());
    counts = CountByClass(bus->detections);
    EXPECT_GE(counts[0], 3);
    EXPECT_EQ(counts[5], 1);
  }
  auto small = MustCreate(SharedModel("yolo11n-320.onnx"));
  ASSERT_NE(small, nullptr);
  EXPECT_EQ(small->spec().input_width, 320);
}

// YOLOX raw grids and the same network wrapped to the v5 row layout: found automatically as
// YOLOX and v5, and the confident detections agree.
TEST(DetectorTest, YoloxRawAndV5Wrapped) {
  auto raw = MustCreate(SharedModel("yolox-nano.onnx"));
  auto wrapped = MustCreate(SharedModel("yolox-nano-v5format.onnx"));
  ASSERT_NE(raw, nullptr);
  ASSERT_NE(wrapped, nullptr);
  EXPECT_EQ(raw->spec().format, YoloFormat::kYolox);
  EXPECT_EQ(raw->spec().letterbox, LetterboxStyle::kYolox);
  EXPECT_EQ(raw->spec().input_width, 416);
  EXPECT_EQ(wrapped->spec().format, YoloFormat::kV5);
  EXPECT_EQ(wrapped->spec().letterbox, LetterboxStyle::kUltralytics);
  for (const char* image : {"dog.jpg", "bus.jpg", "zidane.jpg"}) {
    SCOPED_TRACE(image);
    auto a = raw->DetectFile(SharedImage(image));
    auto b = wrapped->DetectFile(SharedImage(image));
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    ExpectSortedAndInside(*a);
    int confident = 0;
    for (const Detection& d : a->detections) {
      if (d.score < 0.5f) continue;
      ++confident;
      float best = 0;
      for (const Detection& e : b->detections) {
        if (e.class_id == d.class_id) best = std::max(best, IoU(d.box, e.box));
      }
      EXPECT_GT(best, 0.7f) << raw->spec().class_names[static_cast<size_t>(d.class_id)];
    }
    EXPECT_GE(confident, 2);
  }
  auto dog = raw->DetectFile(SharedImage("dog.jpg"));
  ASSERT_TRUE(dog.ok());
  auto counts = CountByClass(dog->detections);
  EXPECT_EQ(counts[16], 1);
  EXPECT_EQ(counts[1], 1);
  auto bus = raw->DetectFile(SharedImage("bus.jpg"));
  ASSERT_TRUE(bus.ok());
  counts = CountByClass(bus->detections);
  EXPECT_GE(counts[0], 3);
  EXPECT_EQ(counts[5], 1);
}

// ---------------------------------------------------------------------------------------------
// Generated models with exactly known outputs.

// v5_const.onnx rows (make_test_models.py): 64x64 input, classes cat (0) and dog (1).
// Expected after obj > 0.25, obj * cls > 0.25 and class-aware NMS at 0.45:
//   cat 0.81 at cx 20, cy 20, 10 x 10; dog 0.63 at 21, 21, 10 x 10; cat 0.285 at 50, 40, 8 x 12.
TEST(DetectorTest, V5DecoderOnConstantModel) {
  ZD_REQUIRE_GENERATED_MODELS();
  auto detector = MustCreate(GeneratedModel("v5_const.onnx"));
  ASSERT_NE(detector, nullptr);
  EXPECT_EQ(detector->spec().format, YoloFormat::kV5);
  EXPECT_EQ(detector->spec().class_names, (std::vector<std::string>{"cat", "dog"}));

  // Same size as the input: boxes come back unchanged.
  Image same = SolidImage(64, 64, 30);
  auto r = detector->Detect(same.view());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->detections.size(), 3u);
  const Expected expected[] = {
      {0, 0.81f, 15, 15, 10, 10}, {1, 0.63f, 16, 16, 10, 10}, {0, 0.285f, 46, 34, 8, 12}};
  for (size_t i = 0; i < 3; ++i) {
    const Detection& d = r->detections[i];
    SCOPED_TRACE("detection " + std::to_string(i));
    EXPECT_EQ(d.class_id, expected[i].class_id);
    EXPECT_NEAR(d.score, expected[i].score, 1e-6);
    EXPECT_NEAR(d.box.x1, expected[i].x, 1e-4);
    EXPECT_NEAR(d.box.y1, expected[i].y, 1e-4);
    EXPECT_NEAR(d.box.width(), expected[i].w, 1e-4);
    EXPECT_NEAR(d.box.height(), expected[i].h, 1e-4);
  }

  // A 128x64 source: gain 0.5, resized to 64x32, pad top round(16 - 0.1) = 16, so a model box
  // maps to x / 0.5 and (y - 16) / 0.5, clipped to the image.
  Image wide = SolidImage(128, 64, 30);
  auto w = detector->Detect(wide.view());
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(w->detections.size(), 3u);
  EXPECT_EQ(w->width, 128);
  EXPECT_NEAR(w->detections[0].box.x1, 30, 1e-4);
  EXPECT_NEAR(w->detections[0].box.x2, 50, 1e-4);
  EXPECT_NEAR(w->detections[0].box.y1, 0, 1e-4);   // (15 - 16) * 2 = -2, clipped
  EXPECT_NEAR(w->detections[0].box.y2, 18, 1e-4);  // (25 - 16) * 2
  EXPECT_NEAR(w->detections[2].box.y2, 60, 1e-4);  // (46 - 16) * 2

  // Reported in a larger source size (as after DCT scaling): scaled by source / image.
  auto up = detector->Detect(same.view(), 128, 256);
  ASSERT_TRUE(up.ok());
  EXPECT_NEAR(up->detections[0].box.x1, 30, 1e-4);
  EXPECT_NEAR(up->detections[0].box.y1, 60, 1e-4);
  EXPECT_EQ(up->height, 256);

  // The same per image in a batch; a size of 0 keeps the image's own.
  const ImageView views[] = {same.view(), same.view()};
  const ImageSize sizes[] = {{128, 256}, {0, 0}};
  auto batch = detector->DetectBatch(views, sizes);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  EXPECT_EQ((*batch)[0].height, 256);
  EXPECT_NEAR((*batch)[0].detections[0].box.y1, 60, 1e-4);
  EXPECT_EQ((*batch)[1].height, 64);
  EXPECT_NEAR((*batch)[1].detections[0].box.y1, 15, 1e-4);
  EXPECT_EQ(detector->DetectBatch(views, std::span<const ImageSize>(sizes, 1)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(DetectorTest, V5ThresholdsAndAgnosticNms) {
  ZD_REQUIRE_GENERATED_MODELS();
  DetectorOptions options = CpuOptions();
  options.params.class_agnostic = true;
  auto agnostic = MustCreate(GeneratedModel("v5_const_nometa.onnx"), options);
  ASSERT_NE(agnostic, nullptr);
  EXPECT_EQ(agnostic->spec().format, YoloFormat::kV5);
  EXPECT_EQ(agnostic->spec().class_names, (std::vector<std::string>{"class0", "class1"}));
  Image image = SolidImage(64, 64, 0);
  auto r = agnostic->Detect(image.view());
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->detections.size(), 2u);  // the dog overlapping the first cat is suppressed
  EXPECT_EQ(r->detections[1].class_id, 0);
  EXPECT_NEAR(r->detections[1].score, 0.285f, 1e-6);

  options = CpuOptions();
  options.params.conf_threshold = 0.1f;  // row 4 (obj 0.3, score 0.15) passes; row 5 (0.2) too
  options.params.max_detections = 4;
  auto low = MustCreate(GeneratedModel("v5_const.onnx"), options);
  ASSERT_NE(low, nullptr);
  auto l = low->Detect(image.view());
  ASSERT_TRUE(l.ok());
  ASSERT_EQ(l->detections.size(), 4u);  // 5 pass, max_detections keeps the best 4
  EXPECT_NEAR(l->detections[3].score, 0.2f, 1e-6);
}

// DetectBatch on a dynamic-batch model: one Run for all images, each result what Detect gives.
TEST(DetectorTest, DynamicBatchMatchesSingleImages) {
  ZD_REQUIRE_GENERATED_MODELS();
  DetectorOptions options = CpuOptions();
  options.max_batch = 2;  // 3 images: chunks of 2 and 1
  // 6 channels x 4 candidates: too few candidates for the layout to be recognized automatically.
  options.format = YoloFormat::kV8;
  auto detector = MustCreate(GeneratedModel("dynamic_v8.onnx"), options);
  ASSERT_NE(detector, nullptr);
  EXPECT_TRUE(detector->spec().dynamic_batch);
  Image white = SolidImage(32, 32, 255);
  Image black = SolidImage(32, 32, 0);
  Image gray = SolidImage(64, 64, 64);
  const ImageView views[] = {white.view(), black.view(), gray.view()};
  auto batch = detector->DetectBatch(views);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  ASSERT_EQ(batch->size(), 3u);
  // White: class 0 ('white') scores 0.9 and boxes shift by +2; black: class 1 at 0.9.
  ASSERT_FALSE((*batch)[0].detections.empty());
  EXPECT_EQ((*batch)[0].detections[0].class_id, 0);
  EXPECT_NEAR((*batch)[0].detections[0].score, 0.9f, 1e-5);
  EXPECT_NEAR((*batch)[0].detections[0].box.x1, 7.0f, 1e-4);  // cx 10, w 6
  EXPECT_EQ((*batch)[1].detections[0].class_id, 1);
  EXPECT_NEAR((*batch)[1].detections[0].box.x1, 5.0f, 1e-4);  // cx 8
  EXPECT_EQ((*batch)[2].width, 64);
  for (size_t i = 0; i < 3; ++i) {
    auto single = detector->Detect(views[i]);
    ASSERT_TRUE(single.ok());
    ASSERT_EQ(single->detections.size(), (*batch)[i].detections.size()) << "image " << i;
    for (size_t k = 0; k < single->detections.size(); ++k) {
      EXPECT_EQ(single->detections[k].class_id, (*batch)[i].detections[k].class_id);
      EXPECT_FLOAT_EQ(single->detections[k].score, (*batch)[i].detections[k].score);
      EXPECT_FLOAT_EQ(single->detections[k].box.x1, (*batch)[i].detections[k].box.x1);
    }
  }
}

TEST(DetectorTest, RejectsModelsAndOptionsItCannotServe) {
  auto missing = Detector::Create("/nonexistent/model.onnx");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);

  DetectorOptions options;
  options.max_batch = 0;
  EXPECT_EQ(Detector::Create(SharedModel("yolov8n.onnx"), options).status().code(),
            StatusCode::kInvalidArgument);

  const auto available = AvailableExecutionProviders();
  if (std::find(available.begin(), available.end(), "cuda") == available.end()) {
    DetectorOptions cuda;
    cuda.backend.provider = ExecutionProvider::kCuda;
    auto r = Detector::Create(SharedModel("yolov8n.onnx"), cuda);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
    EXPECT_TRUE(Contains(r.status().message(), "available: cpu")) << r.status().message();
  }

  // Forcing a layout the output cannot have.
  DetectorOptions forced;
  forced.format = YoloFormat::kYolox;
  auto wrong = Detector::Create(SharedModel("yolov8n.onnx"), forced);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
}

TEST(DetectorTest, UnexpectedOutputShapeIsAClearError) {
  ZD_REQUIRE_GENERATED_MODELS();
  auto r = Detector::Create(GeneratedModel("bad_output.onnx"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "bad_output.onnx")) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "1x2x3")) << r.status().message();
}

// Models that declare sizes nothing could hold get a clear error, never std::bad_alloc.
TEST(DetectorHostileModels, HugeStaticBatchIsRefusedAtCreate) {
  ZD_REQUIRE_GENERATED_MODELS();
  auto r = Detector::Create(GeneratedModel("hostile_batch.onnx"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(r.status().message(), "100000 x 3 x 640 x 640")) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "max_input_bytes")) << r.status().message();
}

TEST(DetectorHostileModels, HugeImgszMetadataIsRefusedAtCreate) {
  ZD_REQUIRE_GENERATED_MODELS();
  auto r = Detector::Create(GeneratedModel("hostile_imgsz.onnx"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "60000x60000 (from the imgsz metadata)"))
      << r.status().message();
}

TEST(DetectorHostileModels, MaxBatchIsBoundedByTheInputLimit) {
  DetectorOptions options;
  options.max_batch = 100000;  // 100000 x 4.9 MB at 640 x 640
  auto r = Detector::Create(SharedModel("yolov8n.onnx"), options);
  // yolov8n has a static batch of 1, so max_batch does not size its input.
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ZD_REQUIRE_GENERATED_MODELS();
  options.format = YoloFormat::kV8;
  auto dynamic = Detector::Create(GeneratedModel("dynamic_v8.onnx"), options);
  // 100000 x 3 x 32 x 32 floats = 1.2 GB: over the default 1 GiB.
  ASSERT_FALSE(dynamic.ok());
  EXPECT_EQ(dynamic.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(dynamic.status().message(), "max_batch 100000"))
      << dynamic.status().message();
}

TEST(DetectorHostileModels, HugeStaticOutputFailsTheRunNotTheProcess) {
  ZD_REQUIRE_GENERATED_MODELS();
  auto detector = Detector::Create(GeneratedModel("hostile_output.onnx"));
  ASSERT_TRUE(detector.ok()) << detector.status().ToString();
  Image image(32, 32, PixelFormat::kRGB8);
  std::fill(image.data(), image.data() + image.stride() * 32, uint8_t{7});
  auto r = (*detector)->Detect(image.view());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(r.status().message(), "1x6x100000000")) << r.status().message();
}

TEST(DetectorHostileModels, ThreadCountsAreBounded) {
  DetectorOptions options;
  options.backend.intra_op_threads = 10000;
  auto r = Detector::Create(SharedModel("yolov8n.onnx"), options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "outside 0..64")) << r.status().message();
}

// A FIFO given as the model would block ONNX Runtime's open() forever.
TEST(DetectorHostileModels, FifoAsModelIsRefusedWithoutBlocking) {
  ::zerodet::testing::TempDir dir("fifo-model");
  const std::string fifo = dir.File("model.onnx");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto r = Detector::Create(fifo);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "is a FIFO, not a regular file"))
      << r.status().message();
}

// Stage + RunStaged give what DetectBatch gives, and a run without staging is refused.
TEST(DetectorTest, StagedBatchMatchesDetectBatch) {
  ZD_REQUIRE_GENERATED_MODELS();
  DetectorOptions options;
  options.max_batch = 3;
  options.format = YoloFormat::kV8;
  auto detector = Detector::Create(GeneratedModel("dynamic_v8.onnx"), options);
  ASSERT_TRUE(detector.ok()) << detector.status().ToString();
  EXPECT_EQ((*detector)->batch_capacity(), 3u);
  std::vector<Image> images;
  for (uint8_t shade : {uint8_t{0}, uint8_t{128}, uint8_t{255}}) {
    Image image(32, 32, PixelFormat::kRGB8);
    std::fill(image.data(), image.data() + image.stride() * 32, shade);
    images.push_back(std::move(image));
  }
  std::vector<ImageView> views;
  for (const Image& image : images) views.push_back(image.view());
  auto batch = (*detector)->DetectBatch(views);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  for (size_t i = 0; i < views.size(); ++i) {
    ASSERT_TRUE((*detector)->Stage(i, views[i]).ok());
  }
  auto staged = (*detector)->RunStaged(views.size());
  ASSERT_TRUE(staged.ok()) << staged.status().ToString();
  ASSERT_EQ(staged->size(), batch->size());
  for (size_t i = 0; i < staged->size(); ++i) {
    ASSERT_EQ((*staged)[i].detections.size(), (*batch)[i].detections.size());
    for (size_t k = 0; k < (*staged)[i].detections.size(); ++k) {
      EXPECT_FLOAT_EQ((*staged)[i].detections[k].score, (*batch)[i].detections[k].score);
      EXPECT_FLOAT_EQ((*staged)[i].detections[k].box.x1, (*batch)[i].detections[k].box.x1);
    }
  }
  EXPECT_EQ((*detector)->RunStaged(1).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*detector)->Stage(3, views[0]).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*detector)->RunStaged(4).status().code(), StatusCode::kInvalidArgument);
}

TEST(DetectorTest, InputSizeAndClassNamesOverrideTheModels) {
  ZD_REQUIRE_GENERATED_MODELS();
  DetectorOptions options;
  options.class_names = {"kitten", "puppy"};
  auto renamed = Detector::Create(GeneratedModel("v5_const.onnx"), options);
  ASSERT_TRUE(renamed.ok()) << renamed.status().ToString();
  EXPECT_EQ((*renamed)->spec().class_names, options.class_names);

  options.class_names = {"one", "two", "three"};
  auto miscounted = Detector::Create(GeneratedModel("v5_const.onnx"), options);
  EXPECT_EQ(miscounted.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(miscounted.status().message().find("3 class names given, but the model has 2"),
            std::string::npos)
      << miscounted.status().message();

  DetectorOptions sized;
  sized.input_width = 320;
  sized.input_height = 320;
  auto static_size = Detector::Create(GeneratedModel("v5_const.onnx"), sized);
  EXPECT_EQ(static_size.status().code(), StatusCode::kInvalidArgument);
  // A dynamic input takes the size asked for instead of the default 640.
  sized.input_width = 96;
  sized.input_height = 64;
  auto dynamic = Detector::Create(GeneratedModel("dynamic_hw.onnx"), sized);
  ASSERT_TRUE(dynamic.ok()) << dynamic.status().ToString();
  EXPECT_EQ((*dynamic)->spec().input_width, 96);
  EXPECT_EQ((*dynamic)->spec().input_height, 64);
}

}  // namespace
}  // namespace zerodet

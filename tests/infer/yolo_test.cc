// Layout recognition and decoding on hand-built ModelInfos and tensors (no ONNX Runtime).
#include "zerodet/infer/yolo.h"

#include <gtest/gtest.h>

#include <cmath>

namespace zerodet {
namespace {

ModelInfo MakeInfo(std::vector<int64_t> input_shape, std::vector<int64_t> output_shape,
                   std::map<std::string, std::string> metadata = {}) {
  ModelInfo info;
  info.path = "model.onnx";
  info.inputs.push_back(TensorInfo{"images", DType::kFloat32, std::move(input_shape)});
  info.outputs.push_back(TensorInfo{"output0", DType::kFloat32, std::move(output_shape)});
  info.metadata = std::move(metadata);
  return info;
}

const std::map<std::string, std::string> kUltralyticsMeta = {
    {"names", "{0: 'person', 1: 'bicycle'}"},
    {"imgsz", "[640, 640]"},
    {"stride", "32"},
    {"task", "detect"}};

TEST(YoloFormatTest, ParsesNamesAndRejectsUnknown) {
  EXPECT_EQ(*ParseYoloFormat("auto"), YoloFormat::kAuto);
  EXPECT_EQ(*ParseYoloFormat("v8"), YoloFormat::kV8);
  EXPECT_EQ(*ParseYoloFormat("v11"), YoloFormat::kV8);
  EXPECT_EQ(*ParseYoloFormat("v5"), YoloFormat::kV5);
  EXPECT_EQ(*ParseYoloFormat("v10"), YoloFormat::kEnd2End);
  EXPECT_EQ(*ParseYoloFormat("end2end"), YoloFormat::kEnd2End);
  EXPECT_EQ(*ParseYoloFormat("YOLOX"), YoloFormat::kYolox);
  auto bad = ParseYoloFormat("v7");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'v7'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("yolox"), std::string::npos);
  for (YoloFormat f :
       {YoloFormat::kV8, YoloFormat::kV5, YoloFormat::kEnd2End, YoloFormat::kYolox}) {
    EXPECT_EQ(*ParseYoloFormat(YoloFormatName(f)), f);
  }
}

TEST(ClassNamesTest, ParsesPythonDictAndList) {
  auto dict = ParseClassNames("{0: 'person', 1: \"o'clock\", 2: 'a\\'b', 3: 'traffic light'}");
  ASSERT_TRUE(dict.ok()) << dict.status().ToString();
  EXPECT_EQ(*dict, (std::vector<std::string>{"person", "o'clock", "a'b", "traffic light"}));
  auto list = ParseClassNames("['cat', 'dog']");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, (std::vector<std::string>{"cat", "dog"}));
  auto unordered = ParseClassNames("{1: 'b', 0: 'a'}");
  ASSERT_TRUE(unordered.ok());
  EXPECT_EQ(*unordered, (std::vector<std::string>{"a", "b"}));
}

TEST(ClassNamesTest, RejectsMalformed) {
  for (const char* text : {"", "person, bicycle", "{0: 'a', 2: 'b'}", "{0: 'a', 0: 'b'}", "{0: 'a'",
                           "{0 'a'}", "{'a': 0}"}) {
    auto r = ParseClassNames(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(ModelSpecTest, UltralyticsV8) {
  auto spec = InferModelSpec(MakeInfo({1, 3, 640, 640}, {1, 6, 8400}, kUltralyticsMeta));
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->format, YoloFormat::kV8);
  EXPECT_EQ(spec->input_width, 640);
  EXPECT_EQ(spec->letterbox, LetterboxStyle::kUltralytics);
  EXPECT_FALSE(spec->dynamic_batch);
  EXPECT_EQ(spec->class_names, (std::vector<std::string>{"person", "bicycle"}));
}

TEST(ModelSpecTest, EndToEndFromMetadataAndShape) {
  auto meta = kUltralyticsMeta;
  meta["end2end"] = "True";
  auto spec = InferModelSpec(MakeInfo({1, 3, 640, 640}, {1, 300, 6}, meta));
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->format, YoloFormat::kEnd2End);
  auto bare = InferModelSpec(MakeInfo({1, 3, 640, 640}, {1, 300, 6}));
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->format, YoloFormat::kEnd2End);
  EXPECT_EQ(bare->class_names, Coco80Names());
}

TEST(ModelSpecTest, YoloxVersusV5Rows) {
  // 3549 = 52^2 + 26^2 + 13^2: one row per grid cell of a 416 input, no metadata -> YOLOX.
  auto yolox = InferModelSpec(MakeInfo({1, 3, 416, 416}, {1, 3549, 85}));
  ASSERT_TRUE(yolox.ok());
  EXPECT_EQ(yolox->format, YoloFormat::kYolox);
  EXPECT_EQ(yolox->letterbox, LetterboxStyle::kYolox);
  EXPECT_EQ(yolox->class_names, Coco80Names());
  // Same shape with names metadata: a v5-layout export.
  auto meta = kUltralyticsMeta;
  meta["names"] = "{0: 'a', 1: 'b', 2: 'c', 3: 'd', 4: 'e'}";
  auto v5 = InferModelSpec(MakeInfo({1, 3, 416, 416}, {1, 3549, 10}, meta));
  ASSERT_TRUE(v5.ok());
  EXPECT_EQ(v5->format, YoloFormat::kV5);
  EXPECT_EQ(v5->class_names.size(), 5u);
  // A YOLOv5 export has 3 anchors per cell (25200 at 640): v5 even without metadata.
  auto v5_bare = InferModelSpec(MakeInfo({1, 3, 640, 640}, {1, 25200, 85}));
  ASSERT_TRUE(v5_bare.ok());
  EXPECT_EQ(v5_bare->format, YoloFormat::kV5);
}

TEST(ModelSpecTest, OverrideWinsAndIsChecked) {
  auto forced = InferModelSpec(MakeInfo({1, 3, 416, 416}, {1, 3549, 85}), YoloFormat::kV5);
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ(forced->format, YoloFormat::kV5);
  EXPECT_EQ(forced->letterbox, LetterboxStyle::kUltralytics);
  // YOLOX forced on a shape that is not its grid count.
  auto wrong = InferModelSpec(MakeInfo({1, 3, 640, 640}, {1, 25200, 85}), YoloFormat::kYolox);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("8400"), std::string::npos);
}

TEST(ModelSpecTest, DynamicDimensions) {
  // Dynamic batch and anchors (an Ultralytics dynamic export): layout from the class count.
  auto spec = InferModelSpec(MakeInfo({-1, 3, -1, -1}, {-1, 6, -1}, kUltralyticsMeta));
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->format, YoloFormat::kV8);
  EXPECT_TRUE(spec->dynamic_batch);
  EXPECT_EQ(spec->input_height, 640);
  auto unknown = InferModelSpec(MakeInfo({1, 3, 640, 640}, {1, -1, -1}));
  EXPECT_FALSE(unknown.ok());
}

TEST(ModelSpecTest, RejectsWhatIsNotADetector) {
  auto bad_output = InferModelSpec(MakeInfo({1, 3, 640, 640}, {1, 2, 3}));
  ASSERT_FALSE(bad_output.ok());
  EXPECT_EQ(bad_output.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_output.status().message().find("1x2x3"), std::string::npos);
  EXPECT_NE(bad_output.status().message().find("output0"), std::string::npos);

  EXPECT_FALSE(InferModelSpec(MakeInfo({1, 3, 640, 640}, {84, 8400})).ok());
  EXPECT_FALSE(InferModelSpec(MakeInfo({1, 640, 640, 3}, {1, 84, 8400})).ok());
  ModelInfo two_inputs = MakeInfo({1, 3, 640, 640}, {1, 84, 8400});
  two_inputs.inputs.push_back(two_inputs.inputs[0]);
  EXPECT_FALSE(InferModelSpec(two_inputs).ok());

  auto meta = kUltralyticsMeta;
  meta["task"] = "segment";
  auto seg = InferModelSpec(MakeInfo({1, 3, 640, 640}, {1, 116, 8400}, meta));
  ASSERT_FALSE(seg.ok());
  EXPECT_EQ(seg.status().code(), StatusCode::kUnimplemented);
}

TEST(ModelSpecTest, NamesThatDoNotFitTheOutputFallBack) {
  // 84 channels = 80 classes, but only 2 names: COCO-80 defaults.
  auto spec = InferModelSpec(MakeInfo({1, 3, 640, 640}, {1, 84, 8400}, kUltralyticsMeta));
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->class_names, Coco80Names());
  auto three = InferModelSpec(MakeInfo({1, 3, 640, 640}, {1, 7, 8400}));
  ASSERT_TRUE(three.ok());
  EXPECT_EQ(three->class_names, (std::vector<std::string>{"class0", "class1", "class2"}));
}

// A v8 output (1 x (4 + 3) x 5) with known candidates.
TEST(DecodeTest, V8TransposedRows) {
  // Columns are candidates. 0 and 1 overlap (same class 2), 2 is class 0 below threshold
  // (0.25 exactly: v8 keeps only > conf), 3 is class 1, 4 overlaps 3 but is class 0.
  const float cx[] = {100, 102, 300, 400, 401};
  const float cy[] = {100, 100, 300, 50, 50};
  const float w[] = {40, 40, 10, 20, 20};
  const float h[] = {20, 20, 10, 20, 20};
  const float c0[] = {0.1f, 0.0f, 0.25f, 0.2f, 0.5f};
  const float c1[] = {0.0f, 0.1f, 0.0f, 0.6f, 0.1f};
  const float c2[] = {0.9f, 0.8f, 0.0f, 0.0f, 0.0f};
  std::vector<float> data;
  for (const float* row : {cx, cy, w, h, c0, c1, c2}) data.insert(data.end(), row, row + 5);
  TensorView out{data.data(), DType::kFloat32, {1, 7, 5}};
  ModelSpec spec;
  spec.format = YoloFormat::kV8;
  auto dets = DecodeYoloOutput(spec, out, 0, DetectParams{});
  ASSERT_TRUE(dets.ok());
  ASSERT_EQ(dets->size(), 3u);
  EXPECT_EQ((*dets)[0].class_id, 2);
  EXPECT_FLOAT_EQ((*dets)[0].score, 0.9f);
  EXPECT_FLOAT_EQ((*dets)[0].box.x1, 80);
  EXPECT_FLOAT_EQ((*dets)[0].box.y1, 90);
  EXPECT_FLOAT_EQ((*dets)[0].box.x2, 120);
  EXPECT_FLOAT_EQ((*dets)[0].box.y2, 110);
  EXPECT_EQ((*dets)[1].class_id, 1);
  EXPECT_EQ((*dets)[2].class_id, 0);
  EXPECT_FLOAT_EQ((*dets)[2].score, 0.5f);

  DetectParams agnostic;
  agnostic.class_agnostic = true;
  EXPECT_EQ(DecodeYoloOutput(spec, out, 0, agnostic)->size(), 2u);
  DetectParams strict;
  strict.conf_threshold = 0.85f;
  EXPECT_EQ(DecodeYoloOutput(spec, out, 0, strict)->size(), 1u);
}

TEST(DecodeTest, EndToEndThresholdsSortsAndCaps) {
  std::vector<float> data = {
      10, 10, 20, 20, 0.3f, 7,  //
      30, 30, 40, 40, 0.9f, 2,  //
      50, 50, 60, 60, 0.1f, 1,  //
      0,  0,  0,  0,  0.0f, 0,  // padding rows of an end-to-end model
  };
  TensorView out{data.data(), DType::kFloat32, {1, 4, 6}};
  ModelSpec spec;
  spec.format = YoloFormat::kEnd2End;
  auto dets = DecodeYoloOutput(spec, out, 0, DetectParams{});
  ASSERT_TRUE(dets.ok());
  ASSERT_EQ(dets->size(), 2u);
  EXPECT_EQ((*dets)[0].class_id, 2);
  EXPECT_FLOAT_EQ((*dets)[0].box.x2, 40);
  EXPECT_EQ((*dets)[1].class_id, 7);
  DetectParams one;
  one.max_detections = 1;
  EXPECT_EQ(DecodeYoloOutput(spec, out, 0, one)->size(), 1u);
}

TEST(DecodeTest, YoloxGridDecoding) {
  // A 64x32 input: grids 8x4 (stride 8), 4x2 (16), 2x1 (32) -> 32 + 8 + 2 = 42 rows.
  ModelSpec spec;
  spec.format = YoloFormat::kYolox;
  spec.input_width = 64;
  spec.input_height = 32;
  const int cols = 5 + 2;
  std::vector<float> data(42 * cols, 0.0f);
  // Stride-16 level starts at row 32; its cell (gx=3, gy=1) is row 32 + 1 * 4 + 3 = 39.
  float* row = &data[39 * cols];
  row[0] = 0.5f;            // x offset
  row[1] = 0.25f;           // y offset
  row[2] = std::log(2.0f);  // w = 2 * 16
  row[3] = 0.0f;            // h = 1 * 16
  row[4] = 0.8f;            // objectness
  row[5] = 0.1f;
  row[6] = 0.5f;  // class 1: score 0.4
  TensorView out{data.data(), DType::kFloat32, {1, 42, cols}};
  auto dets = DecodeYoloOutput(spec, out, 0, DetectParams{});
  ASSERT_TRUE(dets.ok()) << dets.status().ToString();
  ASSERT_EQ(dets->size(), 1u);
  const Detection& d = (*dets)[0];
  EXPECT_EQ(d.class_id, 1);
  EXPECT_FLOAT_EQ(d.score, 0.4f);
  // cx = (0.5 + 3) * 16 = 56, cy = (0.25 + 1) * 16 = 20, w = 32, h = 16.
  EXPECT_NEAR(d.box.x1, 40, 1e-4);
  EXPECT_NEAR(d.box.x2, 72, 1e-4);
  EXPECT_NEAR(d.box.y1, 12, 1e-4);
  EXPECT_NEAR(d.box.y2, 28, 1e-4);

  TensorView wrong_rows{data.data(), DType::kFloat32, {1, 41, cols}};
  EXPECT_FALSE(DecodeYoloOutput(spec, wrong_rows, 0, DetectParams{}).ok());
}

TEST(DecodeTest, BatchIndexSelectsImage) {
  // Two images of a v5 layout with one row each.
  std::vector<float> data = {10, 10, 4, 4, 0.9f, 0.9f,  //
                             50, 50, 4, 4, 0.9f, 0.5f};
  TensorView out{data.data(), DType::kFloat32, {2, 1, 6}};
  ModelSpec spec;
  spec.format = YoloFormat::kV5;
  auto second = DecodeYoloOutput(spec, out, 1, DetectParams{});
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->size(), 1u);
  EXPECT_FLOAT_EQ((*second)[0].box.x1, 48);
  EXPECT_FLOAT_EQ((*second)[0].score, 0.45f);
  auto out_of_range = DecodeYoloOutput(spec, out, 2, DetectParams{});
  ASSERT_FALSE(out_of_range.ok());
  EXPECT_EQ(out_of_range.status().code(), StatusCode::kInvalidArgument);
}

TEST(DecodeTest, RejectsOutputsThatDoNotFit) {
  std::vector<float> data(12, 0.0f);
  ModelSpec spec;
  spec.format = YoloFormat::kV5;
  TensorView narrow{data.data(), DType::kFloat32, {1, 3, 4}};
  auto r = DecodeYoloOutput(spec, narrow, 0, DetectParams{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("1x3x4"), std::string::npos);
  TensorView rank2{data.data(), DType::kFloat32, {2, 6}};
  EXPECT_FALSE(DecodeYoloOutput(spec, rank2, 0, DetectParams{}).ok());
  TensorView int_out{data.data(), DType::kInt32, {1, 2, 6}};
  EXPECT_FALSE(DecodeYoloOutput(spec, int_out, 0, DetectParams{}).ok());
  spec.format = YoloFormat::kAuto;
  TensorView ok_shape{data.data(), DType::kFloat32, {1, 2, 6}};
  EXPECT_FALSE(DecodeYoloOutput(spec, ok_shape, 0, DetectParams{}).ok());
}

}  // namespace
}  // namespace zerodet

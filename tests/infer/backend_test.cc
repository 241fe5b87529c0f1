#include "zerodet/infer/backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "test_models.h"

namespace zerodet {
namespace {

using ::zerodet::testing::GeneratedModel;
using ::zerodet::testing::SharedModel;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// One yolov8n session per test process (loading it takes a while).
class Yolov8nBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    BackendOptions options;
    options.intra_op_threads = 2;
    auto backend = CreateOnnxBackend(SharedModel("yolov8n.onnx"), options);
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    backend_ = std::move(backend).value().release();
  }
  static void TearDownTestSuite() {
    delete backend_;
    backend_ = nullptr;
  }
  static Backend* backend_;
};
Backend* Yolov8nBackendTest::backend_ = nullptr;

TEST_F(Yolov8nBackendTest, DescribesModelAndMetadata) {
  const ModelInfo& info = backend_->info();
  EXPECT_EQ(backend_->provider(), ExecutionProvider::kCpu);
  ASSERT_EQ(info.inputs.size(), 1u);
  EXPECT_EQ(info.inputs[0].name, "images");
  EXPECT_EQ(info.inputs[0].dtype, DType::kFloat32);
  EXPECT_EQ(info.inputs[0].shape, (std::vector<int64_t>{1, 3, 640, 640}));
  ASSERT_EQ(info.outputs.size(), 1u);
  EXPECT_EQ(info.outputs[0].name, "output0");
  EXPECT_EQ(info.outputs[0].shape, (std::vector<int64_t>{1, 84, 8400}));
  ASSERT_TRUE(info.metadata.count("names"));
  EXPECT_TRUE(Contains(info.metadata.at("names"), "0: 'person'"));
  EXPECT_EQ(info.metadata.at("imgsz"), "[640, 640]");
  EXPECT_EQ(info.metadata.at("task"), "detect");
}

TEST_F(Yolov8nBackendTest, RunsIntoReusedOutputBuffer) {
  std::vector<float> input(3 * 640 * 640, 114.0f / 255.0f);
  ConstTensorView view{input.data(), DType::kFloat32, {1, 3, 640, 640}};
  auto first = backend_->Run(std::span<const ConstTensorView>(&view, 1));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(first->size(), 1u);
  const TensorView out = (*first)[0];
  EXPECT_EQ(out.shape, (std::vector<int64_t>{1, 84, 8400}));
  EXPECT_EQ(out.dtype, DType::kFloat32);
  const float* data = out.f32();
  EXPECT_TRUE(
      std::all_of(data, data + out.num_elements(), [](float v) { return std::isfinite(v); }));
  // Anchor centers of the stride-8 grid: cx of candidate 0 is near 4 on a blank image.
  EXPECT_NEAR(data[0], 4.0f, 4.0f);
  const std::vector<float> copy(data, data + out.num_elements());

  auto second = backend_->Run(std::span<const ConstTensorView>(&view, 1));
  ASSERT_TRUE(second.ok());
  // Static output shape: bound to the same backend-owned buffer, same result.
  EXPECT_EQ((*second)[0].data, out.data);
  EXPECT_TRUE(std::equal(copy.begin(), copy.end(), (*second)[0].f32()));
}

TEST_F(Yolov8nBackendTest, RejectsWrongInputs) {
  std::vector<float> small(3 * 320 * 320, 0.0f);
  ConstTensorView wrong_shape{small.data(), DType::kFloat32, {1, 3, 320, 320}};
  auto r = backend_->Run(std::span<const ConstTensorView>(&wrong_shape, 1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(r.status().message(), "'images'")) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "1x3x640x640"));
  EXPECT_TRUE(Contains(r.status().message(), "1x3x320x320"));
  EXPECT_TRUE(Contains(r.status().message(), "yolov8n.onnx"));

  ConstTensorView wrong_rank{small.data(), DType::kFloat32, {3, 320, 320}};
  EXPECT_EQ(backend_->Run(std::span<const ConstTensorView>(&wrong_rank, 1)).status().code(),
            StatusCode::kInvalidArgument);

  std::vector<uint8_t> bytes(3 * 640 * 640, 0);
  ConstTensorView wrong_dtype{bytes.data(), DType::kUInt8, {1, 3, 640, 640}};
  auto d = backend_->Run(std::span<const ConstTensorView>(&wrong_dtype, 1));
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(Contains(d.status().message(), "FP32"));
  EXPECT_TRUE(Contains(d.status().message(), "UINT8"));

  EXPECT_EQ(backend_->Run({}).status().code(), StatusCode::kInvalidArgument);
  ConstTensorView null_data{nullptr, DType::kFloat32, {1, 3, 640, 640}};
  EXPECT_EQ(backend_->Run(std::span<const ConstTensorView>(&null_data, 1)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(BackendTest, MissingFileIsNotFound) {
  auto r = CreateOnnxBackend("/nonexistent/dir/model.onnx");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(r.status().message(), "/nonexistent/dir/model.onnx"));
}

TEST(BackendTest, UnparseableFileIsCorruptData) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("zerodet_not_a_model_" + std::to_string(::getpid()) + ".onnx");
  {
    std::ofstream out(path, std::ios::binary);
    out << "this is not an ONNX protobuf \x01\x02\x03";
  }
  auto r = CreateOnnxBackend(path);
  std::filesystem::remove(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruptData) << r.status().ToString();
  EXPECT_TRUE(Contains(r.status().message(), path.filename().string()));

  auto dir = CreateOnnxBackend(std::filesystem::temp_directory_path());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), StatusCode::kInvalidArgument);
}

TEST(BackendTest, RejectsBadOptions) {
  BackendOptions options;
  options.graph_optimization_level = 7;
  EXPECT_EQ(CreateOnnxBackend(SharedModel("yolov8n.onnx"), options).status().code(),
            StatusCode::kInvalidArgument);
  options = {};
  options.intra_op_threads = -1;
  EXPECT_EQ(CreateOnnxBackend(SharedModel("yolov8n.onnx"), options).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(BackendTest, ParsesProviderNames) {
  EXPECT_EQ(*ParseExecutionProvider("cpu"), ExecutionProvider::kCpu);
  EXPECT_EQ(*ParseExecutionProvider("cuda"), ExecutionProvider::kCuda);
  EXPECT_EQ(*ParseExecutionProvider("tensorrt"), ExecutionProvider::kTensorRT);
  EXPECT_EQ(ParseExecutionProvider("rocm").status().code(), StatusCode::kInvalidArgument);
  for (auto p : {ExecutionProvider::kCpu, ExecutionProvider::kCuda, ExecutionProvider::kTensorRT}) {
    EXPECT_EQ(*ParseExecutionProvider(ExecutionProviderName(p)), p);
  }
  const auto available = AvailableExecutionProviders();
  EXPECT_NE(std::find(available.begin(), available.end(), "cpu"), available.end());
}

// On an ONNX Runtime build without GPU providers (the CPU package this project ships), asking
// for one is a clear kUnimplemented that lists what is there.
TEST(BackendTest, GpuProviderMissingFromBuildIsUnimplemented) {
  const auto available = AvailableExecutionProviders();
  for (auto provider : {ExecutionProvider::kCuda, ExecutionProvider::kTensorRT}) {
    const std::string name(ExecutionProviderName(provider));
    if (std::find(available.begin(), available.end(), name) != available.end()) {
      GTEST_SKIP() << "this ONNX Runtime build has " << name;
    }
    BackendOptions options;
    options.provider = provider;
    auto r = CreateOnnxBackend(SharedModel("yolov8n.onnx"), options);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
    EXPECT_TRUE(Contains(r.status().message(), "'" + name + "'")) << r.status().message();
    EXPECT_TRUE(Contains(r.status().message(), "available: cpu")) << r.status().message();
  }
}

// A model with a dynamic batch: output buffers are sized from the symbolic 'batch' dimension it
// shares with the input, and rebound when the batch changes.
TEST(BackendTest, DynamicBatchOutputsFollowInputShape) {
  ZD_REQUIRE_GENERATED_MODELS();
  auto backend = CreateOnnxBackend(GeneratedModel("dynamic_v8.onnx"));
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EXPECT_EQ((*backend)->info().inputs[0].shape, (std::vector<int64_t>{-1, 3, 32, 32}));
  EXPECT_EQ((*backend)->info().outputs[0].shape, (std::vector<int64_t>{-1, 6, 4}));
  for (int64_t batch : {2, 3, 1}) {
    const size_t plane = 3 * 32 * 32;
    std::vector<float> input(static_cast<size_t>(batch) * plane);
    for (size_t b = 0; b < static_cast<size_t>(batch); ++b) {
      std::fill_n(input.begin() + static_cast<ptrdiff_t>(b * plane), plane,
                  0.25f * static_cast<float>(b));
    }
    ConstTensorView view{input.data(), DType::kFloat32, {batch, 3, 32, 32}};
    auto out = (*backend)->Run(std::span<const ConstTensorView>(&view, 1));
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    const TensorView& t = (*out)[0];
    ASSERT_EQ(t.shape, (std::vector<int64_t>{batch, 6, 4}));
    for (int64_t b = 0; b < batch; ++b) {
      const float mean = 0.25f * static_cast<float>(b);
      const float* image = t.f32() + b * 24;
      EXPECT_NEAR(image[0], 8.0f + 2.0f * mean, 1e-5);   // cx of candidate 0
      EXPECT_NEAR(image[16], 0.1f + 0.8f * mean, 1e-5);  // class 0 score
      EXPECT_NEAR(image[20], 0.9f - 0.8f * mean, 1e-5);  // class 1 score
    }
  }
}

// An output whose shape depends on the data (NonZero) is allocated by ONNX Runtime.
TEST(BackendTest, DataDependentOutputShape) {
  ZD_REQUIRE_GENERATED_MODELS();
  auto backend = CreateOnnxBackend(GeneratedModel("nonzero.onnx"));
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EXPECT_EQ((*backend)->info().outputs[0].dtype, DType::kInt64);
  for (auto [values, expected_count] : {std::pair{std::vector<float>{0.1f, 0.9f, 0.7f, 0.2f}, 2},
                                        std::pair{std::vector<float>{0.9f, 0.9f, 0.9f, 0.1f}, 3}}) {
    ConstTensorView view{values.data(), DType::kFloat32, {1, 4}};
    auto out = (*backend)->Run(std::span<const ConstTensorView>(&view, 1));
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    const TensorView& t = (*out)[0];
    ASSERT_EQ(t.shape, (std::vector<int64_t>{2, expected_count}));
    const auto* idx = static_cast<const int64_t*>(t.data);
    for (int i = 0; i < expected_count; ++i) {
      EXPECT_EQ(idx[i], 0);                                                   // row index
      EXPECT_GT(values[static_cast<size_t>(idx[expected_count + i])], 0.5f);  // a value > 0.5
    }
  }
}

TEST(BackendTest, ModelWithUnexpectedOutputStillRuns) {
  // The backend does not care about YOLO layouts; the detector rejects this one (see
  // detector_test.cc). Here: loads, and the output is the constant it declares.
  ZD_REQUIRE_GENERATED_MODELS();
  auto backend = CreateOnnxBackend(GeneratedModel("bad_output.onnx"));
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  std::vector<float> input(3 * 64 * 64, 0.5f);
  ConstTensorView view{input.data(), DType::kFloat32, {1, 3, 64, 64}};
  auto out = (*backend)->Run(std::span<const ConstTensorView>(&view, 1));
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_FLOAT_EQ((*out)[0].f32()[5], 5.0f);
}

TEST(BackendTest, SavesItsOptimizedGraphOnceAndLoadsFromItAfterwards) {
  ZD_REQUIRE_GENERATED_MODELS();
  ::zerodet::testing::TempDir cache("backend_graph");
  BackendOptions options;
  options.intra_op_threads = 1;
  options.optimized_graph_path = cache.path() / "v5_const.optimized.onnx";
  std::vector<float> input(3 * 64 * 64, 0.25f);
  const ConstTensorView view{input.data(), DType::kFloat32, {1, 3, 64, 64}};
  std::vector<float> outputs[2];
  for (int round = 0; round < 2; ++round) {
    auto backend = CreateOnnxBackend(GeneratedModel("v5_const.onnx"), options);
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    EXPECT_EQ((*backend)->info().loaded_from_optimized_graph, round == 1);
    EXPECT_EQ((*backend)->info().path, GeneratedModel("v5_const.onnx"));
    EXPECT_EQ((*backend)->info().metadata.at("names"), "{0: 'cat', 1: 'dog'}");
    EXPECT_TRUE(std::filesystem::exists(options.optimized_graph_path));
    auto out = (*backend)->Run(std::span<const ConstTensorView>(&view, 1));
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    outputs[round].assign((*out)[0].f32(), (*out)[0].f32() + (*out)[0].num_elements());
  }
  EXPECT_EQ(outputs[0], outputs[1]);
  // No temporary file is left behind.
  int files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(cache.path())) {
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(BackendTest, ShrinksArenasAfterEachRunWhenAsked) {
  ZD_REQUIRE_GENERATED_MODELS();
  BackendOptions options;
  options.shrink_arenas_after_run = true;
  auto backend = CreateOnnxBackend(GeneratedModel("v5_const.onnx"), options);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  std::vector<float> input(3 * 64 * 64, 0.25f);
  const ConstTensorView view{input.data(), DType::kFloat32, {1, 3, 64, 64}};
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE((*backend)->Run(std::span<const ConstTensorView>(&view, 1)).ok());
  }
}

TEST(BackendTest, ReportsTheOnnxRuntimeVersion) {
  EXPECT_EQ(OnnxRuntimeVersion().rfind("1.", 0), 0u) << OnnxRuntimeVersion();
}

}  // namespace
}  // namespace zerodet

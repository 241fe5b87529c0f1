// Dynamic batching in the service, on a real model (the batcher's own rules are in
// dynamic_batcher_test.cc): YOLO11n at 320 from ../shared rewritten with a dynamic batch
// (scripts/make_dynamic_batch.py), served with dynamic_batching. Concurrent infer requests on the
// shared images run as batches (one model Acquire per batch) and each gets what the original
// static-batch model computes for its tensor alone; /v1/detect images batched together get the
// detections of `zerodet detect`.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <cmath>
#include <fstream>
#include <thread>

#include "models_test_util.h"
#include "test_models.h"
#include "test_support.h"
#include "zerodet/codec/decode.h"
#include "zerodet/codec/letterbox.h"
#include "zerodet/core/file.h"
#include "zerodet/infer/detector.h"
#include "zerodet/server/inference_service.h"

namespace zerodet::server {
namespace {

namespace fs = std::filesystem;
using zerodet::testing::AddVersion;
using zerodet::testing::PythonWithOnnx;
using zerodet::testing::SharedImage;
using zerodet::testing::SharedModel;
using zerodet::testing::TempDir;

constexpr int kSide = 320;
constexpr size_t kFloats = size_t{3} * kSide * kSide;
const std::vector<std::string> kImages = {"bus.jpg",  "dog.jpg",    "eagle.jpg",   "horses.jpg",
                                          "kite.jpg", "zidane.jpg", "giraffe.jpg", "person.jpg"};

class DynamicBatchingServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path dynamic = dir_.path() / "yolo11n-320-dynamic.onnx";
    const std::string command =
        PythonWithOnnx() + " '" +
        (zerodet::testing::SourceDir() / "scripts/make_dynamic_batch.py").string() + "' '" +
        SharedModel("yolo11n-320.onnx").string() + "' '" + dynamic.string() + "' >/dev/null";
    if (std::system((PythonWithOnnx() + " -c 'import onnx' 2>/dev/null").c_str()) != 0) {
      GTEST_SKIP() << "python3 with the onnx package is needed (apt install python3-onnx)";
    }
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    const fs::path repo = dir_.path() / "repo";
    AddVersion(repo, "batched", 1, dynamic);
    std::ofstream(repo / "batched" / "config.yaml")
        << "max_batch: 4\n"
           "dynamic_batching: {max_queue_delay_us: 10000000, preferred_batch_sizes: [4]}\n";
    // The same with a short delay, for batches that never fill.
    AddVersion(repo, "quick", 1, dynamic);
    std::ofstream(repo / "quick" / "config.yaml")
        << "max_batch: 4\n"
           "dynamic_batching: {max_queue_delay_us: 200000, preferred_batch_sizes: [4]}\n";
    // A queue policy of its own: two requests may wait, for at most 1 s.
    AddVersion(repo, "bounded", 1, dynamic);
    std::ofstream(repo / "bounded" / "config.yaml")
        << "max_batch: 4\n"
           "dynamic_batching: {max_queue_delay_us: 10000000, preferred_batch_sizes: [4],\n"
           "                   max_queue_size: 2, queue_timeout_us: 1000000}\n";
    AddVersion(repo, "static", 1, SharedModel("yolo11n-320.onnx"));
    ManagerOptions options;
    options.repository = repo;
    options.watch = false;
    auto manager = ModelManager::Create(options);
    ASSERT_TRUE(manager.ok()) << manager.status().ToString();
    manager_ = std::move(manager).value();
    service_ = std::make_unique<InferenceService>(*manager_, InferenceService::Options{});

    Letterboxer letterboxer;
    for (const std::string& name : kImages) {
      auto bytes = ReadFileBytes(SharedImage(name));
      ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
      auto image = DecodeImage(*bytes, name);
      ASSERT_TRUE(image.ok()) << image.status().ToString();
      std::vector<float> tensor(kFloats);
      ASSERT_TRUE(letterboxer
                      .Run(image->image.view(), LetterboxStyle::kUltralytics, kSide, kSide,
                           tensor.data(), tensor.size())
                      .ok());
      tensors_.push_back(std::move(tensor));
      encoded_.push_back(std::move(*bytes));
    }
  }

  // The raw output0 of `model` for tensors_[i] (shape [rows, 84, 2100] for `rows` copies).
  Result<std::vector<float>> Infer(const std::string& model, size_t i, int rows = 1) {
    std::vector<uint8_t> bytes;
    for (int r = 0; r < rows; ++r) {
      const auto* data = reinterpret_cast<const uint8_t*>(tensors_[i].data());
      bytes.insert(bytes.end(), data, data + kFloats * sizeof(float));
    }
    InferRequest request;
    request.model_name = model;
    request.inputs.push_back({"images", "FP32", {rows, 3, kSide, kSide}, bytes, {}, {}});
    std::vector<float> output;
    const Status status =
        service_->Infer(request, [&](const ServedBy&, std::span<const InferOutput> outputs) {
          if (outputs.size() != 1 || outputs[0].shape.front() != rows) {
            return InternalError("unexpected outputs");
          }
          output.resize(outputs[0].data.size() / sizeof(float));
          std::memcpy(output.data(), outputs[0].data.data(), outputs[0].data.size());
          return Status::Ok();
        });
    if (!status.ok()) return status;
    return output;
  }

  uint64_t Acquires(const std::string& model) const {
    for (const ModelStats& stats : manager_->Stats().models) {
      if (stats.name == model) return stats.hits + stats.misses;
    }
    return 0;
  }

  TempDir dir_;
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<InferenceService> service_;
  std::vector<std::vector<float>> tensors_;
  std::vector<std::vector<uint8_t>> encoded_;
};

void ExpectClose(const std::vector<float>& actual, const std::vector<float>& expected,
                 const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  size_t far = 0;
  for (size_t k = 0; k < actual.size(); ++k) {
    // Batched convolutions may sum in another order: equal to float rounding.
    if (std::abs(actual[k] - expected[k]) > 1e-3f + 1e-4f * std::abs(expected[k])) ++far;
  }
  EXPECT_EQ(far, 0u) << what << ": " << far << " of " << actual.size() << " values differ";
}

TEST_F(DynamicBatchingServiceTest, ConcurrentInfersRunAsBatchesAndEachGetsItsOwnOutput) {
  std::vector<std::vector<float>> expected;
  for (size_t i = 0; i < kImages.size(); ++i) {
    auto output = Infer("static", i);
    ASSERT_TRUE(output.ok()) << output.status().ToString();
    expected.push_back(std::move(*output));
  }
  std::vector<Result<std::vector<float>>> results(kImages.size(), InternalError("not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < kImages.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = Infer("batched", i); });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < kImages.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << kImages[i] << ": " << results[i].status().ToString();
    ExpectClose(*results[i], expected[i], kImages[i]);
  }
  // 8 requests, preferred batch 4 and a 10 s delay: exactly two batches, one Acquire each.
  EXPECT_EQ(Acquires("batched"), 2u);
  const std::string metrics = service_->metrics().Render();
  EXPECT_NE(metrics.find("zerodet_request_batch_size_sum{endpoint=\"infer\",model=\"batched\"} 32"),
            std::string::npos)
      << "every request ran in a batch of 4";
}

TEST_F(DynamicBatchingServiceTest, RequestsWithTheirOwnBatchShareOneRun) {
  auto alone = Infer("static", 1);
  ASSERT_TRUE(alone.ok()) << alone.status().ToString();
  // Two requests of 2 rows each fill the preferred batch of 4.
  std::vector<Result<std::vector<float>>> results(2, InternalError("not run"));
  std::thread a([&] { results[0] = Infer("batched", 1, 2); });
  std::thread b([&] { results[1] = Infer("batched", 1, 2); });
  a.join();
  b.join();
  for (auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    ASSERT_EQ(result->size(), 2 * alone->size());
    ExpectClose(std::vector<float>(result->begin(),
                                   result->begin() + static_cast<ptrdiff_t>(alone->size())),
                *alone, "row 0");
    ExpectClose(
        std::vector<float>(result->begin() + static_cast<ptrdiff_t>(alone->size()), result->end()),
        *alone, "row 1");
  }
  EXPECT_EQ(Acquires("batched"), 1u);
}

TEST_F(DynamicBatchingServiceTest, ARequestLargerThanMaxBatchIsRefused) {
  auto result = Infer("batched", 0, 5);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << result.status().ToString();
}

TEST_F(DynamicBatchingServiceTest, BadRequestsInABatchFailAloneAndTheOthersStillRun) {
  std::vector<Status> statuses(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      if (i == 2) {
        // The right shape but too few bytes: the same batch key, refused at Bind.
        std::vector<uint8_t> bytes(100);
        InferRequest request;
        request.model_name = "batched";
        request.inputs.push_back({"images", "FP32", {1, 3, kSide, kSide}, bytes, {}, {}});
        statuses[i] = service_->Infer(
            request, [](const ServedBy&, std::span<const InferOutput>) { return Status::Ok(); });
      } else {
        statuses[i] = Infer("batched", i).status();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < 4; ++i) {
    if (i == 2) {
      EXPECT_EQ(statuses[i].code(), StatusCode::kInvalidArgument) << statuses[i].ToString();
    } else {
      EXPECT_TRUE(statuses[i].ok()) << statuses[i].ToString();
    }
  }
}

TEST_F(DynamicBatchingServiceTest, AModelsQueuePolicyBoundsAndTimesOutItsRequests) {
  // Four at once: two wait (the batch never fills: it would wait 10 s for four), two are
  // refused at once; the two waiting give up after the model's 1 s queue timeout.
  std::vector<Status> statuses(4);
  std::vector<std::thread> threads;
  std::barrier start(4);
  for (size_t i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      statuses[i] = Infer("bounded", i).status();
    });
  }
  for (std::thread& t : threads) t.join();
  int refused = 0;
  int timed_out = 0;
  for (const Status& status : statuses) {
    refused += status.code() == StatusCode::kResourceExhausted ? 1 : 0;
    timed_out += status.code() == StatusCode::kUnavailable ? 1 : 0;
    EXPECT_FALSE(status.ok());
  }
  EXPECT_EQ(refused, 2);
  EXPECT_EQ(timed_out, 2);
}

TEST_F(DynamicBatchingServiceTest, BatchedDetectionsEqualTheDetectorsOnEachImage) {
  auto detector = Detector::Create(SharedModel("yolo11n-320.onnx"));
  ASSERT_TRUE(detector.ok()) << detector.status().ToString();
  std::vector<Result<DetectResponse>> responses(4, InternalError("not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      DetectRequest request;
      request.model_name = "batched";
      request.image = encoded_[i];
      request.source_name = kImages[i];
      responses[i] = service_->Detect(request);
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(Acquires("batched"), 1u);
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(responses[i].ok()) << kImages[i] << ": " << responses[i].status().ToString();
    auto expected = (*detector)->DetectEncoded(encoded_[i], kImages[i]);
    ASSERT_TRUE(expected.ok());
    const auto& got = responses[i]->detections;
    ASSERT_EQ(got.size(), expected->detections.size()) << kImages[i];
    for (size_t d = 0; d < got.size(); ++d) {
      EXPECT_EQ(got[d].class_id, expected->detections[d].class_id) << kImages[i];
      EXPECT_NEAR(got[d].score, expected->detections[d].score, 1e-4) << kImages[i];
      EXPECT_NEAR(got[d].box.x1, expected->detections[d].box.x1, 0.05) << kImages[i];
      EXPECT_NEAR(got[d].box.y2, expected->detections[d].box.y2, 0.05) << kImages[i];
    }
  }
}

TEST_F(DynamicBatchingServiceTest, DetectionsWithDifferentThresholdsRunInSeparateBatches) {
  std::vector<Result<DetectResponse>> responses(4, InternalError("not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      DetectRequest request;
      request.model_name = "quick";
      request.image = encoded_[0];
      request.source_name = kImages[0];
      if (i % 2 == 1) request.conf = 0.8f;
      responses[i] = service_->Detect(request);
    });
  }
  // Two of each key never fill the preferred batch: each goes after the delay, alone.
  for (std::thread& t : threads) t.join();
  size_t strict = 0;
  size_t loose = 0;
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(responses[i].ok()) << responses[i].status().ToString();
    for (const Detection& d : responses[i]->detections) {
      if (i % 2 == 1) {
        EXPECT_GE(d.score, 0.8f);
      }
    }
    (i % 2 == 1 ? strict : loose) += responses[i]->detections.size();
  }
  EXPECT_LT(strict, loose);
  EXPECT_EQ(Acquires("quick"), 2u);
}

}  // namespace
}  // namespace zerodet::server

// The serve benchmark's harness: a short run on the small model measures every path and removes
// its temporary repository; a missing model is one error naming it.
#include "serve_bench.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "test_support.h"

namespace zerodet::bench {
namespace {

TEST(ServeBenchTest, AShortRunMeasuresEveryPathAndCleansUp) {
  ServeBenchOptions options;
  options.model = zerodet::testing::SharedModel("yolo11n-320.onnx");
  options.requests = 2;
  options.threads = 1;
  auto result = MeasureServe(options);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  for (const char* path :
       {"direct_run", "infer_json", "infer_binary", "infer_shared_memory", "infer_store_object"}) {
    EXPECT_EQ((*result)[path]["samples"], 2) << path;
    EXPECT_GT((*result)[path]["p50_us"].get<double>(), 0.0) << path;
  }
  EXPECT_EQ((*result)["input_shape"].dump(), "[1,3,320,320]");
  EXPECT_GT((*result)["detect_http_images_per_s"]["concurrency_16"].get<double>(), 0.0);
  // The shared-memory object is gone.
  const std::string key = "/dev/shm/zerodet-serve-bench-" + std::to_string(::getpid());
  EXPECT_FALSE(std::filesystem::exists(key));
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::temp_directory_path() /
                                       ("zerodet-bench-serve-" + std::to_string(::getpid()))));
}

TEST(ServeBenchTest, AMissingModelIsOneErrorNamingIt) {
  ServeBenchOptions options;
  options.model = "/nonexistent/model.onnx";
  auto missing = MeasureServe(options);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/model.onnx"), std::string::npos)
      << missing.status().ToString();
}

}  // namespace
}  // namespace zerodet::bench

// The process-wide shared thread pools. A suite of its own: the pools belong to ONNX Runtime's
// one environment per process, which must not exist before ConfigureSharedThreadPool runs.
#include <dirent.h>
#include <gtest/gtest.h>

#include "test_models.h"
#include "zerodet/infer/backend.h"

namespace zerodet {
namespace {

using ::zerodet::testing::SharedModel;

int Threads() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/task");
  while (const dirent* entry = ::readdir(dir)) count += entry->d_name[0] != '.';
  ::closedir(dir);
  return count;
}

TEST(SharedThreadPoolTest, ManyBackendsRunOnOnePoolOfThreads) {
  ASSERT_TRUE(ConfigureSharedThreadPool({2, 1}).ok());
  EXPECT_TRUE(ConfigureSharedThreadPool({2, 1}).ok());  // the same sizes again: fine
  EXPECT_EQ(ConfigureSharedThreadPool({4, 1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ConfigureSharedThreadPool({-1, 1}).code(), StatusCode::kInvalidArgument);

  BackendOptions options;
  options.shared_thread_pool = true;
  options.intra_op_threads = 2;
  EXPECT_EQ(CreateOnnxBackend(SharedModel("yolov8n.onnx"), options).status().code(),
            StatusCode::kInvalidArgument);
  options.intra_op_threads = 0;

  std::vector<std::unique_ptr<Backend>> backends;
  auto first = CreateOnnxBackend(SharedModel("yolov8n.onnx"), options);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  backends.push_back(std::move(first).value());
  const int threads_with_one = Threads();
  for (const char* model : {"yolo11n.onnx", "yolo11n-320.onnx", "yolov10n.onnx", "yolox-nano.onnx",
                            "yolox-nano-v5format.onnx", "yolov8n.onnx", "yolo11n.onnx",
                            "yolov10n.onnx", "yolox-nano.onnx"}) {
    auto backend = CreateOnnxBackend(SharedModel(model), options);
    ASSERT_TRUE(backend.ok()) << model << ": " << backend.status().ToString();
    backends.push_back(std::move(backend).value());
  }
  std::printf("threads with 1 model: %d, with %zu models: %d\n", threads_with_one, backends.size(),
              Threads());
  EXPECT_EQ(Threads(), threads_with_one);
  std::vector<float> input(3 * 640 * 640, 0.5f);
  const ConstTensorView view{input.data(), DType::kFloat32, {1, 3, 640, 640}};
  EXPECT_TRUE(backends[0]->Run(std::span<const ConstTensorView>(&view, 1)).ok());

  // Backends with pools of their own still work beside them, and each adds its threads: what
  // ten models would cost without the shared pool.
  BackendOptions own;
  own.intra_op_threads = 2;
  std::vector<std::unique_ptr<Backend>> own_backends;
  for (int i = 0; i < 10; ++i) {
    auto backend = CreateOnnxBackend(SharedModel("yolox-nano.onnx"), own);
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    own_backends.push_back(std::move(backend).value());
  }
  std::printf("threads with 10 more models on pools of their own (2 intra-op threads): %d\n",
              Threads());
  EXPECT_GE(Threads(), threads_with_one + 10);
}

}  // namespace
}  // namespace zerodet

// The model manager on the real models of ../shared/models: a load serves the reference
// detections after its warm-up, with its measured charge; the optimized-graph cache. Not in the
// ThreadSanitizer suite (ONNX Runtime runs these models far too slowly under it).
#include <gtest/gtest.h>

#include "models_test_util.h"
#include "zerodet/models/model_manager.h"

namespace zerodet {
namespace {

using ::zerodet::testing::AddVersion;
using ::zerodet::testing::FindStats;
using ::zerodet::testing::FindVersion;
using ::zerodet::testing::ManagerTestOptions;
using ::zerodet::testing::SharedImage;
using ::zerodet::testing::SharedModel;
using ::zerodet::testing::TempDir;
using ::zerodet::testing::WriteFile;

TEST(ModelManagerTest, LoadsOnFirstUseWarmsUpAndServesRealDetections) {
  TempDir repo("models_manager");
  AddVersion(repo.path(), "yolov8n", 1, SharedModel("yolov8n.onnx"));
  WriteFile(repo.path() / "yolov8n" / "config.yaml", "warmup: 2\n");
  auto manager = ModelManager::Create(ManagerTestOptions(repo.path()));
  ASSERT_TRUE(manager.ok()) << manager.status().ToString();
  EXPECT_EQ(FindStats((*manager)->Stats(), "yolov8n")->state, ModelState::kUnloaded);

  auto handle = (*manager)->Acquire("yolov8n");
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();
  EXPECT_EQ(handle->name(), "yolov8n");
  EXPECT_EQ(handle->version(), 1);
  auto result = handle->detector().DetectFile(SharedImage("dog.jpg"));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_FALSE(result->detections.empty());
  EXPECT_EQ(result->detections[0].class_id, 16);  // dog, as the reference
  handle->Release();

  ASSERT_TRUE((*manager)->Acquire("yolov8n").ok());
  const ManagerStats stats = (*manager)->Stats();
  const std::optional<ModelStats> model = FindStats(stats, "yolov8n");
  EXPECT_EQ(model->state, ModelState::kReady);
  EXPECT_EQ(model->loads, 1u);
  EXPECT_EQ(model->misses, 1u);
  EXPECT_EQ(model->hits, 1u);
  EXPECT_GT(model->last_warmup_ms, 0);
  EXPECT_EQ(model->load_ms.count(), 1u);
  EXPECT_GT(model->bytes.at("cpu"), 10u << 20);  // what the load took, measured
  EXPECT_EQ(FindVersion(*model, 1)->charge_source, "rss");
  EXPECT_DOUBLE_EQ(stats.hit_rate, 0.5);
  EXPECT_EQ(stats.devices.at("cpu").models_loaded, 1u);
}

TEST(GraphCacheTest, TheSecondLoadComesFromTheOptimizedGraphWithTheSameDetections) {
  TempDir repo("models_graph");
  TempDir cache("models_graph_cache");
  AddVersion(repo.path(), "yolov8n", 1, SharedModel("yolov8n.onnx"));
  std::vector<Detection> first_detections;
  for (int round = 0; round < 2; ++round) {
    ManagerOptions options = ManagerTestOptions(repo.path());
    options.graph_cache_dir = cache.path();
    auto manager = ModelManager::Create(options);
    ASSERT_TRUE(manager.ok());
    auto handle = (*manager)->Acquire("yolov8n");
    ASSERT_TRUE(handle.ok()) << handle.status().ToString();
    EXPECT_EQ(handle->detector().model_info().loaded_from_optimized_graph, round == 1);
    auto result = handle->detector().DetectFile(SharedImage("dog.jpg"));
    ASSERT_TRUE(result.ok());
    if (round == 0) {
      first_detections = result->detections;
      continue;
    }
    ASSERT_EQ(result->detections.size(), first_detections.size());
    for (size_t i = 0; i < first_detections.size(); ++i) {
      EXPECT_EQ(result->detections[i].class_id, first_detections[i].class_id);
      EXPECT_NEAR(result->detections[i].score, first_detections[i].score, 1e-4);
    }
    EXPECT_TRUE(FindVersion(*FindStats((*manager)->Stats(), "yolov8n"), 1)->from_graph_cache);
  }
  // A damaged cache file is rebuilt, not fatal.
  for (const auto& entry : std::filesystem::directory_iterator(cache.path())) {
    WriteFile(entry.path(), "damaged");
  }
  ManagerOptions options = ManagerTestOptions(repo.path());
  options.graph_cache_dir = cache.path();
  auto manager = ModelManager::Create(options);
  ASSERT_TRUE(manager.ok());
  auto handle = (*manager)->Acquire("yolov8n");
  ASSERT_TRUE(handle.ok()) << handle.status().ToString();
  EXPECT_FALSE(handle->detector().model_info().loaded_from_optimized_graph);
}

}  // namespace
}  // namespace zerodet

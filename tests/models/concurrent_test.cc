// Many threads requesting random models of a repository of six under a budget of two loaded
// models: every request succeeds, no version is ever loaded twice at once, the budget is never
// exceeded by more than one model, and handles never dangle (each request runs its model).
// Under ThreadSanitizer (CI) the six models are small generated ones; otherwise the six real
// models of ../shared/models.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "models_test_util.h"
#include "zerodet/core/sanitizers.h"
#include "zerodet/models/model_manager.h"

namespace zerodet {
namespace {

using ::zerodet::testing::AddVersion;
using ::zerodet::testing::CountingLoader;
using ::zerodet::testing::GeneratedModel;
using ::zerodet::testing::RealModelFiles;
using ::zerodet::testing::SharedModel;
using ::zerodet::testing::TempDir;

#if defined(ZERODET_TSAN)
constexpr bool kSmallModels = true;
constexpr int kRequestsPerThread = 100;
#else
constexpr bool kSmallModels = false;
constexpr int kRequestsPerThread = 8;
#endif
constexpr int kThreads = 6;

TEST(ManagerConcurrencyTest, RandomRequestsOverSixModelsUnderABudgetOfTwo) {
  TempDir repo("models_concurrent");
  std::vector<std::string> names;
  for (int i = 0; i < 6; ++i) {
    const std::string name = "model" + std::to_string(i);
    if (kSmallModels) {
      ZD_REQUIRE_GENERATED_MODELS();
      AddVersion(repo.path(), name, 1,
                 GeneratedModel(i % 2 ? "v5_const_nometa.onnx" : "v5_const.onnx"));
    } else {
      AddVersion(repo.path(), name, 1, SharedModel(RealModelFiles()[static_cast<size_t>(i)]));
    }
    names.push_back(name);
  }
  auto loader = std::make_shared<CountingLoader>(CreateOnnxModelLoader({}));
  ManagerOptions options;
  options.repository = repo.path();
  options.thread_pool = {2, 1};
  options.watch = false;
  options.loader = loader;
  options.loader_threads = 2;
  options.budgets["cpu"] = {2, 0};
  auto created = ModelManager::Create(options);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  ModelManager& manager = **created;

  std::atomic<bool> done{false};
  std::atomic<uint64_t> most_loaded{0};
  std::thread monitor([&] {
    while (!done) {
      const ManagerStats stats = manager.Stats();
      const uint64_t loaded =
          stats.devices.count("cpu") ? stats.devices.at("cpu").models_loaded : 0;
      uint64_t seen = most_loaded.load();
      while (loaded > seen && !most_loaded.compare_exchange_weak(seen, loaded)) {
      }
      std::this_thread::yield();
    }
  });
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      std::mt19937 random(static_cast<unsigned>(t + 1));
      std::uniform_int_distribution<size_t> pick(0, names.size() - 1);
      std::vector<uint8_t> pixels(48 * 40 * 3, 90);
      const ImageView image{pixels.data(), 48, 40, 48 * 3, PixelFormat::kRGB8};
      for (int i = 0; i < kRequestsPerThread; ++i) {
        const std::string& name = names[pick(random)];
        auto handle = manager.Acquire(name);
        if (!handle.ok()) {
          ADD_FAILURE() << name << ": " << handle.status().ToString();
          failures += 1;
          continue;
        }
        EXPECT_EQ(handle->name(), name);
        if (!handle->detector().Detect(image).ok()) failures += 1;
      }
    });
  }
  for (auto& client : clients) client.join();
  done = true;
  monitor.join();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(loader->MaxConcurrentLoadsOfOneVersion(), 1) << "a version loaded twice at once";
  EXPECT_LE(most_loaded.load(), 3u) << "budget of 2 exceeded by more than one model";
  const ManagerStats stats = manager.Stats();
  EXPECT_EQ(stats.hits + stats.misses, static_cast<uint64_t>(kThreads * kRequestsPerThread));
  EXPECT_LE(stats.devices.at("cpu").models_loaded, 2u);
  uint64_t loads = 0;
  for (const ModelStats& m : stats.models) loads += m.loads;
  EXPECT_EQ(loads, static_cast<uint64_t>(loader->TotalLoads()));
}

}  // namespace
}  // namespace zerodet

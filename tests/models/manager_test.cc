// The model manager on small generated models (fast enough for ThreadSanitizer, which runs this
// suite in CI): errors in the index, budgets and LRU eviction, pinned models, single flight,
// handles that outlive eviction, versions and traffic splits, hot swap under load and the
// watcher, the loader pool and its timeout, per-device budgets. manager_real_models_test.cc has
// the real models.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "models_test_util.h"
#include "zerodet/models/model_manager.h"

namespace zerodet {
namespace {

using ::zerodet::testing::AddVersion;
using ::zerodet::testing::CopyVersion;
using ::zerodet::testing::CountingLoader;
using ::zerodet::testing::FindStats;
using ::zerodet::testing::FindVersion;
using ::zerodet::testing::GeneratedModel;
using ::zerodet::testing::ManagerTestOptions;
using ::zerodet::testing::SharedModel;
using ::zerodet::testing::TempDir;
using ::zerodet::testing::WaitFor;
using ::zerodet::testing::WriteFile;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(ModelManagerTest, BrokenModelsShowTheirReasonAndNeverBreakTheOthers) {
  ZD_REQUIRE_GENERATED_MODELS();
  TempDir repo("models_manager");
  AddVersion(repo.path(), "good", 1, GeneratedModel("v5_const.onnx"));
  WriteFile(repo.path() / "corrupt" / "1" / "model.onnx", "this is not an onnx model");
  zerodet::testing::MakeOld(repo.path() / "corrupt" / "1" / "model.onnx");
  AddVersion(repo.path(), "badlayout", 1, GeneratedModel("bad_output.onnx"));
  WriteFile(repo.path() / "badconfig" / "config.yaml", "instances: many\n");
  AddVersion(repo.path(), "badconfig", 1, GeneratedModel("v5_const.onnx"));
  WriteFile(
      repo.path() / "triton" / "config.pbtxt",
      "platform: \"onnxruntime_onnx\"\nsequence_batching { }\nresponse_cache { enable: true }\n");
  AddVersion(repo.path(), "triton", 1, GeneratedModel("v5_const.onnx"));
  auto manager = ModelManager::Create(ManagerTestOptions(repo.path()));
  ASSERT_TRUE(manager.ok()) << manager.status().ToString();
  ModelManager& m = **manager;

  auto corrupt = m.Acquire("corrupt");
  EXPECT_EQ(corrupt.status().code(), StatusCode::kCorruptData) << corrupt.status().ToString();
  EXPECT_EQ(m.Acquire("badlayout").status().code(), StatusCode::kInvalidArgument);
  auto badconfig = m.Acquire("badconfig");
  EXPECT_TRUE(Contains(badconfig.status().message(), "badconfig/config.yaml"))
      << badconfig.status().ToString();
  EXPECT_EQ(m.Acquire("missing").status().code(), StatusCode::kNotFound);
  auto missing_version = m.Acquire("good", {.version = 7});
  EXPECT_EQ(missing_version.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(missing_version.status().message(), "served: 1"))
      << missing_version.status().message();
  EXPECT_TRUE(m.Acquire("good").ok());
  EXPECT_TRUE(m.Acquire("triton").ok());

  // A failed version stays failed (no retry storm) and says why in the stats.
  const ManagerStats stats = m.Stats();
  EXPECT_EQ(FindStats(stats, "corrupt")->state, ModelState::kFailed);
  EXPECT_TRUE(Contains(FindStats(stats, "corrupt")->reason, "not a valid ONNX model"));
  EXPECT_EQ(FindStats(stats, "corrupt")->failed_loads, 1u);
  EXPECT_EQ(m.Acquire("corrupt").status().code(), StatusCode::kCorruptData);
  EXPECT_EQ(FindStats(m.Stats(), "corrupt")->failed_loads, 1u);
  EXPECT_EQ(FindStats(stats, "badconfig")->state, ModelState::kFailed);
  EXPECT_EQ(FindStats(stats, "good")->state, ModelState::kReady);
  const RepositoryIndex index = m.Index();
  EXPECT_EQ(index.Find("triton")->config.source, "config.pbtxt");
  EXPECT_EQ(index.Find("triton")->config.unsupported.size(), 2u);
}

TEST(ModelManagerTest, EmptyRepositoryAndMissingRepository) {
  TempDir repo("models_manager");
  auto manager = ModelManager::Create(ManagerTestOptions(repo.path()));
  ASSERT_TRUE(manager.ok());
  EXPECT_TRUE((*manager)->Index().models.empty());
  EXPECT_EQ((*manager)->Acquire("yolov8n").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ModelManager::Create(ManagerTestOptions(repo.path() / "none")).status().code(),
            StatusCode::kNotFound);
}

TEST(ModelManagerTest, AModelLargerThanTheBudgetFailsWithBothSizes) {
  TempDir repo("models_manager");
  AddVersion(repo.path(), "yolov8n", 1, SharedModel("yolov8n.onnx"));
  ManagerOptions options = ManagerTestOptions(repo.path());
  options.budgets["cpu"] = {0, 4 << 20};
  auto manager = ModelManager::Create(options);
  ASSERT_TRUE(manager.ok());
  auto handle = (*manager)->Acquire("yolov8n");
  EXPECT_EQ(handle.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(handle.status().message(), "MiB, more than the whole cpu budget of 4.0 MiB"))
      << handle.status().message();
}

// LRU by count and bytes, pinned models, and handles that keep evicted versions alive.
class BudgetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ZD_REQUIRE_GENERATED_MODELS();
    for (const char* name : {"a", "b", "c", "pinned"}) {
      AddVersion(repo_.path(), name, 1, GeneratedModel("v5_const.onnx"));
    }
    WriteFile(repo_.path() / "pinned" / "config.yaml", "pinned: true\n");
    loader_ = std::make_shared<CountingLoader>(CreateOnnxModelLoader({}));
    for (const char* name : {"a", "b", "c", "pinned"}) loader_->SetCharge(name, 10 << 20);
  }
  std::unique_ptr<ModelManager> Make(DeviceBudget budget) {
    ManagerOptions options = ManagerTestOptions(repo_.path());
    options.budgets["cpu"] = budget;
    options.loader = loader_;
    auto manager = ModelManager::Create(options);
    EXPECT_TRUE(manager.ok()) << manager.status().ToString();
    return manager.ok() ? std::move(manager).value() : nullptr;
  }
  ModelState StateOf(ModelManager& m, const std::string& name) {
    return FindStats(m.Stats(), name)->state;
  }

  TempDir repo_{"models_budget"};
  std::shared_ptr<CountingLoader> loader_;
};

TEST_F(BudgetTest, EvictsTheLeastRecentlyUsedByCount) {
  auto m = Make({2, 0});
  ASSERT_TRUE(m->Acquire("a").ok());
  ASSERT_TRUE(m->Acquire("b").ok());
  ASSERT_TRUE(m->Acquire("a").ok());  // b is now the least recently used
  ASSERT_TRUE(m->Acquire("c").ok());
  EXPECT_EQ(StateOf(*m, "a"), ModelState::kReady);
  EXPECT_EQ(StateOf(*m, "b"), ModelState::kUnloaded);
  EXPECT_EQ(StateOf(*m, "c"), ModelState::kReady);
  const std::optional<ModelStats> b = FindStats(m->Stats(), "b");
  EXPECT_EQ(b->evictions, 1u);
  EXPECT_GE(b->last_eviction_age_s, 0);
  EXPECT_EQ(m->Stats().devices.at("cpu").models_loaded, 2u);
}

TEST_F(BudgetTest, EvictsByBytesAndNeverEvictsPinned) {
  auto m = Make({0, 25 << 20});  // room for two models of 10 MiB
  ASSERT_TRUE(m->Acquire("pinned").ok());
  ASSERT_TRUE(m->Acquire("a").ok());
  ASSERT_TRUE(m->Acquire("b").ok());  // evicts a, not the older pinned
  EXPECT_EQ(StateOf(*m, "pinned"), ModelState::kReady);
  EXPECT_EQ(StateOf(*m, "a"), ModelState::kUnloaded);
  ASSERT_TRUE(m->Acquire("c").ok());
  EXPECT_EQ(StateOf(*m, "pinned"), ModelState::kReady);
  EXPECT_EQ(StateOf(*m, "b"), ModelState::kUnloaded);
  EXPECT_LE(m->Stats().devices.at("cpu").bytes_used, 25u << 20);
}

TEST_F(BudgetTest, AHandleKeepsItsEvictedVersionAliveUntilReleased) {
  auto m = Make({1, 0});
  auto held = m->Acquire("a");
  ASSERT_TRUE(held.ok());
  // b needs the only slot: a is in use, so it is detached (draining) and b's load waits for a's
  // last handle, which another thread releases.
  std::atomic<bool> loaded_b{false};
  std::thread requester([&] {
    auto b = m->Acquire("b");
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    loaded_b = true;
  });
  ASSERT_TRUE(WaitFor([&] { return StateOf(*m, "a") == ModelState::kUnloaded; }));
  EXPECT_FALSE(loaded_b.load());
  // The detached version still runs for its holder.
  std::vector<float> input(3 * 64 * 64, 0.5f);
  const ConstTensorView view{input.data(), DType::kFloat32, {1, 3, 64, 64}};
  EXPECT_TRUE(held->detector().backend().Run(std::span<const ConstTensorView>(&view, 1)).ok());
  held->Release();
  requester.join();
  EXPECT_TRUE(loaded_b.load());
  EXPECT_EQ(m->Stats().devices.at("cpu").models_loaded, 1u);
}

TEST_F(BudgetTest, ConcurrentRequestsForAColdModelShareOneLoad) {
  auto m = Make({0, 0});
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] { ok += m->Acquire("a").ok() ? 1 : 0; });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(loader_->Loads("a:1"), 1);
  const std::optional<ModelStats> a = FindStats(m->Stats(), "a");
  EXPECT_EQ(a->hits + a->misses, 8u);
}

TEST_F(BudgetTest, ExplicitLoadUnloadAndPreload) {
  WriteFile(repo_.path() / "c" / "config.yaml", "preload: true\n");
  auto m = Make({0, 0});
  ASSERT_TRUE(WaitFor([&] { return StateOf(*m, "c") == ModelState::kReady; }));
  EXPECT_TRUE(m->Load("a").ok());
  EXPECT_EQ(StateOf(*m, "a"), ModelState::kReady);
  EXPECT_TRUE(m->LoadAsync("b").ok());
  ASSERT_TRUE(WaitFor([&] { return StateOf(*m, "b") == ModelState::kReady; }));
  EXPECT_TRUE(m->Unload("a").ok());
  EXPECT_EQ(StateOf(*m, "a"), ModelState::kUnloaded);
  EXPECT_EQ(m->Unload("nope").code(), StatusCode::kNotFound);
  EXPECT_EQ(loader_->TotalLoads(), 3);
}

TEST_F(BudgetTest, InstancesAreLeasedExclusively) {
  WriteFile(repo_.path() / "a" / "config.yaml", "instances: 2\n");
  auto m = Make({0, 0});
  auto first = m->Acquire("a");
  auto second = m->Acquire("a");
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(&first->detector(), &second->detector());
  // Both instances are out: a third request waits until its deadline.
  auto third = m->Acquire("a", {.version = std::nullopt, .deadline = Deadline::After({})});
  EXPECT_EQ(third.status().code(), StatusCode::kDeadlineExceeded);
  first->Release();
  EXPECT_TRUE(m->Acquire("a").ok());
}

// Versions, traffic splits and hot swap.
class VersionTest : public ::testing::Test {
 protected:
  void SetUp() override { ZD_REQUIRE_GENERATED_MODELS(); }
  std::unique_ptr<ModelManager> Make(bool watch = false) {
    ManagerOptions options = ManagerTestOptions(repo_.path());
    options.watch = watch;
    options.poll_interval = std::chrono::milliseconds(50);
    auto manager = ModelManager::Create(options);
    EXPECT_TRUE(manager.ok()) << manager.status().ToString();
    return manager.ok() ? std::move(manager).value() : nullptr;
  }
  static std::string FirstClass(const ModelHandle& handle) {
    return handle.detector().spec().class_names.at(0);
  }
  int64_t VersionServed(ModelManager& m) {
    auto handle = m.Acquire("m");
    return handle.ok() ? handle->version() : -1;
  }
  TempDir repo_{"models_versions"};
};

TEST_F(VersionTest, TrafficSplitExactVersionsAndRollbackWithoutRestart) {
  for (int v : {1, 2, 3}) AddVersion(repo_.path(), "m", v, GeneratedModel("v5_const.onnx"));
  WriteFile(repo_.path() / "m" / "config.yaml", "version_policy: all\ntraffic: {2: 90, 3: 10}\n");
  auto m = Make();
  std::map<int64_t, int> counts;
  for (int i = 0; i < 400; ++i) counts[VersionServed(*m)] += 1;
  EXPECT_EQ(counts.count(1), 0u);
  EXPECT_GT(counts[2], counts[3]);
  EXPECT_GT(counts[3], 0);
  EXPECT_EQ(counts[2] + counts[3], 400);
  auto exact = m->Acquire("m", {.version = 1});
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->version(), 1);
  exact->Release();

  // Rollback: the split becomes a default version; applied by a rescan, no restart.
  WriteFile(repo_.path() / "m" / "config.yaml", "version_policy: all\ndefault_version: 1\n");
  ASSERT_TRUE(m->Rescan().ok());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(VersionServed(*m), 1);
}

TEST_F(VersionTest, ANewVersionSwapsInWhileRequestsInFlightFinishOnTheOld) {
  AddVersion(repo_.path(), "m", 1, GeneratedModel("v5_const.onnx"));
  WriteFile(repo_.path() / "m" / "config.yaml", "instances: 2\n");  // one held, one serving
  auto m = Make();
  auto old_handle = m->Acquire("m");
  ASSERT_TRUE(old_handle.ok());
  EXPECT_EQ(FirstClass(*old_handle), "cat");

  AddVersion(repo_.path(), "m", 2, GeneratedModel("v5_const_nometa.onnx"));
  ASSERT_TRUE(m->Rescan().ok());
  ASSERT_TRUE(WaitFor([&] { return VersionServed(*m) == 2; }));
  auto new_handle = m->Acquire("m");
  ASSERT_TRUE(new_handle.ok());
  EXPECT_EQ(FirstClass(*new_handle), "class0");
  // The request in flight still runs on version 1, which is freed after it.
  std::vector<float> input(3 * 64 * 64, 0.5f);
  const ConstTensorView view{input.data(), DType::kFloat32, {1, 3, 64, 64}};
  EXPECT_TRUE(
      old_handle->detector().backend().Run(std::span<const ConstTensorView>(&view, 1)).ok());
  EXPECT_EQ(old_handle->version(), 1);
  old_handle->Release();
  const std::optional<ModelStats> stats = FindStats(m->Stats(), "m");
  ASSERT_NE(FindVersion(*stats, 2), nullptr);
  EXPECT_EQ(FindVersion(*stats, 2)->state, ModelState::kReady);
  EXPECT_TRUE(FindVersion(*stats, 1) == nullptr ||
              FindVersion(*stats, 1)->state == ModelState::kUnloaded);
}

TEST_F(VersionTest, AFailingNewVersionLeavesTheOldOneServing) {
  AddVersion(repo_.path(), "m", 1, GeneratedModel("v5_const.onnx"));
  auto m = Make();
  ASSERT_EQ(VersionServed(*m), 1);
  WriteFile(repo_.path() / "m" / "2" / "model.onnx", "garbage, not a model");
  ASSERT_TRUE(m->Rescan().ok());
  ASSERT_TRUE(WaitFor([&] {
    const std::optional<ModelStats> stats = FindStats(m->Stats(), "m");
    const VersionStats* v2 = FindVersion(*stats, 2);
    return v2 && v2->state == ModelState::kFailed;
  }));
  EXPECT_TRUE(Contains(FindVersion(*FindStats(m->Stats(), "m"), 2)->reason, "not a valid ONNX"));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(VersionServed(*m), 1);
  // An explicit request for the broken version gets its error.
  EXPECT_EQ(m->Acquire("m", {.version = 2}).status().code(), StatusCode::kCorruptData);
}

TEST_F(VersionTest, AFileReplacedDuringARequestReloadsForTheNextOnes) {
  CopyVersion(repo_.path(), "m", 1, GeneratedModel("v5_const.onnx"));
  zerodet::testing::MakeOld(repo_.path() / "m" / "1" / "model.onnx");
  WriteFile(repo_.path() / "m" / "config.yaml", "instances: 2\n");  // one held, one serving
  auto m = Make();
  auto during = m->Acquire("m");
  ASSERT_TRUE(during.ok());
  // Replaced by rename, as deployment tools do, while the request runs.
  const auto staged = repo_.path() / "m" / "1" / ".model.onnx.tmp";
  std::filesystem::copy_file(GeneratedModel("v5_const_nometa.onnx"), staged);
  std::filesystem::rename(staged, repo_.path() / "m" / "1" / "model.onnx");
  ASSERT_TRUE(m->Rescan().ok());
  ASSERT_TRUE(WaitFor([&] {
    auto handle = m->Acquire("m");
    return handle.ok() && FirstClass(*handle) == "class0";
  }));
  EXPECT_EQ(FirstClass(*during), "cat");  // still the old session
  std::vector<float> input(3 * 64 * 64, 0.5f);
  const ConstTensorView view{input.data(), DType::kFloat32, {1, 3, 64, 64}};
  EXPECT_TRUE(during->detector().backend().Run(std::span<const ConstTensorView>(&view, 1)).ok());
}

TEST_F(VersionTest, HotSwapAndVersionsAddedAndRemovedUnderLoadFailNoRequest) {
  AddVersion(repo_.path(), "m", 1, GeneratedModel("v5_const.onnx"));
  auto m = Make(/*watch=*/true);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<int> requests{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&] {
      while (!stop) {
        auto handle = m->Acquire("m");
        if (!handle.ok()) {
          ADD_FAILURE() << handle.status().ToString();
          failures += 1;
          continue;
        }
        ImageView image;
        std::vector<uint8_t> pixels(32 * 32 * 3, 100);
        image.data = pixels.data();
        image.width = 32;
        image.height = 32;
        image.stride = 32 * 3;
        if (!handle->detector().Detect(image).ok()) failures += 1;
        requests += 1;
      }
    });
  }
  const auto served_is = [&](int64_t version) {
    return [&m, version] {
      auto handle = m->Acquire("m");
      return handle.ok() && handle->version() == version;
    };
  };
  ASSERT_TRUE(WaitFor([&] { return requests > 10; }));
  AddVersion(repo_.path(), "m", 2, GeneratedModel("v5_const_nometa.onnx"));  // found by the watcher
  EXPECT_TRUE(WaitFor(served_is(2)));
  std::filesystem::remove_all(repo_.path() / "m" / "2");  // back to version 1
  EXPECT_TRUE(WaitFor(served_is(1)));
  AddVersion(repo_.path(), "m", 3, GeneratedModel("v5_const.onnx"));
  EXPECT_TRUE(WaitFor(served_is(3)));
  std::filesystem::remove_all(repo_.path() / "m" / "1");
  const int before = requests;
  ASSERT_TRUE(WaitFor([&] { return requests > before + 10; }));
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(OpenModelTest, ResolvesNameAndVersionFromARepository) {
  ZD_REQUIRE_GENERATED_MODELS();
  TempDir repo("models_open");
  AddVersion(repo.path(), "m", 1, GeneratedModel("v5_const.onnx"));
  AddVersion(repo.path(), "m", 2, GeneratedModel("v5_const_nometa.onnx"));
  WriteFile(repo.path() / "m" / "config.yaml", "version_policy: all\n");
  ManagerOptions options = ManagerTestOptions(repo.path());
  auto latest = OpenModelFromRepository(repo.path(), "m", options);
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  EXPECT_EQ(latest->handle.version(), 2);
  EXPECT_EQ(latest->handle.detector().spec().class_names.at(0), "class0");
  auto first = OpenModelFromRepository(repo.path(), "m:1", options);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->handle.version(), 1);
  EXPECT_EQ(OpenModelFromRepository(repo.path(), "m:9", options).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(OpenModelFromRepository(repo.path(), "../m", options).status().code(),
            StatusCode::kInvalidArgument);
}

// A loader that holds the loads of chosen models until released, and charges chosen models to
// a GPU device (run on CPU: this ONNX Runtime has no CUDA provider).
class ControlledLoader final : public ModelLoader {
 public:
  explicit ControlledLoader(std::shared_ptr<ModelLoader> inner) : inner_(std::move(inner)) {}
  Result<LoadedModel> Load(const LoadRequest& request) override {
    {
      std::unique_lock lock(mu_);
      started_ += 1;
      released_cv_.wait(lock, [&] { return !held_.count(request.name); });
    }
    LoadRequest on_cpu = request;
    on_cpu.config.provider = ExecutionProvider::kCpu;
    auto loaded = inner_->Load(on_cpu);
    if (loaded.ok() && request.config.provider != ExecutionProvider::kCpu) {
      loaded->charge[ConfigDevice(request.config)] = 100 << 20;
    }
    return loaded;
  }
  void Hold(const std::string& model) {
    std::lock_guard lock(mu_);
    held_.insert(model);
  }
  void Release(const std::string& model) {
    {
      std::lock_guard lock(mu_);
      held_.erase(model);
    }
    released_cv_.notify_all();
  }
  int started() {
    std::lock_guard lock(mu_);
    return started_;
  }

 private:
  std::shared_ptr<ModelLoader> inner_;
  std::mutex mu_;
  std::condition_variable released_cv_;
  std::set<std::string> held_;
  int started_ = 0;
};

TEST(LoaderPoolTest, ASlowLoadTimesOutItsWaitersAndDoesNotBlockOtherModels) {
  ZD_REQUIRE_GENERATED_MODELS();
  TempDir repo("models_pool");
  AddVersion(repo.path(), "slow", 1, GeneratedModel("v5_const.onnx"));
  AddVersion(repo.path(), "fast", 1, GeneratedModel("v5_const.onnx"));
  auto loader = std::make_shared<ControlledLoader>(CreateOnnxModelLoader({}));
  loader->Hold("slow");
  ManagerOptions options = ManagerTestOptions(repo.path());
  options.loader = loader;
  options.loader_threads = 2;
  options.load_timeout = std::chrono::milliseconds(200);
  auto manager = ModelManager::Create(options);
  ASSERT_TRUE(manager.ok());
  ASSERT_TRUE((*manager)->LoadAsync("slow").ok());
  ASSERT_TRUE(WaitFor([&] { return loader->started() == 1; }));
  // The other loader thread serves another model meanwhile.
  EXPECT_TRUE((*manager)->Acquire("fast").ok());
  auto slow = (*manager)->Acquire("slow");
  EXPECT_EQ(slow.status().code(), StatusCode::kDeadlineExceeded) << slow.status().ToString();
  // The held load stops at its first check after the timeout and fails; a timed-out model
  // stays failed (no retry storm on a model that keeps timing out) until it is loaded again.
  loader->Release("slow");
  ASSERT_TRUE(WaitFor([&] { return FindStats((*manager)->Stats(), "slow")->failed_loads == 1; }));
  EXPECT_TRUE(Contains(FindStats((*manager)->Stats(), "slow")->reason, "timed out"));
  EXPECT_EQ((*manager)->Acquire("slow").status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_TRUE((*manager)->Load("slow").ok());
  EXPECT_TRUE((*manager)->Acquire("slow").ok());
}

TEST(DeviceBudgetTest, EachDeviceHasItsOwnBudget) {
  ZD_REQUIRE_GENERATED_MODELS();
  TempDir repo("models_devices");
  for (const char* name : {"gpu_a", "gpu_b", "cpu_a", "cpu_b"}) {
    AddVersion(repo.path(), name, 1, GeneratedModel("v5_const.onnx"));
  }
  WriteFile(repo.path() / "gpu_a" / "config.yaml", "provider: cuda\ndevice: 0\n");
  WriteFile(repo.path() / "gpu_b" / "config.yaml", "provider: cuda\ndevice: 0\n");
  ManagerOptions options = ManagerTestOptions(repo.path());
  options.loader = std::make_shared<ControlledLoader>(CreateOnnxModelLoader({}));
  options.budgets["cuda:0"] = {0, 150 << 20};  // one 100 MiB model
  options.budgets["cpu"] = {2, 0};
  auto manager = ModelManager::Create(options);
  ASSERT_TRUE(manager.ok());
  ModelManager& m = **manager;
  for (const char* name : {"cpu_a", "gpu_a", "cpu_b", "gpu_b"}) {
    ASSERT_TRUE(m.Acquire(name).ok()) << name;
  }
  const ManagerStats stats = m.Stats();
  EXPECT_EQ(FindStats(stats, "gpu_a")->state, ModelState::kUnloaded);  // evicted by gpu_b
  EXPECT_EQ(FindStats(stats, "gpu_b")->bytes.at("cuda:0"), 100u << 20);
  EXPECT_EQ(FindStats(stats, "cpu_a")->state, ModelState::kReady);  // the CPU budget holds 2
  EXPECT_EQ(FindStats(stats, "cpu_b")->state, ModelState::kReady);
  EXPECT_EQ(stats.devices.at("cuda:0").bytes_used, 100u << 20);
  EXPECT_EQ(stats.devices.at("cuda:0").bytes_budget, 150u << 20);
  EXPECT_EQ(stats.devices.at("cuda:0").models_loaded, 1u);
  EXPECT_EQ(stats.devices.at("cpu").models_loaded, 2u);
}

}  // namespace
}  // namespace zerodet

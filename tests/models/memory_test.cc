// Unloading frees memory: the process's resident set after loading and unloading six real
// models returns to within 10% of what it was before them.
#include <gtest/gtest.h>

#include "models_test_util.h"
#include "zerodet/core/sanitizers.h"
#include "zerodet/models/memory_probe.h"
#include "zerodet/models/model_manager.h"

namespace zerodet {
namespace {

using ::zerodet::testing::AddVersion;
using ::zerodet::testing::RealModelFiles;
using ::zerodet::testing::SharedModel;
using ::zerodet::testing::TempDir;

std::string ModelName(size_t i) {
  return std::string("m").append(std::to_string(i));
}

TEST(ManagerMemoryTest, UnloadingSixModelsReturnsTheirMemory) {
#if defined(ZERODET_ASAN) || defined(ZERODET_TSAN)
  GTEST_SKIP() << "sanitizer allocators keep freed memory (quarantine), so RSS does not return";
#endif
  TempDir repo("models_memory");
  AddVersion(repo.path(), "first", 1, SharedModel("yolov8n.onnx"));
  for (size_t i = 0; i < RealModelFiles().size(); ++i) {
    AddVersion(repo.path(), ModelName(i), 1, SharedModel(RealModelFiles()[i]));
  }
  ManagerOptions options;
  options.repository = repo.path();
  options.thread_pool = {2, 1};
  options.watch = false;
  options.loader_threads = 1;  // each load measured alone
  auto manager = ModelManager::Create(options);
  ASSERT_TRUE(manager.ok()) << manager.status().ToString();
  ModelManager& m = **manager;
  // ONNX Runtime allocates process-wide state on its first session (kernel registries, the
  // shared pools' buffers): one model loaded and unloaded first, so "before" includes it.
  ASSERT_TRUE(m.Load("first").ok());
  ASSERT_TRUE(m.Unload("first").ok());

  const uint64_t before = *ProcessResidentBytes();
  for (size_t i = 0; i < RealModelFiles().size(); ++i) {
    ASSERT_TRUE(m.Load(ModelName(i)).ok());
  }
  const uint64_t loaded = *ProcessResidentBytes();
  const int threads_loaded = *ProcessThreadCount();
  for (size_t i = 0; i < RealModelFiles().size(); ++i) {
    ASSERT_TRUE(m.Unload(ModelName(i)).ok());
  }
  const uint64_t after = *ProcessResidentBytes();
  std::printf("RSS before %.1f MiB, 6 models loaded %.1f MiB, after unload %.1f MiB; %d threads\n",
              static_cast<double>(before) / (1 << 20), static_cast<double>(loaded) / (1 << 20),
              static_cast<double>(after) / (1 << 20), threads_loaded);
  EXPECT_GT(loaded, before + (100u << 20));  // six models really were resident
  EXPECT_LE(static_cast<double>(after), static_cast<double>(before) * 1.10);
  EXPECT_EQ(m.Stats().devices.at("cpu").bytes_used, 0u);
}

}  // namespace
}  // namespace zerodet

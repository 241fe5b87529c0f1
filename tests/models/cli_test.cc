// `zerodet models` and `zerodet bench models` as a user runs them (the built executable).
#include <gtest/gtest.h>

#include "models_test_util.h"

namespace zerodet {
namespace {

using ::zerodet::testing::AddVersion;
using ::zerodet::testing::GeneratedModel;
using ::zerodet::testing::RunZerodet;
using ::zerodet::testing::SharedModel;
using ::zerodet::testing::TempDir;
using ::zerodet::testing::WriteFile;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(ModelsCliTest, ListsTheIndexWithStatesReasonsAndConfigSources) {
  ZD_REQUIRE_GENERATED_MODELS();
  TempDir repo("models_cli");
  AddVersion(repo.path(), "good", 1, GeneratedModel("v5_const.onnx"));
  AddVersion(repo.path(), "good", 2, GeneratedModel("v5_const.onnx"));
  WriteFile(repo.path() / "good" / "config.pbtxt", "response_cache { enable: true }\n");
  WriteFile(repo.path() / "corrupt" / "1" / "model.onnx", "garbage");
  zerodet::testing::MakeOld(repo.path() / "corrupt" / "1" / "model.onnx");
  WriteFile(repo.path() / "badconfig" / "config.yaml", "nope: 1\n");

  auto listed = RunZerodet({"models", "--repo", repo.path().string()});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_TRUE(Contains(listed.out, "good")) << listed.out;
  EXPECT_TRUE(Contains(listed.out, "not served")) << listed.out;  // version 1 under latest 1
  EXPECT_TRUE(Contains(listed.out, "response_cache is not supported")) << listed.out;
  EXPECT_TRUE(Contains(listed.out, "unknown key 'nope'")) << listed.out;

  auto loaded = RunZerodet({"models", "--repo", repo.path().string(), "--load", "--json"});
  ASSERT_EQ(loaded.exit_code, 0) << loaded.err;
  const auto json = loaded.JsonLines();
  ASSERT_EQ(json.size(), 1u) << loaded.out;
  std::map<std::string, nlohmann::json> models;
  for (const auto& model : json[0]["models"]) models[model["name"]] = model;
  EXPECT_EQ(models["good"]["config_source"], "config.pbtxt");
  EXPECT_EQ(models["good"]["versions"][1]["state"], "ready");
  EXPECT_EQ(models["corrupt"]["versions"][0]["state"], "failed");
  EXPECT_TRUE(Contains(models["corrupt"]["versions"][0]["reason"], "not a valid ONNX model"));
  EXPECT_EQ(models["badconfig"]["status"], "error");
  EXPECT_EQ(json[0]["stats"]["loaded_versions"], 1);

  auto missing = RunZerodet({"models", "--repo", (repo.path() / "none").string()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.ErrLines().size(), 1u) << missing.err;
}

TEST(ModelsCliTest, BenchModelsPrintsOneJsonObject) {
  TempDir repo("models_cli_bench");
  AddVersion(repo.path(), "yolox-nano", 1, SharedModel("yolox-nano.onnx"));
  AddVersion(repo.path(), "yolo11n-320", 1, SharedModel("yolo11n-320.onnx"));
  auto bench = RunZerodet({"bench", "models", "--repo", repo.path().string(), "--rounds", "1",
                           "--hit-iterations", "1000", "--requests", "6", "--threads", "2"});
  ASSERT_EQ(bench.exit_code, 0) << bench.err;
  const auto json = bench.JsonLines();
  ASSERT_EQ(json.size(), 1u) << bench.out;
  EXPECT_EQ(json[0]["cold_load"].size(), 2u);
  EXPECT_GT(json[0]["cold_load"][0]["run_ms"].get<double>(), 0);
  EXPECT_EQ(json[0]["cache_hit"]["one_thread"]["samples"], 1000);
  EXPECT_EQ(json[0]["stream"]["budget_2"]["budget_models"], 2);
  EXPECT_EQ(json[0]["stream"]["all_resident"]["hit_rate"], 1.0);
}

}  // namespace
}  // namespace zerodet

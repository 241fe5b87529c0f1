#include "zerodet/models/repository.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "models_test_util.h"

namespace zerodet {
namespace {

using ::zerodet::testing::AddVersion;
using ::zerodet::testing::CopyVersion;
using ::zerodet::testing::MakeOld;
using ::zerodet::testing::SharedModel;
using ::zerodet::testing::TempDir;
using ::zerodet::testing::WriteFile;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

RepositoryScanner::Options LongSettle() {
  // Files written by the test are "still being written" until settled or marked complete.
  return {std::chrono::hours(1)};
}

TEST(RepositoryTest, EmptyAndMissingRepositories) {
  TempDir dir("models_repo");
  RepositoryScanner empty(dir.path(), {});
  auto index = empty.Scan();
  ASSERT_TRUE(index.ok());
  EXPECT_TRUE(index->models.empty());

  RepositoryScanner missing(dir.path() / "nope", {});
  EXPECT_EQ(missing.Scan().status().code(), StatusCode::kNotFound);
}

TEST(RepositoryTest, ListsModelsVersionsAndWhyEachCannotServe) {
  TempDir dir("models_repo");
  TempDir outside("models_outside");
  const auto& repo = dir.path();
  AddVersion(repo, "yolov8n", 1, SharedModel("yolov8n.onnx"));
  AddVersion(repo, "yolov8n", 3, SharedModel("yolov8n.onnx"));
  std::filesystem::create_directories(repo / "yolov8n" / "notes");  // not a version
  std::filesystem::create_directories(repo / "yolov8n" / "2");      // no model file
  std::filesystem::create_directories(repo / "yolov8n" / "0");      // not a positive version
  WriteFile(repo / "badconfig" / "config.yaml", "instances: [oops\n");
  AddVersion(repo, "badconfig", 1, SharedModel("yolov8n.onnx"));
  std::filesystem::create_directories(repo / "fifo" / "1");
  ASSERT_EQ(::mkfifo((repo / "fifo" / "1" / "model.onnx").c_str(), 0600), 0);
  std::filesystem::create_directories(repo / "escape" / "1");
  WriteFile(outside.path() / "model.onnx", "not a model");
  std::filesystem::create_symlink(outside.path() / "model.onnx",
                                  repo / "escape" / "1" / "model.onnx");
  std::filesystem::create_directory_symlink(outside.path(), repo / "linkedout");
  std::filesystem::create_directories(repo / "bad name!");
  std::filesystem::create_directories(repo / ".git" / "1");
  WriteFile(repo / "README.md", "models");
  std::filesystem::create_directories(repo / "noversions");

  RepositoryScanner scanner(repo, {});
  auto index = scanner.Scan();
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  std::vector<std::string> names;
  for (const ModelEntry& m : index->models) names.push_back(m.name);
  EXPECT_EQ(names, (std::vector<std::string>{"bad name!", "badconfig", "escape", "fifo",
                                             "linkedout", "noversions", "yolov8n"}));

  const ModelEntry* good = index->Find("yolov8n");
  ASSERT_NE(good, nullptr);
  EXPECT_TRUE(good->status.ok()) << good->status.ToString();
  EXPECT_EQ(good->served, (std::vector<int64_t>{3}));  // latest 1
  ASSERT_EQ(good->versions.size(), 4u);                // 0, 1, 2, 3 ("notes" is not a version)
  EXPECT_EQ(good->DefaultVersion(), 3);
  EXPECT_TRUE(Contains(good->FindVersion(0)->status.message(), "positive integers"));
  const VersionEntry* missing = good->FindVersion(2);
  ASSERT_NE(missing, nullptr);
  EXPECT_EQ(missing->status.code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(missing->status.message(), "yolov8n/2: no model.onnx"))
      << missing->status.message();

  EXPECT_TRUE(Contains(index->Find("badconfig")->status.message(), "badconfig/config.yaml"));
  EXPECT_TRUE(Contains(index->Find("fifo")->versions[0].status.message(), "not a regular file"));
  EXPECT_EQ(index->Find("escape")->versions[0].status.code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(
      Contains(index->Find("escape")->versions[0].status.message(), "outside the repository"));
  EXPECT_TRUE(Contains(index->Find("linkedout")->status.message(), "outside the repository"));
  EXPECT_TRUE(Contains(index->Find("bad name!")->status.message(), "letters, digits"));
  EXPECT_TRUE(Contains(index->Find("noversions")->status.message(), "no loadable version"));
}

TEST(RepositoryTest, AFileStillBeingWrittenIsNotServedUntilStable) {
  TempDir dir("models_repo");
  CopyVersion(dir.path(), "m", 1, SharedModel("yolov8n.onnx"));
  const auto file = dir.path() / "m" / "1" / "model.onnx";
  RepositoryScanner scanner(dir.path(), LongSettle());
  auto index = scanner.Scan();
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->Find("m")->versions[0].status.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(index->Find("m")->versions[0].status.message(), "still being written"));
  EXPECT_TRUE(index->Find("m")->served.empty());
  EXPECT_TRUE(scanner.pending_files());

  // A completed write (the watcher saw it closed or renamed into place) is stable at once.
  scanner.MarkComplete(file);
  index = scanner.Scan();
  EXPECT_EQ(index->Find("m")->served, (std::vector<int64_t>{1}));

  // Written long ago (the usual case at start): stable without waiting.
  CopyVersion(dir.path(), "old", 1, SharedModel("yolov8n.onnx"));
  MakeOld(dir.path() / "old" / "1" / "model.onnx");
  RepositoryScanner fresh(dir.path(), LongSettle());
  index = fresh.Scan();
  EXPECT_EQ(index->Find("old")->served, (std::vector<int64_t>{1}));
}

TEST(RepositoryTest, ParsesModelReferences) {
  auto plain = ParseModelRef("yolov8n");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->name, "yolov8n");
  EXPECT_FALSE(plain->version.has_value());
  auto versioned = ParseModelRef("yolo-v8.n:12");
  ASSERT_TRUE(versioned.ok());
  EXPECT_EQ(versioned->name, "yolo-v8.n");
  EXPECT_EQ(versioned->version, 12);
  for (const char* bad : {"", "../etc", "a/b", "/abs", "x:0", "x:-1", "x:one", ".hidden", "x:"}) {
    EXPECT_EQ(ParseModelRef(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace zerodet

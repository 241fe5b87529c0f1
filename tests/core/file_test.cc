#include "zerodet/core/file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "test_support.h"

namespace zerodet {
namespace {

TEST(FileTest, ReadsWholeFile) {
  auto bytes = ReadFileBytes(ZERODET_SHARED_DIR "/images/dog.jpg");
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  ASSERT_GT(bytes->size(), 1000u);
  EXPECT_EQ((*bytes)[0], 0xFF);
  EXPECT_EQ((*bytes)[1], 0xD8);
}

TEST(FileTest, MissingFileIsNotFoundAndNamesThePath) {
  auto bytes = ReadFileBytes("/nonexistent/zerodet.jpg");
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(bytes.status().code(), StatusCode::kNotFound);
  EXPECT_NE(bytes.status().message().find("/nonexistent/zerodet.jpg"), std::string::npos);
}

TEST(FileTest, DirectoryAndSizeLimitAreErrors) {
  EXPECT_EQ(ReadFileBytes("/tmp").status().code(), StatusCode::kInvalidArgument);
  auto small = ReadFileBytes(ZERODET_SHARED_DIR "/images/dog.jpg", 100);
  EXPECT_EQ(small.status().code(), StatusCode::kResourceExhausted);
}

// /proc files report a size of 0; they are read to end of file all the same.
TEST(FileTest, KernelPseudoFilesAreReadWhole) {
  auto meminfo = ReadFileText("/proc/meminfo");
  ASSERT_TRUE(meminfo.ok()) << meminfo.status().ToString();
  EXPECT_NE(meminfo->find("MemTotal:"), std::string::npos);
  EXPECT_EQ(ReadFileText("/proc/meminfo", 16).status().code(), StatusCode::kResourceExhausted);
}

// A FIFO would block open() until a writer comes; it is refused at once.
TEST(FileTest, FifoIsRefusedWithoutBlocking) {
  testing::TempDir dir("core-fifo");
  const std::string fifo = dir.File("pipe");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto bytes = ReadFileBytes(fifo);
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(bytes.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bytes.status().message(), fifo + ": is a FIFO, not a regular file");
  EXPECT_EQ(ReadFileText(fifo).status().code(), StatusCode::kInvalidArgument);
}

TEST(FileTest, SymlinkLoopIsNamedAsSuch) {
  testing::TempDir dir("core-loop");
  const std::string loop = dir.File("loop");
  ASSERT_EQ(::symlink(loop.c_str(), loop.c_str()), 0);
  auto bytes = ReadFileBytes(loop);
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(bytes.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bytes.status().message().find("symlink loop"), std::string::npos)
      << bytes.status().message();
}

// One bad entry (a loop, a dangling link) is reported on its own; the listing goes on.
TEST(FileTest, ListDirectoryReportsBadEntriesOneByOne) {
  testing::TempDir dir("core-list");
  std::ofstream(dir.File("b.txt")) << "b";
  std::filesystem::create_directory(dir.path() / "sub");
  ASSERT_EQ(::symlink(dir.File("z").c_str(), dir.File("z").c_str()), 0);  // sorts last
  ASSERT_EQ(::symlink("/nonexistent/target", dir.File("a-dangling").c_str()), 0);
  ASSERT_EQ(::symlink(dir.File("b.txt").c_str(), dir.File("c-link").c_str()), 0);
  auto entries = ListDirectory(dir.path());
  ASSERT_TRUE(entries.ok()) << entries.status().ToString();
  ASSERT_EQ(entries->size(), 5u);
  using Kind = DirectoryEntry::Kind;
  EXPECT_EQ((*entries)[0].path.filename(), "a-dangling");
  EXPECT_EQ((*entries)[0].kind, Kind::kError);
  EXPECT_EQ((*entries)[0].error.code(), StatusCode::kNotFound);
  EXPECT_EQ((*entries)[1].kind, Kind::kRegular);    // b.txt
  EXPECT_EQ((*entries)[2].kind, Kind::kRegular);    // c-link, followed
  EXPECT_EQ((*entries)[3].kind, Kind::kDirectory);  // sub
  EXPECT_EQ((*entries)[4].kind, Kind::kError);      // z, the loop
  EXPECT_NE((*entries)[4].error.message().find("symlink loop"), std::string::npos);
  EXPECT_EQ(ListDirectory(dir.File("b.txt")).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ListDirectory("/nonexistent/dir").status().code(), StatusCode::kNotFound);
}

// The write replaces a symlink at the path instead of writing through it.
TEST(FileTest, WriteFileAtomicallyReplacesAndNeverWritesThroughALink) {
  testing::TempDir dir("core-write");
  std::ofstream(dir.File("target")) << "original";
  ASSERT_EQ(::symlink(dir.File("target").c_str(), dir.File("out").c_str()), 0);
  const std::string text = "new contents";
  ASSERT_TRUE(
      WriteFileAtomically(dir.File("out"),
                          std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()))
          .ok());
  EXPECT_EQ(testing::ReadText(dir.File("out")), text);
  EXPECT_EQ(testing::ReadText(dir.File("target")), "original");
  struct stat st {};
  ASSERT_EQ(::lstat(dir.File("out").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  // No temporary file is left behind.
  size_t files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.path()))
    ++files;
  EXPECT_EQ(files, 2u);
  EXPECT_EQ(WriteFileAtomically("/nonexistent/dir/out", {}).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace zerodet

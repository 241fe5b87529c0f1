#include "zerodet/core/file.h"

#include <gtest/gtest.h>

#include <fstream>

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

}  // namespace
}  // namespace zerodet

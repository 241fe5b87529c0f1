// End-to-end: `zerodet store` as its own process, `zerodet preload` filling it, a reader in this
// process, and the store's shutdown on SIGTERM.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "store_test_util.h"
#include "zerodet/store/dataset.h"

namespace zerodet::store {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

const std::string kZerodet = std::string(ZERODET_BINARY_DIR) + "/zerodet";
const std::string kShared = ZERODET_SHARED_DIR;

// Starts `zerodet args...` with stdout and stderr into `log`; returns its pid.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::FILE* out = std::freopen(log.c_str(), "w", stdout);
    if (out == nullptr || ::dup2(STDOUT_FILENO, STDERR_FILENO) < 0) ::_exit(126);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(kZerodet.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(kZerodet.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int Wait(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string ReadLog(const std::string& path) {
  std::string text;
  if (std::FILE* f = std::fopen(path.c_str(), "r")) {
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) text.append(buffer, n);
    std::fclose(f);
  }
  return text;
}

class StoreCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kZerodet)) GTEST_SKIP() << kZerodet << " not built";
  }
  testing::TempDir dir_;
};

TEST_F(StoreCliTest, StorePreloadReadAndShutdown) {
  const std::string socket = dir_.File("store.sock");
  const pid_t store =
      Spawn({"store", "--socket", socket, "--capacity", "64M"}, dir_.File("store.log"));
  std::shared_ptr<StoreClient> client;
  for (int i = 0; i < 500 && client == nullptr; ++i) {
    auto connected = StoreClient::Connect(socket);
    if (connected.ok()) {
      client = std::move(*connected);
    } else {
      std::this_thread::sleep_for(10ms);
    }
  }
  ASSERT_NE(client, nullptr) << ReadLog(dir_.File("store.log"));
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const int preloaded = Wait(Spawn({"preload", "--socket", socket, "--name", "photos", "--as",
                                    "letterbox:320", "--jobs", "2", kShared + "/images"},
                                   dir_.File("preload.log")));
  const std::string preload_log = ReadLog(dir_.File("preload.log"));
  EXPECT_EQ(preloaded, 0) << preload_log;
  EXPECT_THAT(preload_log, HasSubstr("9 samples"));

  auto reader = DatasetReader::Open(client, "photos");
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  ASSERT_EQ((*reader)->size(), 9u);
  for (size_t i = 0; i < (*reader)->size(); ++i) {
    SampleInfo info = (*reader)->info(i);
    auto expected =
        DecodeSample(info.path, SampleLayout::kLetterbox, 320, LetterboxStyle::kUltralytics, &info);
    ASSERT_TRUE(expected.ok());
    auto sample = (*reader)->Get(i);
    ASSERT_TRUE(sample.ok()) << sample.status().ToString();
    ASSERT_EQ(sample->bytes().size(), expected->size());
    EXPECT_EQ(std::memcmp(sample->bytes().data(), expected->data(), expected->size()), 0);
  }

  ::kill(store, SIGTERM);
  EXPECT_EQ(Wait(store), 0) << ReadLog(dir_.File("store.log"));
  EXPECT_FALSE(std::filesystem::exists(socket));
  auto after = (*reader)->Get(0);
  EXPECT_EQ(after.status().code(), StatusCode::kUnavailable);
}

TEST_F(StoreCliTest, BadArgumentsAreReported) {
  EXPECT_NE(Wait(Spawn({"store", "--socket", dir_.File("s.sock"), "--capacity", "lots"},
                       dir_.File("store.log"))),
            0);
  EXPECT_THAT(ReadLog(dir_.File("store.log")), HasSubstr("--capacity 'lots'"));
  EXPECT_NE(Wait(Spawn(
                {"preload", "--socket", dir_.File("none.sock"), "--name", "x", kShared + "/images"},
                dir_.File("preload.log"))),
            0);
  EXPECT_THAT(ReadLog(dir_.File("preload.log")), HasSubstr("no store is serving"));
}

}  // namespace
}  // namespace zerodet::store

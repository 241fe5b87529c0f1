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
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "store_test_util.h"
#include "zerodet/dataset/dataset.h"

namespace zerodet::store {
namespace {

using dataset::DatasetReader;
using dataset::DecodeSample;
using dataset::SampleInfo;
using dataset::SampleLayout;
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

// The JSON objects among `output`'s lines (zerodet's stdout; stderr lines are not JSON).
std::vector<nlohmann::json> JsonLines(const std::string& output) {
  std::vector<nlohmann::json> lines;
  size_t begin = 0;
  while (begin < output.size()) {
    size_t end = output.find('\n', begin);
    if (end == std::string::npos) end = output.size();
    const std::string line = output.substr(begin, end - begin);
    if (!line.empty() && line.front() == '{') lines.push_back(nlohmann::json::parse(line));
    begin = end + 1;
  }
  return lines;
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

  // Starts `zerodet store` on a socket in the test's directory and waits until it serves.
  std::shared_ptr<StoreClient> StartStore(const std::string& capacity) {
    socket_ = dir_.File("store.sock");
    store_pid_ =
        Spawn({"store", "--socket", socket_, "--capacity", capacity}, dir_.File("store.log"));
    for (int i = 0; i < 500; ++i) {
      auto connected = StoreClient::Connect(socket_);
      if (connected.ok()) return std::move(*connected);
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "zerodet store did not come up: " << ReadLog(dir_.File("store.log"));
    return nullptr;
  }

  // Runs `zerodet args...` to completion; returns its exit code, its output in *output.
  int Run(const std::vector<std::string>& args, std::string* output) {
    const std::string log = dir_.File("run.log");
    const int code = Wait(Spawn(args, log));
    *output = ReadLog(log);
    return code;
  }

  void TearDown() override {
    if (store_pid_ > 0) {
      ::kill(store_pid_, SIGTERM);
      Wait(store_pid_);
    }
  }

  testing::TempDir dir_;
  std::string socket_;
  pid_t store_pid_ = -1;
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

// `detect --store --dataset` reads letterboxed samples instead of files; the detections must be
// exactly those of reading the files.
TEST_F(StoreCliTest, DetectFromStoreEqualsDetectFromFiles) {
  ASSERT_NE(StartStore("256M"), nullptr);
  std::string output;
  ASSERT_EQ(Run({"preload", "--socket", socket_, "--name", "photos", "--as", "letterbox:640",
                 kShared + "/images"},
                &output),
            0)
      << output;
  const std::string model = kShared + "/models/yolov8n.onnx";
  ASSERT_EQ(Run({"detect", "--model", model, kShared + "/images"}, &output), 0) << output;
  const std::vector<nlohmann::json> from_files = JsonLines(output);
  ASSERT_EQ(Run({"detect", "--model", model, "--store", socket_, "--dataset", "photos"}, &output),
            0)
      << output;
  const std::vector<nlohmann::json> from_store = JsonLines(output);
  ASSERT_EQ(from_files.size(), 9u);
  ASSERT_EQ(from_store.size(), from_files.size());
  size_t detections = 0;
  for (size_t i = 0; i < from_files.size(); ++i) {
    // Both list the images in the directory's sorted order.
    EXPECT_EQ(from_store[i]["image"], from_files[i]["image"]);
    EXPECT_EQ(from_store[i]["width"], from_files[i]["width"]);
    EXPECT_EQ(from_store[i]["height"], from_files[i]["height"]);
    EXPECT_EQ(from_store[i]["detections"], from_files[i]["detections"]) << from_files[i]["image"];
    detections += from_files[i]["detections"].size();
  }
  EXPECT_GT(detections, 20u);

  // A dataset preloaded for another input size is refused with advice, not run wrongly.
  EXPECT_NE(Run({"detect", "--model", kShared + "/models/yolo11n-320.onnx", "--store", socket_,
                 "--dataset", "photos"},
                &output),
            0);
  EXPECT_THAT(output, HasSubstr("letterbox:320"));
  EXPECT_NE(Run({"detect", "--model", model, "--store", socket_, "--dataset", "nonesuch"}, &output),
            0);
  EXPECT_THAT(output, HasSubstr("nonesuch"));
}

TEST_F(StoreCliTest, EvalFromStoreEqualsEvalFromFiles) {
  ASSERT_NE(StartStore("256M"), nullptr);
  const std::string coco = kShared + "/coco-val-tiny/instances_val2017.json";
  std::string output;
  ASSERT_EQ(Run({"preload", "--socket", socket_, "--name", "tiny", "--as", "letterbox:320", coco},
                &output),
            0)
      << output;
  const std::string model = kShared + "/models/yolo11n-320.onnx";
  ASSERT_EQ(
      Run({"eval", "--model", model, "--coco", coco, "--images", kShared + "/coco-val-tiny/images"},
          &output),
      0)
      << output;
  const std::vector<nlohmann::json> from_files = JsonLines(output);
  ASSERT_EQ(Run({"eval", "--model", model, "--coco", coco, "--store", socket_, "--dataset", "tiny"},
                &output),
            0)
      << output;
  const std::vector<nlohmann::json> from_store = JsonLines(output);
  ASSERT_EQ(from_files.size(), 1u);
  ASSERT_EQ(from_store.size(), 1u);
  EXPECT_EQ(from_store[0]["images"], 80);
  EXPECT_EQ(from_store[0]["images"], from_files[0]["images"]);
  EXPECT_EQ(from_store[0]["detections"], from_files[0]["detections"]);
  EXPECT_EQ(from_store[0]["map50_95"], from_files[0]["map50_95"]);
  EXPECT_EQ(from_store[0]["map50"], from_files[0]["map50"]);
  EXPECT_GT(from_store[0]["map50_95"].get<double>(), 0.2);
}

}  // namespace
}  // namespace zerodet::store

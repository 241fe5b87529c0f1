// End-to-end: `zerodet store` as its own process, `zerodet preload` filling it, a reader in this
// process, and the store's shutdown on SIGTERM.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "store_test_util.h"
#include "zerodet/dataset/dataset.h"
#include "zerodet/store/client.h"

namespace zerodet::store {
namespace {

using dataset::DatasetReader;
using dataset::DecodeSample;
using dataset::SampleInfo;
using dataset::SampleLayout;
using ::testing::HasSubstr;

using testing::ChildProcess;
using testing::ProcessOutput;
using testing::RunZerodet;
using testing::WaitFor;

const std::string kShared = testing::SharedDir().string();

class StoreCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(testing::ZerodetBinary())) {
      GTEST_SKIP() << testing::ZerodetBinary() << " not built";
    }
    socket_ = dir_.File("store.sock");
  }

  // Starts `zerodet store` (with `extra` flags) on socket_ and waits until it serves.
  std::shared_ptr<StoreClient> StartStore(const std::string& capacity,
                                          const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {
        testing::ZerodetBinary().string(), "store", "--socket", socket_, "--capacity", capacity};
    argv.insert(argv.end(), extra.begin(), extra.end());
    store_ = std::make_unique<ChildProcess>(argv, dir_.File("store.log"));
    std::shared_ptr<StoreClient> client;
    WaitFor([&] {
      auto connected = StoreClient::Connect(socket_);
      if (connected.ok()) client = std::move(*connected);
      return connected.ok() || !store_->Running();
    });
    EXPECT_NE(client, nullptr) << "zerodet store did not come up: " << store_->Log();
    return client;
  }

  testing::TempDir dir_{"store-cli"};
  std::string socket_;
  std::unique_ptr<ChildProcess> store_;
};

TEST_F(StoreCliTest, StorePreloadReadAndShutdown) {
  std::shared_ptr<StoreClient> client = StartStore("64M");
  ASSERT_NE(client, nullptr);
  struct stat st {};
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const ProcessOutput preload =
      RunZerodet({"preload", "--socket", socket_, "--name", "photos", "--as", "letterbox:320",
                  "--jobs", "2", kShared + "/images"});
  EXPECT_EQ(preload.exit_code, 0) << preload.err;
  EXPECT_THAT(preload.out, HasSubstr("9 samples"));

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

  store_->Signal(SIGTERM);
  EXPECT_EQ(store_->Wait(), 0) << store_->Log();
  EXPECT_FALSE(std::filesystem::exists(socket_));
  auto after = (*reader)->Get(0);
  EXPECT_EQ(after.status().code(), StatusCode::kUnavailable);
}

TEST_F(StoreCliTest, BadArgumentsAreReported) {
  ProcessOutput run = RunZerodet({"store", "--socket", socket_, "--capacity", "lots"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("--capacity 'lots'"));
  run = RunZerodet(
      {"preload", "--socket", dir_.File("none.sock"), "--name", "x", kShared + "/images"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("no store is serving"));
}

// Issue 7: a preload larger than the store succeeded (exit 0, no warning).
TEST_F(StoreCliTest, APreloadThatDoesNotFitFailsAndOneThatEvictsWarns) {
  ASSERT_NE(StartStore("8M"), nullptr);
  ProcessOutput run = RunZerodet(
      {"preload", "--socket", socket_, "--name", "photos", kShared + "/images"});  // ~14 MiB
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("zerodet preload: resource exhausted: dataset 'photos' needs"));
  run = RunZerodet({"preload", "--socket", socket_, "--name", "a", "--as", "letterbox:320",
                    kShared + "/images"});  // 10.5 MiB... too much as well
  EXPECT_EQ(run.exit_code, 1);
  run = RunZerodet({"preload", "--socket", socket_, "--name", "a", "--as", "letterbox:224",
                    kShared + "/images"});  // 5.2 MiB
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  run = RunZerodet({"preload", "--socket", socket_, "--name", "b", "--as", "letterbox:192",
                    kShared + "/images"});  // 3.8 MiB: evicts some of a
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.err, HasSubstr("zerodet preload: warning: dataset 'b' needs"));
}

// Issue 14: concurrent preloads of one dataset failed at the manifest step (2-7 of 15).
TEST_F(StoreCliTest, ConcurrentPreloadProcessesOfOneDatasetAllSucceed) {
  ASSERT_NE(StartStore("64M"), nullptr);
  std::vector<std::unique_ptr<ChildProcess>> preloads;
  for (int i = 0; i < 8; ++i) {
    preloads.push_back(std::make_unique<ChildProcess>(
        std::vector<std::string>{testing::ZerodetBinary().string(), "preload", "--socket", socket_,
                                 "--name", "photos", "--jobs", "1", kShared + "/images"},
        dir_.File("preload-" + std::to_string(i) + ".log")));
  }
  for (auto& preload : preloads) EXPECT_EQ(preload->Wait(), 0) << preload->Log();
}

// Issue 10: once accept() failed with EMFILE the store spun at 100% of a core and wrote about
// 45 MB of log a second, and clients hung.
TEST_F(StoreCliTest, OutOfDescriptorsRefusesClientsWithAReasonAndStaysResponsive) {
  // A store allowed 40 open files: idle connections exhaust them.
  store_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{"/bin/sh", "-c",
                               "ulimit -n 40 && exec " + testing::ZerodetBinary().string() +
                                   " store --socket " + socket_ +
                                   " --capacity 8M --hello-timeout 600"},
      dir_.File("store.log"));
  ASSERT_TRUE(WaitFor([&] { return StoreClient::Connect(socket_).ok() || !store_->Running(); }))
      << store_->Log();
  std::vector<std::unique_ptr<testing::RawConnection>> idle;
  for (int i = 0; i < 60; ++i) {
    idle.push_back(std::make_unique<testing::RawConnection>(socket_));
  }
  // A real client, in a child so that a store that never answers cannot hang the test.
  testing::Pipe reason_pipe;
  const pid_t client = testing::ForkChild([&] {
    auto connected = StoreClient::Connect(socket_);
    char reason[512] = {};
    if (!connected.ok()) {
      std::snprintf(reason, sizeof(reason), "%s", connected.status().ToString().c_str());
    }
    reason_pipe.Send(reason);
    return 0;
  });
  reason_pipe.CloseWrite();
  bool exited = WaitFor([&] { return ::waitpid(client, nullptr, WNOHANG) == client; });
  if (!exited) {
    ::kill(client, SIGKILL);
    testing::WaitChild(client);
  }
  ASSERT_TRUE(exited) << "a client of a store out of descriptors hung";
  char reason[512] = {};
  ASSERT_TRUE(reason_pipe.Receive(reason));
  EXPECT_THAT(std::string(reason), HasSubstr("no file descriptors left"));
  // Descriptors come back, and so does service.
  idle.clear();
  std::shared_ptr<StoreClient> served;
  EXPECT_TRUE(WaitFor([&] {
    auto connected = StoreClient::Connect(socket_);
    if (connected.ok()) served = std::move(*connected);
    return connected.ok();
  })) << store_->Log();
  ASSERT_NE(served, nullptr);
  EXPECT_TRUE(served->Stats().ok());
  EXPECT_LT(store_->Log().size(), 16u * 1024) << store_->Log().substr(0, 2000);
}

// `detect --store --dataset` reads letterboxed samples instead of files; the detections must be
// exactly those of reading the files.
TEST_F(StoreCliTest, DetectFromStoreEqualsDetectFromFiles) {
  ASSERT_NE(StartStore("256M"), nullptr);
  ProcessOutput run = RunZerodet({"preload", "--socket", socket_, "--name", "photos", "--as",
                                  "letterbox:640", kShared + "/images"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string model = kShared + "/models/yolov8n.onnx";
  run = RunZerodet({"detect", "--model", model, kShared + "/images"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<nlohmann::json> from_files = run.JsonLines();
  run = RunZerodet({"detect", "--model", model, "--store", socket_, "--dataset", "photos"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<nlohmann::json> from_store = run.JsonLines();
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
  run = RunZerodet({"detect", "--model", kShared + "/models/yolo11n-320.onnx", "--store", socket_,
                    "--dataset", "photos"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("letterbox:320"));
  run = RunZerodet({"detect", "--model", model, "--store", socket_, "--dataset", "nonesuch"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("nonesuch"));
}

TEST_F(StoreCliTest, EvalFromStoreEqualsEvalFromFiles) {
  ASSERT_NE(StartStore("256M"), nullptr);
  const std::string coco = kShared + "/coco-val-tiny/instances_val2017.json";
  ProcessOutput run =
      RunZerodet({"preload", "--socket", socket_, "--name", "tiny", "--as", "letterbox:320", coco});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string model = kShared + "/models/yolo11n-320.onnx";
  run = RunZerodet(
      {"eval", "--model", model, "--coco", coco, "--images", kShared + "/coco-val-tiny/images"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<nlohmann::json> from_files = run.JsonLines();
  run = RunZerodet(
      {"eval", "--model", model, "--coco", coco, "--store", socket_, "--dataset", "tiny"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<nlohmann::json> from_store = run.JsonLines();
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

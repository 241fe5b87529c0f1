// An RTSP source against a real RTSP server (GStreamer's RTSP server library, in a helper
// process on 127.0.0.1) streaming a video made with ffmpeg from ../shared/images: frames are
// detected, and when the server is killed and started again the ingest reconnects.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "test_media.h"
#include "test_support.h"
#include "zerodet/core/child_process.h"
#include "zerodet/pipeline/pipeline.h"

namespace zerodet::pipeline {
namespace {

// The helper server process; Start returns its port, 0 on failure.
class RtspServer {
 public:
  ~RtspServer() { Stop(); }

  int Start(const std::filesystem::path& clip, int port) {
    int fds[2];
    if (::pipe(fds) != 0) return 0;
    std::fflush(nullptr);
    const pid_t test = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // The server must not outlive the test binary (killed by a timeout, say): the request
      // survives the exec.
      if (!TieToParent(test, SIGKILL)) ::_exit(127);
      ::dup2(fds[1], STDOUT_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      const std::string port_arg = std::to_string(port);
      ::execl(ZERODET_RTSP_TEST_SERVER, ZERODET_RTSP_TEST_SERVER, clip.c_str(), port_arg.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    FILE* out = ::fdopen(fds[0], "r");
    int bound = 0;
    if (out == nullptr || std::fscanf(out, "READY %d", &bound) != 1) bound = 0;
    if (out != nullptr) std::fclose(out);
    return bound;
  }

  void Stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
};

TEST(RtspSourceTest, StreamIsDetectedAndReconnectedAfterTheServerRestarts) {
  const zerodet::testing::TempDir temp("rtsp");
  const std::filesystem::path& dir = temp.path();
  const auto clip = testing::MakeClip(dir);
  ASSERT_FALSE(clip.empty()) << "ffmpeg could not make the test clip";
  RtspServer server;
  const int port = server.Start(clip, 0);
  ASSERT_GT(port, 0) << "the RTSP test server did not start";

  PipelineConfig config;
  SourceConfig source;
  source.name = "cam";
  source.path = "rtsp://127.0.0.1:" + std::to_string(port) + "/clip";
  source.fps = 8;
  config.sources.push_back(source);
  ModelConfig model;
  model.name = "yolov8n";
  model.path = ZERODET_SHARED_DIR "/models/yolov8n.onnx";
  model.workers = 2;
  model.sources = {"cam"};
  config.models.push_back(model);
  config.results = (dir / "rtsp.jsonl").string();
  config.restart_backoff_ms = 100;

  const size_t photos = testing::SharedPhotos().size();
  std::atomic<bool> stop{false};
  int results = 0;
  bool restarted_server = false;
  PipelineOptions options;
  options.stop = &stop;
  options.observer.on_result = [&](const std::string&, int, pid_t, const std::string&, uint64_t) {
    ++results;
    if (results == 3) {
      // The camera goes away and comes back on the same address.
      server.Stop();
      restarted_server = server.Start(clip, port) == port;
    }
    // A little more than one pass over the clip after the reconnection, then stop.
    if (results >= static_cast<int>(photos) + 4) stop.store(true);
  };
  auto summary = RunPipeline(config, options);
  server.Stop();
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_TRUE(restarted_server);
  const SourceSummary& cam = summary->sources["cam"];
  EXPECT_GE(cam.ingest_restarts, 1);
  EXPECT_GE(summary->models["yolov8n"].results, photos + 4);
  EXPECT_EQ(summary->models["yolov8n"].results + cam.frames_overwritten, cam.frames_published);

  std::set<uint64_t> sequences;
  int dogs = 0;
  std::ifstream in(config.results);
  for (std::string line; std::getline(in, line);) {
    const auto json = nlohmann::json::parse(line);
    EXPECT_FALSE(json.contains("error")) << line;
    EXPECT_EQ(json["width"], 640);
    EXPECT_TRUE(sequences.insert(json["sequence"].get<uint64_t>()).second);
    for (const auto& d : json["detections"]) {
      if (d["class"] == "dog" && d["score"].get<double>() > 0.5) ++dogs;
    }
  }
  // dog.jpg is the clip's second frame: seen in the first connection and again after the
  // reconnection (each RTSP session starts at the clip's beginning).
  EXPECT_GE(dogs, 2);
}

}  // namespace
}  // namespace zerodet::pipeline

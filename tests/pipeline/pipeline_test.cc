// Whole pipelines of real processes: an ingest decoding a video (made with ffmpeg from
// ../shared/images) into a ring, yolov8n workers in work groups, results as JSON lines; two
// models fed from one decode; a worker killed with SIGKILL mid-run and restarted.
#include "zerodet/pipeline/pipeline.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "test_media.h"
#include "test_support.h"
#include "zerodet/codec/decode.h"

namespace zerodet::pipeline {
namespace {

class PipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    temp_ = new zerodet::testing::TempDir("pipeline");
    dir_ = new std::filesystem::path(temp_->path());
    clip_ = new std::filesystem::path(testing::MakeClip(*dir_));
  }
  static void TearDownTestSuite() {
    delete clip_;
    delete dir_;
    delete temp_;
  }

  static PipelineConfig Config(const std::string& results_name) {
    PipelineConfig config;
    SourceConfig source;
    source.name = "clip";
    source.path = clip_->string();
    source.fps = 4;
    config.sources.push_back(source);
    ModelConfig model;
    model.name = "yolov8n";
    model.path = ZERODET_SHARED_DIR "/models/yolov8n.onnx";
    model.workers = 2;
    model.sources = {"clip"};
    config.models.push_back(model);
    config.results = (*dir_ / results_name).string();
    config.restart_backoff_ms = 50;
    return config;
  }

  static std::vector<nlohmann::ordered_json> ReadLines(const std::string& path) {
    std::vector<nlohmann::ordered_json> lines;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      lines.push_back(nlohmann::ordered_json::parse(line));
    }
    return lines;
  }

  static zerodet::testing::TempDir* temp_;
  static std::filesystem::path* dir_;
  static std::filesystem::path* clip_;
};
zerodet::testing::TempDir* PipelineTest::temp_ = nullptr;
std::filesystem::path* PipelineTest::dir_ = nullptr;
std::filesystem::path* PipelineTest::clip_ = nullptr;

bool HasDetection(const nlohmann::ordered_json& line, const std::string& name, double min_score) {
  for (const auto& d : line["detections"]) {
    if (d["class"] == name && d["score"].get<double>() >= min_score) return true;
  }
  return false;
}

TEST_F(PipelineTest, EveryFrameIsDetectedOnceByOneWorkerOfTheGroup) {
  ASSERT_FALSE(clip_->empty()) << "ffmpeg could not make the test clip";
  PipelineConfig config = Config("group.jsonl");
  config.results_ring = "zp-test-results-" + std::to_string(::getpid());
  config.annotated_dir = (*dir_ / "annotated").string();
  std::set<pid_t> workers;
  std::unique_ptr<ring::RingReader> consumer;  // a local consumer of the results ring
  PipelineOptions options;
  options.observer.on_ingest_started = [&](const std::string&, pid_t) {
    ring::ReaderOptions reader_options;
    reader_options.ring_name = config.results_ring;
    reader_options.mode = ring::ReaderMode::kBroadcast;
    auto attached = ring::RingReader::Attach(reader_options);
    ASSERT_TRUE(attached.ok()) << attached.status().ToString();
    consumer = std::move(attached).value();
  };
  options.observer.on_worker_started = [&](const std::string&, int, pid_t pid) {
    workers.insert(pid);
  };
  auto summary = RunPipeline(config, options);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  const size_t frames = testing::SharedPhotos().size();
  EXPECT_EQ(summary->sources["clip"].frames_published, frames);
  EXPECT_EQ(summary->models["yolov8n"].results, frames);
  EXPECT_EQ(summary->models["yolov8n"].worker_restarts, 0);
  EXPECT_EQ(workers.size(), 2u);

  const auto lines = ReadLines(config.results);
  ASSERT_EQ(lines.size(), frames);
  std::map<uint64_t, nlohmann::ordered_json> by_sequence;
  for (const auto& line : lines) {
    ASSERT_GE(line.size(), 2u);
    EXPECT_EQ(line.begin().key(), "source");  // source and sequence lead every line
    EXPECT_EQ(std::next(line.begin()).key(), "sequence");
    EXPECT_EQ(line["source"], "clip");
    EXPECT_EQ(line["model"], "yolov8n");
    EXPECT_EQ(line["width"], 640);
    EXPECT_EQ(line["height"], 480);
    EXPECT_FALSE(line.contains("error")) << line.dump();
    for (const char* stage : {"decode", "queue", "preprocess", "infer", "postprocess", "total"}) {
      EXPECT_GE(line["latency_ms"][stage].get<double>(), 0.0) << stage;
    }
    EXPECT_GE(line["latency_ms"]["total"].get<double>(), line["latency_ms"]["infer"].get<double>());
    EXPECT_TRUE(by_sequence.emplace(line["sequence"].get<uint64_t>(), line).second)
        << "frame " << line["sequence"] << " detected twice";
  }
  ASSERT_EQ(by_sequence.size(), frames);
  // The results ring carried the same lines, in the order they were written.
  ASSERT_NE(consumer, nullptr);
  for (const auto& line : lines) {
    auto lease = consumer->Read(std::chrono::milliseconds(0));
    ASSERT_TRUE(lease.ok()) << lease.status().ToString();
    EXPECT_EQ(lease->info().format, ring::FrameFormat::kEncoded);
    const std::span<const uint8_t> payload = lease->payload();
    EXPECT_EQ(nlohmann::ordered_json::parse(payload.begin(), payload.end()), line);
  }
  EXPECT_EQ(consumer->Read(std::chrono::milliseconds(0)).status().code(),
            StatusCode::kUnavailable);  // closed at the end of the run
  // One annotated JPEG per frame, of the frame's size.
  for (uint64_t sequence = 1; sequence <= frames; ++sequence) {
    char name[64];
    std::snprintf(name, sizeof(name), "clip-yolov8n-%08llu.jpg",
                  static_cast<unsigned long long>(sequence));
    auto annotated = DecodeImageFile(*dir_ / "annotated" / name);
    ASSERT_TRUE(annotated.ok()) << annotated.status().ToString();
    EXPECT_EQ(annotated->image.width(), 640);
    EXPECT_EQ(annotated->image.height(), 480);
  }
  EXPECT_EQ(by_sequence.begin()->first, 1u);
  EXPECT_EQ(by_sequence.rbegin()->first, frames);
  // Photos in name order: bus, dog, eagle, giraffe, horses, kite, person, scream, zidane.
  EXPECT_TRUE(HasDetection(by_sequence[1], "bus", 0.5));
  EXPECT_TRUE(HasDetection(by_sequence[2], "dog", 0.5));
  EXPECT_TRUE(HasDetection(by_sequence[2], "bicycle", 0.5));
  EXPECT_TRUE(HasDetection(by_sequence[4], "giraffe", 0.5));
  EXPECT_TRUE(HasDetection(by_sequence[5], "horse", 0.5));
  EXPECT_TRUE(HasDetection(by_sequence[9], "person", 0.5));
  // The dog box in the one detection format of zerodet (as `zerodet detect` writes it):
  // [x1, y1, x2, y2] in frame pixels. The reference for dog.jpg is 131,219 - 308,539 at
  // 768x576, scaled by 640/768 into the video frame.
  bool dog = false;
  for (const auto& d : by_sequence[2]["detections"]) {
    if (d["class"] != "dog") continue;
    dog = true;
    EXPECT_EQ(d["class_id"], 16);
    const double scale = 640.0 / 768.0;
    EXPECT_NEAR(d["box"][0].get<double>(), 131 * scale, 8);
    EXPECT_NEAR(d["box"][1].get<double>(), 219 * scale, 8);
    EXPECT_NEAR(d["box"][2].get<double>(), 308 * scale, 8);
    EXPECT_NEAR(d["box"][3].get<double>(), 539 * scale, 8);
    // The same keys, in the same order, as core's serializer.
    std::vector<std::string> keys;
    for (const auto& [key, value] : d.items()) keys.push_back(key);
    EXPECT_EQ(keys, (std::vector<std::string>{"class_id", "class", "score", "box"}));
    break;
  }
  EXPECT_TRUE(dog);
}

TEST_F(PipelineTest, TwoModelsShareOneDecode) {
  ASSERT_FALSE(clip_->empty());
  PipelineConfig config = Config("fanout.jsonl");
  config.models[0].workers = 1;
  ModelConfig second = config.models[0];
  second.name = "yolo11n";
  second.path = ZERODET_SHARED_DIR "/models/yolo11n.onnx";
  config.models.push_back(second);
  auto summary = RunPipeline(config);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  const size_t frames = testing::SharedPhotos().size();
  EXPECT_EQ(summary->sources["clip"].frames_published, frames);  // decoded once
  EXPECT_EQ(summary->models["yolov8n"].results, frames);
  EXPECT_EQ(summary->models["yolo11n"].results, frames);
  std::map<std::string, std::set<uint64_t>> seen;
  for (const auto& line : ReadLines(config.results)) {
    EXPECT_TRUE(seen[line["model"]].insert(line["sequence"].get<uint64_t>()).second);
  }
  EXPECT_EQ(seen["yolov8n"].size(), frames);
  EXPECT_EQ(seen["yolo11n"].size(), frames);
}

TEST_F(PipelineTest, AKilledWorkerIsRestartedAndTheIngestNeverStops) {
  ASSERT_FALSE(clip_->empty());
  const PipelineConfig config = Config("restart.jsonl");
  pid_t killed = -1;
  std::set<pid_t> started;
  PipelineOptions options;
  options.observer.on_worker_started = [&](const std::string&, int, pid_t pid) {
    started.insert(pid);
  };
  options.observer.on_result = [&](const std::string&, int, pid_t pid, const std::string&,
                                   uint64_t) {
    if (killed < 0) {
      killed = pid;
      ::kill(pid, SIGKILL);
    }
  };
  auto summary = RunPipeline(config, options);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  ASSERT_GT(killed, 0);
  const size_t frames = testing::SharedPhotos().size();
  const SourceSummary& source = summary->sources["clip"];
  const ModelSummary& model = summary->models["yolov8n"];
  EXPECT_EQ(source.frames_published, frames);
  EXPECT_EQ(source.ingest_restarts, 0);
  EXPECT_EQ(model.worker_restarts, 1);
  EXPECT_EQ(started.size(), 3u);  // two workers, then the replacement
  EXPECT_LE(model.frames_lost_in_flight, 1u);
  // Every published frame is accounted for: detected once, lost with the killed worker, or
  // replaced in the ring before any worker took it.
  EXPECT_EQ(model.results + model.frames_lost_in_flight + source.frames_overwritten, frames);
  std::set<uint64_t> sequences;
  for (const auto& line : ReadLines(config.results)) {
    EXPECT_TRUE(sequences.insert(line["sequence"].get<uint64_t>()).second);
  }
  EXPECT_EQ(sequences.size(), model.results);
}

TEST_F(PipelineTest, AKilledIngestIsRestartedAndResumesItsRing) {
  ASSERT_FALSE(clip_->empty());
  const PipelineConfig config = Config("ingest-restart.jsonl");
  std::vector<pid_t> ingests;
  bool killed = false;
  PipelineOptions options;
  options.observer.on_ingest_started = [&](const std::string&, pid_t pid) {
    ingests.push_back(pid);
  };
  options.observer.on_result = [&](const std::string&, int, pid_t, const std::string&,
                                   uint64_t sequence) {
    if (!killed && sequence >= 2) {
      killed = true;
      ::kill(ingests.front(), SIGKILL);
    }
  };
  auto summary = RunPipeline(config, options);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  ASSERT_TRUE(killed);
  ASSERT_EQ(ingests.size(), 2u);
  const size_t frames = testing::SharedPhotos().size();
  const SourceSummary& source = summary->sources["clip"];
  const ModelSummary& model = summary->models["yolov8n"];
  EXPECT_EQ(source.ingest_restarts, 1);
  EXPECT_EQ(model.worker_restarts, 0);
  // The restarted ingest replays the file from its start into the same ring: the frames of the
  // first run up to the kill, then all of them again, under continuing sequence numbers.
  EXPECT_GT(source.frames_published, frames);
  EXPECT_EQ(model.results + source.frames_overwritten, source.frames_published);
  std::set<uint64_t> sequences;
  for (const auto& line : ReadLines(config.results)) {
    EXPECT_TRUE(sequences.insert(line["sequence"].get<uint64_t>()).second);
  }
  EXPECT_EQ(sequences.size(), model.results);
  EXPECT_EQ(*sequences.rbegin(), source.frames_published);
}

TEST_F(PipelineTest, AStopRequestWhileASourceIsStillOpeningEndsThePipeline) {
  // A camera that accepts the connection and never answers: the ingest waits in FFmpeg. The
  // supervisor used to wait for its READY without looking at the stop flag, and the ingest
  // could not be interrupted: Ctrl-C did nothing.
  testing::SilentServer camera;
  ASSERT_GT(camera.port(), 0);
  PipelineConfig config = Config("stalled.jsonl");
  config.sources[0].path = "rtsp://127.0.0.1:" + std::to_string(camera.port()) + "/cam";
  std::atomic<bool> stop{false};
  PipelineOptions options;
  options.stop = &stop;
  options.observer.on_ingest_started = [&](const std::string&, pid_t) { stop = true; };
  bool worker_started = false;
  options.observer.on_worker_started = [&](const std::string&, int, pid_t) {
    worker_started = true;
  };
  auto summary = RunPipeline(config, options);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->sources["clip"].frames_published, 0u);
  EXPECT_EQ(summary->models["yolov8n"].results, 0u);
  EXPECT_FALSE(worker_started) << "no model needs loading once the run is stopped";
}

// Creates /dev/shm/zerodet-ring-<name> as another user (nobody) would: root only.
bool PlantForeignRing(const std::string& name) {
  const std::string path = "/dev/shm/zerodet-ring-" + name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const bool chowned = ::fchown(fd, 65534, 65534) == 0;
  ::close(fd);
  return chowned;
}

TEST_F(PipelineTest, RingNamesAnotherUserCreatedFirstAreNeverUsed) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to create a file as another user";
  // The frame rings of a run were named zp-<pid>-<source>: another local user could create
  // that name in the shared /dev/shm first and keep every future pipeline of that pid from
  // starting. Their names are unpredictable now.
  const std::string predictable = "zp-" + std::to_string(::getpid()) + "-clip";
  ASSERT_TRUE(PlantForeignRing(predictable));
  PipelineConfig config = Config("foreign.jsonl");
  config.models[0].workers = 1;
  auto summary = RunPipeline(config);
  EXPECT_TRUE(summary.ok()) << summary.status().ToString();
  ::unlink(("/dev/shm/zerodet-ring-" + predictable).c_str());

  // A results ring is named by the user, for consumers to find: a name another user holds is
  // refused, naming the owner, and the foreign segment is left alone.
  config.results_ring = "zp-test-foreign-results-" + std::to_string(::getpid());
  ASSERT_TRUE(PlantForeignRing(config.results_ring));
  auto refused = RunPipeline(config);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(refused.status().message().find("output.results_ring"), std::string::npos)
      << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("uid 65534"), std::string::npos)
      << refused.status().ToString();
  struct stat st {};
  const std::string foreign = "/dev/shm/zerodet-ring-" + config.results_ring;
  ASSERT_EQ(::stat(foreign.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 65534u);
  EXPECT_EQ(st.st_size, 0);
  ::unlink(foreign.c_str());
}

TEST_F(PipelineTest, TheSupervisorReapsOnlyItsOwnChildren) {
  // RunPipeline is a library call: the program around it may have children of its own, whose
  // exit status is theirs to collect. The supervisor used to reap any child (waitpid(-1)).
  const pid_t own = zerodet::testing::ForkChild([] { return 7; });
  ASSERT_GT(own, 0);
  ASSERT_TRUE(zerodet::testing::WaitFor([&] { return !zerodet::testing::ProcessAlive(own); }));
  PipelineConfig config = Config("own-children.jsonl");
  config.models[0].workers = 1;
  auto summary = RunPipeline(config);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(zerodet::testing::WaitChild(own), 7);
}

TEST_F(PipelineTest, ResultsThatCannotBeWrittenFailThePipeline) {
  // The results went into stdio's buffer and write errors were never looked at: a full disk
  // lost every result without a word.
  PipelineConfig config = Config("unused.jsonl");
  config.models[0].workers = 1;
  config.results = "/dev/full";
  auto summary = RunPipeline(config);
  ASSERT_FALSE(summary.ok());
  EXPECT_EQ(summary.status().code(), StatusCode::kIoError) << summary.status().ToString();
  EXPECT_NE(summary.status().message().find("/dev/full"), std::string::npos)
      << summary.status().ToString();
}

TEST_F(PipelineTest, AWorkerThatDiesWhileStoppingDoesNotKeepTheRunGoing) {
  // A worker that died after the stop request, while its source was still closing, was
  // scheduled for a restart that never came (nothing restarts once stopping): the run never
  // ended.
  PipelineConfig config = Config("stop-crash.jsonl");
  config.sources[0].loop = true;
  std::atomic<bool> stop{false};
  PipelineOptions options;
  options.stop = &stop;
  options.observer.on_result = [&](const std::string&, int, pid_t pid, const std::string&,
                                   uint64_t) {
    if (stop) return;
    stop = true;
    ::kill(pid, SIGKILL);
  };
  auto summary = RunPipeline(config, options);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(summary->models["yolov8n"].worker_restarts, 0);
}

TEST_F(PipelineTest, AStopWhileAnIngestAwaitsItsRestartLetsTheWorkersFinish) {
  // The ingest died and waits for its restart when the stop comes: nothing restarts it, and
  // its ring, left open by a dead writer, kept the workers waiting for a writer that never
  // came, until the supervisor killed them after its 30 s grace.
  PipelineConfig config = Config("stop-pending.jsonl");
  config.sources[0].loop = true;
  config.restart_backoff_ms = 600'000;
  std::vector<pid_t> ingests;
  std::atomic<bool> stop{false};
  PipelineOptions options;
  options.stop = &stop;
  options.observer.on_ingest_started = [&](const std::string&, pid_t pid) {
    ingests.push_back(pid);
  };
  options.observer.on_result = [&](const std::string&, int, pid_t, const std::string&, uint64_t) {
    if (stop) return;
    ::kill(ingests.front(), SIGKILL);
    stop = true;
  };
  zerodet::testing::CapturedLog log;
  auto summary = RunPipeline(config, options);
  ASSERT_TRUE(summary.ok()) << summary.status().ToString();
  EXPECT_EQ(ingests.size(), 1u);
  EXPECT_EQ(log.Text().find("did not stop"), std::string::npos) << log.Text();
  const SourceSummary& source = summary->sources["clip"];
  const ModelSummary& model = summary->models["yolov8n"];
  EXPECT_EQ(model.worker_restarts, 0);
  // The killed ingest never reported its ring's counters; the supervisor read them from the
  // ring it closed. Every published frame is accounted for.
  EXPECT_GT(source.frames_published, 0u);
  EXPECT_EQ(model.results + model.frames_lost_in_flight + source.frames_overwritten,
            source.frames_published);
}

TEST_F(PipelineTest, AnUnopenableSourceOrModelFailsWithItsName) {
  ASSERT_FALSE(clip_->empty());
  PipelineConfig config = Config("bad.jsonl");
  config.sources[0].path = (*dir_ / "no-such-clip.mp4").string();
  auto no_source = RunPipeline(config);
  ASSERT_FALSE(no_source.ok());
  EXPECT_NE(no_source.status().message().find("no-such-clip.mp4"), std::string::npos)
      << no_source.status().ToString();
  // The ingest's own error code reaches the caller, not a generic one.
  EXPECT_EQ(no_source.status().code(), StatusCode::kNotFound) << no_source.status().ToString();

  config = Config("bad.jsonl");
  config.sources[0].type = SourceType::kV4l2;
  config.sources[0].path = "/dev/zerodet-no-such-camera";
  auto no_camera = RunPipeline(config);
  ASSERT_FALSE(no_camera.ok());
  EXPECT_EQ(no_camera.status().code(), StatusCode::kNotFound) << no_camera.status().ToString();
  EXPECT_NE(no_camera.status().message().find("source clip: camera /dev/zerodet-no-such-camera"),
            std::string::npos)
      << no_camera.status().ToString();

  config = Config("bad.jsonl");
  config.models[0].path = (*dir_ / "no-such-model.onnx").string();
  auto no_model = RunPipeline(config);
  ASSERT_FALSE(no_model.ok());
  EXPECT_EQ(no_model.status().code(), StatusCode::kNotFound) << no_model.status().ToString();
  EXPECT_NE(no_model.status().message().find("no-such-model.onnx"), std::string::npos)
      << no_model.status().ToString();

  config = Config("bad.jsonl");
  config.results = (*dir_ / "no-such-folder" / "out.jsonl").string();
  auto no_output = RunPipeline(config);
  ASSERT_FALSE(no_output.ok());
  EXPECT_NE(no_output.status().message().find("no-such-folder"), std::string::npos);
}

}  // namespace
}  // namespace zerodet::pipeline

// Pipeline YAML: defaults, path resolution, and every kind of mistake named in the error.
#include "zerodet/pipeline/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "test_support.h"

namespace zerodet::pipeline {
namespace {

Result<PipelineConfig> Parse(const std::string& yaml) {
  return ParsePipelineConfig(yaml, "/cfg", "test.yaml");
}

// Expects kInvalidArgument whose message contains each of `parts`.
void ExpectError(const std::string& yaml, std::initializer_list<const char*> parts) {
  auto config = Parse(yaml);
  ASSERT_FALSE(config.ok()) << yaml;
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  for (const char* part : parts) {
    EXPECT_NE(config.status().message().find(part), std::string::npos)
        << "'" << part << "' not in: " << config.status().message();
  }
}

TEST(PipelineConfigTest, ParsesAFullConfigAndFillsDefaults) {
  auto config = Parse(R"(
sources:
  - name: gate
    path: videos/gate.mp4
  - name: dock
    type: images
    path: /data/dock
    fps: 2.5
    loop: true
    ring_slots: 4
    overflow: drop_newest
  - name: cam
    path: rtsp://127.0.0.1:8554/cam
models:
  - name: yolov8n
    path: ../models/yolov8n.onnx
    workers: 3
    threads: 2
    conf: 0.4
  - name: people
    path: /m/people.onnx
    sources: [dock]
output:
  results: out/results.jsonl
  results_ring: gate-results
  annotated_dir: boxes
supervision:
  restart_backoff_ms: 50
  max_restarts: 3
)");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_EQ(config->sources.size(), 3u);
  const SourceConfig& gate = config->sources[0];
  EXPECT_EQ(gate.type, SourceType::kVideo);
  EXPECT_EQ(gate.path, "/cfg/videos/gate.mp4");  // relative to the config file
  EXPECT_EQ(gate.fps, 0);
  EXPECT_FALSE(gate.loop);
  EXPECT_EQ(gate.ring_slots, 8);
  EXPECT_EQ(gate.overflow, ring::OverflowPolicy::kOverwriteOldest);
  const SourceConfig& dock = config->sources[1];
  EXPECT_EQ(dock.type, SourceType::kImageFolder);
  EXPECT_EQ(dock.path, "/data/dock");
  EXPECT_DOUBLE_EQ(dock.fps, 2.5);
  EXPECT_TRUE(dock.loop);
  EXPECT_EQ(dock.ring_slots, 4);
  EXPECT_EQ(dock.overflow, ring::OverflowPolicy::kDropNewest);
  EXPECT_EQ(config->sources[2].path, "rtsp://127.0.0.1:8554/cam");  // URLs stay as they are
  ASSERT_EQ(config->models.size(), 2u);
  const ModelConfig& v8 = config->models[0];
  EXPECT_EQ(v8.path, std::filesystem::path("/models/yolov8n.onnx"));
  EXPECT_EQ(v8.workers, 3);
  EXPECT_EQ(v8.threads, 2);
  EXPECT_FLOAT_EQ(v8.conf, 0.4f);
  EXPECT_FLOAT_EQ(v8.iou, 0.45f);
  EXPECT_EQ(v8.sources, (std::vector<std::string>{"gate", "dock", "cam"}));  // default: all
  EXPECT_EQ(config->models[1].sources, (std::vector<std::string>{"dock"}));
  EXPECT_EQ(config->results, "/cfg/out/results.jsonl");
  EXPECT_EQ(config->results_ring, "gate-results");
  EXPECT_EQ(config->annotated_dir, "/cfg/boxes");
  EXPECT_EQ(config->restart_backoff_ms, 50);
  EXPECT_EQ(config->max_restarts, 3);
}

TEST(PipelineConfigTest, MistakesAreNamedWithTheirKey) {
  const std::string model = "models:\n  - {name: m, path: m.onnx}\n";
  ExpectError("", {"empty"});
  ExpectError("sources: [unclosed", {"test.yaml", "not valid YAML"});
  ExpectError("- just\n- a list\n", {"top level"});
  ExpectError("sourcez: []\n" + model, {"unknown key 'sourcez'", "sources"});
  ExpectError(model, {"sources", "at least one source"});
  ExpectError("sources:\n  - {name: a, path: x.mp4}\n", {"models", "at least one model"});
  ExpectError("sources:\n  - {name: a}\n" + model, {"sources[0].path", "required"});
  ExpectError("sources:\n  - {name: 'a b', path: x}\n" + model, {"sources[0].name", "'a b'"});
  ExpectError("sources:\n  - {name: a, path: x, type: webcam}\n" + model,
              {"sources[0].type", "'webcam'", "video, images"});
  ExpectError("sources:\n  - {name: a, path: x, type: images}\n" + model,
              {"sources[0].fps", "required"});
  ExpectError("sources:\n  - {name: a, path: x, fps: fast}\n" + model,
              {"sources[0].fps", "'fast'", "number"});
  ExpectError("sources:\n  - {name: a, path: x, ring_slots: 1}\n" + model,
              {"sources[0].ring_slots", "2..256"});
  ExpectError("sources:\n  - {name: a, path: x, overflow: block}\n" + model,
              {"sources[0].overflow", "'block'"});
  ExpectError("sources:\n  - {name: a, path: x}\n  - {name: a, path: y}\n" + model,
              {"sources[1].name", "'a' is used twice"});
  ExpectError("sources:\n  - {name: a, path: x, colour: red}\n" + model,
              {"sources[0]", "unknown key 'colour'"});
  const std::string source = "sources:\n  - {name: a, path: x.mp4}\n";
  ExpectError(source + "models:\n  - {name: m}\n", {"models[0].path", "required"});
  ExpectError(source + "models:\n  - {name: m, path: m.onnx, workers: 0}\n",
              {"models[0].workers", "1..32"});
  ExpectError(source + "models:\n  - {name: m, path: m.onnx, workers: two}\n",
              {"models[0].workers", "'two'", "integer"});
  ExpectError(source + "models:\n  - {name: m, path: m.onnx, conf: 1.5}\n",
              {"models[0].conf", "0..1"});
  ExpectError(source + "models:\n  - {name: m, path: m.onnx, sources: [b]}\n",
              {"models[0].sources", "no source is named 'b'"});
  ExpectError(source + "models:\n  - {name: m, path: m.onnx, sources: a}\n",
              {"models[0].sources", "list"});
  ExpectError(source + model + "output: {results: ''}\n", {"output.results"});
  ExpectError(source + model + "output: {file: x}\n", {"output", "unknown key 'file'"});
  ExpectError(source + model + "output: {results_ring: 'a/b'}\n", {"output.results_ring"});
  ExpectError(source + model + "supervision: {max_restarts: -1}\n", {"supervision.max_restarts"});
}

TEST(PipelineConfigTest, LoadsAFileAndResolvesAgainstItsFolder) {
  const zerodet::testing::TempDir temp("config");
  const std::filesystem::path& dir = temp.path();
  {
    std::ofstream out(dir / "p.yaml");
    out << "sources:\n  - {name: a, path: clip.mp4}\nmodels:\n  - {name: m, path: m.onnx}\n";
  }
  auto config = LoadPipelineConfig(dir / "p.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->sources[0].path, (dir / "clip.mp4").string());
  EXPECT_EQ(config->results, "-");
  auto missing = LoadPipelineConfig(dir / "missing.yaml");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("missing.yaml"), std::string::npos);
}

TEST(PipelineConfigTest, TheExampleConfigsParse) {
  for (const char* name : {"video.yaml", "camera.yaml"}) {
    auto config = LoadPipelineConfig(std::string(ZERODET_SOURCE_DIR "/examples/pipeline/") + name);
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    EXPECT_FALSE(config->sources.empty()) << name;
    EXPECT_FALSE(config->models.empty()) << name;
  }
}

TEST(PipelineConfigTest, V4l2CameraSources) {
  auto config = Parse(R"(
sources:
  - name: line1
    type: v4l2
    path: /dev/video0
    width: 1280
    height: 720
    fps: 30
    pixel_format: MJPG
models:
  - name: m
    path: m.onnx
)");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const SourceConfig& camera = config->sources[0];
  EXPECT_EQ(camera.type, SourceType::kV4l2);
  EXPECT_EQ(camera.path, "/dev/video0");
  EXPECT_EQ(camera.width, 1280);
  EXPECT_EQ(camera.height, 720);
  EXPECT_EQ(camera.fps, 30);
  EXPECT_EQ(camera.pixel_format, "MJPG");

  ExpectError(R"(
sources: [{name: c, type: v4l2, path: /dev/video0, pixel_format: NV12}]
models: [{name: m, path: m.onnx}]
)",
              {"sources[0].pixel_format", "NV12", "YUYV"});
  ExpectError(R"(
sources: [{name: c, type: v4l2, path: /dev/video0, width: -5}]
models: [{name: m, path: m.onnx}]
)",
              {"sources[0].width", "-5"});
  ExpectError(R"(
sources: [{name: c, path: clip.mp4, width: 640}]
models: [{name: m, path: m.onnx}]
)",
              {"v4l2 sources only"});
  ExpectError(R"(
sources: [{name: c, type: camera, path: /dev/video0}]
models: [{name: m, path: m.onnx}]
)",
              {"'camera'", "v4l2"});
}

}  // namespace
}  // namespace zerodet::pipeline

// Pipeline YAML: defaults, path resolution, and every kind of mistake named in the error.
#include "zerodet/pipeline/config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "test_support.h"
#include "zerodet/pipeline/control.h"

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

TEST(PipelineConfigTest, RepositoryModelsAndTheControlSocket) {
  auto config = Parse(R"(
repository:
  path: repo
  max_models: 2
  max_bytes: 1000000
  graph_cache: /var/cache/zd
sources:
  - name: gate
    path: gate.mp4
models:
  - model: yolov8n
  - name: night
    model: yolo11n:3
    workers: 2
  - name: file
    path: m.onnx
control:
  socket: run/ctl.sock
)");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->repository.path, "/cfg/repo");
  EXPECT_EQ(config->repository.max_models, 2u);
  EXPECT_EQ(config->repository.max_bytes, 1000000u);
  EXPECT_EQ(config->repository.graph_cache, "/var/cache/zd");
  ASSERT_EQ(config->models.size(), 3u);
  EXPECT_EQ(config->models[0].name, "yolov8n");  // the model's name by default
  EXPECT_EQ(config->models[0].reference, "yolov8n");
  EXPECT_TRUE(config->models[0].path.empty());
  EXPECT_EQ(config->models[1].name, "night");
  EXPECT_EQ(config->models[1].reference, "yolo11n:3");
  EXPECT_TRUE(config->models[2].reference.empty());
  EXPECT_EQ(config->models[2].path, "/cfg/m.onnx");
  EXPECT_EQ(config->control_socket, std::optional<std::string>("/cfg/run/ctl.sock"));

  // Without control.socket the text says nothing (LoadPipelineConfig picks the default); an
  // empty one turns the socket off.
  auto plain = Parse("sources: [{name: a, path: a.mp4}]\nmodels: [{name: m, path: m.onnx}]\n");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->control_socket.has_value());
  auto off = Parse(
      "sources: [{name: a, path: a.mp4}]\nmodels: [{name: m, path: m.onnx}]\n"
      "control: {socket: ''}\n");
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->control_socket, std::optional<std::string>(""));

  const std::string source = "sources: [{name: a, path: a.mp4}]\n";
  ExpectError(source + "models: [{model: m}]\n", {"models[0].model", "no repository"});
  ExpectError(source + "repository: {path: r}\nmodels: [{name: m, path: m.onnx, model: m}]\n",
              {"models[0]", "not both"});
  ExpectError(source + "repository: {path: r}\nmodels: [{name: m}]\n", {"models[0]", "either"});
  ExpectError(source + "repository: {path: r}\nmodels: [{model: '../m'}]\n", {"models[0].model"});
  ExpectError(source + "repository: {path: r}\nmodels: [{model: 'm:0'}]\n", {"models[0].model"});
  ExpectError(source + "repository: {}\nmodels: [{model: m}]\n", {"repository.path"});
  ExpectError(source + "repository: {path: r, budget: 2}\nmodels: [{model: m}]\n",
              {"repository", "budget"});
  ExpectError(source + "models: [{name: m, path: m.onnx}]\ncontrol: {socket: /" +
                  std::string(200, 's') + "}\n",
              {"control.socket", "longer"});
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
  ExpectError(source + "models:\n  - {name: m}\n", {"models[0]", "either path"});
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

TEST(PipelineConfigTest, AnyYamlIsAnErrorNeverAnException) {
  // yaml-cpp throws on a non-scalar key when it is read as a string; that used to abort.
  const std::string source = "sources:\n  - {name: a, path: x.mp4}\n";
  const std::string model = "models:\n  - {name: m, path: m.onnx}\n";
  ExpectError("[a, b]: 1\n" + source + model, {"top level", "key", "[a, b]"});
  ExpectError("? [a, b]\n" + source + model, {"top level", "key"});
  ExpectError("{x: 1}: 2\n", {"top level", "key"});
  ExpectError("sources:\n  - {[name]: a, path: x}\n" + model, {"sources[0]", "key"});
  ExpectError(source + "models:\n  - {name: m, path: m.onnx, ? [workers]: 2}\n",
              {"models[0]", "key"});
  ExpectError(source + model + "output: {[results]: x}\n", {"output", "key"});
  ExpectError(source + model + "supervision: {? {a: 1}: 2}\n", {"supervision", "key"});
  // Values of the wrong shape, and YAML that nests deeper than the parser allows.
  ExpectError(source + "models:\n  - {name: m, path: m.onnx, sources: [[a]]}\n",
              {"models[0].sources", "a list of names"});
  ExpectError("sources:\n  - {name: [a], path: x}\n" + model, {"sources[0].name"});
  ExpectError("sources:\n  - {name: a, path: {p: x}}\n" + model, {"sources[0].path"});
  ExpectError("sources: " + std::string(20000, '[') + "\n", {"test.yaml"});
  ExpectError("sources: &a [*a]\n" + model, {"sources"});
  // A key given twice would silently keep one of the values.
  ExpectError("sources:\n  - {name: a, path: x, name: b}\n" + model,
              {"sources[0]", "'name' is given twice"});
  ExpectError(source + model + source, {"top level", "'sources' is given twice"});
  ExpectError(source + "models:\n  - {name: m, path: m.onnx, sources: [a, a]}\n",
              {"models[0].sources", "'a' is listed twice"});
}

TEST(PipelineConfigTest, NumbersOutsideTheirRangeAreErrors) {
  const std::string model = "models:\n  - {name: m, path: m.onnx}\n";
  for (const char* fps : {".nan", ".inf", "-.inf", "1e-300", "0.0001", "1001"}) {
    ExpectError("sources:\n  - {name: a, path: x, fps: " + std::string(fps) + "}\n" + model,
                {"sources[0].fps", fps});
  }
  for (const char* value : {".nan", "-0.1", "1.5"}) {
    ExpectError("sources:\n  - {name: a, path: x}\nmodels:\n  - {name: m, path: m.onnx, iou: " +
                    std::string(value) + "}\n",
                {"models[0].iou", value});
  }
  ExpectError("sources:\n  - {name: a, path: x, ring_slots: 99999999999}\n" + model,
              {"sources[0].ring_slots", "integer"});
}

TEST(PipelineConfigTest, ProcessAndRingLimitsAreCheckedUpFront) {
  // More workers on one source than a ring has reader entries would fail at run time, after
  // every model was loaded.
  std::string yaml = "sources:\n  - {name: a, path: x.mp4}\nmodels:\n";
  for (int m = 0; m < 3; ++m) {
    yaml += "  - {name: m" + std::to_string(m) + ", path: m.onnx, workers: 32}\n";
  }
  ExpectError(yaml, {"source 'a'", "96 workers", "64"});
  // More models on one source than a ring has work groups.
  yaml = "sources:\n  - {name: a, path: x.mp4}\nmodels:\n";
  for (int m = 0; m < 17; ++m) yaml += "  - {name: m" + std::to_string(m) + ", path: m.onnx}\n";
  ExpectError(yaml, {"source 'a'", "17 models", "16"});
  // Processes in all: every source and every worker is one.
  yaml = "sources:\n";
  for (int s = 0; s < 40; ++s) yaml += "  - {name: s" + std::to_string(s) + ", path: x.mp4}\n";
  yaml += "models:\n";
  for (int m = 0; m < 8; ++m) {
    yaml += "  - {name: m" + std::to_string(m) + ", path: m.onnx, workers: 32, sources: [s" +
            std::to_string(m) + "]}\n";
  }
  ExpectError(yaml, {"296 processes", "256"});
}

TEST(PipelineConfigTest, AFifoOrADirectoryAsTheConfigIsRefusedWithoutBlocking) {
  const zerodet::testing::TempDir temp("config-fifo");
  const std::string fifo = temp.File("pipeline.yaml");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Opening a FIFO for reading waits for a writer; there is none.
  auto from_fifo = LoadPipelineConfig(fifo);
  EXPECT_EQ(from_fifo.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(from_fifo.status().message().find("FIFO"), std::string::npos)
      << from_fifo.status().ToString();
  auto from_dir = LoadPipelineConfig(temp.path());
  EXPECT_EQ(from_dir.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(from_dir.status().message().find("directory"), std::string::npos)
      << from_dir.status().ToString();
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
  // The default control socket: one per config file, found again from the same file.
  ASSERT_TRUE(config->control_socket.has_value());
  EXPECT_EQ(*config->control_socket, DefaultControlSocket(dir / "p.yaml"));
  EXPECT_NE(*config->control_socket, DefaultControlSocket(dir / "q.yaml"));
  EXPECT_EQ(DefaultControlSocket(dir / "p.yaml"), DefaultControlSocket(dir / "." / "p.yaml"));
  EXPECT_LE(config->control_socket->size(), 107u);
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

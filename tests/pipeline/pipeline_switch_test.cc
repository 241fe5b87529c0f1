// A running `zerodet pipeline` whose source switches to another repository model, driven like a
// user would: the YAML names models of a repository made by the test (real YOLO models from
// ../shared/models), `zerodet pipeline switch` changes the model mid-stream, and the results
// file is the frame counter: every published frame is processed exactly once across the switch
// (and across a worker killed after it, whose replacement starts with the new model).
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "test_support.h"
#include "zerodet/pipeline/control.h"

namespace zerodet::pipeline {
namespace {

namespace fs = std::filesystem;
using zerodet::testing::ChildProcess;
using zerodet::testing::RunZerodet;
using zerodet::testing::TempDir;
using zerodet::testing::WaitFor;

// REPO/<name>/1/model.onnx, dated an hour back: the repository does not hold it back as a file
// still being written.
void AddModel(const fs::path& repo, const std::string& name, const fs::path& source) {
  const fs::path dir = repo / name / "1";
  fs::create_directories(dir);
  if (source.empty()) {
    std::ofstream(dir / "model.onnx") << "this is not an ONNX model";
  } else {
    fs::copy_file(source, dir / "model.onnx");
  }
  fs::last_write_time(dir / "model.onnx", fs::file_time_type::clock::now() - std::chrono::hours(1));
}

std::vector<nlohmann::json> ReadResults(const fs::path& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto json = nlohmann::json::parse(line, nullptr, false);
    if (!json.is_discarded()) lines.push_back(std::move(json));
  }
  return lines;
}

size_t CountModel(const std::vector<nlohmann::json>& results, const std::string& model) {
  size_t n = 0;
  for (const auto& r : results) n += r.value("repository_model", "") == model ? 1u : 0u;
  return n;
}

TEST(PipelineSwitchTest, ASourceSwitchesModelsWithoutLosingOrRepeatingAFrame) {
  const TempDir dir("pipeline-switch");
  const fs::path repo = dir.path() / "repo";
  const fs::path model = zerodet::testing::SharedModel("yolo11n-320.onnx");
  AddModel(repo, "line-a", model);
  AddModel(repo, "line-b", model);
  AddModel(repo, "broken", {});
  // A looping clip: the stream runs until the test stops it.
  const std::string clip = (dir.path() / "clip.mp4").string();
  ASSERT_EQ(std::system(("ffmpeg -nostdin -y -loglevel error -f lavfi -i "
                         "testsrc=size=320x240:rate=10 -frames:v 30 -c:v mpeg4 -q:v 3 "
                         "-pix_fmt yuv420p '" +
                         clip + "'")
                            .c_str()),
            0);
  const fs::path results = dir.path() / "results.jsonl";
  const std::string socket = (dir.path() / "ctl.sock").string();
  const fs::path yaml = dir.path() / "p.yaml";
  std::ofstream(yaml) << "repository: {path: repo, max_models: 3}\n"
                         "sources:\n"
                         "  - {name: cam, path: clip.mp4, fps: 10, loop: true, ring_slots: 64,"
                         " overflow: drop_newest}\n"
                         "models:\n"
                         "  - {name: file, path: " +
                             model.string() +
                             "}\n"
                             "  - {name: inspect, model: line-a, workers: 2}\n"
                             "output: {results: results.jsonl}\n"
                             "control: {socket: ctl.sock}\n";
  ChildProcess supervisor({zerodet::testing::ZerodetBinary().string(), "pipeline", yaml.string()},
                          (dir.path() / "log").string());
  ASSERT_TRUE(supervisor.ok());
  auto inspected = [&] {
    std::vector<nlohmann::json> lines;
    for (auto& r : ReadResults(results)) {
      if (r["model"] == "inspect") lines.push_back(std::move(r));
    }
    return lines;
  };
  ASSERT_TRUE(WaitFor([&] { return inspected().size() >= 5; }, std::chrono::minutes(2)))
      << supervisor.Log();
  const auto deadline = [] { return Deadline::After(std::chrono::minutes(3)); };

  // Requests that cannot be carried out change nothing.
  EXPECT_EQ(SwitchModel(socket, {"dock", "line-b", ""}, deadline()).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(SwitchModel(socket, {"cam", "line-b", "nosuch"}, deadline()).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(SwitchModel(socket, {"cam", "line-b", "file"}, deadline()).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SwitchModel(socket, {"cam", "../x", ""}, deadline()).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SwitchModel(socket, {"cam", "nope", ""}, deadline()).status().code(),
            StatusCode::kNotFound);
  auto broken = SwitchModel(socket, {"cam", "broken", ""}, deadline());
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("broken"), std::string::npos)
      << broken.status().ToString();
  auto before = QueryModels(socket, deadline());
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  ASSERT_EQ(before->size(), 2u);
  EXPECT_FALSE((*before)[0].switchable);
  EXPECT_EQ((*before)[1], (ModelAssignment{"inspect", "cam", "line-a", true}));

  // The switch, as a user types it.
  const auto switched = RunZerodet({"pipeline", "switch", yaml.string(), "cam", "line-b"});
  ASSERT_EQ(switched.exit_code, 0) << switched.err;
  EXPECT_NE(switched.out.find("\"model\":\"line-b\""), std::string::npos) << switched.out;
  const auto listed = RunZerodet({"pipeline", "models", yaml.string()});
  EXPECT_NE(listed.out.find("\"entry\":\"inspect\",\"source\":\"cam\",\"model\":\"line-b\""),
            std::string::npos)
      << listed.out;
  ASSERT_TRUE(
      WaitFor([&] { return CountModel(inspected(), "line-b") >= 3; }, std::chrono::minutes(2)))
      << supervisor.Log();

  // A worker that dies after the switch is replaced by one that runs the new model. The
  // children start in config order (the ingest, the file model's worker, then inspect's two):
  // the newest is one of inspect's.
  const std::vector<pid_t> children = zerodet::testing::ChildrenOf(supervisor.pid());
  ASSERT_EQ(children.size(), 4u) << "an ingest and three workers";
  const pid_t victim = *std::max_element(children.begin(), children.end());
  ::kill(victim, SIGKILL);
  const size_t seen = inspected().size();
  ASSERT_TRUE(WaitFor([&] { return inspected().size() >= seen + 10; }, std::chrono::minutes(2)))
      << supervisor.Log();

  ASSERT_TRUE(supervisor.Signal(SIGINT));
  ASSERT_EQ(supervisor.Wait(), 0) << supervisor.Log();
  EXPECT_FALSE(fs::exists(socket)) << "the control socket outlived the pipeline";

  // The summary (the last line of the log) counts what the ring published.
  const std::string log = supervisor.Log();
  const auto summary = nlohmann::json::parse(log.substr(log.rfind("{\"sources\"")), nullptr, false);
  ASSERT_FALSE(summary.is_discarded()) << log;
  const uint64_t published = summary["sources"]["cam"]["frames_published"];
  const uint64_t lost = summary["models"]["inspect"]["frames_lost_in_flight"];
  EXPECT_EQ(summary["sources"]["cam"]["frames_overwritten"], 0) << "drop_newest never overwrites";

  const auto lines = inspected();
  std::set<uint64_t> sequences;
  for (const auto& r : lines) {
    EXPECT_TRUE(r.contains("detections")) << r.dump();
    EXPECT_TRUE(sequences.insert(r["sequence"].get<uint64_t>()).second)
        << "frame " << r["sequence"] << " processed twice";
  }
  EXPECT_EQ(lines.size() + lost, published) << "frames lost besides the killed worker's";
  ASSERT_FALSE(sequences.empty());
  EXPECT_EQ(*sequences.rbegin() - *sequences.begin() + 1, sequences.size() + lost)
      << "a gap in the frame counter";
  EXPECT_GE(CountModel(lines, "line-a"), 5u);
  EXPECT_GE(CountModel(lines, "line-b"), 13u);
  // Once the switch answered, the workers had the new model: the old one runs at most the
  // frames each worker had already taken.
  size_t first_b = 0;
  while (first_b < lines.size() && lines[first_b]["repository_model"] != "line-b") ++first_b;
  size_t late_a = 0;
  for (size_t i = first_b; i < lines.size(); ++i) {
    late_a += lines[i]["repository_model"] == "line-a" ? 1u : 0u;
    EXPECT_EQ(lines[i]["version"], 1);
  }
  EXPECT_LE(late_a, 2u);
  EXPECT_EQ(summary["models"]["inspect"]["worker_restarts"], 1);
  EXPECT_EQ(summary["models"]["file"]["worker_restarts"], 0);
}

}  // namespace
}  // namespace zerodet::pipeline

// `zerodet pipeline` as a user runs it: exit codes, one stderr line on failure, an image
// folder with a bad file, and what happens to the children when the supervisor is killed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace zerodet::pipeline {
namespace {

namespace fs = std::filesystem;
using zerodet::testing::ChildProcess;
using zerodet::testing::ProcessOutput;
using zerodet::testing::RunZerodet;
using zerodet::testing::TempDir;
using zerodet::testing::WaitFor;

const std::string kModel = (zerodet::testing::SharedModel("yolov8n.onnx")).string();

void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// The lines of stderr that are not the JSON summary a successful run ends with.
std::vector<std::string> ErrorLines(const ProcessOutput& run) {
  std::vector<std::string> lines;
  for (const std::string& line : run.ErrLines()) {
    if (!line.empty() && line.front() != '{') lines.push_back(line);
  }
  return lines;
}

// Expects a failed run: exit code 1 and exactly one stderr line, "zerodet pipeline: ...",
// containing each of `parts`.
void ExpectOneErrorLine(const ProcessOutput& run, std::initializer_list<std::string> parts) {
  EXPECT_FALSE(run.timed_out);
  EXPECT_EQ(run.exit_code, 1) << run.err;
  const std::vector<std::string> lines = run.ErrLines();
  ASSERT_EQ(lines.size(), 1u) << "stderr:\n" << run.err;
  EXPECT_EQ(lines[0].rfind("zerodet pipeline: ", 0), 0u) << lines[0];
  for (const std::string& part : parts) {
    EXPECT_NE(lines[0].find(part), std::string::npos) << "'" << part << "' not in " << lines[0];
  }
}

TEST(PipelineCliTest, ConfigErrorsExitWithOneAndOneLine) {
  // Exit code 1 like every failed zerodet command (2 is for command-line usage errors).
  const TempDir dir("pipeline-cli-config");
  const fs::path yaml = dir.path() / "bad.yaml";
  WriteFile(yaml, "[a, b]: 1\n");
  ExpectOneErrorLine(RunZerodet({"pipeline", yaml.string()}), {"bad.yaml", "[a, b]"});

  // A FIFO as the config: refused at once instead of waiting for a writer forever.
  const fs::path fifo = dir.path() / "fifo.yaml";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  zerodet::testing::RunOptions bounded;
  bounded.timeout = std::chrono::seconds(60);
  ExpectOneErrorLine(RunZerodet({"pipeline", fifo.string()}, bounded), {"fifo.yaml", "FIFO"});

  WriteFile(yaml,
            "sources:\n  - {name: a, path: x.mp4, fps: .nan}\nmodels:\n"
            "  - {name: m, path: m.onnx}\n");
  ExpectOneErrorLine(RunZerodet({"pipeline", yaml.string()}), {"sources[0].fps"});
  ExpectOneErrorLine(RunZerodet({"pipeline", (dir.path() / "missing.yaml").string()}),
                     {"missing.yaml", "no such file"});
}

TEST(PipelineCliTest, ASourceThatIsNotAVideoGivesOneLine) {
  // FFmpeg used to print its own lines on stderr before zerodet's error.
  const TempDir dir("pipeline-cli-video");
  WriteFile(dir.path() / "notes.mp4", "this is not a video\n");
  WriteFile(dir.path() / "p.yaml",
            "sources:\n  - {name: clip, path: notes.mp4}\nmodels:\n"
            "  - {name: m, path: " +
                kModel + "}\n");
  ExpectOneErrorLine(RunZerodet({"pipeline", (dir.path() / "p.yaml").string()}),
                     {"source clip", "notes.mp4"});
  // With a debug log level, FFmpeg's own messages are there, through the logger.
  ProcessOutput verbose =
      RunZerodet({"--log-level", "trace", "pipeline", (dir.path() / "p.yaml").string()});
  EXPECT_EQ(verbose.exit_code, 1);
  EXPECT_NE(verbose.err.find("ffmpeg"), std::string::npos) << verbose.err;
}

TEST(PipelineCliTest, ABrokenImageInAFolderIsReportedAndTheOthersAreDetected) {
  const TempDir dir("pipeline-cli-folder");
  const fs::path images = dir.path() / "images";
  fs::create_directory(images);
  fs::copy_file(zerodet::testing::SharedImage("bus.jpg"), images / "1-bus.jpg");
  WriteFile(images / "2-broken.jpg", "not a jpeg");
  fs::copy_file(zerodet::testing::SharedImage("dog.jpg"), images / "3-dog.jpg");
  WriteFile(dir.path() / "p.yaml",
            "sources:\n  - {name: photos, type: images, path: images, "
            "fps: 50}\nmodels:\n  - {name: m, path: " +
                kModel + ", threads: 2}\n");
  const ProcessOutput run = RunZerodet({"pipeline", (dir.path() / "p.yaml").string()});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto results = run.JsonLines();
  ASSERT_EQ(results.size(), 2u) << run.out;
  std::vector<int> widths;
  for (const auto& line : results) widths.push_back(line["width"].get<int>());
  std::sort(widths.begin(), widths.end());
  EXPECT_EQ(widths, (std::vector<int>{768, 810}));
  const std::vector<std::string> warnings = ErrorLines(run);
  ASSERT_EQ(warnings.size(), 1u) << run.err;
  EXPECT_NE(warnings[0].find("2-broken.jpg"), std::string::npos) << warnings[0];
}

TEST(PipelineCliTest, KillingTheSupervisorEndsItsChildrenAndTheirRings) {
  // With SIGKILL the supervisor gets no chance to stop its children: they must notice by
  // themselves. An ingest replaying a folder in a loop used to run on forever, holding its ring.
  const TempDir dir("pipeline-cli-orphans");
  WriteFile(dir.path() / "p.yaml", "sources:\n  - {name: photos, type: images, path: " +
                                       zerodet::testing::SharedDir().string() +
                                       "/images, fps: 5, loop: true}\nmodels:\n"
                                       "  - {name: m, path: " +
                                       kModel + ", workers: 2}\n");
  ChildProcess supervisor(
      {zerodet::testing::ZerodetBinary().string(), "pipeline", (dir.path() / "p.yaml").string()},
      (dir.path() / "log").string());
  ASSERT_TRUE(supervisor.ok());
  // Running for real: a result came through the whole chain.
  ASSERT_TRUE(WaitFor([&] { return supervisor.Log().find("\"sequence\"") != std::string::npos; },
                      std::chrono::minutes(2)))
      << supervisor.Log();
  const std::vector<pid_t> children = zerodet::testing::ChildrenOf(supervisor.pid());
  ASSERT_EQ(children.size(), 3u) << "an ingest and two workers";
  const std::string ring_prefix = "zerodet-ring-zp-" + std::to_string(supervisor.pid()) + "-";
  auto rings_left = [&] {
    int count = 0;
    for (const auto& entry : fs::directory_iterator("/dev/shm")) {
      if (entry.path().filename().string().rfind(ring_prefix, 0) == 0) ++count;
    }
    return count;
  };
  EXPECT_EQ(rings_left(), 1);

  ASSERT_TRUE(supervisor.Signal(SIGKILL));
  EXPECT_EQ(supervisor.Wait(), 128 + SIGKILL);
  EXPECT_TRUE(WaitFor([&] {
    return std::none_of(children.begin(), children.end(), zerodet::testing::ProcessAlive);
  })) << "children outlived their supervisor";
  EXPECT_TRUE(WaitFor([&] { return rings_left() == 0; })) << "the ingest's ring was left behind";
  for (pid_t child : children) {
    if (zerodet::testing::ProcessAlive(child)) ::kill(child, SIGKILL);  // do not leak them
  }
}

}  // namespace
}  // namespace zerodet::pipeline

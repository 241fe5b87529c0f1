// The `zerodet` executable end to end: detect, eval and bench detect on the real models and
// images of ../shared, run as a child process; stdout is parsed as JSON lines.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "zerodet/codec/decode.h"

extern char** environ;

namespace zerodet {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

const fs::path kZerodet = fs::path(ZERODET_BINARY_DIR) / "zerodet";
const fs::path kShared = ZERODET_SHARED_DIR;
const std::string kModel = (kShared / "models" / "yolov8n.onnx").string();

std::string Image(const std::string& name) {
  return (kShared / "images" / name).string();
}

struct Outcome {
  int exit_code = -1;
  std::string out;
  std::string err;

  std::vector<std::string> OutLines() const { return Lines(out); }
  std::vector<std::string> ErrLines() const { return Lines(err); }
  static std::vector<std::string> Lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
};

// Runs zerodet with `args`, collecting stdout and stderr (read together with poll, so neither
// pipe can fill up and stall the child).
Outcome Zerodet(const std::vector<std::string>& args) {
  Outcome run;
  // Under AddressSanitizer, LeakSanitizer would list the suppressions it used (ONNX Runtime's
  // own allocations) on the child's stderr at exit; the tests read that stderr.
  static const bool quiet_lsan = [] {
    const char* current = std::getenv("LSAN_OPTIONS");
    const std::string options =
        (current && *current ? std::string(current) + ":" : std::string()) + "print_suppressions=0";
    return ::setenv("LSAN_OPTIONS", options.c_str(), 1) == 0;
  }();
  EXPECT_TRUE(quiet_lsan);
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe(out_pipe) != 0 || ::pipe(err_pipe) != 0) {
    ADD_FAILURE() << "pipe failed";
    return run;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
  for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) {
    posix_spawn_file_actions_addclose(&actions, fd);
  }
  std::vector<std::string> argv_strings = {kZerodet.string()};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, kZerodet.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (spawned != 0) {
    ADD_FAILURE() << "cannot start " << kZerodet << ": " << std::strerror(spawned);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return run;
  }
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&run.out, &run.err};
  int open_pipes = 2;
  while (open_pipes > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buffer[65536];
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_pipes;
      }
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

Json ParseLine(const std::string& line) {
  Json json = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(json.is_discarded()) << "not JSON: " << line;
  return json;
}

// A scratch directory, removed at the end of the test.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_(fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

// ---------------------------------------------------------------------------------------------
// detect

// The reference of ../shared/README.md (x, y, w, h in original pixels).
TEST(CliDetectTest, DogMatchesReference) {
  Outcome run = Zerodet({"detect", "--model", kModel, "--threads", "2", Image("dog.jpg")});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  const auto lines = run.OutLines();
  ASSERT_EQ(lines.size(), 1u) << run.out;
  const Json j = ParseLine(lines[0]);
  EXPECT_EQ(j["image"], Image("dog.jpg"));
  EXPECT_EQ(j["width"], 768);
  EXPECT_EQ(j["height"], 576);
  struct Expected {
    int class_id;
    const char* name;
    double score, x, y, w, h;
  };
  const Expected expected[] = {{16, "dog", 0.956, 131, 219, 177, 320},
                               {1, "bicycle", 0.887, 131, 136, 437, 283},
                               {2, "car", 0.607, 467, 74, 225, 96},
                               {7, "truck", 0.512, 467, 75, 226, 96}};
  const Json& dets = j["detections"];
  ASSERT_EQ(dets.size(), std::size(expected));
  for (size_t i = 0; i < std::size(expected); ++i) {
    SCOPED_TRACE(i);
    const Json& d = dets[i];
    EXPECT_EQ(d["class_id"], expected[i].class_id);
    EXPECT_EQ(d["class"], expected[i].name);
    EXPECT_NEAR(d["score"].get<double>(), expected[i].score, 0.005);
    ASSERT_EQ(d["box"].size(), 4u);
    const double x1 = d["box"][0], y1 = d["box"][1], x2 = d["box"][2], y2 = d["box"][3];
    EXPECT_NEAR(x1, expected[i].x, 1.0);
    EXPECT_NEAR(y1, expected[i].y, 1.0);
    EXPECT_NEAR(x2 - x1, expected[i].w, 1.0);
    EXPECT_NEAR(y2 - y1, expected[i].h, 1.0);
  }
  for (const char* stage : {"decode", "preprocess", "infer", "postprocess"}) {
    ASSERT_TRUE(j["timing_ms"].contains(stage)) << stage;
    EXPECT_GE(j["timing_ms"][stage].get<double>(), 0) << stage;
  }
  EXPECT_GT(j["timing_ms"]["infer"].get<double>(), 0);
}

// Thresholds and class-agnostic NMS reach the detector: dog.jpg's car and truck are one box.
TEST(CliDetectTest, ThresholdFlags) {
  Outcome run = Zerodet({"detect", "--model", kModel, "--threads", "2", "--conf", "0.6",
                         "--agnostic", "--max-det", "2", Image("dog.jpg")});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const Json j = ParseLine(run.OutLines().at(0));
  ASSERT_EQ(j["detections"].size(), 2u);  // dog, bicycle (car 0.607 cut by --max-det 2)
  EXPECT_EQ(j["detections"][0]["class"], "dog");
  EXPECT_EQ(j["detections"][1]["class"], "bicycle");

  Outcome agnostic =
      Zerodet({"detect", "--model", kModel, "--threads", "2", "--agnostic", Image("dog.jpg")});
  ASSERT_EQ(agnostic.exit_code, 0) << agnostic.err;
  EXPECT_EQ(ParseLine(agnostic.OutLines().at(0))["detections"].size(), 3u);  // truck suppressed
}

// A directory expands to its image files in sorted order; other files are skipped. With --batch
// the results are the same. A file that is not an image gives one error line, the others are
// still printed, and the exit code is non-zero.
TEST(CliDetectTest, DirectoryBatchAndBadImageAmongGoodOnes) {
  ScratchDir dir("zerodet_cli_dir");
  for (const char* name : {"zidane.jpg", "bus.jpg", "dog.jpg"}) {
    fs::create_symlink(Image(name), dir.path() / name);
  }
  WriteText(dir.path() / "README.txt", "not an image, not listed");

  Outcome run = Zerodet({"detect", "--model", kModel, "--threads", "2", dir.path().string()});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto lines = run.OutLines();
  ASSERT_EQ(lines.size(), 3u) << run.out;
  std::vector<Json> single;
  for (const auto& line : lines) single.push_back(ParseLine(line));
  EXPECT_EQ(single[0]["image"], (dir.path() / "bus.jpg").string());
  EXPECT_EQ(single[1]["image"], (dir.path() / "dog.jpg").string());
  EXPECT_EQ(single[2]["image"], (dir.path() / "zidane.jpg").string());
  int people = 0;
  for (const Json& d : single[0]["detections"]) people += d["class"] == "person";
  EXPECT_EQ(people, 4);

  Outcome batched =
      Zerodet({"detect", "--model", kModel, "--threads", "2", "--batch", "2", dir.path().string()});
  ASSERT_EQ(batched.exit_code, 0) << batched.err;
  lines = batched.OutLines();
  ASSERT_EQ(lines.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const Json j = ParseLine(lines[i]);
    EXPECT_EQ(j["image"], single[i]["image"]);
    EXPECT_EQ(j["detections"], single[i]["detections"]);
  }

  WriteText(dir.path() / "broken.jpg", "this is text, not a JPEG\n");
  Outcome bad = Zerodet({"detect", "--model", kModel, "--threads", "2", dir.path().string()});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_EQ(bad.OutLines().size(), 3u) << bad.out;
  const auto errors = bad.ErrLines();
  ASSERT_EQ(errors.size(), 1u) << bad.err;
  EXPECT_NE(errors[0].find("broken.jpg"), std::string::npos) << errors[0];
  EXPECT_EQ(errors[0].rfind("zerodet detect: ", 0), 0u) << errors[0];
}

TEST(CliDetectTest, AnnotateWritesReadableJpegs) {
  ScratchDir dir("zerodet_cli_annotate");
  const fs::path out = dir.path() / "annotated";  // created by the command
  Outcome run = Zerodet({"detect", "--model", kModel, "--threads", "2", "--annotate", out.string(),
                         Image("dog.jpg"), Image("zidane.jpg")});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  for (auto [name, width, height] : {std::tuple{"dog.jpg", 768, 576}, {"zidane.jpg", 1280, 720}}) {
    SCOPED_TRACE(name);
    auto decoded = DecodeImageFile(out / name);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(decoded->image.width(), width);
    EXPECT_EQ(decoded->image.height(), height);
    // The boxes are drawn: the annotated pixels differ from the original's.
    auto original = DecodeImageFile(Image(name));
    ASSERT_TRUE(original.ok());
    size_t changed = 0;
    for (size_t i = 0; i < original->image.size_bytes(); ++i) {
      changed += std::abs(original->image.data()[i] - decoded->image.data()[i]) > 60;
    }
    EXPECT_GT(changed, 1000u);
  }
}

TEST(CliDetectTest, ErrorsGiveNonZeroExitAndOneLine) {
  Outcome missing_model =
      Zerodet({"detect", "--model", "/nonexistent/model.onnx", Image("dog.jpg")});
  EXPECT_NE(missing_model.exit_code, 0);
  EXPECT_EQ(missing_model.out, "");
  ASSERT_EQ(missing_model.ErrLines().size(), 1u) << missing_model.err;
  EXPECT_NE(missing_model.err.find("/nonexistent/model.onnx"), std::string::npos);

  Outcome missing_image = Zerodet({"detect", "--model", kModel, "/nonexistent/picture.jpg"});
  EXPECT_NE(missing_image.exit_code, 0);
  ASSERT_EQ(missing_image.ErrLines().size(), 1u) << missing_image.err;
  EXPECT_NE(missing_image.err.find("/nonexistent/picture.jpg"), std::string::npos);

  // CLI11 reports usage errors: the first line names the problem, then a hint to --help.
  Outcome unknown_flag = Zerodet({"detect", "--model", kModel, "--bogus-flag", Image("dog.jpg")});
  EXPECT_NE(unknown_flag.exit_code, 0);
  EXPECT_EQ(unknown_flag.out, "");
  ASSERT_FALSE(unknown_flag.ErrLines().empty());
  EXPECT_NE(unknown_flag.ErrLines()[0].find("--bogus-flag"), std::string::npos) << unknown_flag.err;

  Outcome no_model = Zerodet({"detect", Image("dog.jpg")});
  EXPECT_NE(no_model.exit_code, 0);
  EXPECT_NE(no_model.err.find("--model"), std::string::npos) << no_model.err;

  Outcome bad_format = Zerodet({"detect", "--model", kModel, "--format", "v99", Image("dog.jpg")});
  EXPECT_NE(bad_format.exit_code, 0);
  ASSERT_EQ(bad_format.ErrLines().size(), 1u) << bad_format.err;
  EXPECT_NE(bad_format.err.find("v99"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// --help everywhere

// The subcommand names of a CLI11 help text (the lines after "Subcommands:").
std::vector<std::string> SubcommandsIn(const std::string& help) {
  std::vector<std::string> names;
  bool in_list = false;
  for (const std::string& line : Outcome::Lines(help)) {
    if (line.rfind("Subcommands:", 0) == 0) {
      in_list = true;
      continue;
    }
    if (!in_list || line.empty()) continue;
    std::istringstream words(line);
    std::string name;
    if (words >> name) names.push_back(name);
  }
  return names;
}

TEST(CliHelpTest, EveryCommandHasHelp) {
  Outcome top = Zerodet({"--help"});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  const auto commands = SubcommandsIn(top.out);
  for (const char* expected : {"detect", "eval", "bench", "version"}) {
    EXPECT_NE(std::find(commands.begin(), commands.end(), expected), commands.end()) << expected;
  }
  for (const std::string& command : commands) {
    SCOPED_TRACE(command);
    Outcome help = Zerodet({command, "--help"});
    EXPECT_EQ(help.exit_code, 0) << help.err;
    EXPECT_FALSE(help.out.empty());
    for (const std::string& sub : SubcommandsIn(help.out)) {
      SCOPED_TRACE(sub);
      Outcome sub_help = Zerodet({command, sub, "--help"});
      EXPECT_EQ(sub_help.exit_code, 0) << sub_help.err;
      EXPECT_FALSE(sub_help.out.empty());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// eval and bench detect

// yolov8n on the 80 COCO val2017 images of coco-val-tiny: the reference implementation measures
// mAP@[.5:.95] 0.3745 there; our square letterbox lands in 0.37-0.38.
TEST(CliEvalTest, Yolov8nOnCocoValTiny) {
  const fs::path coco = kShared / "coco-val-tiny";
  Outcome run =
      Zerodet({"eval", "--model", kModel, "--threads", "2", "--coco",
               (coco / "instances_val2017.json").string(), "--images", (coco / "images").string()});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto lines = run.OutLines();
  ASSERT_EQ(lines.size(), 1u) << run.out;
  const Json j = ParseLine(lines[0]);
  EXPECT_EQ(j["images"], 80);
  const double map = j["map50_95"];
  EXPECT_GE(map, 0.37);
  EXPECT_LE(map, 0.38);
  EXPECT_GT(j["map50"].get<double>(), map);
  EXPECT_GT(j["map75"].get<double>(), 0.0);
  EXPECT_GT(j["timing_ms"]["infer"].get<double>(), 0);
  EXPECT_NE(run.err.find("80/80 images"), std::string::npos) << run.err;  // the progress bar
}

TEST(CliEvalTest, Errors) {
  const fs::path coco = kShared / "coco-val-tiny";
  Outcome missing = Zerodet({"eval", "--model", kModel, "--coco", "/nonexistent/instances.json",
                             "--images", (coco / "images").string()});
  EXPECT_NE(missing.exit_code, 0);
  ASSERT_EQ(missing.ErrLines().size(), 1u) << missing.err;
  EXPECT_NE(missing.err.find("/nonexistent/instances.json"), std::string::npos);

  ScratchDir dir("zerodet_cli_eval");
  WriteText(dir.path() / "bad.json", "{\"images\": 5}");
  Outcome corrupt =
      Zerodet({"eval", "--model", kModel, "--coco", (dir.path() / "bad.json").string(), "--images",
               (coco / "images").string()});
  EXPECT_NE(corrupt.exit_code, 0);
  EXPECT_NE(corrupt.err.find("bad.json"), std::string::npos) << corrupt.err;

  // No image of the annotations in the directory: nothing to evaluate.
  Outcome empty =
      Zerodet({"eval", "--model", kModel, "--coco", (coco / "instances_val2017.json").string(),
               "--images", dir.path().string()});
  EXPECT_NE(empty.exit_code, 0);
  EXPECT_EQ(empty.out, "");
}

TEST(CliBenchTest, DetectReportsRunEndToEndAndOverhead) {
  Outcome run = Zerodet({"bench", "detect", "--model", kModel, "--threads", "2", "--iterations",
                         "2", "--warmup", "0", Image("dog.jpg")});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto lines = run.OutLines();
  ASSERT_EQ(lines.size(), 1u) << run.out;
  const Json j = ParseLine(lines[0]);
  EXPECT_EQ(j["iterations"], 2);
  EXPECT_GT(j["ort_run_ms"]["median"].get<double>(), 0);
  EXPECT_GT(j["end_to_end_ms"]["median"].get<double>(), 0);
  // Stages sum to about the end-to-end mean (the file read and small glue are outside them).
  double stages = 0;
  for (const char* stage : {"decode", "preprocess", "infer", "postprocess"}) {
    stages += j["stages_ms"][stage].get<double>();
  }
  EXPECT_LE(stages, j["end_to_end_ms"]["mean"].get<double>() * 1.001);
  const double overhead = j["overhead_ratio"];
  EXPECT_GT(overhead, 0.0);
  EXPECT_LT(overhead, 1.0);
}

}  // namespace
}  // namespace zerodet

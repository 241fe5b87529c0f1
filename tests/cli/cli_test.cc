// The `zerodet` executable end to end: detect, eval and bench detect on the real models and
// images of ../shared, run as a child process; stdout is parsed as JSON lines.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"
#include "zerodet/codec/decode.h"

namespace zerodet {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Outcome = testing::ProcessOutput;

const fs::path kShared = testing::SharedDir();
const std::string kModel = testing::SharedModel("yolov8n.onnx").string();

std::string Image(const std::string& name) {
  return testing::SharedImage(name).string();
}

Outcome Zerodet(const std::vector<std::string>& args, const testing::RunOptions& options = {}) {
  return testing::RunZerodet(args, options);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

Json ParseLine(const std::string& line) {
  Json json = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(json.is_discarded()) << "not JSON: " << line;
  return json;
}

// A scratch directory, removed at the end of the test.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) : dir_(name) {}
  const fs::path& path() const { return dir_.path(); }

 private:
  testing::TempDir dir_;
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
  EXPECT_EQ(ParseLine(run.OutLines().at(0))["annotated"], (out / "dog.jpg").string());
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

  // Usage errors: one line naming the problem, exit code 2.
  Outcome unknown_flag = Zerodet({"detect", "--model", kModel, "--bogus-flag", Image("dog.jpg")});
  EXPECT_EQ(unknown_flag.exit_code, 2);
  EXPECT_EQ(unknown_flag.out, "");
  ASSERT_EQ(unknown_flag.ErrLines().size(), 1u) << unknown_flag.err;
  EXPECT_NE(unknown_flag.ErrLines()[0].find("--bogus-flag"), std::string::npos) << unknown_flag.err;

  Outcome no_model = Zerodet({"detect", Image("dog.jpg")});
  EXPECT_EQ(no_model.exit_code, 2);
  ASSERT_EQ(no_model.ErrLines().size(), 1u) << no_model.err;
  EXPECT_NE(no_model.err.find("--model"), std::string::npos) << no_model.err;

  Outcome bad_format = Zerodet({"detect", "--model", kModel, "--format", "v99", Image("dog.jpg")});
  EXPECT_NE(bad_format.exit_code, 0);
  ASSERT_EQ(bad_format.ErrLines().size(), 1u) << bad_format.err;
  EXPECT_NE(bad_format.err.find("v99"), std::string::npos);
}

// Inputs with one base name (a/img.jpg and b/img.jpg; x.png and x.jpg) get distinct annotated
// files, and an input inside the annotate directory, even a read-only one, is never overwritten.
TEST(CliDetectTest, AnnotateNeverOverwritesInputsOrEachOther) {
  ScratchDir dir("cli-annotate-names");
  const fs::path a = dir.path() / "a", b = dir.path() / "b", out = dir.path() / "out";
  for (const fs::path& d : {a, b, out}) fs::create_directories(d);
  fs::copy_file(Image("dog.jpg"), a / "img.jpg");
  fs::copy_file(Image("bus.jpg"), b / "img.jpg");
  fs::copy_file(Image("zidane.jpg"), out / "x.jpg");  // an input inside the output directory
  ::chmod((out / "x.jpg").c_str(), 0444);
  auto png = testing::SharedImage("kite.jpg");
  auto decoded = DecodeImageFile(png);
  ASSERT_TRUE(decoded.ok());
  fs::copy_file(Image("kite.jpg"), dir.path() / "x.png");  // JPEG bytes, .png name: sniffed
  const std::string original = testing::ReadText(out / "x.jpg");

  Outcome run = Zerodet({"detect", "--model", kModel, "--threads", "2", "--annotate", out.string(),
                         (a / "img.jpg").string(), (b / "img.jpg").string(),
                         (out / "x.jpg").string(), (dir.path() / "x.png").string()});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::vector<std::string> written;
  for (const std::string& line : run.OutLines()) written.push_back(ParseLine(line)["annotated"]);
  ASSERT_EQ(written.size(), 4u);
  EXPECT_EQ(written[0], (out / "img.jpg").string());
  EXPECT_EQ(written[1], (out / "img-2.jpg").string());
  EXPECT_EQ(written[2], (out / "x-2.jpg").string());  // x.jpg is an input
  EXPECT_EQ(written[3], (out / "x-3.jpg").string());
  EXPECT_EQ(testing::ReadText(out / "x.jpg"), original);
  for (const std::string& file : written) EXPECT_TRUE(DecodeImageFile(file).ok()) << file;
}

// A FIFO given as an image or as annotations is refused at once instead of blocking in open().
TEST(CliDetectTest, FifoInputsAreRefusedWithoutBlocking) {
  ScratchDir dir("cli-fifo");
  const std::string fifo = (dir.path() / "image.jpg").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  testing::RunOptions bounded;
  bounded.timeout = std::chrono::seconds(60);
  Outcome run =
      Zerodet({"detect", "--model", kModel, "--threads", "2", fifo, Image("dog.jpg")}, bounded);
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.OutLines().size(), 1u);  // dog.jpg still detected
  ASSERT_EQ(run.ErrLines().size(), 1u) << run.err;
  EXPECT_NE(run.err.find("is a FIFO, not a regular file"), std::string::npos) << run.err;

  Outcome eval = Zerodet(
      {"eval", "--model", kModel, "--coco", fifo, "--images", dir.path().string()}, bounded);
  ASSERT_FALSE(eval.timed_out);
  EXPECT_EQ(eval.exit_code, 1);
  EXPECT_NE(eval.err.find("is a FIFO"), std::string::npos) << eval.err;
}

// A directory whose last entry is a symlink loop: the loop is reported (as a loop), the images
// are detected.
TEST(CliDetectTest, SymlinkLoopInADirectoryIsOneErrorNotAll) {
  ScratchDir dir("cli-loop");
  fs::create_symlink(Image("dog.jpg"), dir.path() / "a.jpg");
  fs::create_symlink(dir.path() / "z.jpg", dir.path() / "z.jpg");  // sorts last, loops
  Outcome run = Zerodet({"detect", "--model", kModel, "--threads", "2", dir.path().string()});
  EXPECT_EQ(run.exit_code, 1);
  ASSERT_EQ(run.OutLines().size(), 1u) << run.out;
  ASSERT_EQ(run.ErrLines().size(), 1u) << run.err;
  EXPECT_NE(run.err.find("z.jpg"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("symlink loop"), std::string::npos) << run.err;
}

// A cut-off JPEG with an end marker appended is an error, not a gray image "detected".
TEST(CliDetectTest, TruncatedJpegIsAnError) {
  ScratchDir dir("cli-truncated");
  std::string bytes = testing::ReadText(Image("bus.jpg"));
  bytes.resize(bytes.size() / 2);
  bytes += "\xFF\xD9";
  std::ofstream(dir.path() / "cut.jpg", std::ios::binary) << bytes;
  Outcome run = Zerodet({"detect", "--model", kModel, (dir.path() / "cut.jpg").string()});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.out, "");
  ASSERT_EQ(run.ErrLines().size(), 1u) << run.err;
  EXPECT_NE(run.err.find("truncated JPEG"), std::string::npos) << run.err;
}

TEST(CliDetectTest, ResourceFlagsAreBounded) {
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--threads", "10000"}, {"--batch", "100000"}}) {
    std::vector<std::string> args = {"detect", "--model", kModel};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back(Image("dog.jpg"));
    Outcome run = Zerodet(args);
    EXPECT_EQ(run.exit_code, 1) << flags[0];
    ASSERT_EQ(run.ErrLines().size(), 1u) << run.err;
    EXPECT_NE(run.err.find(flags[0]), std::string::npos) << run.err;
  }
}

// The bundled ONNX Runtime records telemetry unless told not to: a run leaves no device id or
// event database under $HOME/.cache and no /tmp/mat-debug-PID.log.
TEST(CliDetectTest, RunLeavesNoTelemetryFiles) {
  ScratchDir home("cli-home");
  testing::RunOptions options;
  options.env = {"HOME=" + home.path().string(),
                 "XDG_CACHE_HOME=" + (home.path() / ".cache").string()};
  Outcome run = Zerodet({"detect", "--model", kModel, "--threads", "2", Image("dog.jpg")}, options);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_FALSE(fs::exists(home.path() / ".cache")) << "telemetry wrote under $HOME/.cache";
  const fs::path debug_log =
      fs::temp_directory_path() / ("mat-debug-" + std::to_string(run.pid) + ".log");
  EXPECT_FALSE(fs::exists(debug_log)) << debug_log;
  EXPECT_FALSE(fs::exists(fs::path("/tmp") / debug_log.filename())) << debug_log;
}

// --repo: the model comes from a repository through the model manager, and detects exactly as
// the same file given directly.
TEST(CliDetectTest, ModelFromARepository) {
  ScratchDir repo("cli-repo");
  fs::create_directories(repo.path() / "yolov8n" / "1");
  // A copy: a symlink leaving the repository is refused (see tests/models).
  fs::copy_file(kModel, repo.path() / "yolov8n" / "1" / "model.onnx");
  Outcome direct = Zerodet({"detect", "--model", kModel, "--threads", "2", Image("dog.jpg")});
  ASSERT_EQ(direct.exit_code, 0) << direct.err;
  Outcome via_repo =
      Zerodet({"detect", "--repo", repo.path().string(), "--model", "yolov8n:1", Image("dog.jpg")});
  ASSERT_EQ(via_repo.exit_code, 0) << via_repo.err;
  ASSERT_EQ(via_repo.OutLines().size(), 1u);
  EXPECT_EQ(ParseLine(via_repo.OutLines()[0])["detections"],
            ParseLine(direct.OutLines()[0])["detections"]);
  // The thresholds still come from the flags.
  Outcome strict = Zerodet({"detect", "--repo", repo.path().string(), "--model", "yolov8n",
                            "--conf", "0.9", Image("dog.jpg")});
  ASSERT_EQ(strict.exit_code, 0) << strict.err;
  EXPECT_EQ(ParseLine(strict.OutLines().at(0))["detections"].size(), 1u);  // dog 0.956

  Outcome unknown =
      Zerodet({"detect", "--repo", repo.path().string(), "--model", "yolov9000", Image("dog.jpg")});
  EXPECT_EQ(unknown.exit_code, 1);
  ASSERT_EQ(unknown.ErrLines().size(), 1u) << unknown.err;
  EXPECT_NE(unknown.err.find("yolov9000"), std::string::npos) << unknown.err;

  Outcome configured = Zerodet({"detect", "--repo", repo.path().string(), "--model", "yolov8n",
                                "--threads", "2", Image("dog.jpg")});
  EXPECT_EQ(configured.exit_code, 1);
  EXPECT_NE(configured.err.find("--threads configures a model file"), std::string::npos)
      << configured.err;

  const fs::path coco = kShared / "coco-val-tiny";
  Outcome eval =
      Zerodet({"eval", "--repo", repo.path().string(), "--model", "yolov8n", "--coco",
               (coco / "instances_val2017.json").string(), "--images", (coco / "images").string()});
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  const double map = ParseLine(eval.OutLines().at(0))["map50_95"];
  EXPECT_GE(map, 0.37);
  EXPECT_LE(map, 0.38);
}

// ---------------------------------------------------------------------------------------------
// --help everywhere

// The subcommand names of a CLI11 help text (the lines after "Subcommands:").
std::vector<std::string> SubcommandsIn(const std::string& help) {
  std::vector<std::string> names;
  bool in_list = false;
  for (const std::string& line : Lines(help)) {
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

// file_name in the annotations must stay inside --images.
TEST(CliEvalTest, FileNamesOutsideTheImagesFolderAreRefused) {
  ScratchDir dir("cli-eval-escape");
  const fs::path images = dir.path() / "images";
  fs::create_directories(images);
  fs::create_symlink(Image("dog.jpg"), images / "dog.jpg");
  std::ofstream(dir.path() / "gt.json") << R"({"images": [
      {"id": 1, "file_name": "dog.jpg", "width": 768, "height": 576},
      {"id": 2, "file_name": "../../../etc/passwd", "width": 1, "height": 1},
      {"id": 3, "file_name": "/etc/hostname", "width": 1, "height": 1}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 18, "bbox": [131, 219, 177, 320],
                     "area": 56640, "iscrowd": 0}],
    "categories": [{"id": 18, "name": "dog"}]})";
  Outcome run = Zerodet({"eval", "--model", kModel, "--threads", "2", "--coco",
                         (dir.path() / "gt.json").string(), "--images", images.string()});
  EXPECT_EQ(run.exit_code, 1);
  ASSERT_EQ(run.OutLines().size(), 1u) << run.out;
  EXPECT_EQ(ParseLine(run.OutLines()[0])["images"], 1);
  EXPECT_NE(run.err.find("'../../../etc/passwd' is not a relative path inside --images"),
            std::string::npos)
      << run.err;
  EXPECT_NE(run.err.find("'/etc/hostname'"), std::string::npos) << run.err;
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
  ScratchDir dir("cli-bench");
  for (const char* name : {"dog.jpg", "bus.jpg"})
    fs::create_symlink(Image(name), dir.path() / name);
  Outcome run = Zerodet({"bench", "detect", "--model", kModel, "--threads", "2", "--iterations",
                         "2", "--warmup", "0", "--rounds", "1", "--folder", dir.path().string(),
                         Image("dog.jpg")});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto lines = run.OutLines();
  ASSERT_EQ(lines.size(), 1u) << run.out;
  const Json all = ParseLine(lines[0]);
  const Json& j = all["single"];
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
  // The folder: three rates of the same two images, and their ratios.
  const Json& folder = all["folder"];
  EXPECT_EQ(folder["images"], 2);
  EXPECT_EQ(folder["failed_images"], 0);
  for (const char* mode : {"bare_run", "detect_decode_in_line", "detect_decode_overlapped"}) {
    EXPECT_GT(folder["images_per_s"][mode].get<double>(), 0) << mode;
  }
  EXPECT_GT(folder["overlapped_vs_in_line"].get<double>(), 0);
}

}  // namespace
}  // namespace zerodet

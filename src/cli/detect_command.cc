// `zerodet detect`: runs a YOLO model on image files and directories and prints one JSON object
// per image, one per line, on stdout:
//   {"image": "dog.jpg", "width": 768, "height": 576,
//    "detections": [{"class_id": 16, "class": "dog", "score": 0.956, "box": [x1, y1, x2, y2]}],
//    "timing_ms": {"decode": .., "preprocess": .., "infer": .., "postprocess": ..}}
// Boxes are in the image's pixels (core/detection_json.h). An input that cannot be read gives a
// one-line error on stderr; the others are still processed and the command fails at the end,
// saying how many inputs failed.
//
// --annotate DIR writes each image with its boxes to DIR/<stem>.jpg. When that name is taken in
// this run (a/img.jpg and b/img.jpg; x.png and x.jpg) or names one of the inputs, the next free
// one of <stem>-2.jpg, <stem>-3.jpg, ... is used: an input is never overwritten. Each JSON line
// then names its file in "annotated".
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "command_registry.h"
#include "detect_common.h"
#include "store_input.h"
#include "zerodet/codec/annotate.h"
#include "zerodet/core/file.h"
#include "zerodet/infer/detect_files.h"

namespace zerodet::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kCommand = "detect";
// Images per Run at most: each costs a model input (4.9 MB at 640 x 640) but never a decoded
// image, which is letterboxed into the batch and freed at once.
constexpr int kMaxBatch = 64;

struct DetectArgs {
  DetectorFlags detector;
  std::vector<std::string> inputs;
  std::string annotate_dir;
  int batch = 1;
  bool no_prefetch = false;
  StoreInputFlags store;
};

// Files to process: files as given, directories expanded to their image files (sorted, not
// recursive). An input or directory entry that cannot be used is reported; it never stops the
// others.
std::vector<fs::path> ExpandInputs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> files;
  for (const std::string& input : inputs) {
    struct stat st {};
    if (::stat(input.c_str(), &st) != 0) {
      ReportError(kCommand, PathError(input, "cannot read", errno));
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      files.emplace_back(input);  // decoding says what is wrong with it, if anything
      continue;
    }
    auto entries = ListDirectory(input);
    if (!entries.ok()) {
      ReportError(kCommand, entries.status());
      continue;
    }
    size_t images = 0;
    for (const DirectoryEntry& entry : *entries) {
      if (!HasImageFileExtension(entry.path)) continue;
      if (entry.kind == DirectoryEntry::Kind::kError) {
        ReportError(kCommand, entry.error);
      } else if (entry.kind == DirectoryEntry::Kind::kRegular) {
        files.push_back(entry.path);
        ++images;
      }
    }
    if (images == 0) {
      ReportError(kCommand,
                  NotFoundError(input + ": no readable image files (.jpg, .jpeg, .png, .bmp)"));
    }
  }
  return files;
}

// Chooses the annotated image's file for each input (see the top of this file).
class AnnotationNames {
 public:
  AnnotationNames(fs::path dir, const std::vector<fs::path>& inputs) : dir_(std::move(dir)) {
    for (const fs::path& input : inputs) {
      struct stat st {};
      if (::stat(input.c_str(), &st) == 0) inputs_.insert({st.st_dev, st.st_ino});
    }
  }

  fs::path For(const fs::path& input) {
    const std::string stem = input.stem().string();
    for (int n = 1;; ++n) {
      fs::path candidate =
          dir_ / (n == 1 ? stem + ".jpg" : stem + "-" + std::to_string(n) + ".jpg");
      if (taken_.count(candidate.filename().string()) != 0 || IsInput(candidate)) continue;
      taken_.insert(candidate.filename().string());
      return candidate;
    }
  }

 private:
  bool IsInput(const fs::path& candidate) const {
    struct stat st {};
    return ::stat(candidate.c_str(), &st) == 0 && inputs_.count({st.st_dev, st.st_ino}) != 0;
  }

  fs::path dir_;
  std::set<std::pair<dev_t, ino_t>> inputs_;
  std::set<std::string> taken_;
};

// Draws the detections on the image, decoded again: a batch keeps no decoded image, so that
// memory stays one batch of model inputs whatever the batch size.
Status Annotate(const fs::path& source, const DecodeOptions& decode_options,
                const DetectionResult& result, const std::vector<std::string>& names,
                const fs::path& out) {
  ZD_ASSIGN_OR_RETURN(DecodedImage decoded, DecodeImageFile(source, decode_options));
  // With --fast-jpeg the pixels may be DCT-downscaled; boxes are in source pixels.
  const ImageView view = decoded.image.view();
  std::vector<Detection> drawn = result.detections;
  const float sx = static_cast<float>(view.width) / static_cast<float>(result.width);
  const float sy = static_cast<float>(view.height) / static_cast<float>(result.height);
  for (Detection& d : drawn) {
    d.box = Box{d.box.x1 * sx, d.box.y1 * sy, d.box.x2 * sx, d.box.y2 * sy};
  }
  return WriteAnnotatedJpeg(view, drawn, names, out);
}

Status RunDetect(const DetectArgs& args) {
  if (args.batch < 1 || args.batch > kMaxBatch) {
    return InvalidArgumentError("--batch must be in 1.." + std::to_string(kMaxBatch));
  }
  ZD_ASSIGN_OR_RETURN(CommandDetector detector, args.detector.Open(args.batch));
  if (args.store.enabled()) {
    if (!args.inputs.empty() || !args.annotate_dir.empty()) {
      return InvalidArgumentError(
          "--store reads every sample of --dataset; give no image files and no --annotate with "
          "it");
    }
    return DetectDataset(detector.get(), args.store, kCommand);
  }
  if (args.inputs.empty()) {
    return InvalidArgumentError("give image files or directories, or --store");
  }
  const std::vector<std::string>& names = detector->spec().class_names;
  DetectFilesOptions options;
  options.decode = args.detector.DecodeOptionsFor(*detector);
  options.prefetch_depth = args.no_prefetch ? 0 : 1;

  const std::vector<fs::path> files = ExpandInputs(args.inputs);
  std::unique_ptr<AnnotationNames> annotation_names;
  if (!args.annotate_dir.empty()) {
    std::error_code ec;
    fs::create_directories(args.annotate_dir, ec);
    if (ec) {
      return IoError("--annotate " + args.annotate_dir +
                     ": cannot create the directory: " + ec.message());
    }
    annotation_names = std::make_unique<AnnotationNames>(args.annotate_dir, files);
  }

  DetectFiles(detector.get(), files, options, [&](FileDetection&& file) {
    if (!file.result.ok()) {
      ReportError(kCommand, file.result.status());
      return;
    }
    nlohmann::ordered_json line = ImageResultJson(file.path.string(), *file.result, names);
    if (annotation_names) {
      const fs::path out = annotation_names->For(file.path);
      const Status written = Annotate(file.path, options.decode, *file.result, names, out);
      if (written.ok()) {
        line["annotated"] = out.string();
      } else {
        ReportError(kCommand, written);
      }
    }
    PrintJsonLine(line);
  });
  return Status::Ok();  // each failed input was reported on its own line
}

const CommandRegistrar kRegistrar("detect", [](CLI::App& app) {
  auto args = std::make_shared<DetectArgs>();
  auto* cmd = app.add_subcommand(
      "detect", "Detect objects in images; prints one JSON object per image on stdout");
  args->detector.AddTo(cmd);
  cmd->add_option("--annotate", args->annotate_dir,
                  "Write each image with its boxes and labels as OUT_DIR/<stem>.jpg "
                  "(<stem>-2.jpg, ... when taken; never over an input)");
  cmd->add_option("--batch", args->batch,
                  "Images per model run, 1.." + std::to_string(kMaxBatch) +
                      " (one Run for all when the model's batch is dynamic)")
      ->capture_default_str();
  cmd->add_flag("--no-prefetch", args->no_prefetch,
                "Decode each image only after the previous one's Run (no overlap)");
  args->store.AddTo(cmd);
  cmd->add_option("inputs", args->inputs,
                  "Image files and directories (.jpg, .jpeg, .png, .bmp); none with --store");
  SetRun(cmd, [args] { return RunDetect(*args); });
});

}  // namespace
}  // namespace zerodet::cli

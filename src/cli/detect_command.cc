// `zerodet detect`: runs a YOLO model on image files and directories and prints one JSON object
// per image, one per line, on stdout:
//   {"image": "dog.jpg", "width": 768, "height": 576,
//    "detections": [{"class_id": 16, "class": "dog", "score": 0.956, "box": [x1, y1, x2, y2]}],
//    "timing_ms": {"decode": .., "preprocess": .., "infer": .., "postprocess": ..}}
// Boxes are in the image's pixels. An image that cannot be read gives a one-line error on stderr;
// the others are still processed and the exit code is 1 at the end.
#include <cctype>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "command_registry.h"
#include "detect_common.h"
#include "store_input.h"
#include "zerodet/codec/annotate.h"

namespace zerodet::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kCommand = "detect";

struct DetectArgs {
  DetectorFlags detector;
  std::vector<std::string> inputs;
  std::string annotate_dir;
  int batch = 1;
  StoreInputFlags store;
};

bool HasImageExtension(const fs::path& path) {
  std::string ext = path.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

// Files to process: files as given, directories expanded to their image files (sorted, not
// recursive). Inputs that do not exist or hold no images are reported and counted in `failures`.
std::vector<fs::path> ExpandInputs(const std::vector<std::string>& inputs, int& failures) {
  std::vector<fs::path> files;
  for (const std::string& input : inputs) {
    const fs::path path(input);
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::vector<fs::path> found;
      for (const auto& entry : fs::directory_iterator(path, ec)) {
        if (entry.is_regular_file(ec) && HasImageExtension(entry.path())) {
          found.push_back(entry.path());
        }
      }
      if (ec) {
        PrintError(kCommand, IoError(input + ": cannot list the directory: " + ec.message()));
        ++failures;
        continue;
      }
      if (found.empty()) {
        PrintError(kCommand,
                   NotFoundError(input + ": no image files (.jpg, .jpeg, .png, .bmp) in it"));
        ++failures;
        continue;
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(path, ec)) {
      files.push_back(path);
    } else {
      PrintError(kCommand, NotFoundError(input + ": no such file or directory"));
      ++failures;
    }
  }
  return files;
}

// Draws the detections on the decoded pixels; with --fast-jpeg those may be DCT-downscaled, so
// boxes (in source pixels) are scaled to them.
Status Annotate(const DecodedFile& file, const DetectionResult& result,
                const std::vector<std::string>& names, const fs::path& out_dir,
                const fs::path& source) {
  const ImageView view = file.decoded.image.view();
  std::vector<Detection> drawn = result.detections;
  const float sx = static_cast<float>(view.width) / static_cast<float>(result.width);
  const float sy = static_cast<float>(view.height) / static_cast<float>(result.height);
  for (Detection& d : drawn)
    d.box = Box{d.box.x1 * sx, d.box.y1 * sy, d.box.x2 * sx, d.box.y2 * sy};
  fs::path out = out_dir / source.filename();
  out.replace_extension(".jpg");
  return WriteAnnotatedJpeg(view, drawn, names, out);
}

int RunDetect(const DetectArgs& args) {
  if (args.batch < 1) {
    PrintError(kCommand, InvalidArgumentError("--batch must be >= 1"));
    return 1;
  }
  auto created = args.detector.CreateDetector(args.batch);
  if (!created.ok()) {
    PrintError(kCommand, created.status());
    return 1;
  }
  Detector& detector = **created;
  if (args.store.enabled()) {
    if (!args.inputs.empty() || !args.annotate_dir.empty()) {
      PrintError(kCommand, InvalidArgumentError(
                               "--store reads every sample of --dataset; give no image files "
                               "and no --annotate with it"));
      return 1;
    }
    return DetectDataset(detector, args.store, kCommand);
  }
  if (args.inputs.empty()) {
    PrintError(kCommand, InvalidArgumentError("give image files or directories, or --store"));
    return 1;
  }
  const DecodeOptions decode_options = args.detector.DecodeOptionsFor(detector);
  const std::vector<std::string>& names = detector.spec().class_names;
  if (!args.annotate_dir.empty()) {
    std::error_code ec;
    fs::create_directories(args.annotate_dir, ec);
    if (ec) {
      PrintError(kCommand, IoError("--annotate " + args.annotate_dir +
                                   ": cannot create the directory: " + ec.message()));
      return 1;
    }
  }

  int failures = 0;
  const std::vector<fs::path> files = ExpandInputs(args.inputs, failures);

  // Images are decoded `batch` at a time and detected together (one Run per chunk when the model
  // has a dynamic batch), then printed in input order.
  std::vector<DecodedFile> decoded;
  std::vector<fs::path> decoded_paths;
  auto flush = [&] {
    if (decoded.empty()) return;
    std::vector<ImageView> views;
    std::vector<ImageSize> sizes;
    for (const DecodedFile& f : decoded) {
      views.push_back(f.decoded.image.view());
      sizes.push_back(ImageSize{f.decoded.source_width, f.decoded.source_height});
    }
    auto results = detector.DetectBatch(views, sizes);
    if (!results.ok()) {
      // The batch failed as a whole; name its images.
      for (const fs::path& p : decoded_paths)
        PrintError(kCommand, results.status().WithContext(p.string()));
      failures += static_cast<int>(decoded.size());
    } else {
      for (size_t i = 0; i < decoded.size(); ++i) {
        DetectionResult& r = (*results)[i];
        r.timing.decode_ms = decoded[i].decode_ms;
        nlohmann::ordered_json line = {{"image", decoded_paths[i].string()},
                                       {"width", r.width},
                                       {"height", r.height},
                                       {"detections", DetectionsJson(r.detections, names)},
                                       {"timing_ms", TimingJson(r.timing)}};
        if (!args.annotate_dir.empty()) {
          Status written = Annotate(decoded[i], r, names, args.annotate_dir, decoded_paths[i]);
          if (!written.ok()) {
            PrintError(kCommand, written);
            ++failures;
          }
        }
        PrintJsonLine(line);
      }
    }
    decoded.clear();
    decoded_paths.clear();
  };

  for (const fs::path& path : files) {
    auto file = DecodeFile(path, decode_options);
    if (!file.ok()) {
      PrintError(kCommand, file.status());
      ++failures;
      continue;
    }
    decoded.push_back(std::move(file).value());
    decoded_paths.push_back(path);
    if (decoded.size() >= static_cast<size_t>(args.batch)) flush();
  }
  flush();
  return failures == 0 ? 0 : 1;
}

const CommandRegistrar kRegistrar("detect", [](CLI::App& app) {
  auto args = std::make_shared<DetectArgs>();
  auto* cmd = app.add_subcommand(
      "detect", "Detect objects in images; prints one JSON object per image on stdout");
  args->detector.AddTo(cmd);
  cmd->add_option("--annotate", args->annotate_dir,
                  "Write each image with its boxes and labels as OUT_DIR/<name>.jpg");
  cmd->add_option("--batch", args->batch,
                  "Images per model run (one Run for all when the model's batch is dynamic)")
      ->capture_default_str();
  args->store.AddTo(cmd);
  cmd->add_option("inputs", args->inputs,
                  "Image files and directories (.jpg, .jpeg, .png, .bmp); none with --store");
  SetRun(cmd, [args] { return ExitCodeStatus(RunDetect(*args)); });
});

}  // namespace
}  // namespace zerodet::cli

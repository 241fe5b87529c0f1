// `zerodet eval`: COCO box mAP of a model on a COCO-format annotated image set, computed as
// pycocotools does (zerodet/eval/coco_eval.h). Shows a progress bar on stderr and prints one
// JSON object on stdout:
//   {"map50_95": .., "map50": .., "map75": .., "images": N, "detections": D,
//    "timing_ms": {"decode": .., "preprocess": .., "infer": .., "postprocess": ..}}
// (timings are means per image). With --store PATH --dataset NAME the model inputs come from a
// dataset `zerodet preload --as letterbox:SIZE COCO.json` put into a store, found by file_name.
// Images that cannot be read are reported on stderr and left out of the evaluation; the exit code
// is then 1.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "command_registry.h"
#include "detect_common.h"
#include "store_input.h"
#include "zerodet/eval/coco_eval.h"
#include "zerodet/infer/detect_files.h"

namespace zerodet::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kCommand = "eval";

struct EvalArgs {
  DetectorFlags detector;
  std::string annotations;
  std::string images_dir;
  StoreInputFlags store;
};

// A progress bar on stderr: one line redrawn in place on a terminal, else a line per tenth.
class ProgressBar {
 public:
  explicit ProgressBar(size_t total) : total_(total), tty_(::isatty(STDERR_FILENO) == 1) {}

  void Update(size_t done) {
    constexpr int kWidth = 30;
    const int filled = total_ == 0 ? kWidth : static_cast<int>(kWidth * done / total_);
    // Off a terminal (a log file) only whole tenths are drawn, so logs stay short.
    const int tenth = total_ == 0 ? 10 : static_cast<int>(10 * done / total_);
    if (!tty_ && tenth == last_tenth_ && done != total_) return;
    last_tenth_ = tenth;
    std::fprintf(stderr, "%seval [%.*s%.*s] %zu/%zu images%s", tty_ ? "\r" : "", filled, kBar,
                 kWidth - filled, kSpace, done, total_, tty_ ? "" : "\n");
    std::fflush(stderr);
  }
  // Ends the bar's line (before other output, and at the end).
  void Finish() {
    if (tty_) std::fputc('\n', stderr);
  }

 private:
  static constexpr const char* kBar = "##############################";
  static constexpr const char* kSpace = "                              ";
  size_t total_;
  bool tty_;
  int last_tenth_ = -1;
};

// The image file of a COCO entry: file_name must stay inside --images (no absolute path, no
// "..": the annotation file is input too).
Result<fs::path> ImagePath(const std::string& images_dir, const std::string& file_name) {
  const fs::path name(file_name);
  bool escapes = name.is_absolute() || name.empty();
  for (const fs::path& part : name) escapes = escapes || part == "..";
  if (escapes) {
    return InvalidArgumentError("file_name '" + file_name +
                                "' is not a relative path inside --images");
  }
  return fs::path(images_dir) / name;
}

// Accumulates per-image results into COCO detections and mean stage timings.
struct EvalRun {
  std::vector<CocoDetection> detections;
  CocoEvalParams params;
  StageTimings sum;

  void Add(int64_t image_id, const Result<DetectionResult>& result, const std::string& source) {
    if (!result.ok()) {
      ReportError(kCommand, result.status().WithContext(source));
      return;
    }
    AppendCoco80Detections(image_id, result->detections, detections);
    params.image_ids.push_back(image_id);
    sum.decode_ms += result->timing.decode_ms;
    sum.preprocess_ms += result->timing.preprocess_ms;
    sum.infer_ms += result->timing.infer_ms;
    sum.postprocess_ms += result->timing.postprocess_ms;
  }
};

Status RunEval(const EvalArgs& args) {
  ZD_ASSIGN_OR_RETURN(CocoGroundTruth gt, LoadCocoGroundTruth(args.annotations));
  if (args.store.enabled() == !args.images_dir.empty()) {
    return InvalidArgumentError("give either --images DIR or --store and --dataset");
  }
  std::error_code ec;
  if (!args.store.enabled() && !fs::is_directory(args.images_dir, ec)) {
    return NotFoundError("--images " + args.images_dir + ": not a directory");
  }
  ZD_ASSIGN_OR_RETURN(CommandDetector detector, args.detector.Open());
  if (detector->spec().class_names.size() != Coco80Names().size()) {
    return InvalidArgumentError(args.detector.model + " has " +
                                std::to_string(detector->spec().class_names.size()) +
                                " classes; COCO evaluation needs a model of the 80 COCO classes");
  }

  EvalRun run;
  ProgressBar progress(gt.images.size());
  progress.Update(0);
  size_t done = 0;
  if (args.store.enabled()) {
    ZD_ASSIGN_OR_RETURN(std::unique_ptr<dataset::DatasetReader> dataset,
                        args.store.Open(detector.get()));
    for (const auto& image : gt.images) {
      // Samples are found by the annotation's file_name, as the preloader named them.
      const size_t index = dataset->Find(image.file_name);
      auto result = index < dataset->size()
                        ? DetectStoredSample(detector.get(), *dataset, index)
                        : Result<DetectionResult>(NotFoundError("no such sample in the dataset"));
      if (!result.ok()) progress.Finish();
      run.Add(image.id, result, args.store.dataset + ":" + image.file_name);
      progress.Update(++done);
    }
  } else {
    std::vector<fs::path> files;
    std::vector<int64_t> ids;  // of files, in order
    for (const auto& image : gt.images) {
      auto path = ImagePath(args.images_dir, image.file_name);
      if (!path.ok()) {
        progress.Finish();
        run.Add(image.id, path.status(), args.annotations);
        progress.Update(++done);
        continue;
      }
      files.push_back(std::move(*path));
      ids.push_back(image.id);
    }
    DetectFilesOptions options;
    options.decode = args.detector.DecodeOptionsFor(*detector);
    size_t next = 0;
    DetectFiles(detector.get(), files, options, [&](FileDetection&& file) {
      if (!file.result.ok()) progress.Finish();
      run.Add(ids[next++], file.result, file.path.string());
      progress.Update(++done);
    });
  }
  progress.Finish();
  if (run.params.image_ids.empty()) {
    return NotFoundError(
        "none of the " + std::to_string(gt.images.size()) + " images of " + args.annotations +
        " could be read from " +
        (args.store.enabled() ? "--dataset " + args.store.dataset : args.images_dir));
  }

  ZD_ASSIGN_OR_RETURN(CocoEvalResult metrics, EvaluateCocoBoxes(gt, run.detections, run.params));
  const double n = static_cast<double>(run.params.image_ids.size());
  const StageTimings& sum = run.sum;
  StageTimings mean{sum.decode_ms / n, sum.preprocess_ms / n, sum.infer_ms / n,
                    sum.postprocess_ms / n};
  PrintJsonLine({{"map50_95", RoundTo(metrics.map50_95, 5)},
                 {"map50", RoundTo(metrics.map50, 5)},
                 {"map75", RoundTo(metrics.map75, 5)},
                 {"images", metrics.images},
                 {"detections", run.detections.size()},
                 {"timing_ms", TimingJson(mean)}});
  return Status::Ok();  // images that failed were reported, and left out of the metrics
}

const CommandRegistrar kRegistrar("eval", [](CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  // mAP is measured over the whole precision-recall curve: keep nearly every candidate.
  args->detector.conf = 0.001f;
  args->detector.iou = 0.7f;
  auto* cmd = app.add_subcommand(
      "eval", "COCO mAP@[.5:.95] and mAP@.5 of a model on COCO-annotated images (as pycocotools)");
  args->detector.AddTo(cmd);
  cmd->add_option("--coco", args->annotations, "COCO annotations (instances_*.json)")->required();
  cmd->add_option("--images", args->images_dir, "Directory holding the annotated images");
  args->store.AddTo(cmd);
  SetRun(cmd, [args] { return RunEval(*args); });
});

}  // namespace
}  // namespace zerodet::cli

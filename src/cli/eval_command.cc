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

int RunEval(const EvalArgs& args) {
  auto gt = LoadCocoGroundTruth(args.annotations);
  if (!gt.ok()) {
    PrintError(kCommand, gt.status());
    return 1;
  }
  std::error_code ec;
  if (args.store.enabled() == !args.images_dir.empty()) {
    PrintError(kCommand, InvalidArgumentError("give either --images DIR or --store and --dataset"));
    return 1;
  }
  if (!args.store.enabled() && !fs::is_directory(args.images_dir, ec)) {
    PrintError(kCommand, NotFoundError("--images " + args.images_dir + ": not a directory"));
    return 1;
  }
  auto created = args.detector.CreateDetector();
  if (!created.ok()) {
    PrintError(kCommand, created.status());
    return 1;
  }
  Detector& detector = **created;
  if (detector.spec().class_names.size() != Coco80Names().size()) {
    PrintError(kCommand, InvalidArgumentError(
                             args.detector.model + " has " +
                             std::to_string(detector.spec().class_names.size()) +
                             " classes; COCO evaluation needs a model of the 80 COCO classes"));
    return 1;
  }
  const DecodeOptions decode_options = args.detector.DecodeOptionsFor(detector);
  std::unique_ptr<dataset::DatasetReader> dataset;
  if (args.store.enabled()) {
    auto opened = args.store.Open(detector);
    if (!opened.ok()) {
      PrintError(kCommand, opened.status());
      return 1;
    }
    dataset = std::move(opened).value();
  }

  std::vector<CocoDetection> detections;
  CocoEvalParams params;
  StageTimings sum;
  int failures = 0;
  ProgressBar progress(gt->images.size());
  progress.Update(0);
  for (size_t i = 0; i < gt->images.size(); ++i) {
    const auto& image = gt->images[i];
    Result<DetectionResult> result = NotFoundError("");
    std::string source;
    if (dataset) {
      // Samples are found by the annotation's file_name, as the preloader named them.
      source = args.store.dataset + ":" + image.file_name;
      const size_t index = dataset->Find(image.file_name);
      result = index < dataset->size()
                   ? DetectStoredSample(detector, *dataset, index)
                   : Result<DetectionResult>(NotFoundError("no such sample in the dataset"));
    } else {
      const fs::path path = fs::path(args.images_dir) / image.file_name;
      source = path.string();
      auto file = DecodeFile(path, decode_options);
      result = file.ok() ? DetectDecoded(detector, *file) : Result<DetectionResult>(file.status());
    }
    if (!result.ok()) {
      progress.Finish();
      PrintError(kCommand, result.status().WithContext(source));
      ++failures;
      continue;
    }
    AppendCoco80Detections(image.id, result->detections, detections);
    params.image_ids.push_back(image.id);
    sum.decode_ms += result->timing.decode_ms;
    sum.preprocess_ms += result->timing.preprocess_ms;
    sum.infer_ms += result->timing.infer_ms;
    sum.postprocess_ms += result->timing.postprocess_ms;
    progress.Update(i + 1);
  }
  progress.Finish();
  if (params.image_ids.empty()) {
    PrintError(kCommand,
               NotFoundError("none of the " + std::to_string(gt->images.size()) + " images of " +
                             args.annotations + " could be read from " +
                             (dataset ? "--dataset " + args.store.dataset : args.images_dir)));
    return 1;
  }

  auto metrics = EvaluateCocoBoxes(*gt, detections, params);
  if (!metrics.ok()) {
    PrintError(kCommand, metrics.status());
    return 1;
  }
  const double n = static_cast<double>(params.image_ids.size());
  StageTimings mean{sum.decode_ms / n, sum.preprocess_ms / n, sum.infer_ms / n,
                    sum.postprocess_ms / n};
  PrintJsonLine({{"map50_95", Rounded(metrics->map50_95, 5)},
                 {"map50", Rounded(metrics->map50, 5)},
                 {"map75", Rounded(metrics->map75, 5)},
                 {"images", metrics->images},
                 {"detections", detections.size()},
                 {"timing_ms", TimingJson(mean)}});
  return failures == 0 ? 0 : 1;
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
  SetRun(cmd, [args] { return ExitCodeStatus(RunEval(*args)); });
});

}  // namespace
}  // namespace zerodet::cli

// `zerodet bench detect`: how much the detection path adds around the model run. In one process
// and on one session, it alternates
//   bare Run:    backend Run alone on an input letterboxed once beforehand, and
//   end to end:  read + decode + letterbox + Run + output decode + NMS, as `zerodet detect` does,
// and prints one JSON object: both timings (mean, median, min), the stage breakdown of the end-to-
// end path, and the overhead ratio: everything but Run over the end-to-end total (from the stage
// timings, and from the medians of the two loops).
#include <algorithm>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "command_registry.h"
#include "detect_common.h"
#include "zerodet/codec/letterbox.h"

namespace zerodet::cli {
namespace {

constexpr std::string_view kCommand = "bench detect";

struct BenchDetectArgs {
  DetectorFlags detector;
  std::string image;
  int iterations = 30;
  int warmup = 3;
};

nlohmann::ordered_json Summary(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  const double mean = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  const size_t n = ms.size();
  const double median = n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
  return {{"mean", Rounded(mean, 3)}, {"median", Rounded(median, 3)}, {"min", Rounded(ms[0], 3)}};
}

double Median(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  return n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
}

int RunBenchDetect(const BenchDetectArgs& args) {
  if (args.iterations < 1 || args.warmup < 0) {
    PrintError(kCommand, InvalidArgumentError("--iterations must be >= 1 and --warmup >= 0"));
    return 1;
  }
  auto created = args.detector.CreateDetector();
  if (!created.ok()) {
    PrintError(kCommand, created.status());
    return 1;
  }
  Detector& detector = **created;
  const ModelSpec& spec = detector.spec();
  const DecodeOptions decode_options = args.detector.DecodeOptionsFor(detector);

  // The bare run's input: the image letterboxed once, as the detector would.
  auto first = DecodeFile(args.image, decode_options);
  if (!first.ok()) {
    PrintError(kCommand, first.status());
    return 1;
  }
  std::vector<float> input(3 * static_cast<size_t>(spec.input_width) * spec.input_height);
  Letterboxer letterboxer;
  if (auto g = letterboxer.Run(first->decoded.image.view(), spec.letterbox, spec.input_width,
                               spec.input_height, input.data(), input.size());
      !g.ok()) {
    PrintError(kCommand, g.status());
    return 1;
  }
  const TensorView input_view{
      input.data(), DType::kFloat32, {1, 3, spec.input_height, spec.input_width}};

  auto bare_run = [&]() -> Result<double> {
    Stopwatch watch;
    auto outputs = detector.backend().Run(std::span<const TensorView>(&input_view, 1));
    if (!outputs.ok()) return outputs.status();
    return watch.ElapsedMs();
  };
  auto end_to_end = [&](StageTimings& stages) -> Result<double> {
    Stopwatch watch;
    ZD_ASSIGN_OR_RETURN(DecodedFile file, DecodeFile(args.image, decode_options));
    ZD_ASSIGN_OR_RETURN(DetectionResult result, DetectDecoded(detector, file));
    const double total = watch.ElapsedMs();
    stages = result.timing;
    return total;
  };

  std::vector<double> bare_ms;
  std::vector<double> e2e_ms;
  StageTimings sum;
  for (int i = 0; i < args.warmup + args.iterations; ++i) {
    // Alternating the two keeps slow drift (other load, clocks) from favouring either.
    auto bare = bare_run();
    StageTimings stages;
    auto e2e = bare.ok() ? end_to_end(stages) : Result<double>(bare.status());
    if (!e2e.ok()) {
      PrintError(kCommand, e2e.status());
      return 1;
    }
    if (i < args.warmup) continue;
    bare_ms.push_back(*bare);
    e2e_ms.push_back(*e2e);
    sum.decode_ms += stages.decode_ms;
    sum.preprocess_ms += stages.preprocess_ms;
    sum.infer_ms += stages.infer_ms;
    sum.postprocess_ms += stages.postprocess_ms;
  }
  const double n = static_cast<double>(args.iterations);
  const StageTimings mean{sum.decode_ms / n, sum.preprocess_ms / n, sum.infer_ms / n,
                          sum.postprocess_ms / n};
  const double e2e_mean = std::accumulate(e2e_ms.begin(), e2e_ms.end(), 0.0) / n;
  const double e2e_median = Median(e2e_ms);
  PrintJsonLine(
      {{"model", args.detector.model},
       {"image", args.image},
       {"image_size", {first->decoded.source_width, first->decoded.source_height}},
       {"decoded_size", {first->decoded.image.width(), first->decoded.image.height()}},
       {"input_size", {spec.input_width, spec.input_height}},
       {"provider", args.detector.provider},
       {"threads", args.detector.threads},
       {"iterations", args.iterations},
       {"ort_run_ms", Summary(bare_ms)},
       {"end_to_end_ms", Summary(e2e_ms)},
       {"stages_ms", TimingJson(mean)},
       // Everything but Run, over the end-to-end total, from the stage timings.
       {"overhead_ratio", Rounded((e2e_mean - mean.infer_ms) / e2e_mean, 4)},
       // The same from the two loops: end to end against the bare Run (medians).
       {"overhead_vs_bare_run", Rounded((e2e_median - Median(bare_ms)) / e2e_median, 4)}});
  return 0;
}

const CommandRegistrar kRegistrar("bench detect", [](CLI::App& app) {
  auto args = std::make_shared<BenchDetectArgs>();
  auto* cmd = BenchGroup(app)->add_subcommand(
      "detect", "Bare model Run vs. the full detect path on one image; overhead ratio");
  args->detector.AddTo(cmd);
  cmd->add_option("image", args->image, "Image file")->required();
  cmd->add_option("--iterations", args->iterations, "Timed iterations of each loop")
      ->capture_default_str();
  cmd->add_option("--warmup", args->warmup, "Untimed iterations first")->capture_default_str();
  SetRun(cmd, [args] { return ExitCodeStatus(RunBenchDetect(*args)); });
});

}  // namespace
}  // namespace zerodet::cli

#include "detect_bench.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "zerodet/codec/letterbox.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/core/stopwatch.h"
#include "zerodet/infer/detect_files.h"

namespace zerodet::bench {
namespace {

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

nlohmann::ordered_json Summary(std::vector<double> ms) {
  const double mean = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  const double min = *std::min_element(ms.begin(), ms.end());
  return {{"mean", RoundTo(mean, 3)}, {"median", RoundTo(Median(ms), 3)}, {"min", RoundTo(min, 3)}};
}

nlohmann::ordered_json StagesJson(const StageTimings& t) {
  return {{"decode", RoundTo(t.decode_ms, 3)},
          {"preprocess", RoundTo(t.preprocess_ms, 3)},
          {"infer", RoundTo(t.infer_ms, 3)},
          {"postprocess", RoundTo(t.postprocess_ms, 3)}};
}

// The model input for `image`, letterboxed once as the detector would.
Result<std::vector<float>> LetterboxedInput(const ModelSpec& spec, const DecodedImage& decoded) {
  std::vector<float> input(3 * static_cast<size_t>(spec.input_width) *
                           static_cast<size_t>(spec.input_height));
  Letterboxer letterboxer;
  ZD_RETURN_IF_ERROR(letterboxer
                         .Run(decoded.image.view(), spec.letterbox, spec.input_width,
                              spec.input_height, input.data(), input.size())
                         .status());
  return input;
}

Result<double> TimeBareRun(Detector& detector, std::vector<float>& input) {
  const ModelSpec& spec = detector.spec();
  const ConstTensorView view{
      input.data(), DType::kFloat32, {1, 3, spec.input_height, spec.input_width}};
  Stopwatch watch;
  ZD_RETURN_IF_ERROR(detector.backend().Run(std::span<const ConstTensorView>(&view, 1)).status());
  return watch.ElapsedMs();
}

}  // namespace

Result<nlohmann::ordered_json> MeasureDetectOverhead(Detector& detector,
                                                     const std::filesystem::path& image,
                                                     const DecodeOptions& decode, int iterations,
                                                     int warmup) {
  if (iterations < 1 || warmup < 0) {
    return InvalidArgumentError("iterations must be >= 1 and warmup >= 0");
  }
  const ModelSpec& spec = detector.spec();
  ZD_ASSIGN_OR_RETURN(DecodedImage first, DecodeImageFile(image, decode));
  ZD_ASSIGN_OR_RETURN(std::vector<float> input, LetterboxedInput(spec, first));
  const std::vector<std::filesystem::path> one = {image};
  DetectFilesOptions in_line;
  in_line.decode = decode;
  in_line.prefetch_depth = 0;

  std::vector<double> bare_ms, e2e_ms;
  StageTimings sum;
  for (int i = 0; i < warmup + iterations; ++i) {
    // Alternating the two keeps slow drift (other load, clocks) from favouring either.
    ZD_ASSIGN_OR_RETURN(double bare, TimeBareRun(detector, input));
    Stopwatch watch;
    Status failed;
    StageTimings stages;
    DetectFiles(detector, one, in_line, [&](FileDetection&& file) {
      if (file.result.ok()) {
        stages = file.result->timing;
      } else {
        failed = file.result.status();
      }
    });
    const double e2e = watch.ElapsedMs();
    ZD_RETURN_IF_ERROR(failed);
    if (i < warmup) continue;
    bare_ms.push_back(bare);
    e2e_ms.push_back(e2e);
    sum.decode_ms += stages.decode_ms;
    sum.preprocess_ms += stages.preprocess_ms;
    sum.infer_ms += stages.infer_ms;
    sum.postprocess_ms += stages.postprocess_ms;
  }
  const double n = static_cast<double>(iterations);
  const StageTimings mean{sum.decode_ms / n, sum.preprocess_ms / n, sum.infer_ms / n,
                          sum.postprocess_ms / n};
  const double e2e_mean = std::accumulate(e2e_ms.begin(), e2e_ms.end(), 0.0) / n;
  const double e2e_median = Median(e2e_ms);
  return nlohmann::ordered_json{
      {"image", image.string()},
      {"image_size", {first.source_width, first.source_height}},
      {"decoded_size", {first.image.width(), first.image.height()}},
      {"input_size", {spec.input_width, spec.input_height}},
      {"iterations", iterations},
      {"ort_run_ms", Summary(bare_ms)},
      {"end_to_end_ms", Summary(e2e_ms)},
      {"stages_ms", StagesJson(mean)},
      // Everything but Run, over the end-to-end total, from the stage timings.
      {"overhead_ratio", RoundTo((e2e_mean - mean.infer_ms) / e2e_mean, 4)},
      // The same from the two loops: end to end against the bare Run (medians).
      {"overhead_vs_bare_run", RoundTo((e2e_median - Median(bare_ms)) / e2e_median, 4)}};
}

Result<nlohmann::ordered_json> MeasureFolderThroughput(
    Detector& detector, const std::vector<std::filesystem::path>& files,
    const DecodeOptions& decode, int rounds) {
  if (files.empty() || rounds < 1) {
    return InvalidArgumentError("need at least one image and one round");
  }
  ZD_ASSIGN_OR_RETURN(DecodedImage first, DecodeImageFile(files[0], decode));
  ZD_ASSIGN_OR_RETURN(std::vector<float> input, LetterboxedInput(detector.spec(), first));

  // Seconds for one pass over the files, each way.
  auto bare_pass = [&]() -> Result<double> {
    double total_ms = 0;
    for (size_t i = 0; i < files.size(); ++i) {
      ZD_ASSIGN_OR_RETURN(double ms, TimeBareRun(detector, input));
      total_ms += ms;
    }
    return total_ms / 1e3;
  };
  size_t failed_images = 0;
  auto detect_pass = [&](size_t prefetch_depth) {
    DetectFilesOptions options;
    options.decode = decode;
    options.prefetch_depth = prefetch_depth;
    failed_images = 0;
    Stopwatch watch;
    DetectFiles(detector, files, options, [&](FileDetection&& file) {
      if (!file.result.ok()) ++failed_images;
    });
    return watch.ElapsedMs() / 1e3;
  };

  detect_pass(1);  // warm-up: page cache, allocator, ONNX Runtime's first runs
  if (failed_images == files.size()) {
    return InvalidArgumentError("none of the " + std::to_string(files.size()) +
                                " images could be detected");
  }
  std::vector<double> bare_s, in_line_s, overlapped_s;
  for (int round = 0; round < rounds; ++round) {
    ZD_ASSIGN_OR_RETURN(double bare, bare_pass());
    bare_s.push_back(bare);
    in_line_s.push_back(detect_pass(0));
    overlapped_s.push_back(detect_pass(1));
  }
  const double n = static_cast<double>(files.size());
  const double bare_rate = n / Median(bare_s);
  const double in_line_rate = n / Median(in_line_s);
  const double overlapped_rate = n / Median(overlapped_s);
  return nlohmann::ordered_json{
      {"images", files.size()},
      {"failed_images", failed_images},
      {"rounds", rounds},
      {"images_per_s",
       {{"bare_run", RoundTo(bare_rate, 2)},
        {"detect_decode_in_line", RoundTo(in_line_rate, 2)},
        {"detect_decode_overlapped", RoundTo(overlapped_rate, 2)}}},
      {"overlapped_vs_in_line", RoundTo(overlapped_rate / in_line_rate, 3)},
      {"overlapped_vs_bare_run", RoundTo(overlapped_rate / bare_rate, 3)},
      {"in_line_vs_bare_run", RoundTo(in_line_rate / bare_rate, 3)}};
}

}  // namespace zerodet::bench

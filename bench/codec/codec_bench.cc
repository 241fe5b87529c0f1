// Codec hot paths, each next to the baseline it replaces:
//   Decode/<image>        zerodet DecodeImage vs cv::imdecode + BGR->RGB (what Python does)
//   DecodeDctScaled       a 1080p JPEG decoded for a 640 model with DCT-domain scaling (opt-in)
//   Letterbox1080pTo640   zerodet's single pass vs resize + copyMakeBorder + cvtColor +
//                         convertTo + split (the usual OpenCV chain)
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "zerodet/codec/decode.h"
#include "zerodet/codec/letterbox.h"
#include "zerodet/core/file.h"

namespace zerodet {
namespace {

const std::filesystem::path kImages = std::filesystem::path(ZERODET_SHARED_DIR) / "images";

std::vector<uint8_t> MustRead(const std::filesystem::path& path) {
  auto bytes = ReadFileBytes(path);
  if (!bytes.ok()) {
    std::fprintf(stderr, "bench_codec: %s\n", bytes.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*bytes);
}

// A 1920x1080 JPEG made from zidane.jpg (1280x720), the common camera frame size.
const std::vector<uint8_t>& Jpeg1080p() {
  static const std::vector<uint8_t> bytes = [] {
    cv::Mat frame;
    cv::resize(cv::imread((kImages / "zidane.jpg").string()), frame, cv::Size(1920, 1080));
    std::vector<uint8_t> out;
    cv::imencode(".jpg", frame, out, {cv::IMWRITE_JPEG_QUALITY, 90});
    return out;
  }();
  return bytes;
}

void BM_DecodeZerodet(benchmark::State& state, const char* image) {
  const auto bytes = MustRead(kImages / image);
  for (auto _ : state) {
    auto decoded = DecodeImage(bytes, image);
    benchmark::DoNotOptimize(decoded);
  }
}

void BM_DecodeOpenCv(benchmark::State& state, const char* image) {
  const auto bytes = MustRead(kImages / image);
  for (auto _ : state) {
    cv::Mat bgr = cv::imdecode(bytes, cv::IMREAD_COLOR), rgb;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    benchmark::DoNotOptimize(rgb.data);
  }
}

BENCHMARK_CAPTURE(BM_DecodeZerodet, bus_810x1080, "bus.jpg")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_DecodeOpenCv, bus_810x1080, "bus.jpg")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_DecodeZerodet, kite_1352x900, "kite.jpg")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_DecodeOpenCv, kite_1352x900, "kite.jpg")->Unit(benchmark::kMillisecond);

void BM_Decode1080p(benchmark::State& state) {
  DecodeOptions options;
  options.jpeg_scale_min_side = static_cast<int>(state.range(0));
  for (auto _ : state) {
    auto decoded = DecodeImage(Jpeg1080p(), "1080p.jpg", options);
    benchmark::DoNotOptimize(decoded);
  }
}
// 0: full decode (default); 640: DCT-scaled to 960x540 for a 640 model.
BENCHMARK(BM_Decode1080p)
    ->ArgName("dct_scale_side")
    ->Arg(0)
    ->Arg(640)
    ->Unit(benchmark::kMillisecond);

const Image& Frame1080p() {
  static const Image frame = [] {
    auto decoded = DecodeImage(Jpeg1080p(), "1080p.jpg");
    return std::move(decoded->image);
  }();
  return frame;
}

void BM_Letterbox1080pTo640Zerodet(benchmark::State& state) {
  Letterboxer letterboxer;
  std::vector<float> input(3 * 640 * 640);
  for (auto _ : state) {
    auto geometry = letterboxer.Run(Frame1080p().view(), LetterboxStyle::kUltralytics, 640, 640,
                                    input.data(), input.size());
    benchmark::DoNotOptimize(geometry);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_Letterbox1080pTo640Zerodet)->Unit(benchmark::kMicrosecond);

// The chain most C++ YOLO examples use, producing the same tensor.
void BM_Letterbox1080pTo640OpenCvChain(benchmark::State& state) {
  const Image& frame = Frame1080p();
  const cv::Mat rgb(frame.height(), frame.width(), CV_8UC3, const_cast<uint8_t*>(frame.data()),
                    frame.stride());
  std::vector<float> input(3 * 640 * 640);
  for (auto _ : state) {
    cv::Mat resized, padded, as_float;
    cv::resize(rgb, resized, cv::Size(640, 360), 0, 0, cv::INTER_LINEAR);
    cv::copyMakeBorder(resized, padded, 140, 140, 0, 0, cv::BORDER_CONSTANT,
                       cv::Scalar(114, 114, 114));
    padded.convertTo(as_float, CV_32FC3, 1.0 / 255);
    std::vector<cv::Mat> planes = {cv::Mat(640, 640, CV_32F, input.data()),
                                   cv::Mat(640, 640, CV_32F, input.data() + 640 * 640),
                                   cv::Mat(640, 640, CV_32F, input.data() + 2 * 640 * 640)};
    cv::split(as_float, planes);
    benchmark::DoNotOptimize(input.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_Letterbox1080pTo640OpenCvChain)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace zerodet

BENCHMARK_MAIN();

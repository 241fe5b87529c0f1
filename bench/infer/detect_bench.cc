// Benchmarks of the detection hot path. Run the model-bound ones with real time:
//   bench_infer_detect --benchmark_filter='Decode|Nms'          post-processing only (fast)
//   bench_infer_detect --benchmark_filter='BackendRun|Detect'   model runs (~80 ms each)
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "zerodet/codec/decode.h"
#include "zerodet/codec/letterbox.h"
#include "zerodet/infer/backend.h"
#include "zerodet/infer/detector.h"
#include "zerodet/infer/nms.h"
#include "zerodet/infer/yolo.h"

namespace zerodet {
namespace {

const std::filesystem::path kShared = ZERODET_SHARED_DIR;
const std::filesystem::path kModel = kShared / "models" / "yolov8n.onnx";
const std::filesystem::path kBus = kShared / "images" / "bus.jpg";
constexpr int kThreads = 2;

[[noreturn]] void Die(const Status& status) {
  std::fprintf(stderr, "bench_infer_detect: %s\n", status.ToString().c_str());
  std::exit(1);
}

template <typename T>
T Must(Result<T> result) {
  if (!result.ok()) Die(result.status());
  return std::move(result).value();
}

// yolov8n on bus.jpg, letterboxed once: the model input, a copy of the raw output (1x84x8400)
// and the backend that produced it.
struct BusRun {
  std::unique_ptr<Backend> backend;
  ModelSpec spec;
  std::vector<float> input;
  std::vector<float> output;
  std::vector<int64_t> output_shape;

  static BusRun& Get() {
    static BusRun* run = [] {
      auto* r = new BusRun;
      BackendOptions options;
      options.intra_op_threads = kThreads;
      r->backend = Must(CreateOnnxBackend(kModel, options));
      r->spec = Must(InferModelSpec(r->backend->info()));
      DecodedImage bus = Must(DecodeImageFile(kBus));
      r->input.resize(3 * size_t(r->spec.input_width) * size_t(r->spec.input_height));
      Letterboxer letterboxer;
      Must(letterboxer.Run(bus.image.view(), r->spec.letterbox, r->spec.input_width,
                           r->spec.input_height, r->input.data(), r->input.size()));
      auto outputs = Must(r->backend->Run(std::span<const ConstTensorView>(&r->InputView(), 1)));
      r->output.assign(outputs[0].f32(), outputs[0].f32() + outputs[0].num_elements());
      r->output_shape = outputs[0].shape;
      return r;
    }();
    return *run;
  }

  const ConstTensorView& InputView() {
    input_view_ =
        ConstTensorView{input.data(), DType::kFloat32, {1, 3, spec.input_height, spec.input_width}};
    return input_view_;
  }

 private:
  ConstTensorView input_view_;
};

// Decode + NMS of the 8400 yolov8n candidates; the argument is the confidence threshold in
// thousandths (250 = the default 0.25, 1 = 0.001 as for mAP evaluation).
void BM_DecodeV8Bus(benchmark::State& state) {
  BusRun& run = BusRun::Get();
  TensorView output{run.output.data(), DType::kFloat32, run.output_shape};
  DetectParams params;
  params.conf_threshold = static_cast<float>(state.range(0)) / 1000.0f;
  size_t kept = 0;
  for (auto _ : state) {
    auto detections = DecodeYoloOutput(run.spec, output, 0, params);
    kept = detections->size();
    benchmark::DoNotOptimize(detections);
  }
  state.counters["kept"] = static_cast<double>(kept);
}
BENCHMARK(BM_DecodeV8Bus)->Arg(250)->Arg(1)->Unit(benchmark::kMicrosecond);

// NMS alone on n boxes spread over 80 classes, clustered like detector candidates (many
// overlapping boxes around a few objects). Second argument: 1 = class-agnostic.
void BM_Nms(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const bool agnostic = state.range(1) != 0;
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> center(0, 640);
  std::normal_distribution<float> jitter(0, 6);
  std::uniform_real_distribution<float> size(20, 200);
  std::uniform_real_distribution<float> score(0.001f, 1.0f);
  std::uniform_int_distribution<int> cls(0, 79);
  std::vector<Detection> candidates;
  const int objects = 60;
  std::vector<Detection> objects_boxes;
  for (int i = 0; i < objects; ++i) {
    const float cx = center(rng), cy = center(rng), w = size(rng), h = size(rng);
    objects_boxes.push_back(
        Detection{cls(rng), 0, Box{cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2}});
  }
  for (int i = 0; i < n; ++i) {
    Detection d = objects_boxes[static_cast<size_t>(i % objects)];
    const float dx = jitter(rng), dy = jitter(rng);
    d.box = Box{d.box.x1 + dx, d.box.y1 + dy, d.box.x2 + dx + jitter(rng), d.box.y2 + dy};
    d.score = score(rng);
    if (i % 7 == 0) d.class_id = cls(rng);
    candidates.push_back(d);
  }
  size_t kept = 0;
  for (auto _ : state) {
    auto out = NonMaxSuppression(candidates, 0.45f, 300, agnostic);
    kept = out.size();
    benchmark::DoNotOptimize(out);
  }
  state.counters["kept"] = static_cast<double>(kept);
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Nms)
    ->Args({1000, 0})
    ->Args({8400, 0})
    ->Args({8400, 1})
    ->Args({30000, 0})
    ->Unit(benchmark::kMicrosecond);

// The raw model run on the letterboxed bus input (IOBinding, outputs preallocated).
void BM_BackendRun(benchmark::State& state) {
  BusRun& run = BusRun::Get();
  for (auto _ : state) {
    auto outputs = run.backend->Run(std::span<const ConstTensorView>(&run.InputView(), 1));
    if (!outputs.ok()) Die(outputs.status());
    benchmark::DoNotOptimize(outputs);
  }
}
BENCHMARK(BM_BackendRun)->Unit(benchmark::kMillisecond)->UseRealTime();

// The whole detector on bus.jpg: read + decode + letterbox + run + decode + NMS + mapping.
void BM_DetectFileBus(benchmark::State& state) {
  DetectorOptions options;
  options.backend.intra_op_threads = kThreads;
  options.decode.jpeg_scale_min_side = static_cast<int>(state.range(0));
  static std::unique_ptr<Detector> detectors[2];
  auto& detector = detectors[state.range(0) > 0 ? 1 : 0];
  if (!detector) detector = Must(Detector::Create(kModel, options));
  StageTimings total;
  for (auto _ : state) {
    auto result = detector->DetectFile(kBus);
    if (!result.ok()) Die(result.status());
    total.decode_ms += result->timing.decode_ms;
    total.preprocess_ms += result->timing.preprocess_ms;
    total.infer_ms += result->timing.infer_ms;
    total.postprocess_ms += result->timing.postprocess_ms;
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["decode_ms"] = total.decode_ms / n;
  state.counters["preprocess_ms"] = total.preprocess_ms / n;
  state.counters["infer_ms"] = total.infer_ms / n;
  state.counters["postprocess_ms"] = total.postprocess_ms / n;
}
// 0: full decode (reference-exact); 320: opt-in DCT scaling (bus.jpg decodes at 1/2).
BENCHMARK(BM_DetectFileBus)->Arg(0)->Arg(320)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace zerodet

BENCHMARK_MAIN();

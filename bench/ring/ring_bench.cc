// Per-frame protocol cost of a frame ring, one thread: BeginFrame + Publish by the writer, then
// Read + Release by a work-group reader and by a broadcast subscriber. The pixels are written in
// place by the producer, so the cost must not grow with the frame size; the arguments are the
// frame sizes of `zerodet bench ring` (640x480, 1920x1080, 3840x2160 RGB).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "zerodet/ring/frame_ring.h"

namespace zerodet::ring {
namespace {

void BM_PublishAndTake(benchmark::State& state, ReaderMode mode) {
  const int width = static_cast<int>(state.range(0));
  const int height = static_cast<int>(state.range(1));
  RingOptions options;
  options.name = "bench-" + std::to_string(::getpid()) + "-" + std::to_string(width);
  options.slot_count = 4;
  options.slot_bytes = SlotBytesFor(width, height, PixelFormat::kRGB8);
  auto writer = RingWriter::Open(options);
  if (!writer.ok()) {
    state.SkipWithError(writer.status().ToString().c_str());
    return;
  }
  ReaderOptions reader_options;
  reader_options.ring_name = options.name;
  reader_options.mode = mode;
  auto reader = RingReader::Attach(reader_options);
  if (!reader.ok()) {
    state.SkipWithError(reader.status().ToString().c_str());
    return;
  }
  FrameInfo info;
  info.width = width;
  info.height = height;
  info.stride = static_cast<uint32_t>(width * 3);
  info.pixel_format = PixelFormat::kRGB8;
  // Touch every slot once so page faults are not part of the measurement.
  for (int i = 0; i < options.slot_count; ++i) {
    auto slot = (*writer)->BeginFrame();
    std::memset(slot->data(), i, slot->size());
    (void)(*writer)->Publish(info);
    (void)(*reader)->Read(std::chrono::milliseconds(0));
  }
  for (auto _ : state) {
    auto slot = (*writer)->BeginFrame();
    if (!slot.ok()) {
      state.SkipWithError(slot.status().ToString().c_str());
      break;
    }
    slot->data()[0] = 1;
    (void)(*writer)->Publish(info);
    auto lease = (*reader)->Read(std::chrono::milliseconds(0));
    if (!lease.ok()) {
      state.SkipWithError(lease.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(lease->image().data[0]);
  }
}

BENCHMARK_CAPTURE(BM_PublishAndTake, work_group, ReaderMode::kWorkGroup)
    ->Args({640, 480})
    ->Args({1920, 1080})
    ->Args({3840, 2160});
BENCHMARK_CAPTURE(BM_PublishAndTake, broadcast, ReaderMode::kBroadcast)
    ->Args({640, 480})
    ->Args({1920, 1080})
    ->Args({3840, 2160});

}  // namespace
}  // namespace zerodet::ring

BENCHMARK_MAIN();

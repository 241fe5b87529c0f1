// Writer -> reader handoff of a decoded RGB frame between two processes, three ways: through a
// frame ring, through a Unix socket (the frame copied through the kernel), and through a JPEG
// file on tmpfs (encode, write, read, decode: the traditional path). `zerodet bench ring` runs
// them; the measuring code lives here so that the command is flag wiring.
//
// What each measures, from the moment the writer has the decoded frame to the moment the reader
// can use its pixels (and has run its consumer, when there is one):
//   ring:        Publish() -> Read() returns the lease (the producer decodes into the slot, so
//                the pixels are already in shared memory; the reader waits on the futex, or
//                spins first)
//   unix socket: write() of the frame -> the reader has all bytes in its own buffer
//   tmpfs JPEG:  JPEG encode + write -> the reader has read and decoded the file
// The writer waits for the reader's acknowledgement and a short gap before the next frame, so
// latencies do not include queueing behind earlier frames.
//
// Each call forks one reader process (tied to this one: it dies with it) and waits for it.
// Thread-safety: call from the benchmark's main thread, before it starts threads of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "zerodet/core/image.h"
#include "zerodet/core/status.h"

namespace zerodet::bench {

// Work the reader does on each frame it received (e.g. run a detector), inside the timing.
// False: the work failed (the measurement fails).
using FrameConsumer = std::function<bool(const ImageView&)>;

struct HandoffSettings {
  int iterations = 0;                  // frames handed over (and latencies returned)
  std::chrono::microseconds gap{200};  // the writer's pause before each frame
  std::chrono::microseconds spin{0};   // ring only: readers spin this long first (0..1 s)
  // Called once in the reader process before the first frame (not timed); returns the
  // per-frame work, or an empty function when it cannot (a model that does not load). Empty
  // make_consumer: no work.
  std::function<FrameConsumer()> make_consumer;
};

// One latency per frame, in nanoseconds. Errors: those of the ring, socket or file; kInternal
// when the reader process failed or stopped early.
Result<std::vector<int64_t>> MeasureRingHandoff(const Image& frame, const HandoffSettings& settings,
                                                const std::string& ring_name);
Result<std::vector<int64_t>> MeasureUnixSocketHandoff(const Image& frame,
                                                      const HandoffSettings& settings);
// `jpeg_path` should be on tmpfs (e.g. in a private directory under /dev/shm); it is removed
// at the end.
Result<std::vector<int64_t>> MeasureTmpfsJpegHandoff(const Image& frame,
                                                     const HandoffSettings& settings,
                                                     const std::filesystem::path& jpeg_path);

// Writes RGB8 `frame` as a JPEG (quality 90, 4:2:0) to `path`, through a temporary file renamed
// into place (a reader never sees half a file). Errors: kInternal (encoder), kIoError.
Status WriteJpeg(const Image& frame, const std::filesystem::path& path);

}  // namespace zerodet::bench

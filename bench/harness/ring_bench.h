// `zerodet bench ring` as a library call: frame handoff latency between processes through a
// ring, a Unix socket and a JPEG file on tmpfs (ring_handoff.h) for 640x480, 1920x1080 and
// 3840x2160 frames; then a 1080p frame to yolov8n detections in the reader process through the
// JPEG file and through the ring; last, the memory of N detector workers when frames are
// decoded once into a ring vs when every worker decodes for itself (process_memory.h).
//
// The frames are a real photo tiled to each size (JPEG cost depends on content). Scratch files
// go to a private directory (mode 0700) under /dev/shm that is removed at the end; rings are
// named bench-<pid>-...; every child process dies with the benchmark.
//
// Thread-safety: call from the main thread of a process that has started no other threads (it
// forks). One run at a time per process.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "zerodet/core/status.h"

namespace zerodet::bench {

struct RingBenchOptions {
  std::string image = "../shared/images/bus.jpg";       // photo tiled to each frame size
  std::string model = "../shared/models/yolov8n.onnx";  // end to end and memory
  int ring_iterations = 2000;                           // frames per size through the ring
  int socket_iterations = 300;                          // ... through the Unix socket
  int jpeg_iterations = 40;                             // ... through JPEG files on tmpfs
  int e2e_iterations = 10;                              // frames per path end to end (0: skip)
  int spin_us = 1000;      // also run the ring with readers spinning this long (0: skip)
  int threads = 2;         // ONNX Runtime intra-op threads, end to end
  int memory_workers = 4;  // workers of the memory comparison (0: skip)
};

// Runs the benchmark and returns what it measured (the JSON `zerodet bench ring` prints).
// Errors: the photo or model that cannot be read, a ring, file or process that fails.
Result<nlohmann::json> RunRingBench(const RingBenchOptions& options);

}  // namespace zerodet::bench

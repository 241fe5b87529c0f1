// `zerodet bench ring`: frame handoff latency between two processes through a frame ring, a
// Unix socket and a JPEG file on tmpfs, a 1080p frame to detections through the ring vs a file,
// and the memory of N workers sharing decoded frames vs decoding each. Flag wiring around the
// bench harness (bench/harness/ring_bench.h, which says what each number measures); prints one
// JSON object.
#include <cstdio>
#include <memory>

#include "command_registry.h"
#include "ring_bench.h"

namespace zerodet::cli {
namespace {

const CommandRegistrar kRegistrar("bench-ring", [](CLI::App& app) {
  CLI::App* cmd = BenchGroup(app)->add_subcommand(
      "ring", "Frame handoff latency between processes: ring vs Unix socket vs JPEG on tmpfs");
  auto options = std::make_shared<bench::RingBenchOptions>();
  // Paths are checked by the benchmark itself, whose errors name them in one line.
  cmd->add_option("--image", options->image, "Photo tiled to each frame size")
      ->capture_default_str();
  cmd->add_option("--model", options->model, "Model for the end-to-end and memory comparisons")
      ->capture_default_str();
  cmd->add_option("--ring-iterations", options->ring_iterations, "Frames per size through the ring")
      ->check(CLI::Range(10, 1000000));
  cmd->add_option("--socket-iterations", options->socket_iterations,
                  "Frames per size through the Unix socket")
      ->check(CLI::Range(10, 1000000));
  cmd->add_option("--jpeg-iterations", options->jpeg_iterations,
                  "Frames per size through JPEG files on tmpfs")
      ->check(CLI::Range(10, 1000000));
  cmd->add_option("--e2e-iterations", options->e2e_iterations,
                  "Frames per path for the end-to-end comparison (0: skip it)")
      ->check(CLI::Range(0, 10000));
  cmd->add_option("--memory-workers", options->memory_workers,
                  "Workers for the decode-once vs each-decodes memory comparison (0: skip it)")
      ->check(CLI::Range(0, 16));
  cmd->add_option("--threads", options->threads, "ONNX Runtime intra-op threads (end-to-end)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--spin-us", options->spin_us,
                  "Also run the ring with readers spinning this long before sleeping (0: skip)")
      ->check(CLI::Range(0, 1000000));
  SetRun(cmd, [options]() -> Status {
    ZD_ASSIGN_OR_RETURN(const nlohmann::json out, bench::RunRingBench(*options));
    // Replaces invalid UTF-8 (a path given on the command line) instead of throwing.
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return Status::Ok();
  });
});

}  // namespace
}  // namespace zerodet::cli

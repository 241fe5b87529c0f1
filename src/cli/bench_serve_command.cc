// `zerodet bench serve`: what the HTTP server adds to a request, as one JSON object
// (bench/harness/serve_bench.h measures): infer on one preprocessed tensor as JSON and as binary
// tensor data next to the model's direct Run, and /v1/detect against the detector in process
// (and through the dynamic batcher with --batched-model).
#include <memory>

#include "command_registry.h"
#include "detect_common.h"
#include "serve_bench.h"
#include "zerodet/infer/backend.h"

namespace zerodet::cli {
namespace {

const CommandRegistrar kRegistrar("bench serve", [](CLI::App& app) {
  auto args = std::make_shared<bench::ServeBenchOptions>();
  auto* cmd = BenchGroup(app)->add_subcommand(
      "serve",
      "HTTP server overhead: infer as JSON, binary, through shared memory and as a store "
      "object vs the direct Run; /v1/detect vs in-process detection");
  cmd->add_option("--model", args->model, "ONNX model (default: the shared yolov8n.onnx)");
  cmd->add_option("--image", args->image, "JPEG for /v1/detect (default: the shared dog.jpg)");
  cmd->add_option("--batched-model", args->batched_model,
                  "The model with a dynamic batch (scripts/make_dynamic_batch.py): also measure "
                  "/v1/detect through the dynamic batcher")
      ->check(CLI::ExistingFile);
  cmd->add_option("--batch-delay-us", args->batch_delay_us,
                  "max_queue_delay_us of the batched model")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  cmd->add_option("--requests", args->requests, "Requests per measurement")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--threads", args->threads, "ONNX Runtime intra-op threads (0 = one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0, kMaxBackendThreads));
  SetRun(cmd, [args]() -> Status {
    ZD_ASSIGN_OR_RETURN(nlohmann::ordered_json out, bench::MeasureServe(*args));
    PrintJsonLine(out);
    return Status::Ok();
  });
});

}  // namespace
}  // namespace zerodet::cli

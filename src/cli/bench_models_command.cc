// `zerodet bench models --repo REPO`: what the model manager costs, as one JSON object
// (bench/harness/models_bench.h measures): cold loads from the .onnx and from the
// optimized-graph cache next to one Run, cache-hit Acquire + release with 1 and 2 threads, and
// a Zipf request stream with every model resident vs a budget of 2.
#include <memory>
#include <string>

#include "command_registry.h"
#include "detect_common.h"
#include "models_bench.h"
#include "zerodet/infer/backend.h"

namespace zerodet::cli {
namespace {

const CommandRegistrar kRegistrar("bench models", [](CLI::App& app) {
  auto args = std::make_shared<bench::ModelsBenchOptions>();
  auto* cmd = BenchGroup(app)->add_subcommand(
      "models",
      "Model manager: cold loads (.onnx vs optimized-graph cache), cache hits, "
      "a Zipf stream all-resident vs a budget of 2");
  cmd->add_option("--repo", args->repo, "Model repository")->required();
  cmd->add_option("--image", args->image,
                  "Image of the stream's requests (default: dog.jpg of the shared test data)");
  cmd->add_option("--rounds", args->rounds, "Cold loads per model and source")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  cmd->add_option("--hit-iterations", args->hit_iterations, "Acquire + release pairs per thread")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000000));
  cmd->add_option("--requests", args->stream_requests, "Requests of the Zipf stream")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--zipf", args->zipf_exponent, "Zipf exponent of model popularity")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--threads", args->threads,
                  "Shared ONNX Runtime intra-op threads (0 = one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0, kMaxBackendThreads));
  SetRun(cmd, [args]() -> Status {
    ZD_ASSIGN_OR_RETURN(nlohmann::ordered_json out, bench::MeasureModels(*args));
    PrintJsonLine(out);
    return Status::Ok();
  });
});

}  // namespace
}  // namespace zerodet::cli

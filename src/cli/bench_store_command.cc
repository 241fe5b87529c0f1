// `zerodet bench store`: per-sample load time of a dataset's images as model inputs (file +
// decode + letterbox vs store socket get vs fast-path get), reader-process throughput, and the
// bytes read side by side with LMDB on /dev/shm under each arena backing the machine allows.
// Prints one JSON object. The measuring code is bench/harness/store_bench.h.
#include <cstdio>
#include <memory>
#include <string>

#include "command_registry.h"
#include "store_bench.h"

namespace zerodet::cli {
namespace {

const CommandRegistrar kRegistrar("bench-store", [](CLI::App& app) {
  auto options = std::make_shared<bench::StoreBenchOptions>();
  options->source = "../shared/coco-val-tiny";
  auto no_backings = std::make_shared<bool>(false);
  auto* cmd = BenchGroup(app)->add_subcommand(
      "store",
      "Per-sample load time: file+decode+letterbox vs store socket get vs fast get; bytes read "
      "side by side with LMDB");
  cmd->add_option("--source", options->source, "Image directory or COCO annotation .json");
  cmd->add_option("--size", options->size, "Letterbox size")->check(CLI::Range(32, 4096));
  cmd->add_option("--file-passes", options->file_passes, "Passes over the images for (a)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--socket-passes", options->socket_passes, "Passes for (b)")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--fast-passes", options->fast_passes, "Passes for (c)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--touch-passes", options->touch_passes,
                  "Page-touch passes per arena backing (store and LMDB alternating)")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--reader-seconds", options->reader_seconds,
                  "Duration of each reader-process throughput run")
      ->check(CLI::Range(0.05, 60.0));
  cmd->add_flag("--no-backings", *no_backings,
                "Skip the page-touch comparison of arena backings and LMDB");
  SetRun(cmd, [options, no_backings]() -> Status {
    options->compare_backings = !*no_backings;
    ZD_ASSIGN_OR_RETURN(nlohmann::json result, bench::RunStoreBenchmark(*options));
    std::printf("%s\n", result.dump(2).c_str());
    return Status::Ok();
  });
});

}  // namespace
}  // namespace zerodet::cli

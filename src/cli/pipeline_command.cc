// `zerodet pipeline CONFIG.yaml`: runs the multi-process detection pipeline the file describes
// (see include/zerodet/pipeline/config.h) and writes JSON lines of detections. Ctrl-C stops the
// sources; the workers finish the frames already decoded. A summary goes to stderr as JSON.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "command_registry.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/pipeline/config.h"
#include "zerodet/pipeline/pipeline.h"

namespace zerodet::cli {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) {
  g_stop.store(true);
}

nlohmann::ordered_json SummaryJson(const pipeline::PipelineSummary& summary) {
  nlohmann::ordered_json out;
  for (const auto& [name, s] : summary.sources) {
    out["sources"][name] = {{"frames_published", s.frames_published},
                            {"frames_dropped", s.frames_dropped},
                            {"frames_overwritten", s.frames_overwritten},
                            {"ingest_restarts", s.ingest_restarts}};
  }
  for (const auto& [name, m] : summary.models) {
    out["models"][name] = {{"results", m.results},
                           {"frames_lost_in_flight", m.frames_lost_in_flight},
                           {"worker_restarts", m.worker_restarts}};
  }
  return out;
}

const CommandRegistrar kRegistrar("pipeline", [](CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "pipeline", "Run the multi-process detection pipeline described by a YAML file");
  auto config_path = std::make_shared<std::string>();
  // No CLI11 existence check: LoadPipelineConfig's error names the file in zerodet's one-line
  // format (and refuses a FIFO without waiting on it).
  cmd->add_option("config", *config_path, "Pipeline YAML (sources, models, output)")->required();
  SetRun(cmd, [config_path]() -> Status {
    ZD_ASSIGN_OR_RETURN(pipeline::PipelineConfig config,
                        pipeline::LoadPipelineConfig(*config_path));
    struct sigaction action = {};
    action.sa_handler = OnSignal;
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    pipeline::PipelineOptions options;
    options.stop = &g_stop;
    ZD_ASSIGN_OR_RETURN(pipeline::PipelineSummary summary, pipeline::RunPipeline(config, options));
    std::fprintf(stderr, "%s\n", ToJsonLine(SummaryJson(summary)).c_str());
    return Status::Ok();
  });
});

}  // namespace
}  // namespace zerodet::cli

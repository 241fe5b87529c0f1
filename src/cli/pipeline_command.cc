// `zerodet pipeline CONFIG.yaml`: runs the multi-process detection pipeline the file describes
// (see include/zerodet/pipeline/config.h) and writes JSON lines of detections. Ctrl-C stops the
// sources; the workers finish the frames already decoded. A summary goes to stderr as JSON.
// `zerodet pipeline switch CONFIG SOURCE MODEL[:VERSION]` and `zerodet pipeline models CONFIG`
// talk to the running pipeline over its control socket (include/zerodet/pipeline/control.h).
// With --metrics HOST:PORT the live metrics (pipeline_metrics.h) are served to Prometheus at
// /metrics; the port goes to stderr as {"metrics_port":N} (stdout carries the results).
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "command_registry.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/metrics/exposer.h"
#include "zerodet/pipeline/config.h"
#include "zerodet/pipeline/control.h"
#include "zerodet/pipeline/pipeline.h"
#include "zerodet/pipeline/pipeline_metrics.h"

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
  if (summary.mqtt_published > 0 || summary.mqtt_dropped > 0) {
    out["mqtt"] = {{"published", summary.mqtt_published}, {"dropped", summary.mqtt_dropped}};
  }
  return out;
}

nlohmann::ordered_json AssignmentJson(const pipeline::ModelAssignment& a) {
  return {
      {"entry", a.entry}, {"source", a.source}, {"model", a.model}, {"switchable", a.switchable}};
}

// The control socket of the pipeline running `config_path`.
Result<std::string> ControlSocketOf(const std::string& config_path) {
  ZD_ASSIGN_OR_RETURN(pipeline::PipelineConfig config, pipeline::LoadPipelineConfig(config_path));
  if (!config.control_socket || config.control_socket->empty()) {
    return FailedPreconditionError(config_path + " turns the control socket off (control.socket)");
  }
  return *config.control_socket;
}

void AddControlCommands(CLI::App* cmd) {
  struct SwitchFlags {
    std::string config;
    pipeline::SwitchRequest request;
    int64_t timeout_ms = 180'000;
  };
  auto flags = std::make_shared<SwitchFlags>();
  CLI::App* sw = cmd->add_subcommand(
      "switch",
      "Switch a source of a running pipeline to another repository model; every worker loads "
      "it while the current one serves, then all take the next frames with it");
  sw->add_option("config", flags->config, "The running pipeline's YAML")->required();
  sw->add_option("source", flags->request.source, "Source name")->required();
  sw->add_option("model", flags->request.model, "NAME[:VERSION] of the pipeline's repository")
      ->required();
  sw->add_option("--entry", flags->request.entry,
                 "Model entry (models[].name) to switch, when several repository models read "
                 "the source");
  sw->add_option("--timeout-ms", flags->timeout_ms, "How long to wait for the outcome");
  SetRun(sw, [flags]() -> Status {
    ZD_ASSIGN_OR_RETURN(const std::string socket, ControlSocketOf(flags->config));
    ZD_ASSIGN_OR_RETURN(
        pipeline::ModelAssignment assignment,
        pipeline::SwitchModel(socket, flags->request, Deadline::FromTimeoutMs(flags->timeout_ms)));
    std::printf("%s\n", ToJsonLine(AssignmentJson(assignment)).c_str());
    return Status::Ok();
  });

  auto models_config = std::make_shared<std::string>();
  CLI::App* models =
      cmd->add_subcommand("models", "List which model each source of a running pipeline uses");
  models->add_option("config", *models_config, "The running pipeline's YAML")->required();
  SetRun(models, [models_config]() -> Status {
    ZD_ASSIGN_OR_RETURN(const std::string socket, ControlSocketOf(*models_config));
    ZD_ASSIGN_OR_RETURN(std::vector<pipeline::ModelAssignment> assignments,
                        pipeline::QueryModels(socket, Deadline::After(std::chrono::seconds(10))));
    for (const pipeline::ModelAssignment& a : assignments) {
      std::printf("%s\n", ToJsonLine(AssignmentJson(a)).c_str());
    }
    return Status::Ok();
  });
}

const CommandRegistrar kRegistrar("pipeline", [](CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "pipeline", "Run the multi-process detection pipeline described by a YAML file");
  auto config_path = std::make_shared<std::string>();
  auto metrics_address = std::make_shared<std::string>("off");
  // No CLI11 existence check: LoadPipelineConfig's error names the file in zerodet's one-line
  // format (and refuses a FIFO without waiting on it). Not required: the control subcommands
  // take their own.
  cmd->add_option("config", *config_path, "Pipeline YAML (sources, models, output)");
  cmd->add_option("--metrics", *metrics_address,
                  "Serve the pipeline's live Prometheus metrics at http://HOST:PORT/metrics "
                  "(port 0: any free port, printed on stderr as {\"metrics_port\":N}); off by "
                  "default")
      ->capture_default_str();
  AddControlCommands(cmd);
  cmd->require_subcommand(0, 1);
  SetRun(cmd, [cmd, config_path, metrics_address]() -> Status {
    if (cmd->get_subcommands().size() == 1) return Status::Ok();  // a control command ran
    if (config_path->empty()) {
      return InvalidArgumentError(
          "pipeline: a config file is required (zerodet pipeline "
          "CONFIG.yaml)");
    }
    ZD_ASSIGN_OR_RETURN(pipeline::PipelineConfig config,
                        pipeline::LoadPipelineConfig(*config_path));
    struct sigaction action = {};
    action.sa_handler = OnSignal;
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    pipeline::PipelineOptions options;
    options.stop = &g_stop;
    pipeline::PipelineMetrics metrics;
    // The exposer's thread is the one other thread while the supervisor forks: the children
    // never touch the metrics (pipeline.h). They do inherit its listening socket, unused.
    std::unique_ptr<metrics::MetricsExposer> exposer;
    if (*metrics_address != "off") {
      ZD_ASSIGN_OR_RETURN(exposer,
                          metrics::MetricsExposer::Start(metrics.registry(), *metrics_address));
      std::fprintf(stderr, "{\"metrics_port\":%d}\n", static_cast<int>(exposer->port()));
      std::fflush(stderr);
      options.metrics = &metrics;
    }
    ZD_ASSIGN_OR_RETURN(pipeline::PipelineSummary summary, pipeline::RunPipeline(config, options));
    std::fprintf(stderr, "%s\n", ToJsonLine(SummaryJson(summary)).c_str());
    return Status::Ok();
  });
});

}  // namespace
}  // namespace zerodet::cli

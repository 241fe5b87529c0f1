// `zerodet models --repo REPO [--json] [--load]`: the repository's index, one line per model
// version (or per model when the model itself is broken): its state, the config source, and why
// it cannot serve. With --load, every model's default versions (a traffic split's versions) are
// loaded through the model manager and the state is what loading gave (ready or failed, with the
// load time and the memory it took).
#include <cstdio>
#include <memory>
#include <string>

#include "command_registry.h"
#include "detect_common.h"
#include "zerodet/models/model_manager.h"
#include "zerodet/models/repository.h"

namespace zerodet::cli {
namespace {

struct ModelsArgs {
  std::string repo;
  bool json = false;
  bool load = false;
  int threads = 0;
};

// The state of a version from the index alone (nothing loaded).
std::string IndexState(const ModelEntry& model, const VersionEntry& version) {
  if (!model.config_ok) return "failed";
  if (!version.status.ok()) return "unavailable";
  return version.served ? "available" : "not served";
}

Status RunModels(const ModelsArgs& args) {
  ManagerOptions options;
  options.repository = args.repo;
  options.watch = false;
  options.thread_pool.intra_op_threads = args.threads;
  RepositoryIndex index;
  std::unique_ptr<ModelManager> manager;
  if (args.load) {
    ZD_ASSIGN_OR_RETURN(manager, ModelManager::Create(options));
    for (const ModelEntry& model : manager->Index().models) {
      if (model.config_ok && !model.served.empty()) (void)manager->Load(model.name);
    }
    index = manager->Index();
  } else {
    RepositoryScanner scanner(args.repo, {std::chrono::milliseconds(1000)});
    ZD_ASSIGN_OR_RETURN(index, scanner.Scan());
  }
  const ManagerStats stats = manager ? manager->Stats() : ManagerStats{};
  const auto loaded_state = [&](const std::string& name, int64_t version) -> const VersionStats* {
    for (const ModelStats& m : stats.models) {
      if (m.name != name) continue;
      for (const VersionStats& v : m.versions) {
        if (v.version == version) return &v;
      }
    }
    return nullptr;
  };

  nlohmann::ordered_json models = nlohmann::ordered_json::array();
  if (!args.json) {
    std::printf("%-24s %-8s %-12s %-24s %s\n", "MODEL", "VERSION", "STATE", "CONFIG", "REASON");
  }
  for (const ModelEntry& model : index.models) {
    nlohmann::ordered_json versions = nlohmann::ordered_json::array();
    const auto line = [&](const std::string& version, const std::string& state,
                          const std::string& reason) {
      if (!args.json) {
        std::printf("%-24s %-8s %-12s %-24s %s\n", model.name.c_str(), version.c_str(),
                    state.c_str(), model.config.source.c_str(), reason.c_str());
      }
    };
    if (model.versions.empty() || !model.config_ok) {
      line("-", model.status.ok() ? "available" : "failed", model.status.message());
    }
    for (const VersionEntry& version : model.versions) {
      std::string state = IndexState(model, version);
      std::string reason = version.status.ok() ? "" : version.status.message();
      nlohmann::ordered_json v = {{"version", version.version}, {"served", version.served}};
      if (const VersionStats* loaded = loaded_state(model.name, version.version)) {
        state = std::string(ModelStateName(loaded->state));
        if (!loaded->reason.empty()) reason = loaded->reason;
        v["bytes"] = loaded->charge;
        v["from_graph_cache"] = loaded->from_graph_cache;
      }
      v["state"] = state;
      if (!reason.empty()) v["reason"] = reason;
      if (model.config_ok) line(std::to_string(version.version), state, reason);
      versions.push_back(std::move(v));
    }
    for (const std::string& unsupported : model.config.unsupported) {
      line("-", "warning", unsupported);
    }
    nlohmann::ordered_json entry = {{"name", model.name},
                                    {"config_source", model.config.source},
                                    {"status", model.status.ok() ? "ok" : "error"}};
    if (!model.status.ok()) entry["reason"] = model.status.message();
    entry["served"] = model.served;
    entry["unsupported"] = model.config.unsupported;
    entry["versions"] = versions;
    models.push_back(std::move(entry));
  }
  if (args.json) {
    nlohmann::ordered_json out = {{"repository", args.repo}, {"models", models}};
    if (manager) out["stats"] = ToJson(stats);
    PrintJsonLine(out);
  }
  return Status::Ok();
}

const CommandRegistrar kRegistrar("models", [](CLI::App& app) {
  auto args = std::make_shared<ModelsArgs>();
  auto* cmd = app.add_subcommand(
      "models", "List a model repository: models, versions, state, config source, errors");
  cmd->add_option("--repo", args->repo, "Model repository (REPO/<model>/<version>/model.onnx)")
      ->required();
  cmd->add_flag("--json", args->json, "One JSON object instead of a table");
  cmd->add_flag("--load", args->load,
                "Load every model's default version(s) and report ready/failed, load time, bytes");
  cmd->add_option("--threads", args->threads,
                  "Shared ONNX Runtime intra-op threads for --load (0 = one per core)")
      ->check(CLI::Range(0, kMaxBackendThreads));
  SetRun(cmd, [args] { return RunModels(*args); });
});

}  // namespace
}  // namespace zerodet::cli

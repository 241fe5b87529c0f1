// `zerodet store`: runs a shared-memory object store (see include/zerodet/store/server.h) until
// SIGINT or SIGTERM. Clients connect with StoreClient::Connect(--socket); `zerodet preload`
// fills it with a dataset.
#include <signal.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <string>

#include "command_registry.h"
#include "zerodet/store/server.h"

namespace zerodet::cli {
namespace {

std::atomic<store::StoreServer*> g_server{nullptr};

void OnSignal(int) {
  if (store::StoreServer* server = g_server.load()) server->Shutdown();
}

// "1073741824", "512M", "4G", "1.5GiB" -> bytes. Returns false for anything else.
bool ParseBytes(const std::string& text, uint64_t* bytes) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    return false;
  }
  std::string unit = text.substr(used);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double multiple = 1;
  if (unit.empty() || unit == "B") {
    multiple = 1;
  } else if (unit == "K" || unit == "KB" || unit == "KIB") {
    multiple = 1024.0;
  } else if (unit == "M" || unit == "MB" || unit == "MIB") {
    multiple = 1024.0 * 1024;
  } else if (unit == "G" || unit == "GB" || unit == "GIB") {
    multiple = 1024.0 * 1024 * 1024;
  } else {
    return false;
  }
  if (!(value > 0) || value * multiple > 1e15) return false;
  *bytes = static_cast<uint64_t>(value * multiple);
  return true;
}

struct StoreArgs {
  std::string socket;
  std::string capacity;
  bool hugepages = false;
  std::string group;
  uint32_t max_objects = 65536;
  uint32_t max_clients = 256;
};

int RunStore(const StoreArgs& args) {
  store::StoreOptions options;
  options.socket_path = args.socket;
  if (!ParseBytes(args.capacity, &options.capacity)) {
    std::fprintf(stderr,
                 "error: --capacity '%s' not understood: give bytes, optionally with K, M or G "
                 "(e.g. 4G)\n",
                 args.capacity.c_str());
    return 2;
  }
  options.hugepages = args.hugepages;
  options.group = args.group;
  options.max_objects = args.max_objects;
  options.max_clients = args.max_clients;
  auto server = store::StoreServer::Create(options);
  if (!server.ok()) {
    std::fprintf(stderr, "error: %s\n", server.status().ToString().c_str());
    return 1;
  }
  g_server.store(server->get());
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  Status status = (*server)->Run();
  g_server.store(nullptr);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}

const CommandRegistrar kRegistrar("store", [](CLI::App& app) {
  auto args = std::make_shared<StoreArgs>();
  auto* cmd = app.add_subcommand(
      "store", "Run a shared-memory object store serving clients on a Unix-domain socket");
  cmd->add_option("--socket", args->socket, "Unix-domain socket path to serve")->required();
  cmd->add_option("--capacity", args->capacity, "Arena size in bytes (K, M, G suffixes)")
      ->required();
  cmd->add_flag("--hugepages", args->hugepages,
                "Back the arena with 2 MiB huge pages (reserve them: sysctl vm.nr_hugepages)");
  cmd->add_option("--group", args->group,
                  "Also serve members of this group (socket mode 0660 instead of 0600)");
  cmd->add_option("--max-objects", args->max_objects, "Objects alive at once")
      ->check(CLI::Range(1u, 1u << 26));
  cmd->add_option("--max-clients", args->max_clients, "Connected clients at once")
      ->check(CLI::Range(1u, 4096u));
  SetRun(cmd, [args] { return ExitCodeStatus(RunStore(*args)); });
});

}  // namespace
}  // namespace zerodet::cli

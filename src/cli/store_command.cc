// `zerodet store`: runs a shared-memory object store (see include/zerodet/store/server.h) until
// SIGINT or SIGTERM. Clients connect with StoreClient::Connect(--socket); `zerodet preload`
// fills it with a dataset.
#include <signal.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <memory>
#include <string>

#include "byte_size_flag.h"
#include "command_registry.h"
#include "zerodet/store/server.h"

namespace zerodet::cli {
namespace {

std::atomic<store::StoreServer*> g_server{nullptr};

void OnSignal(int) {
  if (store::StoreServer* server = g_server.load()) server->Shutdown();
}

struct StoreArgs {
  std::string socket;
  std::string capacity;
  bool hugepages = false;
  bool populate = false;
  std::string group;
  std::string writer_group;
  uint32_t max_objects = 65536;
  uint32_t max_clients = 256;
  double hello_timeout_s = 5;
};

Status RunStore(const StoreArgs& args) {
  store::StoreOptions options;
  options.socket_path = args.socket;
  ZD_ASSIGN_OR_RETURN(options.capacity, ParseBytes("--capacity", args.capacity));
  options.hugepages = args.hugepages;
  options.populate = args.populate;
  options.group = args.group;
  options.writer_group = args.writer_group;
  options.max_objects = args.max_objects;
  options.max_clients = args.max_clients;
  options.hello_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(args.hello_timeout_s * 1000));
  ZD_ASSIGN_OR_RETURN(std::unique_ptr<store::StoreServer> server,
                      store::StoreServer::Create(options));
  g_server.store(server.get());
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  Status status = server->Run();
  g_server.store(nullptr);
  return status;
}

const CommandRegistrar kRegistrar("store", [](CLI::App& app) {
  auto args = std::make_shared<StoreArgs>();
  auto* cmd = app.add_subcommand(
      "store", "Run a shared-memory object store serving clients on a Unix-domain socket");
  cmd->add_option("--socket", args->socket, "Unix-domain socket path to serve")->required();
  cmd->add_option("--capacity", args->capacity,
                  "Arena size in bytes (K, M, G suffixes); at most what the machine (memory + "
                  "swap, or its memory cgroup) can back")
      ->required();
  cmd->add_flag("--hugepages", args->hugepages,
                "Back the arena with 2 MiB huge pages (reserve them: sysctl vm.nr_hugepages)");
  cmd->add_flag("--populate", args->populate,
                "Fault the whole arena in at start: commits its memory now (and gives huge pages "
                "where transparent huge pages are enabled for shared memory)");
  cmd->add_option("--group", args->group,
                  "Also serve members of this group, primary or supplementary (socket mode 0660 "
                  "instead of 0600)");
  cmd->add_option("--writer-group", args->writer_group,
                  "Give read-write access only to the store's user, root and members of this "
                  "group (others may connect read-only)");
  cmd->add_option("--max-objects", args->max_objects,
                  "Objects alive at once (memory follows the objects in use)")
      ->check(CLI::Range(1u, 1u << 26));
  cmd->add_option("--max-clients", args->max_clients,
                  "Open connections at once, counting those that have not said hello yet")
      ->check(CLI::Range(1u, 4096u));
  cmd->add_option("--hello-timeout", args->hello_timeout_s,
                  "Seconds a new connection has to say hello before it is dropped")
      ->check(CLI::Range(0.01, 3600.0));
  SetRun(cmd, [args] { return RunStore(*args); });
});

}  // namespace
}  // namespace zerodet::cli

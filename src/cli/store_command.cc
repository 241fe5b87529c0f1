// `zerodet store`: runs a shared-memory object store (see include/zerodet/store/server.h) until
// SIGINT or SIGTERM. Clients connect with StoreClient::Connect(--socket); `zerodet preload`
// fills it with a dataset. With --metrics HOST:PORT the store's statistics are served to
// Prometheus at /metrics (zerodet_store_*; the port goes to stdout as {"metrics_port":N}).
#include <signal.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "byte_size_flag.h"
#include "command_registry.h"
#include "zerodet/metrics/exposer.h"
#include "zerodet/metrics/registry.h"
#include "zerodet/store/server.h"

namespace zerodet::cli {
namespace {

std::atomic<store::StoreServer*> g_server{nullptr};

void OnSignal(int) {
  if (store::StoreServer* server = g_server.load()) server->Shutdown();
}

struct StoreArgs {
  std::string socket;
  std::string metrics = "off";
  std::string capacity;
  bool hugepages = false;
  bool populate = false;
  std::string group;
  std::string writer_group;
  uint32_t max_objects = 65536;
  uint32_t max_clients = 256;
  double hello_timeout_s = 5;
};

// The store's metrics at one scrape, from StoreServer::Stats(): the copy its event loop
// publishes after every pass (server.h). Not read through a StoreClient of this process, which
// would hold one of the store's client slots, count itself among the clients it reports, and
// cost a socket round trip per scrape.
std::vector<prometheus::MetricFamily> StoreFamilies(const store::StoreServer& server) {
  using prometheus::MetricType;
  const store::StoreStats stats = server.Stats();
  std::vector<prometheus::MetricFamily> out;
  const auto add = [&out](const char* name, const char* help, MetricType type, uint64_t value) {
    prometheus::MetricFamily family = metrics::MakeFamily(name, help, type);
    metrics::AddSample(family, static_cast<double>(value));
    out.push_back(std::move(family));
  };
  add("zerodet_store_capacity_bytes", "Size of the store's arena.", MetricType::Gauge,
      stats.capacity);
  add("zerodet_store_allocated_bytes",
      "Arena bytes allocated to live objects (allocator granularity).", MetricType::Gauge,
      stats.bytes_allocated);
  add("zerodet_store_pinned_bytes", "Arena bytes of pinned objects (never evicted).",
      MetricType::Gauge, stats.pinned_bytes);
  add("zerodet_store_unsealed_bytes", "Arena bytes of objects being created.", MetricType::Gauge,
      stats.unsealed_bytes);
  add("zerodet_store_pending_delete_bytes",
      "Arena bytes of deleted objects still referenced by a client.", MetricType::Gauge,
      stats.pending_delete_bytes);
  add("zerodet_store_largest_free_block_bytes",
      "Largest object that fits without evicting anything.", MetricType::Gauge,
      stats.largest_free_block);
  add("zerodet_store_objects",
      "Live objects: sealed, being created, and deleted but still referenced.", MetricType::Gauge,
      stats.objects);
  add("zerodet_store_sealed_objects", "Sealed (readable) objects.", MetricType::Gauge,
      stats.sealed_objects);
  add("zerodet_store_unsealed_objects", "Objects being created.", MetricType::Gauge,
      stats.unsealed_objects);
  add("zerodet_store_pinned_objects", "Pinned objects (never evicted).", MetricType::Gauge,
      stats.pinned_objects);
  add("zerodet_store_pending_delete_objects",
      "Deleted objects freed when their last reference goes.", MetricType::Gauge,
      stats.pending_deletes);
  add("zerodet_store_max_objects", "Objects the store holds at most at once (--max-objects).",
      MetricType::Gauge, stats.max_objects);
  add("zerodet_store_clients", "Connected clients (connections that completed the hello).",
      MetricType::Gauge, stats.clients);
  add("zerodet_store_connections", "Open connections, including those before their hello.",
      MetricType::Gauge, stats.connections);
  add("zerodet_store_waiting_gets", "Gets waiting for an object to be sealed.", MetricType::Gauge,
      stats.waiting_gets);
  add("zerodet_store_evictions_total", "Objects evicted to make room.", MetricType::Counter,
      stats.evictions);
  add("zerodet_store_creates_total", "Objects created.", MetricType::Counter, stats.creates);
  add("zerodet_store_socket_gets_total",
      "Gets that went through the socket (fast-path gets in shared memory are not counted).",
      MetricType::Counter, stats.socket_gets);
  add("zerodet_store_refused_connections_total",
      "Connections refused: not authorized, too many, out of descriptors.", MetricType::Counter,
      stats.refused_connections);
  add("zerodet_store_hello_timeouts_total", "Connections dropped for not saying hello in time.",
      MetricType::Counter, stats.hello_timeouts);
  return out;
}

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
  // Declared after the server: destroyed (stopped) before it, so no scrape reads a store
  // that is gone.
  std::unique_ptr<metrics::MetricsExposer> exposer;
  if (args.metrics != "off") {
    auto registry = std::make_shared<metrics::Registry>();
    registry->AddCollector([store = server.get()] { return StoreFamilies(*store); });
    ZD_ASSIGN_OR_RETURN(exposer, metrics::MetricsExposer::Start(registry, args.metrics));
    // For scripts and tests that ask for port 0.
    std::printf("{\"metrics_port\":%d}\n", static_cast<int>(exposer->port()));
    std::fflush(stdout);
  }
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
  cmd->add_option("--metrics", args->metrics,
                  "Serve the store's Prometheus metrics at http://HOST:PORT/metrics (port 0: any "
                  "free port, printed as {\"metrics_port\":N}); off by default")
      ->capture_default_str();
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

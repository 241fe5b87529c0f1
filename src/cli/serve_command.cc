// `zerodet serve --repo REPO`: the inference server. Models of the repository load on first use
// through the model manager; HTTP and gRPC speak KServe v2 (HTTP also /v1/detect). SIGTERM or
// Ctrl-C: stop accepting, let the requests in flight finish (at most --drain-seconds), exit 0.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "byte_size_flag.h"
#include "command_registry.h"
#include "zerodet/core/file.h"
#include "zerodet/metrics/exposer.h"
#include "zerodet/models/model_manager.h"
#include "zerodet/server/grpc_server.h"
#include "zerodet/server/http_server.h"
#include "zerodet/server/inference_service.h"

namespace zerodet::cli {
namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) {
  g_stop.store(true);
}

struct ServeArgs {
  std::string repo;
  std::string http = "127.0.0.1:8000";
  std::string grpc = "127.0.0.1:8001";
  std::string metrics = "off";
  bool allow_client_shm = false;
  std::string store;
  uint32_t max_queue = 0;
  int queue_timeout_ms = 0;
  std::string tls_cert;
  std::string tls_key;
  std::string token_file;
  uint64_t max_models = 0;
  std::string max_bytes;
  std::string graph_cache;
  std::vector<std::string> preload;
  int load_threads = 2;
  int request_threads = 4;
  int threads = 0;
  int drain_seconds = 30;
  std::string max_body = "64M";
  int request_timeout_ms = 60000;
};

// "HOST:PORT" -> address and port. Errors: kInvalidArgument.
Result<std::pair<std::string, uint16_t>> ParseListen(const std::string& flag,
                                                     const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return InvalidArgumentError(flag + " '" + text + "' must be HOST:PORT (e.g. 127.0.0.1:8000)");
  }
  std::string host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]:8000
  }
  int port = -1;
  try {
    size_t used = 0;
    port = std::stoi(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1) port = -1;
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535) {
    return InvalidArgumentError(flag + " '" + text + "': the port must be within 0..65535");
  }
  return std::pair{host, static_cast<uint16_t>(port)};
}

// The bearer token: the file's first line, which must not be empty.
Result<std::string> ReadToken(const std::string& path) {
  ZD_ASSIGN_OR_RETURN(std::string text, ReadFileText(path, 4096));
  const size_t end = text.find_first_of("\r\n");
  std::string token = text.substr(0, end);
  if (token.empty()) return InvalidArgumentError("--token-file " + path + " holds no token");
  return token;
}

Status Serve(const ServeArgs& args) {
  ManagerOptions manager_options;
  manager_options.repository = args.repo;
  if (args.max_models > 0 || !args.max_bytes.empty()) {
    DeviceBudget budget;
    budget.max_models = args.max_models;
    if (!args.max_bytes.empty()) {
      ZD_ASSIGN_OR_RETURN(budget.max_bytes, ParseBytes("--max-bytes", args.max_bytes));
    }
    manager_options.budgets["cpu"] = budget;
  }
  manager_options.graph_cache_dir = args.graph_cache;
  manager_options.preload = args.preload;
  manager_options.loader_threads = args.load_threads;
  manager_options.thread_pool.intra_op_threads = args.threads;
  ZD_ASSIGN_OR_RETURN(std::unique_ptr<ModelManager> manager,
                      ModelManager::Create(std::move(manager_options)));
  server::InferenceService::Options service_options;
  service_options.allow_client_shm = args.allow_client_shm;
  service_options.max_queue = args.max_queue;
  service_options.queue_timeout = std::chrono::milliseconds(args.queue_timeout_ms);
  std::unique_ptr<store::StoreClient> store_client;
  if (!args.store.empty()) {
    store::ConnectOptions connect;
    connect.access = store::StoreAccess::kReadOnly;
    ZD_ASSIGN_OR_RETURN(store_client, store::StoreClient::Connect(args.store, connect));
    service_options.store = store_client.get();
  }
  server::InferenceService service(*manager, service_options);

  const bool http_on = args.http != "off";
  const bool grpc_on = args.grpc != "off";
  if (!http_on && !grpc_on) return InvalidArgumentError("--http and --grpc are both off");
  if (args.tls_cert.empty() != args.tls_key.empty()) {
    return InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  std::string token;
  if (!args.token_file.empty()) {
    ZD_ASSIGN_OR_RETURN(token, ReadToken(args.token_file));
  }
  server::HttpServerOptions http;
  if (http_on) {
    ZD_ASSIGN_OR_RETURN(auto listen, ParseListen("--http", args.http));
    http.address = listen.first;
    http.port = listen.second;
  }
  http.request_threads = args.request_threads;
  ZD_ASSIGN_OR_RETURN(http.max_body_bytes, ParseBytes("--max-body", args.max_body));
  http.request_timeout = std::chrono::milliseconds(args.request_timeout_ms);
  http.token = token;
  http.tls_cert = args.tls_cert;
  http.tls_key = args.tls_key;
  server::GrpcServerOptions grpc;
  if (grpc_on) {
    ZD_RETURN_IF_ERROR(ParseListen("--grpc", args.grpc).status());
    grpc.address = args.grpc;
  }
  grpc.max_message_bytes = http.max_body_bytes;
  grpc.token = token;
  grpc.tls_cert = args.tls_cert;
  grpc.tls_key = args.tls_key;

  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  std::unique_ptr<server::HttpServer> http_server;
  std::unique_ptr<server::GrpcServer> grpc_server;
  if (http_on) {
    ZD_ASSIGN_OR_RETURN(http_server, server::HttpServer::Start(service, http));
  }
  if (grpc_on) {
    ZD_ASSIGN_OR_RETURN(grpc_server, server::GrpcServer::Start(service, grpc));
  }
  std::unique_ptr<metrics::MetricsExposer> metrics_exposer;
  if (args.metrics != "off") {
    ZD_RETURN_IF_ERROR(ParseListen("--metrics", args.metrics).status());
    ZD_ASSIGN_OR_RETURN(metrics_exposer,
                        metrics::MetricsExposer::Start(service.metrics().registry(), args.metrics));
  }
  // The port line is for scripts and tests that start the server on port 0.
  std::printf("{\"http_port\":%d,\"grpc_port\":%d,\"metrics_port\":%d}\n",
              http_server ? static_cast<int>(http_server->port()) : -1,
              grpc_server ? grpc_server->port() : -1,
              metrics_exposer ? static_cast<int>(metrics_exposer->port()) : -1);
  std::fflush(stdout);
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // Both stop accepting at once; each drains its own requests within the same period.
  const auto drain = std::chrono::seconds(args.drain_seconds);
  std::thread grpc_drain([&] {
    if (grpc_server) grpc_server->Shutdown(drain);
  });
  const int left = http_server ? http_server->Shutdown(drain) : 0;
  grpc_drain.join();
  if (left > 0) {
    std::fprintf(stderr, "zerodet serve: %d request(s) still running after %d s of draining\n",
                 left, args.drain_seconds);
  }
  return Status::Ok();
}

const CommandRegistrar kRegistrar("serve", [](CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand(
      "serve",
      "Serve the models of a repository over HTTP (KServe v2 / Triton protocol, /v1/detect); "
      "models load on first use");
  cmd->add_option("--repo", args->repo,
                  "Model repository (REPO/<model>/<version>/model.onnx, as Triton's)")
      ->required();
  cmd->add_option("--http", args->http,
                  "HOST:PORT to serve HTTP on (port 0: any free port; off: no HTTP)")
      ->capture_default_str();
  cmd->add_option("--grpc", args->grpc,
                  "HOST:PORT to serve gRPC on (port 0: any free port; off: no gRPC)")
      ->capture_default_str();
  cmd->add_option("--metrics", args->metrics,
                  "HOST:PORT to serve Prometheus metrics on, besides GET /metrics on the HTTP "
                  "port (off: only there)")
      ->capture_default_str();
  cmd->add_option("--store", args->store,
                  "Socket of a zerodet store whose objects inputs may name (zerodet_store_object)");
  cmd->add_flag("--allow-client-shm", args->allow_client_shm,
                "Let clients register system shared-memory regions (the server maps them) and "
                "name them in infer requests");
  cmd->add_option("--tls-cert", args->tls_cert, "PEM certificate: TLS on the HTTP and gRPC ports");
  cmd->add_option("--tls-key", args->tls_key, "PEM private key of --tls-cert");
  cmd->add_option("--token-file", args->token_file,
                  "File whose first line is the bearer token load/unload requests must carry");
  cmd->add_option("--max-models", args->max_models, "Most model versions loaded at once (0: any)");
  cmd->add_option("--max-bytes", args->max_bytes,
                  "Most memory the loaded models may take (bytes; K, M, G suffixes)");
  cmd->add_option("--graph-cache", args->graph_cache,
                  "Directory of ONNX Runtime's optimized graphs (faster cold loads)");
  cmd->add_option("--preload", args->preload, "Models to load at start (NAME, repeatable)");
  cmd->add_option("--load-threads", args->load_threads, "Models loaded at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--request-threads", args->request_threads, "Requests handled at once")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--threads", args->threads,
                  "ONNX Runtime intra-op threads shared by every model (0: one per core)")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--max-body", args->max_body, "Largest request body (bytes; K, M, G)")
      ->capture_default_str();
  cmd->add_option("--request-timeout-ms", args->request_timeout_ms,
                  "How long a request may wait for its model (a load, a free instance)")
      ->check(CLI::Range(1, 3'600'000))
      ->capture_default_str();
  cmd->add_option("--max-queue", args->max_queue,
                  "Most requests waiting for one model at once; more get 429 (0: unbounded)")
      ->check(CLI::Range(0, 1'000'000))
      ->capture_default_str();
  cmd->add_option("--queue-timeout-ms", args->queue_timeout_ms,
                  "Longest wait for a model in its queue, then 503 (0: the request timeout)")
      ->check(CLI::Range(0, 3'600'000))
      ->capture_default_str();
  cmd->add_option("--drain-seconds", args->drain_seconds,
                  "On SIGTERM, how long requests in flight may take to finish")
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  SetRun(cmd, [args] { return Serve(*args); });
});

}  // namespace
}  // namespace zerodet::cli

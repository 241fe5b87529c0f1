// The HTTP endpoints of `zerodet serve` as a function from request to response (internal): the
// KServe v2 REST API, the model repository extension and /v1/detect, without sockets, so that
// every route is tested (and fuzzed) without a network. http_server.cc feeds it what Beast
// reads and writes back what it returns.
//
//   GET  / | /console                            the web console (console/index.html)
//   GET  /v2/health/live | /v2/health/ready       200, or 503 when not ready (draining)
//   GET  /v2                                      server metadata
//   GET  /v2/models/<m>[/versions/<v>]            model metadata (loads the model)
//   GET  /v2/models/<m>[/versions/<v>]/ready      200 ready, 400 not ready, 404 unknown
//   POST /v2/models/<m>[/versions/<v>]/infer      infer (JSON or binary tensor data)
//   POST /v2/repository/index                     index with state and reason
//   POST /v2/repository/models/<m>/load | unload  control (bearer token when configured)
//   POST /v1/detect?model=<m>[:<v>]&conf=&iou=&max_det=&agnostic=&annotate=
//                                                 an image body -> detections JSON (or the
//                                                 annotated JPEG with annotate=1)
//   GET  /v2/systemsharedmemory[/region/<r>]/status   registered regions
//   POST /v2/systemsharedmemory/region/<r>/register   {"key", "offset", "byte_size"} (token)
//   POST /v2/systemsharedmemory[/region/<r>]/unregister                          (token)
//   GET  /metrics                                 Prometheus text format (server_metrics.h)
// Errors are {"error": "..."}: 400 invalid input, 401 missing or wrong token, 403 shared memory
// off, 404 unknown model, region or route, 405 wrong method, 413 too large, 429 a full queue or
// no room for the model now, 503 unavailable (loading failed, queue timeout, deadline); 429 and
// 503 carry Retry-After.
//
// Thread-safety: HandleHttp may run on many threads at once (the service is thread-safe).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/server/inference_service.h"

namespace zerodet::server::detail {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as received
  std::string content_type;
  std::string authorization;                        // the Authorization header, if any
  std::optional<uint64_t> inference_header_length;  // Inference-Header-Content-Length
  std::string_view body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

struct RouteOptions {
  std::string token;  // non-empty: control endpoints need "Authorization: Bearer <token>"
  // How long a request may wait for its model (a load, a free instance).
  std::chrono::milliseconds request_timeout{60000};
  const std::atomic<bool>* draining = nullptr;  // true: /v2/health/ready answers 503
};

// The web console's page (console/index.html, embedded at build time by cmake/EmbedText.cmake).
extern const std::string_view kConsolePage;

// The HTTP status for a Status code (the protocol's mapping).
int HttpStatusFor(const Status& status);

HttpResponse HandleHttp(const HttpRequest& request, InferenceService& service,
                        const RouteOptions& options);

}  // namespace zerodet::server::detail

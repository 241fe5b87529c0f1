// HttpServer: the HTTP/1.1 front end of `zerodet serve` (KServe v2 REST, the repository
// extension, /v1/detect; the routes are in src/server/http_routes.h), on Boost.Beast/Asio:
// asynchronous connections with keep-alive on a few I/O threads, and requests handled on a pool
// of request threads, so a long inference never stalls reading or writing other connections.
//
// With a certificate and key (HttpServerOptions::tls_cert/tls_key) every connection speaks TLS
// (OpenSSL through Asio); a client that does not complete its handshake within the request read
// timeout is closed.
//
// Limits (HttpServerOptions): header and body sizes (431 / 413), requests per connection, and
// a timeout for receiving each request once the connection is waiting for one (an idle
// keep-alive connection or a client sending a byte at a time is closed when it passes), so slow
// clients cannot hold the server; at most max_connections open at once (more are closed at
// accept).
//
// Lifetime: Start binds and serves until Shutdown (or destruction), which stops accepting,
// marks the server not ready (/v2/health/ready answers 503), lets the requests in flight finish
// (bounded by the grace period), then closes every connection.
// Ownership: borrows the InferenceService, which must outlive the server.
// Thread-safety: port() and Shutdown() may be called from any thread; Shutdown once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "zerodet/core/status.h"
#include "zerodet/server/inference_service.h"

namespace zerodet::server {

struct HttpServerOptions {
  std::string address = "127.0.0.1";  // loopback unless told otherwise
  uint16_t port = 8000;               // 0: any free port (see port())
  int io_threads = 2;                 // 1..64
  int request_threads = 4;            // 1..256: requests handled at once
  uint64_t max_body_bytes = uint64_t{64} << 20;
  uint32_t max_header_bytes = 16 * 1024;
  uint32_t max_requests_per_connection = 10000;
  uint32_t max_connections = 1024;
  // Time to receive a whole request, from the moment the connection waits for it.
  std::chrono::milliseconds request_read_timeout{30000};
  // How long a request may wait for its model (load or free instance).
  std::chrono::milliseconds request_timeout{60000};
  std::string token;  // non-empty: load/unload need "Authorization: Bearer <token>"
  // PEM files: set both to serve HTTPS (TLS 1.2 or newer) instead of plain HTTP on the port.
  std::string tls_cert;
  std::string tls_key;
};

class HttpServer {
 public:
  // Binds and starts serving. Errors: kInvalidArgument for options out of range, an address
  // that does not parse, or TLS files that cannot be read or do not match; kUnavailable when the
  // address cannot be bound (naming it and why).
  static Result<std::unique_ptr<HttpServer>> Start(InferenceService& service,
                                                   const HttpServerOptions& options);
  ~HttpServer();  // Shutdown(0) unless already shut down

  // The port bound (the one chosen when options.port was 0).
  uint16_t port() const;

  // Stops accepting, waits up to `grace` for the requests in flight, then closes everything.
  // Returns how many requests were still running when the grace period ended (0: drained).
  int Shutdown(std::chrono::milliseconds grace);

  struct Impl;

 private:
  explicit HttpServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace zerodet::server

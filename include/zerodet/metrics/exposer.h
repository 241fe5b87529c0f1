// MetricsExposer: an HTTP listener of its own that serves a metrics::Registry (registry.h) at
// GET /metrics for Prometheus, on prometheus-cpp's exposer (civetweb, one serving thread). Every
// zerodet process with metrics uses it: `zerodet serve/store/pipeline --metrics HOST:PORT`. A
// scrape never queues behind the process's own work.
//
// Ownership: shares ownership of the registry (so it stays valid while the listener runs); what
// the registry's collectors read must outlive the exposer. Stops serving, and joins
// its threads, when destroyed.
//
// Thread-safety: Start() may be called from any thread; port() is immutable. Scrapes run
// Collect() on the exposer's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "zerodet/core/status.h"

namespace zerodet::metrics {

class Registry;

// The content type of the Prometheus text exposition format (version 0.0.4): what
// Registry::Render() writes and the exposer serves.
inline constexpr std::string_view kPrometheusTextContentType = "text/plain; version=0.0.4";

class MetricsExposer {
 public:
  // Binds HOST:PORT (port 0: any free port; port() tells which) and serves `registry` at
  // /metrics.
  // Errors: kInvalidArgument for an address that is not HOST:PORT (or a null registry);
  // kUnavailable when it cannot be bound (in use, no such address), naming the address. No
  // exception of prometheus-cpp or civetweb escapes.
  static Result<std::unique_ptr<MetricsExposer>> Start(std::shared_ptr<Registry> registry,
                                                       const std::string& address);
  ~MetricsExposer();
  MetricsExposer(const MetricsExposer&) = delete;
  MetricsExposer& operator=(const MetricsExposer&) = delete;

  // The port it listens on.
  uint16_t port() const { return port_; }

 private:
  struct Impl;
  MetricsExposer(std::unique_ptr<Impl> impl, uint16_t port);
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

}  // namespace zerodet::metrics

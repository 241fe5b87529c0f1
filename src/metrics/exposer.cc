#include "zerodet/metrics/exposer.h"

#include <prometheus/exposer.h>

#include <charconv>
#include <exception>
#include <vector>

#include "zerodet/metrics/registry.h"

namespace zerodet::metrics {

struct MetricsExposer::Impl {
  std::shared_ptr<Registry> registry;  // prometheus-cpp's exposer holds it weakly
  std::unique_ptr<prometheus::Exposer> exposer;
};

MetricsExposer::MetricsExposer(std::unique_ptr<Impl> impl, uint16_t port)
    : impl_(std::move(impl)), port_(port) {}

MetricsExposer::~MetricsExposer() {
  // Stops the listener (joins civetweb's threads) before the registry may go.
  if (impl_) impl_->exposer.reset();
}

Result<std::unique_ptr<MetricsExposer>> MetricsExposer::Start(std::shared_ptr<Registry> registry,
                                                              const std::string& address) {
  const size_t colon = address.rfind(':');
  uint16_t port = 0;
  if (colon == std::string::npos || colon == 0 ||
      std::from_chars(address.data() + colon + 1, address.data() + address.size(), port).ec !=
          std::errc() ||
      address.find_first_of(", \t") != std::string::npos) {
    return InvalidArgumentError("metrics address '" + address.substr(0, 100) +
                                "' is not HOST:PORT (e.g. 127.0.0.1:9100)");
  }
  if (!registry) return InvalidArgumentError("metrics: nothing to serve (null registry)");
  auto impl = std::make_unique<Impl>();
  impl->registry = std::move(registry);
  try {
    // One serving thread: scrapes are rare and cheap.
    impl->exposer = std::make_unique<prometheus::Exposer>(address, 1);
    impl->exposer->RegisterCollectable(impl->registry);
    const std::vector<int> ports = impl->exposer->GetListeningPorts();
    if (ports.empty() || ports.front() <= 0 || ports.front() > 65535) {
      return UnavailableError("cannot serve metrics on " + address);
    }
    return std::unique_ptr<MetricsExposer>(
        new MetricsExposer(std::move(impl), static_cast<uint16_t>(ports.front())));
  } catch (const std::exception& e) {
    return UnavailableError("cannot serve metrics on " + address + ": " + e.what());
  }
}

}  // namespace zerodet::metrics

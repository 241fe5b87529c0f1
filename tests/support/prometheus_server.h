// A real Prometheus server for the metrics tests (Debian's `prometheus`, /usr/bin/prometheus):
// started on a free loopback port with a 1 s scrape interval over the given /metrics targets,
// queried with PromQL over its HTTP API. Also the small HTTP GET and URL helpers those tests
// share. Part of the one test-support library (test_support.h).
//
// Ownership: a PrometheusServer owns its process (killed and reaped on destruction); its
// configuration, TSDB and log live in a directory the caller owns (a TempDir).
// Thread-safety: use each object from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace zerodet::testing {

class ChildProcess;

// A loopback TCP port that was free just now (bound and released: another process may take it
// before it is used).
uint16_t FreeLoopbackPort();

// Percent-encodes every byte but [A-Za-z0-9_.], for a URL query value.
std::string UrlEscape(const std::string& text);

struct HttpReply {
  int status = 0;  // 0: no answer (refused, broken, timed out)
  std::string body;
  nlohmann::json Json() const { return nlohmann::json::parse(body, nullptr, false); }
};

// GET http://127.0.0.1:<port><target> (HTTP/1.0: the server closes the connection after its
// answer); at most `timeout` for the whole exchange.
HttpReply HttpGet(uint16_t port, const std::string& target,
                  std::chrono::milliseconds timeout = std::chrono::seconds(30));

// The value of the sample line `name_and_labels VALUE` in a Prometheus text exposition
// (labels exactly as written there), or nullopt.
std::optional<double> SampleValue(const std::string& text, const std::string& name_and_labels);

// The port N of the line {"metrics_port":N} that `zerodet store/pipeline --metrics` print (first
// one in `log`), or 0 when there is none yet.
uint16_t MetricsPortIn(const std::string& log);

// Every PromQL expression ("expr") of a Grafana dashboard file's panels.
std::vector<std::string> DashboardQueries(const std::filesystem::path& dashboard);

struct ScrapeTarget {
  std::string job;
  uint16_t port = 0;  // scraped at http://127.0.0.1:<port>/metrics
};

class PrometheusServer {
 public:
  // Whether Debian's prometheus is installed (tests skip without it).
  static bool Installed();

  // Starts Prometheus scraping every target each second; its files go to `dir`. ok() tells
  // whether the process started (it answers queries a few seconds later: use WaitFor).
  PrometheusServer(const std::filesystem::path& dir, const std::vector<ScrapeTarget>& targets);
  ~PrometheusServer();
  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  bool ok() const;
  uint16_t port() const { return port_; }
  // What the server logged so far.
  std::string Log() const;

  // GET /api/v1/query?query=<promql>, as answered.
  HttpReply QueryReply(const std::string& promql) const;
  // The value of an instant query whose result is exactly one series; nullopt otherwise (no
  // data yet, an error, several series).
  std::optional<double> Query(const std::string& promql) const;
  // The number of series an instant query returns (0 also for an error or no answer).
  size_t SeriesCount(const std::string& promql) const;
  // Polls Query(promql) every 200 ms until `accept` takes its value (true) or `timeout` passes
  // (false).
  bool WaitFor(const std::string& promql, const std::function<bool(double)>& accept,
               std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;
  // WaitFor with `value == expected`.
  bool WaitForValue(const std::string& promql, double expected,
                    std::chrono::milliseconds timeout = std::chrono::seconds(60)) const;

 private:
  std::unique_ptr<ChildProcess> process_;
  uint16_t port_ = 0;
};

}  // namespace zerodet::testing

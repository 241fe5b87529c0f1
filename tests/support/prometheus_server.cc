#include "prometheus_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "test_support.h"

namespace zerodet::testing {

namespace fs = std::filesystem;

uint16_t FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

std::string UrlEscape(const std::string& text) {
  std::string escaped;
  for (const char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.') {
      escaped += c;
    } else {
      char hex[4];
      std::snprintf(hex, sizeof(hex), "%%%02X", static_cast<unsigned char>(c));
      escaped += hex;
    }
  }
  return escaped;
}

HttpReply HttpGet(uint16_t port, const std::string& target, std::chrono::milliseconds timeout) {
  HttpReply reply;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return reply;
  timeval limit{};
  limit.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  limit.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request =
        "GET " + target + " HTTP/1.0\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buffer[65536];
      for (;;) {
        const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        response.append(buffer, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  // "HTTP/1.x NNN ...", headers, an empty line, the body.
  const size_t end_of_headers = response.find("\r\n\r\n");
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12 ||
      end_of_headers == std::string::npos) {
    return reply;
  }
  reply.status = std::atoi(response.substr(9, 3).c_str());
  reply.body = response.substr(end_of_headers + 4);
  return reply;
}

std::optional<double> SampleValue(const std::string& text, const std::string& name_and_labels) {
  const std::string prefix = name_and_labels + " ";
  size_t at = 0;
  while ((at = text.find(prefix, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') return std::stod(text.substr(at + prefix.size()));
    at += prefix.size();
  }
  return std::nullopt;
}

uint16_t MetricsPortIn(const std::string& log) {
  const size_t at = log.find("{\"metrics_port\":");
  if (at == std::string::npos) return 0;
  const size_t end = log.find('\n', at);
  if (end == std::string::npos) return 0;  // the line is not complete yet
  const auto json = nlohmann::json::parse(log.substr(at, end - at), nullptr, false);
  if (!json.is_object() || !json["metrics_port"].is_number_unsigned()) return 0;
  return json["metrics_port"].get<uint16_t>();
}

std::vector<std::string> DashboardQueries(const fs::path& dashboard) {
  const nlohmann::json json = nlohmann::json::parse(ReadText(dashboard), nullptr, false);
  std::vector<std::string> queries;
  if (!json.is_object() || !json.contains("panels")) {
    ADD_FAILURE() << dashboard << " is not a dashboard (JSON with panels)";
    return queries;
  }
  for (const auto& panel : json["panels"]) {
    if (!panel.contains("targets")) continue;
    for (const auto& target : panel["targets"]) {
      if (target.contains("expr")) queries.push_back(target["expr"].get<std::string>());
    }
  }
  return queries;
}

bool PrometheusServer::Installed() {
  return fs::exists("/usr/bin/prometheus");
}

PrometheusServer::PrometheusServer(const fs::path& dir, const std::vector<ScrapeTarget>& targets)
    : port_(FreeLoopbackPort()) {
  if (port_ == 0) {
    ADD_FAILURE() << "no free loopback port for Prometheus";
    return;
  }
  const fs::path config = dir / "prometheus.yml";
  {
    std::ofstream out(config);
    out << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        << "scrape_configs:\n";
    for (const ScrapeTarget& target : targets) {
      out << "  - job_name: " << target.job << "\n    static_configs:\n"
          << "      - targets: ['127.0.0.1:" << target.port << "']\n";
    }
  }
  process_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{"/usr/bin/prometheus", "--config.file=" + config.string(),
                               "--storage.tsdb.path=" + (dir / "tsdb").string(),
                               "--web.listen-address=127.0.0.1:" + std::to_string(port_)},
      (dir / "prometheus.log").string());
}

PrometheusServer::~PrometheusServer() = default;

bool PrometheusServer::ok() const {
  return process_ != nullptr && process_->ok();
}

std::string PrometheusServer::Log() const {
  return process_ ? process_->Log() : std::string();
}

HttpReply PrometheusServer::QueryReply(const std::string& promql) const {
  return HttpGet(port_, "/api/v1/query?query=" + UrlEscape(promql));
}

std::optional<double> PrometheusServer::Query(const std::string& promql) const {
  const HttpReply reply = QueryReply(promql);
  if (reply.status != 200) return std::nullopt;
  const nlohmann::json json = reply.Json();
  if (!json.is_object() || json.value("status", "") != "success") return std::nullopt;
  const auto& data = json["data"];
  if (!data.is_object()) return std::nullopt;
  const auto& result = data["result"];
  // A scalar result is [time, "value"]; a vector is [{metric, value: [time, "value"]}].
  if (data.value("resultType", "") == "scalar" && result.is_array() && result.size() == 2) {
    return std::stod(result[1].get<std::string>());
  }
  if (!result.is_array() || result.size() != 1) return std::nullopt;
  return std::stod(result[0]["value"][1].get<std::string>());
}

size_t PrometheusServer::SeriesCount(const std::string& promql) const {
  const HttpReply reply = QueryReply(promql);
  if (reply.status != 200) return 0;
  const nlohmann::json json = reply.Json();
  if (!json.is_object() || json.value("status", "") != "success") return 0;
  const auto& data = json["data"];
  if (!data.is_object() || data.value("resultType", "") != "vector") return 0;
  return data["result"].size();
}

bool PrometheusServer::WaitFor(const std::string& promql, const std::function<bool(double)>& accept,
                               std::chrono::milliseconds timeout) const {
  return zerodet::testing::WaitFor(
      [&] {
        const std::optional<double> value = Query(promql);
        return value.has_value() && accept(*value);
      },
      timeout, std::chrono::milliseconds(200));
}

bool PrometheusServer::WaitForValue(const std::string& promql, double expected,
                                    std::chrono::milliseconds timeout) const {
  return WaitFor(
      promql, [expected](double value) { return value == expected; }, timeout);
}

}  // namespace zerodet::testing

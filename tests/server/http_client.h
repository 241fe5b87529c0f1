// A minimal blocking HTTP/1.1 client on Boost.Beast for the server tests: one request per fresh
// loopback connection, the whole response read back (whatever its status).
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace zerodet::server::testing {

struct Reply {
  int status = 0;  // 0: no response (connection refused or broken)
  std::string body;
  boost::beast::http::response<boost::beast::http::string_body> raw;
  nlohmann::json Json() const { return nlohmann::json::parse(body, nullptr, false); }
};

// One request on a fresh connection to 127.0.0.1:port.
inline Reply Send(uint16_t port, boost::beast::http::verb verb, const std::string& target,
                  std::string body = {},
                  const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  namespace net = boost::asio;
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::error_code connect_error;
  stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), connect_error);
  if (connect_error) return Reply{};
  http::request<http::string_body> request(verb, target, 11);
  request.set(http::field::host, "127.0.0.1");
  for (const auto& [name, value] : headers) request.set(name, value);
  request.body() = std::move(body);
  request.prepare_payload();
  beast::error_code ec;
  // A server that refuses a request (too large) answers and closes before reading all of it:
  // the write fails, and the answer is still there to read.
  http::write(stream, request, ec);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 30);
  http::read(stream, buffer, parser, ec);
  Reply reply;
  if (ec) return reply;
  reply.raw = parser.release();
  reply.status = static_cast<int>(reply.raw.result_int());
  reply.body = reply.raw.body();
  return reply;
}

}  // namespace zerodet::server::testing

// The conversion from a request Boost.Beast parsed to the socket-free detail::HttpRequest the
// routes take (internal): one rule for the HTTP server and the HTTP fuzzer.
// The result borrows the request's body; it must outlive the HttpRequest.
#pragma once

#include <boost/beast/http.hpp>
#include <charconv>
#include <cstdint>
#include <string>

#include "http_routes.h"

namespace zerodet::server::detail {

inline HttpRequest FromBeast(
    const boost::beast::http::request<boost::beast::http::string_body>& request) {
  namespace http = boost::beast::http;
  HttpRequest out;
  out.method = std::string(request.method_string());
  out.target = std::string(request.target());
  if (auto it = request.find(http::field::content_type); it != request.end()) {
    out.content_type = std::string(it->value());
  }
  if (auto it = request.find(http::field::authorization); it != request.end()) {
    out.authorization = std::string(it->value());
  }
  if (auto it = request.find("Inference-Header-Content-Length"); it != request.end()) {
    uint64_t length = 0;
    const auto value = it->value();
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
    // A malformed length is treated as larger than any body: the parser says so.
    out.inference_header_length =
        ec == std::errc() && end == value.data() + value.size() ? length : UINT64_MAX;
  }
  out.body = request.body();
  return out;
}

}  // namespace zerodet::server::detail

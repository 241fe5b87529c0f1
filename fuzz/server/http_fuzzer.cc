// libFuzzer target for what `zerodet serve` does with the bytes of an HTTP request before any
// model runs: Boost.Beast's request parser with the server's limits, the conversion to the
// routes' request (beast_request.h), and every route of src/server/http_routes.h (KServe v2
// paths and queries, repository and shared-memory bodies, /v1/detect's query and image
// decoding, the console, metrics) on a real InferenceService over an empty model repository.
// Any request parses or is refused, and routes to an answer with a known status whose JSON body
// parses; nothing crashes, hangs or reads out of bounds (ASan+UBSan).
#include <unistd.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "beast_request.h"
#include "http_routes.h"
#include "zerodet/core/logging.h"
#include "zerodet/models/model_manager.h"
#include "zerodet/server/inference_service.h"

using namespace zerodet;
using namespace zerodet::server;

namespace {

namespace http = boost::beast::http;

struct Served {
  std::filesystem::path repository;
  std::unique_ptr<ModelManager> manager;
  std::unique_ptr<InferenceService> service;
  detail::RouteOptions routes;
};

Served& Server() {
  static Served* served = [] {
    auto* s = new Served;
    s->repository = std::filesystem::temp_directory_path() /
                    ("zerodet-http-fuzzer-" + std::to_string(::getpid()));
    std::filesystem::create_directories(s->repository);
    ManagerOptions options;
    options.repository = s->repository;
    options.watch = false;
    auto manager = ModelManager::Create(options);
    if (!manager.ok()) std::abort();
    s->manager = std::move(manager).value();
    InferenceService::Options service_options;
    service_options.allow_client_shm = true;
    service_options.max_image_pixels = 1 << 20;
    s->service = std::make_unique<InferenceService>(*s->manager, service_options);
    s->routes.token = "fuzz-token";
    s->routes.request_timeout = std::chrono::milliseconds(100);
    return s;
  }();
  return *served;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (!SetupLogging("off").ok()) std::abort();
  Server();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(1 << 20);
  parser.eager(true);
  boost::beast::error_code ec;
  size_t offset = 0;
  while (offset < size && !parser.is_done()) {
    const size_t used = parser.put(boost::asio::buffer(data + offset, size - offset), ec);
    if (ec == http::error::need_more) break;
    if (ec) return 0;  // refused by the parser: the server answers 400/413/431 and closes
    if (used == 0) break;
    offset += used;
  }
  if (!parser.is_done()) {
    if (!parser.got_some()) return 0;  // nothing arrived: the server just closes
    parser.put_eof(ec);
    if (ec || !parser.is_done()) return 0;
  }
  const http::request<http::string_body> request = parser.release();
  Served& served = Server();
  const detail::HttpResponse response =
      detail::HandleHttp(detail::FromBeast(request), *served.service, served.routes);
  switch (response.status) {
    case 200:
    case 400:
    case 401:
    case 403:
    case 404:
    case 405:
    case 413:
    case 429:
    case 503:
      break;
    default:
      std::abort();  // 500 or anything the routes should never answer
  }
  if (response.content_type == "application/json" && !response.body.empty() &&
      nlohmann::json::parse(response.body, nullptr, false).is_discarded()) {
    std::abort();
  }
  return 0;
}

#include "http_routes.h"

#include <charconv>
#include <map>

#include "kserve_http.h"

namespace zerodet::server::detail {
namespace {

HttpResponse Json(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

HttpResponse Error(const Status& status) {
  HttpResponse response = Json(HttpStatusFor(status), ErrorBody(status.message()));
  // Overload and unavailability pass: say when to come back (a queue drains in about a Run).
  if (response.status == 429 || response.status == 503) {
    response.headers.emplace_back("Retry-After", "1");
  }
  return response;
}

HttpResponse Error(int http_status, std::string_view message) {
  return Json(http_status, ErrorBody(message));
}

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    const size_t slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash);
  }
  return parts;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX and '+' of a query value. Errors: a malformed escape.
std::optional<std::string> DecodeQueryValue(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int hi = HexValue(text[i + 1]);
      const int lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

Result<std::map<std::string, std::string>> ParseQuery(std::string_view query) {
  std::map<std::string, std::string> values;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    const auto key = DecodeQueryValue(pair.substr(0, eq));
    const auto value =
        DecodeQueryValue(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    if (!key || !value) return InvalidArgumentError("malformed query string");
    values[*key] = *value;
  }
  return values;
}

Result<int64_t> ParseVersion(std::string_view text) {
  int64_t version = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), version);
  if (ec != std::errc() || end != text.data() + text.size() || version < 1) {
    return InvalidArgumentError("version '" + std::string(text.substr(0, 32)) +
                                "' is not a positive integer");
  }
  return version;
}

Result<float> ParseFloat(const std::string& text, const char* name) {
  float value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return InvalidArgumentError(std::string(name) + " '" + text.substr(0, 32) +
                                "' is not a number");
  }
  return value;
}

Result<bool> ParseFlag(const std::string& text, const char* name) {
  if (text == "1" || text == "true") return true;
  if (text == "0" || text == "false" || text.empty()) return false;
  return InvalidArgumentError(std::string(name) + " must be 0/1 or true/false");
}

HttpResponse Unauthorized() {
  HttpResponse response = Error(401, "this endpoint needs the server's bearer token");
  response.headers.emplace_back("WWW-Authenticate", "Bearer");
  return response;
}

bool Authorized(const HttpRequest& request, const RouteOptions& options) {
  if (options.token.empty()) return true;
  const std::string expected = "Bearer " + options.token;
  // Compared in constant time: the token is a secret.
  if (request.authorization.size() != expected.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    diff |= static_cast<unsigned char>(request.authorization[i] ^ expected[i]);
  }
  return diff == 0;
}

HttpResponse Infer(const HttpRequest& request, InferenceService& service, std::string_view model,
                   std::optional<int64_t> version, const RouteOptions& options) {
  auto parsed = ParseInferRequest(request.body, request.inference_header_length);
  if (!parsed.ok()) return Error(parsed.status());
  parsed->request.model_name = std::string(model);
  parsed->request.model_version = version;
  parsed->request.deadline = Deadline::After(options.request_timeout);
  HttpResponse response;
  const Status status = service.Infer(parsed->request, [&](const ServedBy& served_by,
                                                           std::span<const InferOutput> outputs) {
    EncodedResponse encoded = EncodeInferResponse(served_by, parsed->request.id, outputs, *parsed);
    response.body = std::move(encoded.body);
    if (encoded.header_length) {
      response.content_type = "application/octet-stream";
      response.headers.emplace_back("Inference-Header-Content-Length",
                                    std::to_string(*encoded.header_length));
    }
    return Status::Ok();
  });
  if (!status.ok()) return Error(status);
  return response;
}

HttpResponse Detect(const HttpRequest& request, InferenceService& service, std::string_view query,
                    const RouteOptions& options) {
  if (request.method != "POST") return Error(405, "/v1/detect takes POST with an image body");
  auto values = ParseQuery(query);
  if (!values.ok()) return Error(values.status());
  DetectRequest detect;
  const auto model = values->find("model");
  if (model == values->end() || model->second.empty()) {
    return Error(400, "/v1/detect needs ?model=NAME[:VERSION]");
  }
  auto ref = ParseModelRef(model->second);
  if (!ref.ok()) return Error(ref.status());
  detect.model_name = ref->name;
  detect.model_version = ref->version;
  for (const auto& [key, value] : *values) {
    if (key == "model") continue;
    if (key == "conf" || key == "iou") {
      auto number = ParseFloat(value, key.c_str());
      if (!number.ok()) return Error(number.status());
      (key == "conf" ? detect.conf : detect.iou) = *number;
    } else if (key == "max_det") {
      int n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size()) {
        return Error(400, "max_det must be an integer");
      }
      detect.max_detections = n;
    } else if (key == "agnostic" || key == "annotate") {
      auto flag = ParseFlag(value, key.c_str());
      if (!flag.ok()) return Error(flag.status());
      if (key == "agnostic") {
        detect.agnostic = *flag;
      } else {
        detect.annotate = *flag;
      }
    } else {
      return Error(400, "unknown parameter '" + key.substr(0, 32) +
                            "' (known: model, conf, iou, max_det, agnostic, annotate)");
    }
  }
  if (request.body.empty()) return Error(400, "/v1/detect needs an image in the request body");
  detect.image = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(request.body.data()),
                                          request.body.size());
  detect.source_name = "request body";
  detect.deadline = Deadline::After(options.request_timeout);
  auto result = service.Detect(detect);
  if (!result.ok()) return Error(result.status());
  if (detect.annotate) {
    HttpResponse response;
    response.content_type = "image/jpeg";
    response.body.assign(reinterpret_cast<const char*>(result->annotated_jpeg.data()),
                         result->annotated_jpeg.size());
    return response;
  }
  return Json(200, DetectResponseJson(*result));
}

HttpResponse Models(const HttpRequest& request, InferenceService& service,
                    std::vector<std::string_view> parts, const RouteOptions& options) {
  // parts: v2 models <m> [versions <v>] [ready|infer]
  if (parts.size() < 3) return Error(404, "no such endpoint");
  const std::string_view model = parts[2];
  std::optional<int64_t> version;
  size_t next = 3;
  if (parts.size() >= 5 && parts[3] == "versions") {
    auto v = ParseVersion(parts[4]);
    if (!v.ok()) return Error(v.status());
    version = *v;
    next = 5;
  }
  if (parts.size() > next + 1) return Error(404, "no such endpoint");
  const std::string_view action = parts.size() == next + 1 ? parts[next] : std::string_view();
  if (action.empty()) {
    if (request.method != "GET") return Error(405, "model metadata takes GET");
    auto metadata = service.Metadata(model, version, Deadline::After(options.request_timeout));
    if (!metadata.ok()) return Error(metadata.status());
    return Json(200, ModelMetadataBody(*metadata));
  }
  if (action == "ready") {
    if (request.method != "GET") return Error(405, "model ready takes GET");
    auto ready = service.ModelReady(model, version);
    if (!ready.ok()) return Error(ready.status());
    return *ready ? Json(200, "") : Error(400, "model is not ready (it loads on first use)");
  }
  if (action == "infer") {
    if (request.method != "POST") return Error(405, "infer takes POST");
    return Infer(request, service, model, version, options);
  }
  return Error(404, "no such endpoint");
}

HttpResponse Repository(const HttpRequest& request, InferenceService& service,
                        const std::vector<std::string_view>& parts, const RouteOptions& options) {
  if (request.method != "POST") return Error(405, "repository endpoints take POST");
  if (parts.size() == 3 && parts[2] == "index") {
    return Json(200, RepositoryIndexBody(service.manager().Index(), service.manager().Stats()));
  }
  if (parts.size() == 5 && parts[2] == "models" && (parts[4] == "load" || parts[4] == "unload")) {
    if (!Authorized(request, options)) return Unauthorized();
    const Status status =
        parts[4] == "load" ? service.manager().Load(parts[3]) : service.manager().Unload(parts[3]);
    if (!status.ok()) return Error(status);
    return Json(200, "{}");
  }
  return Error(404, "no such endpoint");
}

// parts: v2 systemsharedmemory [region <name>] status|register|unregister
HttpResponse SystemSharedMemory(const HttpRequest& request, InferenceService& service,
                                const std::vector<std::string_view>& parts,
                                const RouteOptions& options) {
  std::optional<std::string> name;
  size_t next = 2;
  if (parts.size() == 5 && parts[2] == "region") {
    name = std::string(parts[3]);
    next = 4;
  }
  if (parts.size() != next + 1) return Error(404, "no such endpoint");
  const std::string_view action = parts[next];
  if (action == "status") {
    if (request.method != "GET") return Error(405, "shared-memory status takes GET");
    auto regions = service.SharedMemoryStatus(name);
    if (!regions.ok()) return Error(regions.status());
    return Json(200, SharedMemoryStatusBody(*regions));
  }
  if (action != "register" && action != "unregister") return Error(404, "no such endpoint");
  if (request.method != "POST") return Error(405, "shared-memory registration takes POST");
  if (!Authorized(request, options)) return Unauthorized();
  if (action == "unregister") {
    const Status status = service.UnregisterSharedMemory(name);
    if (!status.ok()) return Error(status);
    return Json(200, "{}");
  }
  if (!name) return Error(404, "register takes /v2/systemsharedmemory/region/<name>/register");
  auto registration = ParseSharedMemoryRegistration(request.body);
  if (!registration.ok()) return Error(registration.status());
  const Status status = service.RegisterSharedMemory(*name, registration->key, registration->offset,
                                                     registration->byte_size);
  if (!status.ok()) return Error(status);
  return Json(200, "{}");
}

}  // namespace

int HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kInvalidArgument:
    case StatusCode::kCorruptData:
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
      return 400;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kUnimplemented:
      return 501;
    case StatusCode::kResourceExhausted:  // a full queue, no room for the model now
      return 429;
    default:  // unavailable, deadline, I/O, internal
      return 503;
  }
}

// The web console: one self-contained page (no external resources, so a strict policy holds).
HttpResponse ConsolePage() {
  HttpResponse response;
  response.content_type = "text/html; charset=utf-8";
  response.body = std::string(kConsolePage);
  response.headers = {{"Content-Security-Policy",
                       "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                       "img-src 'self' blob: data:; frame-ancestors 'none'"},
                      {"X-Content-Type-Options", "nosniff"},
                      {"Cache-Control", "no-cache"}};
  return response;
}

HttpResponse HandleHttp(const HttpRequest& request, InferenceService& service,
                        const RouteOptions& options) {
  const size_t question = request.target.find('?');
  const std::string_view path = std::string_view(request.target).substr(0, question);
  const std::string_view query = question == std::string::npos
                                     ? std::string_view()
                                     : std::string_view(request.target).substr(question + 1);
  const std::vector<std::string_view> parts = SplitPath(path);
  if (parts.empty() || (parts.size() == 1 && parts[0] == "console")) {
    if (request.method != "GET") return Error(405, "the console takes GET");
    return ConsolePage();
  }
  if (parts.size() == 2 && parts[0] == "v1" && parts[1] == "detect") {
    return Detect(request, service, query, options);
  }
  if (parts.size() == 1 && parts[0] == "metrics") {
    if (request.method != "GET") return Error(405, "metrics take GET");
    HttpResponse response;
    response.content_type = std::string(kPrometheusTextContentType);
    response.body = service.metrics().Render();
    return response;
  }
  if (parts.empty() || parts[0] != "v2") return Error(404, "no such endpoint");
  if (parts.size() == 1) {
    if (request.method != "GET") return Error(405, "server metadata takes GET");
    return Json(200, ServerMetadataBody(service.name(), service.version(), service.extensions()));
  }
  if (parts[1] == "health" && parts.size() == 3) {
    if (request.method != "GET") return Error(405, "health takes GET");
    if (parts[2] == "live") return Json(200, "");
    if (parts[2] == "ready") {
      const bool draining = options.draining != nullptr && options.draining->load();
      return draining ? Error(503, "the server is shutting down") : Json(200, "");
    }
    return Error(404, "no such endpoint");
  }
  if (parts[1] == "models") return Models(request, service, parts, options);
  if (parts[1] == "repository") return Repository(request, service, parts, options);
  if (parts[1] == "systemsharedmemory") {
    return SystemSharedMemory(request, service, parts, options);
  }
  return Error(404, "no such endpoint");
}

}  // namespace zerodet::server::detail

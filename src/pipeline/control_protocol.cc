#include "control_protocol.h"

#include <nlohmann/json.hpp>
#include <set>

#include "zerodet/core/detection_json.h"

namespace zerodet::pipeline::detail {
namespace {

using Json = nlohmann::ordered_json;

// Names and references are short; a longer one is not a valid name anywhere in a pipeline.
constexpr size_t kMaxFieldBytes = 256;

// Parses a JSON object line without throwing; nullopt for anything else.
std::optional<Json> ParseObject(std::string_view line) {
  Json json = Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return std::nullopt;
  return json;
}

// The string at `key`: absent -> `fallback` (or an error where `required`), else it must be a
// string of at most kMaxFieldBytes.
Result<std::string> StringField(const Json& json, const char* key, bool required) {
  const auto it = json.find(key);
  if (it == json.end()) {
    if (required)
      return InvalidArgumentError(std::string("control request: '") + key + "' is required");
    return std::string();
  }
  if (!it->is_string()) {
    return InvalidArgumentError(std::string("control request: '") + key + "' must be a string");
  }
  const std::string& value = it->get_ref<const std::string&>();
  if (value.size() > kMaxFieldBytes) {
    return InvalidArgumentError(std::string("control request: '") + key + "' is longer than " +
                                std::to_string(kMaxFieldBytes) + " bytes");
  }
  return value;
}

Status OnlyKeys(const Json& json, const std::set<std::string>& allowed, std::string_view what) {
  for (const auto& item : json.items()) {
    if (allowed.count(item.key()) == 0) {
      return InvalidArgumentError(std::string(what) + ": unknown field '" +
                                  item.key().substr(0, 40) + "'");
    }
  }
  return Status::Ok();
}

}  // namespace

std::string EncodeControlRequest(const ControlRequest& request) {
  Json json;
  if (request.kind == ControlRequest::Kind::kSwitch) {
    json["op"] = "switch";
    json["source"] = request.switch_request.source;
    json["model"] = request.switch_request.model;
    if (!request.switch_request.entry.empty()) json["entry"] = request.switch_request.entry;
  } else {
    json["op"] = "models";
  }
  return ToJsonLine(json) + "\n";
}

Result<ControlRequest> DecodeControlRequest(std::string_view line) {
  if (line.size() >= kMaxControlLineBytes) {
    return InvalidArgumentError("control request longer than " +
                                std::to_string(kMaxControlLineBytes) + " bytes");
  }
  const std::optional<Json> json = ParseObject(line);
  if (!json) return InvalidArgumentError("control request is not a JSON object");
  ZD_ASSIGN_OR_RETURN(const std::string op, StringField(*json, "op", /*required=*/true));
  ControlRequest request;
  if (op == "models") {
    ZD_RETURN_IF_ERROR(OnlyKeys(*json, {"op"}, "control request 'models'"));
    request.kind = ControlRequest::Kind::kModels;
    return request;
  }
  if (op != "switch") {
    return InvalidArgumentError("control request: unknown op '" + op.substr(0, 40) +
                                "' (known: switch, models)");
  }
  ZD_RETURN_IF_ERROR(
      OnlyKeys(*json, {"op", "source", "model", "entry"}, "control request 'switch'"));
  request.kind = ControlRequest::Kind::kSwitch;
  ZD_ASSIGN_OR_RETURN(request.switch_request.source, StringField(*json, "source", true));
  ZD_ASSIGN_OR_RETURN(request.switch_request.model, StringField(*json, "model", true));
  ZD_ASSIGN_OR_RETURN(request.switch_request.entry, StringField(*json, "entry", false));
  return request;
}

std::string EncodeControlReply(const Result<std::vector<ModelAssignment>>& reply) {
  Json json;
  if (!reply.ok()) {
    json["ok"] = false;
    json["code"] = static_cast<int>(reply.status().code());
    json["error"] = reply.status().message();
    return ToJsonLine(json) + "\n";
  }
  json["ok"] = true;
  Json models = Json::array();
  for (const ModelAssignment& a : *reply) {
    models.push_back({{"entry", a.entry},
                      {"source", a.source},
                      {"model", a.model},
                      {"switchable", a.switchable}});
  }
  json["models"] = std::move(models);
  return ToJsonLine(json) + "\n";
}

Result<std::vector<ModelAssignment>> DecodeControlReply(std::string_view line) {
  const auto malformed = [&] {
    return CorruptDataError("the pipeline's control socket sent a malformed reply: '" +
                            std::string(line.substr(0, 80)) + "'");
  };
  const std::optional<Json> json = ParseObject(line);
  if (!json) return malformed();
  const auto ok = json->find("ok");
  if (ok == json->end() || !ok->is_boolean()) return malformed();
  if (!ok->get<bool>()) {
    const auto code = json->find("code");
    const auto error = json->find("error");
    if (code == json->end() || !code->is_number_integer() || error == json->end() ||
        !error->is_string()) {
      return malformed();
    }
    const int64_t value = code->get<int64_t>();
    if (value <= static_cast<int>(StatusCode::kOk) ||
        value > static_cast<int>(StatusCode::kInternal)) {
      return malformed();
    }
    return Status(static_cast<StatusCode>(value), error->get<std::string>());
  }
  const auto models = json->find("models");
  if (models == json->end() || !models->is_array()) return malformed();
  std::vector<ModelAssignment> out;
  for (const Json& m : *models) {
    if (!m.is_object()) return malformed();
    ModelAssignment a;
    for (auto [key, field] : {std::pair{"entry", &a.entry}, std::pair{"source", &a.source},
                              std::pair{"model", &a.model}}) {
      const auto it = m.find(key);
      if (it == m.end() || !it->is_string()) return malformed();
      *field = it->get<std::string>();
    }
    const auto switchable = m.find("switchable");
    if (switchable == m.end() || !switchable->is_boolean()) return malformed();
    a.switchable = switchable->get<bool>();
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace zerodet::pipeline::detail

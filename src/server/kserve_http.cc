#include "kserve_http.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "zerodet/core/detection_json.h"
#include "zerodet/core/tensor.h"

namespace zerodet::server::detail {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// Tensors have at most this many dimensions (ONNX allows more, YOLO models use 4).
constexpr size_t kMaxRank = 16;

Status Invalid(const std::string& what) {
  return InvalidArgumentError(what);
}

std::string Shown(const std::string& name) {
  return name.size() > 64 ? name.substr(0, 64) + "..." : name;
}

// A JSON string field (optional: absent gives `fallback`).
Result<std::string> StringAt(const Json& object, const char* key, const std::string& where,
                             bool required) {
  const auto it = object.find(key);
  if (it == object.end()) {
    if (required) return Invalid(where + ": '" + key + "' is required");
    return std::string();
  }
  if (!it->is_string()) return Invalid(where + ": '" + key + "' must be a string");
  return it->get<std::string>();
}

// A boolean parameter in a "parameters" object, if present.
Result<std::optional<bool>> BoolParameter(const Json& object, const char* key,
                                          const std::string& where) {
  const auto params = object.find("parameters");
  if (params == object.end()) return std::optional<bool>();
  if (!params->is_object()) return Invalid(where + ": 'parameters' must be an object");
  const auto it = params->find(key);
  if (it == params->end()) return std::optional<bool>();
  if (!it->is_boolean()) return Invalid(where + ": parameter '" + key + "' must be true or false");
  return std::optional<bool>(it->get<bool>());
}

Result<std::optional<uint64_t>> SizeParameter(const Json& object, const char* key,
                                              const std::string& where) {
  const auto params = object.find("parameters");
  if (params == object.end()) return std::optional<uint64_t>();
  if (!params->is_object()) return Invalid(where + ": 'parameters' must be an object");
  const auto it = params->find(key);
  if (it == params->end()) return std::optional<uint64_t>();
  if (!it->is_number_unsigned()) {
    return Invalid(where + ": parameter '" + key + "' must be a non-negative integer");
  }
  return std::optional<uint64_t>(it->get<uint64_t>());
}

// The shared-memory parameters of an input or output (shared_memory_region, _byte_size,
// _offset), if it names a region.
Result<std::optional<SharedMemoryRef>> SharedMemoryParameters(const Json& object,
                                                              const std::string& where) {
  const auto params = object.find("parameters");
  if (params == object.end() || !params->is_object()) return std::optional<SharedMemoryRef>();
  const auto region = params->find("shared_memory_region");
  if (region == params->end()) {
    for (const char* key : {"shared_memory_byte_size", "shared_memory_offset"}) {
      if (params->contains(key)) {
        return Invalid(where + ": parameter '" + key + "' without shared_memory_region");
      }
    }
    return std::optional<SharedMemoryRef>();
  }
  if (!region->is_string() || region->get<std::string>().empty()) {
    return Invalid(where + ": parameter 'shared_memory_region' must be a region name");
  }
  SharedMemoryRef ref;
  ref.region = region->get<std::string>();
  ZD_ASSIGN_OR_RETURN(std::optional<uint64_t> size,
                      SizeParameter(object, "shared_memory_byte_size", where));
  if (!size) return Invalid(where + ": shared_memory_region needs shared_memory_byte_size");
  ref.byte_size = *size;
  ZD_ASSIGN_OR_RETURN(std::optional<uint64_t> offset,
                      SizeParameter(object, "shared_memory_offset", where));
  ref.offset = offset.value_or(0);
  return std::optional<SharedMemoryRef>(std::move(ref));
}

// The store object an input names (parameter zerodet_store_object: its id in hex), if any.
Result<std::optional<store::ObjectId>> StoreObjectParameter(const Json& object,
                                                            const std::string& where) {
  const auto params = object.find("parameters");
  if (params == object.end() || !params->is_object()) return std::optional<store::ObjectId>();
  const auto it = params->find("zerodet_store_object");
  if (it == params->end()) return std::optional<store::ObjectId>();
  if (!it->is_string()) {
    return Invalid(where + ": parameter 'zerodet_store_object' must be an object id in hex");
  }
  auto id = store::ObjectId::FromHex(it->get<std::string>());
  if (!id.ok()) {
    return Invalid(where + ": parameter 'zerodet_store_object' is not a 40-digit hex object id");
  }
  return std::optional<store::ObjectId>(*id);
}

Result<std::vector<int64_t>> ShapeAt(const Json& object, const std::string& where) {
  const auto it = object.find("shape");
  if (it == object.end() || !it->is_array()) return Invalid(where + ": 'shape' must be a list");
  if (it->size() > kMaxRank) {
    return Invalid(where + ": 'shape' has more than " + std::to_string(kMaxRank) + " dimensions");
  }
  std::vector<int64_t> shape;
  for (const Json& d : *it) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t{1} << 40) {
      return Invalid(where + ": 'shape' must hold non-negative integers");
    }
    shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
  }
  return shape;
}

// Appends one JSON number as `dtype` to `out`. Errors: not a number, or out of range.
Status AppendNumber(const Json& value, DType dtype, std::vector<uint8_t>& out) {
  auto append = [&out](const auto& v) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), bytes, bytes + sizeof(v));
  };
  if (dtype == DType::kFloat32) {
    if (!value.is_number()) return Invalid("expected a number");
    append(static_cast<float>(value.get<double>()));
    return Status::Ok();
  }
  if (!value.is_number_integer()) return Invalid("expected an integer");
  int64_t v = 0;
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid("integer out of range");
    }
    v = static_cast<int64_t>(u);
  } else {
    v = value.get<int64_t>();
  }
  auto in_range = [v](auto lo, auto hi) {
    return v >= static_cast<int64_t>(lo) && v <= static_cast<int64_t>(hi);
  };
  switch (dtype) {
    case DType::kUInt8:
      if (!in_range(0, 255)) return Invalid("integer out of range for UINT8");
      append(static_cast<uint8_t>(v));
      return Status::Ok();
    case DType::kInt8:
      if (!in_range(-128, 127)) return Invalid("integer out of range for INT8");
      append(static_cast<int8_t>(v));
      return Status::Ok();
    case DType::kInt32:
      if (!in_range(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max())) {
        return Invalid("integer out of range for INT32");
      }
      append(static_cast<int32_t>(v));
      return Status::Ok();
    case DType::kInt64:
      append(v);
      return Status::Ok();
    default:
      return Invalid("datatype not accepted as JSON numbers");
  }
}

// Flattens "data" (a flat list, or lists nested as the shape) into bytes of `dtype`, without
// recursion (the nesting comes from the network).
Status FlattenData(const Json& data, DType dtype, uint64_t expected, std::vector<uint8_t>& out,
                   const std::string& where) {
  if (!data.is_array()) return Invalid(where + ": 'data' must be a list");
  out.reserve(static_cast<size_t>(expected) * DTypeSize(dtype));
  std::vector<std::pair<const Json*, size_t>> stack = {{&data, 0}};
  uint64_t count = 0;
  while (!stack.empty()) {
    auto& [array, next] = stack.back();
    if (next == array->size()) {
      stack.pop_back();
      continue;
    }
    const Json& item = (*array)[next++];
    if (item.is_array()) {
      if (stack.size() > kMaxRank) return Invalid(where + ": 'data' is nested too deeply");
      stack.push_back({&item, 0});
      continue;
    }
    if (++count > expected) break;
    const Status appended = AppendNumber(item, dtype, out);
    if (!appended.ok()) return Invalid(where + ": 'data': " + appended.message());
  }
  if (count != expected) {
    return Invalid(where + ": 'data' has " + (count > expected ? "more than " : "") +
                   std::to_string(count) + " elements; the shape needs " +
                   std::to_string(expected));
  }
  return Status::Ok();
}

void AppendJsonData(const InferOutput& output, OrderedJson& data) {
  const size_t n = output.data.size() / DTypeSize(output.dtype);
  const uint8_t* bytes = output.data.data();
  auto at = [bytes](size_t i, auto zero) {
    decltype(zero) v;
    std::memcpy(&v, bytes + i * sizeof(v), sizeof(v));
    return v;
  };
  data = OrderedJson::array();
  for (size_t i = 0; i < n; ++i) {
    switch (output.dtype) {
      case DType::kFloat32: {
        const float v = at(i, float{});
        data.push_back(std::isfinite(v) ? OrderedJson(v) : OrderedJson(nullptr));
        break;
      }
      case DType::kFloat16: {
        const float v = HalfToFloat(at(i, uint16_t{}));
        data.push_back(std::isfinite(v) ? OrderedJson(v) : OrderedJson(nullptr));
        break;
      }
      case DType::kUInt8:
        data.push_back(at(i, uint8_t{}));
        break;
      case DType::kInt8:
        data.push_back(at(i, int8_t{}));
        break;
      case DType::kInt32:
        data.push_back(at(i, int32_t{}));
        break;
      case DType::kInt64:
        data.push_back(at(i, int64_t{}));
        break;
    }
  }
}

}  // namespace

float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  uint32_t mantissa = half & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while ((mantissa & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mantissa & 0x3ffu) << 13;
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | mantissa << 13;
  } else {
    bits = sign | (exponent + 127 - 15) << 23 | mantissa << 13;
  }
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

Result<ParsedInferRequest> ParseInferRequest(std::string_view body,
                                             std::optional<uint64_t> header_length) {
  if (header_length && *header_length > body.size()) {
    return Invalid("Inference-Header-Content-Length " + std::to_string(*header_length) +
                   " is larger than the body (" + std::to_string(body.size()) + " bytes)");
  }
  const std::string_view header = header_length ? body.substr(0, *header_length) : body;
  std::string_view binary = header_length ? body.substr(*header_length) : std::string_view();
  const Json json = Json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Invalid("the request is not valid JSON");
  if (!json.is_object()) return Invalid("the request must be a JSON object");

  ParsedInferRequest parsed;
  ZD_ASSIGN_OR_RETURN(parsed.request.id, StringAt(json, "id", "request", false));
  ZD_ASSIGN_OR_RETURN(std::optional<bool> binary_all,
                      BoolParameter(json, "binary_data_output", "request"));
  parsed.binary_all_outputs = binary_all.value_or(false);
  const auto inputs = json.find("inputs");
  if (inputs == json.end() || !inputs->is_array() || inputs->empty()) {
    return Invalid("request: 'inputs' must be a non-empty list");
  }
  for (size_t i = 0; i < inputs->size(); ++i) {
    const Json& in = (*inputs)[i];
    std::string where = "inputs[" + std::to_string(i) + "]";
    if (!in.is_object()) return Invalid(where + " must be an object");
    InferInput input;
    ZD_ASSIGN_OR_RETURN(input.name, StringAt(in, "name", where, true));
    where += " '" + Shown(input.name) + "'";
    ZD_ASSIGN_OR_RETURN(input.datatype, StringAt(in, "datatype", where, true));
    ZD_ASSIGN_OR_RETURN(input.shape, ShapeAt(in, where));
    auto dtype = ParseKServeDatatype(input.datatype);
    if (!dtype.ok()) return dtype.status().WithContext(where);
    const std::optional<uint64_t> elements = CheckedElementCount(input.shape);
    if (!elements || *elements > (uint64_t{1} << 40)) return Invalid(where + ": shape too large");
    ZD_ASSIGN_OR_RETURN(std::optional<uint64_t> binary_size,
                        SizeParameter(in, "binary_data_size", where));
    ZD_ASSIGN_OR_RETURN(input.shared_memory, SharedMemoryParameters(in, where));
    ZD_ASSIGN_OR_RETURN(input.store_object, StoreObjectParameter(in, where));
    if (input.shared_memory && input.store_object) {
      return Invalid(where + ": names both a shared-memory region and a store object");
    }
    if (input.shared_memory || input.store_object) {
      if (in.contains("data") || binary_size) {
        return Invalid(where + ": names " +
                       (input.shared_memory ? "a shared-memory region" : "a store object") +
                       " and also carries data");
      }
    } else if (binary_size) {
      if (in.contains("data")) return Invalid(where + ": has both 'data' and binary_data_size");
      if (*binary_size > binary.size()) {
        return Invalid(where + ": binary_data_size " + std::to_string(*binary_size) +
                       " is more than the " + std::to_string(binary.size()) +
                       " binary bytes left in the body");
      }
      input.data = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(binary.data()),
                                            static_cast<size_t>(*binary_size));
      binary.remove_prefix(static_cast<size_t>(*binary_size));
    } else {
      const auto data = in.find("data");
      if (data == in.end()) return Invalid(where + ": 'data' or binary_data_size is required");
      if (*dtype == DType::kFloat16) {
        return Invalid(where + ": FP16 tensors must be sent as binary data");
      }
      // A body holds at most as many numbers as it has bytes: the element count is bounded.
      if (*elements > body.size()) {
        return Invalid(where + ": 'data' has fewer elements than the shape needs (" +
                       std::to_string(*elements) + ")");
      }
      std::vector<uint8_t> bytes;
      ZD_RETURN_IF_ERROR(FlattenData(*data, *dtype, *elements, bytes, where));
      parsed.owned.push_back(std::move(bytes));
      input.data = parsed.owned.back();
    }
    parsed.request.inputs.push_back(std::move(input));
  }
  if (!binary.empty()) {
    return Invalid("the body has " + std::to_string(binary.size()) +
                   " binary bytes no input's binary_data_size accounts for");
  }
  if (const auto outputs = json.find("outputs"); outputs != json.end()) {
    if (!outputs->is_array()) return Invalid("request: 'outputs' must be a list");
    std::set<std::string> seen;
    for (size_t i = 0; i < outputs->size(); ++i) {
      const Json& out = (*outputs)[i];
      const std::string where = "outputs[" + std::to_string(i) + "]";
      if (!out.is_object()) return Invalid(where + " must be an object");
      ZD_ASSIGN_OR_RETURN(std::string name, StringAt(out, "name", where, true));
      if (!seen.insert(name).second) return Invalid(where + ": '" + Shown(name) + "' given twice");
      ZD_ASSIGN_OR_RETURN(std::optional<bool> binary_out, BoolParameter(out, "binary_data", where));
      if (binary_out.value_or(false)) parsed.binary_outputs.push_back(name);
      ZD_ASSIGN_OR_RETURN(std::optional<SharedMemoryRef> region,
                          SharedMemoryParameters(out, where));
      if (region) parsed.request.output_shared_memory.emplace(name, std::move(*region));
      parsed.request.outputs.push_back(std::move(name));
    }
  }
  return parsed;
}

EncodedResponse EncodeInferResponse(const ServedBy& served_by, std::string_view id,
                                    std::span<const InferOutput> outputs,
                                    const ParsedInferRequest& parsed) {
  OrderedJson json;
  json["model_name"] = served_by.model_name;
  json["model_version"] = std::to_string(served_by.model_version);
  if (!id.empty()) json["id"] = std::string(id);
  json["outputs"] = OrderedJson::array();
  std::vector<const InferOutput*> binary;
  for (const InferOutput& output : outputs) {
    OrderedJson out;
    out["name"] = std::string(output.name);
    out["datatype"] = std::string(KServeDatatype(output.dtype));
    out["shape"] = output.shape;
    const bool as_binary = parsed.binary_all_outputs ||
                           std::find(parsed.binary_outputs.begin(), parsed.binary_outputs.end(),
                                     output.name) != parsed.binary_outputs.end();
    if (output.shared_memory != nullptr) {
      // Written into the client's region: only where, and how many bytes.
      out["parameters"] = {{"shared_memory_region", output.shared_memory->region},
                           {"shared_memory_byte_size", output.data.size()}};
      if (output.shared_memory->offset != 0) {
        out["parameters"]["shared_memory_offset"] = output.shared_memory->offset;
      }
    } else if (as_binary) {
      out["parameters"] = {{"binary_data_size", output.data.size()}};
      binary.push_back(&output);
    } else {
      AppendJsonData(output, out["data"]);
    }
    json["outputs"].push_back(std::move(out));
  }
  EncodedResponse response;
  response.body = ToJsonLine(json);
  if (!binary.empty()) {
    response.header_length = response.body.size();
    for (const InferOutput* output : binary) {
      response.body.append(reinterpret_cast<const char*>(output->data.data()), output->data.size());
    }
  }
  return response;
}

std::string ErrorBody(std::string_view message) {
  OrderedJson json;
  json["error"] = std::string(message);
  return ToJsonLine(json);
}

std::string ServerMetadataBody(std::string_view name, std::string_view version,
                               const std::vector<std::string>& extensions) {
  OrderedJson json;
  json["name"] = std::string(name);
  json["version"] = std::string(version);
  json["extensions"] = extensions;
  return ToJsonLine(json);
}

std::string ModelMetadataBody(const ModelMetadata& metadata) {
  OrderedJson json;
  json["name"] = metadata.name;
  json["versions"] = metadata.versions;
  json["platform"] = metadata.platform;
  for (const auto& [key, tensors] :
       {std::pair{"inputs", &metadata.inputs}, std::pair{"outputs", &metadata.outputs}}) {
    json[key] = OrderedJson::array();
    for (const TensorMetadata& t : *tensors) {
      json[key].push_back({{"name", t.name}, {"datatype", t.datatype}, {"shape", t.shape}});
    }
  }
  return ToJsonLine(json);
}

Result<SharedMemoryRegistration> ParseSharedMemoryRegistration(std::string_view body) {
  const Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return Invalid("a region registration is a JSON object {\"key\", \"offset\", \"byte_size\"}");
  }
  SharedMemoryRegistration registration;
  ZD_ASSIGN_OR_RETURN(registration.key, StringAt(json, "key", "registration", true));
  for (const auto& [field, target] : {std::pair{"offset", &registration.offset},
                                      std::pair{"byte_size", &registration.byte_size}}) {
    const auto it = json.find(field);
    if (it == json.end()) {
      if (std::string_view(field) == "offset") continue;
      return Invalid(std::string("registration: '") + field + "' is required");
    }
    if (!it->is_number_unsigned()) {
      return Invalid(std::string("registration: '") + field + "' must be a non-negative integer");
    }
    *target = it->get<uint64_t>();
  }
  return registration;
}

std::string SharedMemoryStatusBody(const std::vector<SharedMemoryRegionStatus>& regions) {
  OrderedJson json = OrderedJson::array();
  for (const SharedMemoryRegionStatus& region : regions) {
    json.push_back({{"name", region.name},
                    {"key", region.key},
                    {"offset", region.offset},
                    {"byte_size", region.byte_size}});
  }
  return ToJsonLine(json);
}

std::string RepositoryIndexBody(const RepositoryIndex& index, const ManagerStats& stats) {
  OrderedJson json = OrderedJson::array();
  for (const ModelEntry& model : index.models) {
    const ModelStats* model_stats = nullptr;
    for (const ModelStats& s : stats.models) {
      if (s.name == model.name) model_stats = &s;
    }
    auto add = [&](std::optional<int64_t> version, std::string state, std::string reason) {
      OrderedJson entry;
      entry["name"] = model.name;
      if (version) entry["version"] = std::to_string(*version);
      entry["state"] = std::move(state);
      entry["reason"] = std::move(reason);
      json.push_back(std::move(entry));
    };
    if (!model.status.ok() && model.versions.empty()) {
      add(std::nullopt, "UNAVAILABLE", model.status.message());
      continue;
    }
    for (const VersionEntry& v : model.versions) {
      std::string state = "UNAVAILABLE";
      std::string reason = !v.status.ok()     ? v.status.message()
                           : !model.config_ok ? model.status.message()
                           : v.served         ? "unloaded"
                                              : "not served by the version policy";
      if (model_stats != nullptr) {
        for (const VersionStats& vs : model_stats->versions) {
          if (vs.version != v.version) continue;
          if (vs.state == ModelState::kReady) {
            state = "READY";
            reason = "";
          } else if (vs.state == ModelState::kLoading) {
            state = "LOADING";
            reason = "";
          } else if (vs.state == ModelState::kFailed) {
            reason = vs.reason;
          }
        }
      }
      add(v.version, std::move(state), std::move(reason));
    }
  }
  return ToJsonLine(json);
}

}  // namespace zerodet::server::detail

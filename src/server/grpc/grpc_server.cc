#include "zerodet/server/grpc_server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grpc_service.grpc.pb.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/core/file.h"

namespace zerodet::server {
namespace {

static_assert(std::endian::native == std::endian::little,
              "raw tensor contents are little-endian; zerodet runs on little-endian hosts only");

namespace pb = ::inference;
using Clock = std::chrono::steady_clock;

// Most images one detection request may carry.
constexpr int64_t kMaxDetectImages = 64;
// Longest message a status carries.
constexpr size_t kMaxStatusMessage = 2000;

// A status message on one line (gRPC carries it in a header), bounded.
std::string OneLine(std::string_view text) {
  std::string line(text.substr(0, kMaxStatusMessage));
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return line;
}

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  grpc::StatusCode code = grpc::StatusCode::INTERNAL;
  switch (status.code()) {
    case StatusCode::kOk:
      return grpc::Status::OK;
    case StatusCode::kNotFound:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case StatusCode::kInvalidArgument:
    case StatusCode::kCorruptData:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case StatusCode::kUnavailable:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case StatusCode::kResourceExhausted:
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      break;
    case StatusCode::kDeadlineExceeded:
      code = grpc::StatusCode::DEADLINE_EXCEEDED;
      break;
    case StatusCode::kPermissionDenied:
      code = grpc::StatusCode::PERMISSION_DENIED;
      break;
    case StatusCode::kUnimplemented:
      code = grpc::StatusCode::UNIMPLEMENTED;
      break;
    case StatusCode::kFailedPrecondition:
      code = grpc::StatusCode::FAILED_PRECONDITION;
      break;
    case StatusCode::kAlreadyExists:
      code = grpc::StatusCode::ALREADY_EXISTS;
      break;
    case StatusCode::kIoError:
    case StatusCode::kInternal:
      code = grpc::StatusCode::INTERNAL;
      break;
  }
  return grpc::Status(code, OneLine(status.message()));
}

grpc::Status InvalidArgument(std::string_view message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, OneLine(message));
}

// A name from a request, shortened for messages.
std::string Quoted(std::string_view name) {
  return "'" + std::string(name.substr(0, 100)) + "'";
}

// "" -> nullopt; a positive decimal version -> that version.
Result<std::optional<int64_t>> ParseVersion(std::string_view text) {
  if (text.empty()) return std::optional<int64_t>();
  int64_t version = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), version);
  if (ec != std::errc() || end != text.data() + text.size() || version < 1) {
    return InvalidArgumentError("model version " + Quoted(text) +
                                " is not a version number (a positive integer, or empty)");
  }
  return std::optional<int64_t>(version);
}

// The client's deadline as zerodet's (gRPC reports "none" as the clock's maximum).
Deadline DeadlineOf(const grpc::ServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return Deadline::Never();
  return Deadline::After(std::chrono::duration_cast<std::chrono::nanoseconds>(
      deadline - std::chrono::system_clock::now()));
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = static_cast<unsigned char>(
        diff | (static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i])));
  }
  return diff == 0;
}

uint64_t ElapsedNs(Clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
}

uint64_t EpochMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// ---- Tensor contents ----

// Appends the elements of a typed contents field as `Element`s, each checked against the range
// of the narrower integer type (INT8 in int_contents, UINT8 in uint_contents).
template <typename Element, typename Values>
Status AppendElements(const Values& values, const std::string& name, std::string& out) {
  out.reserve(static_cast<size_t>(values.size()) * sizeof(Element));
  for (const auto value : values) {
    if constexpr (std::is_integral_v<Element>) {
      if (!std::in_range<Element>(value)) {
        return InvalidArgumentError("input " + Quoted(name) + " has element " +
                                    std::to_string(value) + ", out of range of its datatype");
      }
    }
    const auto element = static_cast<Element>(value);
    char bytes[sizeof(Element)];
    std::memcpy(bytes, &element, sizeof(Element));
    out.append(bytes, sizeof(Element));
  }
  return Status::Ok();
}

// The number of typed-contents fields set, and how many elements they hold.
int ContentsFieldsSet(const pb::InferTensorContents& c) {
  return (c.bool_contents_size() > 0) + (c.int_contents_size() > 0) +
         (c.int64_contents_size() > 0) + (c.uint_contents_size() > 0) +
         (c.uint64_contents_size() > 0) + (c.fp32_contents_size() > 0) +
         (c.fp64_contents_size() > 0) + (c.bytes_contents_size() > 0);
}

// An input's typed contents as raw little-endian bytes. The byte count against the shape is
// checked by the service (with the element counts in this message first, as those are what
// the client wrote).
Result<std::string> TypedContentsToRaw(const pb::ModelInferRequest::InferInputTensor& input) {
  const pb::InferTensorContents& c = input.contents();
  const std::string& name = input.name();
  const std::string& dt = input.datatype();
  if (ContentsFieldsSet(c) > 1) {
    return InvalidArgumentError("input " + Quoted(name) +
                                " has contents in more than one typed field");
  }
  std::string out;
  int count = 0;
  const char* field = "";
  Status status;
  if (dt == "FP32") {
    field = "fp32_contents";
    count = c.fp32_contents_size();
    status = AppendElements<float>(c.fp32_contents(), name, out);
  } else if (dt == "INT64") {
    field = "int64_contents";
    count = c.int64_contents_size();
    status = AppendElements<int64_t>(c.int64_contents(), name, out);
  } else if (dt == "INT32") {
    field = "int_contents";
    count = c.int_contents_size();
    status = AppendElements<int32_t>(c.int_contents(), name, out);
  } else if (dt == "INT8") {
    field = "int_contents";
    count = c.int_contents_size();
    status = AppendElements<int8_t>(c.int_contents(), name, out);
  } else if (dt == "UINT8") {
    field = "uint_contents";
    count = c.uint_contents_size();
    status = AppendElements<uint8_t>(c.uint_contents(), name, out);
  } else if (dt == "FP16" || dt == "BF16") {
    return InvalidArgumentError("input " + Quoted(name) + " is " + dt +
                                ", which has no typed contents: send it in raw_input_contents");
  } else {
    // Datatypes zerodet's models do not take: the service names the supported ones.
    return std::string();
  }
  ZD_RETURN_IF_ERROR(status);
  if (count == 0 && ContentsFieldsSet(c) == 1) {
    return InvalidArgumentError("input " + Quoted(name) + " of datatype " + dt +
                                " must have its contents in " + field);
  }
  const std::optional<uint64_t> elements =
      CheckedElementCount(std::vector<int64_t>(input.shape().begin(), input.shape().end()));
  if (elements && *elements != static_cast<uint64_t>(count)) {
    return InvalidArgumentError("input " + Quoted(name) + " has " + std::to_string(count) +
                                " elements in " + field + "; its shape needs " +
                                std::to_string(*elements));
  }
  return out;
}

// Splits Triton's BYTES serialization (per element: 4-byte little-endian length, then the
// bytes) into `count` elements that point into `raw`.
Result<std::vector<std::span<const uint8_t>>> SplitBytesElements(std::string_view raw,
                                                                 uint64_t count,
                                                                 const std::string& name) {
  std::vector<std::span<const uint8_t>> elements;
  size_t pos = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (raw.size() - pos < 4) {
      return InvalidArgumentError("input " + Quoted(name) + " is truncated: element " +
                                  std::to_string(i) + " has no 4-byte length");
    }
    uint32_t length = 0;
    std::memcpy(&length, raw.data() + pos, 4);
    pos += 4;
    if (length > raw.size() - pos) {
      return InvalidArgumentError("input " + Quoted(name) + " is truncated: element " +
                                  std::to_string(i) + " declares " + std::to_string(length) +
                                  " bytes, " + std::to_string(raw.size() - pos) + " remain");
    }
    elements.emplace_back(reinterpret_cast<const uint8_t*>(raw.data() + pos), length);
    pos += length;
  }
  if (pos != raw.size()) {
    return InvalidArgumentError("input " + Quoted(name) + " has " +
                                std::to_string(raw.size() - pos) + " bytes after its " +
                                std::to_string(count) + " elements");
  }
  return elements;
}

void AppendBytesElement(std::string_view element, std::string& out) {
  const auto length = static_cast<uint32_t>(element.size());
  char prefix[4];
  std::memcpy(prefix, &length, 4);
  out.append(prefix, 4);
  out.append(element);
}

// ---- Parameters ----

using Parameters = google::protobuf::Map<std::string, pb::InferParameter>;

Result<std::optional<double>> NumberParameter(const Parameters& parameters,
                                              const std::string& key) {
  const auto it = parameters.find(key);
  if (it == parameters.end()) return std::optional<double>();
  const pb::InferParameter& p = it->second;
  switch (p.parameter_choice_case()) {
    case pb::InferParameter::kDoubleParam:
      return std::optional<double>(p.double_param());
    case pb::InferParameter::kInt64Param:
      return std::optional<double>(static_cast<double>(p.int64_param()));
    case pb::InferParameter::kUint64Param:
      return std::optional<double>(static_cast<double>(p.uint64_param()));
    case pb::InferParameter::kStringParam: {
      const std::string& text = p.string_param();
      double value = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec == std::errc() && end == text.data() + text.size() && !text.empty()) {
        return std::optional<double>(value);
      }
      break;
    }
    default:
      break;
  }
  return InvalidArgumentError("parameter " + Quoted(key) + " must be a number");
}

Result<std::optional<bool>> BoolParameter(const Parameters& parameters, const std::string& key) {
  const auto it = parameters.find(key);
  if (it == parameters.end()) return std::optional<bool>();
  const pb::InferParameter& p = it->second;
  if (p.parameter_choice_case() == pb::InferParameter::kBoolParam) {
    return std::optional<bool>(p.bool_param());
  }
  if (p.parameter_choice_case() == pb::InferParameter::kStringParam) {
    if (p.string_param() == "true" || p.string_param() == "1") return std::optional<bool>(true);
    if (p.string_param() == "false" || p.string_param() == "0") {
      return std::optional<bool>(false);
    }
  }
  if (p.parameter_choice_case() == pb::InferParameter::kInt64Param &&
      (p.int64_param() == 0 || p.int64_param() == 1)) {
    return std::optional<bool>(p.int64_param() == 1);
  }
  return InvalidArgumentError("parameter " + Quoted(key) + " must be a bool");
}

// The store object an input names (parameter zerodet_store_object: its id in hex), if any.
Result<std::optional<store::ObjectId>> StoreObjectParameter(const Parameters& parameters,
                                                            const std::string& what) {
  const auto it = parameters.find("zerodet_store_object");
  if (it == parameters.end()) return std::optional<store::ObjectId>();
  if (it->second.parameter_choice_case() != pb::InferParameter::kStringParam) {
    return InvalidArgumentError(what +
                                ": parameter 'zerodet_store_object' must be an object id "
                                "in hex");
  }
  auto id = store::ObjectId::FromHex(it->second.string_param());
  if (!id.ok()) {
    return InvalidArgumentError(what +
                                ": parameter 'zerodet_store_object' is not a 40-digit "
                                "hex object id");
  }
  return std::optional<store::ObjectId>(*id);
}

// Store objects name tensors of the model's raw inputs only.
Status RefuseStoreObjects(const Parameters& parameters, const std::string& what) {
  if (parameters.count("zerodet_store_object") != 0) {
    return UnimplementedError(what + " names zerodet_store_object: only tensor inputs may");
  }
  return Status::Ok();
}

// A non-negative integer parameter, if present.
Result<std::optional<uint64_t>> SizeParameter(const Parameters& parameters, const std::string& key,
                                              const std::string& what) {
  const auto it = parameters.find(key);
  if (it == parameters.end()) return std::optional<uint64_t>();
  const pb::InferParameter& p = it->second;
  if (p.parameter_choice_case() == pb::InferParameter::kUint64Param) {
    return std::optional<uint64_t>(p.uint64_param());
  }
  if (p.parameter_choice_case() == pb::InferParameter::kInt64Param && p.int64_param() >= 0) {
    return std::optional<uint64_t>(static_cast<uint64_t>(p.int64_param()));
  }
  return InvalidArgumentError(what + ": parameter " + Quoted(key) +
                              " must be a non-negative integer");
}

// The shared-memory parameters of an input or output, if it names a region.
Result<std::optional<SharedMemoryRef>> SharedMemoryParameters(const Parameters& parameters,
                                                              const std::string& what) {
  const auto region = parameters.find("shared_memory_region");
  if (region == parameters.end()) {
    for (const char* key : {"shared_memory_byte_size", "shared_memory_offset"}) {
      if (parameters.count(key) != 0) {
        return InvalidArgumentError(what + ": parameter " + Quoted(key) +
                                    " without shared_memory_region");
      }
    }
    return std::optional<SharedMemoryRef>();
  }
  if (region->second.parameter_choice_case() != pb::InferParameter::kStringParam ||
      region->second.string_param().empty()) {
    return InvalidArgumentError(what + ": parameter 'shared_memory_region' must be a region name");
  }
  SharedMemoryRef ref;
  ref.region = region->second.string_param();
  ZD_ASSIGN_OR_RETURN(std::optional<uint64_t> size,
                      SizeParameter(parameters, "shared_memory_byte_size", what));
  if (!size)
    return InvalidArgumentError(what + ": shared_memory_region needs shared_memory_byte_size");
  ref.byte_size = *size;
  ZD_ASSIGN_OR_RETURN(std::optional<uint64_t> offset,
                      SizeParameter(parameters, "shared_memory_offset", what));
  ref.offset = offset.value_or(0);
  return std::optional<SharedMemoryRef>(std::move(ref));
}

// ---- Statistics the front end keeps ----

struct Duration {
  uint64_t count = 0;
  uint64_t ns = 0;
  void Add(uint64_t elapsed_ns) {
    count += 1;
    ns += elapsed_ns;
  }
};

struct VersionCounters {
  Duration success;
  Duration fail;
  Duration compute_input;
  Duration compute_infer;
  Duration compute_output;
  uint64_t inference_count = 0;
  uint64_t last_inference_ms = 0;
};

void SetDuration(const Duration& d, pb::StatisticDuration* out) {
  out->set_count(d.count);
  out->set_ns(d.ns);
}

zerodet::triton::DataType TritonDataType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return zerodet::triton::TYPE_FP32;
    case DType::kFloat16:
      return zerodet::triton::TYPE_FP16;
    case DType::kUInt8:
      return zerodet::triton::TYPE_UINT8;
    case DType::kInt8:
      return zerodet::triton::TYPE_INT8;
    case DType::kInt32:
      return zerodet::triton::TYPE_INT32;
    case DType::kInt64:
      return zerodet::triton::TYPE_INT64;
  }
  return zerodet::triton::TYPE_INVALID;
}

zerodet::triton::DataType TritonDataTypeOf(const std::string& kserve_name) {
  const Result<DType> dtype = ParseKServeDatatype(kserve_name);
  return dtype.ok() ? TritonDataType(*dtype) : zerodet::triton::TYPE_INVALID;
}

}  // namespace

// As ZD_ASSIGN_OR_RETURN / ZD_RETURN_IF_ERROR, returning the error as a grpc::Status.
#define ZD_GRPC_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return ToGrpc(tmp.status());          \
  lhs = std::move(tmp).value()
#define ZD_ASSIGN_OR_RETURN_GRPC(lhs, expr) \
  ZD_GRPC_ASSIGN_OR_RETURN_IMPL_(ZD_CONCAT_(zd_grpc_result_, __LINE__), lhs, expr)
#define ZD_RETURN_IF_ERROR_GRPC(expr)                          \
  do {                                                         \
    const ::zerodet::Status zd_grpc_status_ = (expr);          \
    if (!zd_grpc_status_.ok()) return ToGrpc(zd_grpc_status_); \
  } while (0)

// ---- The service ----

struct GrpcServer::Impl final : public pb::GRPCInferenceService::Service {
  InferenceService& service;
  GrpcServerOptions options;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::atomic<int> in_flight{0};
  std::atomic<bool> shutting_down{false};
  std::once_flag shutdown_once;

  mutable std::mutex counters_mu;
  std::map<std::pair<std::string, int64_t>, VersionCounters> counters;  // guarded by counters_mu

  Impl(InferenceService& s, GrpcServerOptions o) : service(s), options(std::move(o)) {}

  // Runs one handler: counted in flight, every exception turned into a status.
  template <typename Body>
  grpc::Status Guard(const char* rpc, Body&& body) {
    in_flight.fetch_add(1);
    struct Done {
      std::atomic<int>& n;
      ~Done() { n.fetch_sub(1); }
    } done{in_flight};
    try {
      return body();
    } catch (const std::bad_alloc&) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          std::string(rpc) + ": out of memory");
    } catch (const std::exception& e) {
      return grpc::Status(grpc::StatusCode::INTERNAL, OneLine(std::string(rpc) + ": " + e.what()));
    } catch (...) {
      return grpc::Status(grpc::StatusCode::INTERNAL, std::string(rpc) + ": unknown exception");
    }
  }

  grpc::Status Authorize(const grpc::ServerContext& context) const {
    if (options.token.empty()) return grpc::Status::OK;
    const auto& metadata = context.client_metadata();
    const auto it = metadata.find("authorization");
    if (it == metadata.end()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "this call needs the bearer token (metadata authorization: Bearer "
                          "<token>)");
    }
    const std::string_view value(it->second.data(), it->second.size());
    constexpr std::string_view kBearer = "Bearer ";
    if (!value.starts_with(kBearer) ||
        !ConstantTimeEquals(value.substr(kBearer.size()), options.token)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "the bearer token is not valid");
    }
    return grpc::Status::OK;
  }

  // The version a failure is counted against: the requested one, else the model's default;
  // none for a model or version the repository does not serve.
  std::optional<int64_t> CountedVersion(const std::string& model,
                                        std::optional<int64_t> version) const {
    const zerodet::RepositoryIndex index = service.manager().Index();
    const ModelEntry* entry = index.Find(model);
    if (entry == nullptr) return std::nullopt;
    if (!version) return entry->DefaultVersion();
    if (std::find(entry->served.begin(), entry->served.end(), *version) == entry->served.end()) {
      return std::nullopt;
    }
    return version;
  }

  void CountFailure(const std::string& model, std::optional<int64_t> version, uint64_t elapsed_ns) {
    const std::optional<int64_t> counted = CountedVersion(model, version);
    if (!counted) return;
    std::lock_guard lock(counters_mu);
    counters[{model, *counted}].fail.Add(elapsed_ns);
  }

  // ---- ModelInfer: raw tensors ----

  Status InferTensors(const pb::ModelInferRequest& request, Deadline deadline,
                      std::optional<int64_t> version, pb::ModelInferResponse& response,
                      ServedBy& served, uint64_t& infer_ns) {
    InferRequest infer;
    infer.model_name = request.model_name();
    infer.model_version = version;
    infer.id = request.id();
    infer.deadline = deadline;
    const int raw_count = request.raw_input_contents_size();
    if (raw_count != 0 && raw_count != request.inputs_size()) {
      return InvalidArgumentError("the request has " + std::to_string(request.inputs_size()) +
                                  " inputs but " + std::to_string(raw_count) +
                                  " raw_input_contents (one per input, in order)");
    }
    std::vector<std::string> converted(static_cast<size_t>(request.inputs_size()));
    for (int i = 0; i < request.inputs_size(); ++i) {
      const pb::ModelInferRequest::InferInputTensor& in = request.inputs(i);
      InferInput input;
      input.name = in.name();
      input.datatype = in.datatype();
      input.shape.assign(in.shape().begin(), in.shape().end());
      ZD_ASSIGN_OR_RETURN(input.shared_memory,
                          SharedMemoryParameters(in.parameters(), "input " + Quoted(in.name())));
      ZD_ASSIGN_OR_RETURN(input.store_object,
                          StoreObjectParameter(in.parameters(), "input " + Quoted(in.name())));
      if (input.shared_memory && input.store_object) {
        return InvalidArgumentError("input " + Quoted(in.name()) +
                                    " names both a shared-memory region and a store object");
      }
      if (input.shared_memory || input.store_object) {
        const bool has_raw = raw_count != 0 && !request.raw_input_contents(i).empty();
        if (has_raw || (in.has_contents() && ContentsFieldsSet(in.contents()) > 0)) {
          return InvalidArgumentError("input " + Quoted(in.name()) +
                                      " names a shared-memory region or a store object and "
                                      "also carries data");
        }
      } else if (raw_count != 0) {
        if (in.has_contents() && ContentsFieldsSet(in.contents()) > 0) {
          return InvalidArgumentError("input " + Quoted(in.name()) +
                                      " has typed contents while the request has "
                                      "raw_input_contents (use one or the other)");
        }
        const std::string& raw = request.raw_input_contents(i);
        input.data = {reinterpret_cast<const uint8_t*>(raw.data()), raw.size()};
      } else {
        std::string& bytes = converted[static_cast<size_t>(i)];
        ZD_ASSIGN_OR_RETURN(bytes, TypedContentsToRaw(in));
        input.data = {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
      }
      infer.inputs.push_back(std::move(input));
    }
    for (const pb::ModelInferRequest::InferRequestedOutputTensor& out : request.outputs()) {
      ZD_RETURN_IF_ERROR(RefuseStoreObjects(out.parameters(), "output " + Quoted(out.name())));
      ZD_ASSIGN_OR_RETURN(std::optional<SharedMemoryRef> region,
                          SharedMemoryParameters(out.parameters(), "output " + Quoted(out.name())));
      if (out.parameters().count("classification") != 0) {
        return UnimplementedError("output " + Quoted(out.name()) +
                                  ": the classification extension is not supported");
      }
      if (region) infer.output_shared_memory.emplace(out.name(), std::move(*region));
      infer.outputs.push_back(out.name());
    }
    const auto start = Clock::now();
    const InferSink sink = [&](const ServedBy& by, std::span<const InferOutput> outputs) {
      infer_ns = ElapsedNs(start);
      served = by;
      for (const InferOutput& o : outputs) {
        pb::ModelInferResponse::InferOutputTensor* tensor = response.add_outputs();
        tensor->set_name(std::string(o.name));
        tensor->set_datatype(std::string(KServeDatatype(o.dtype)));
        for (int64_t d : o.shape) tensor->add_shape(d);
        if (o.shared_memory != nullptr) {
          // Written into the client's region: only where, and how many bytes; an empty raw
          // entry keeps raw_output_contents aligned with outputs.
          auto& parameters = *tensor->mutable_parameters();
          parameters["shared_memory_region"].set_string_param(o.shared_memory->region);
          parameters["shared_memory_byte_size"].set_int64_param(
              static_cast<int64_t>(o.data.size()));
          if (o.shared_memory->offset != 0) {
            parameters["shared_memory_offset"].set_int64_param(
                static_cast<int64_t>(o.shared_memory->offset));
          }
          response.add_raw_output_contents();
          continue;
        }
        response.add_raw_output_contents(reinterpret_cast<const char*>(o.data.data()),
                                         o.data.size());
      }
      return Status::Ok();
    };
    return service.Infer(infer, sink);
  }

  // ---- ModelInfer: detection on encoded images ----

  Status DetectImages(const pb::ModelInferRequest& request, Deadline deadline,
                      std::optional<int64_t> version, pb::ModelInferResponse& response,
                      ServedBy& served, VersionCounters& timing, uint64_t& images) {
    const pb::ModelInferRequest::InferInputTensor& in = request.inputs(0);
    ZD_RETURN_IF_ERROR(RefuseStoreObjects(in.parameters(), "input " + Quoted(in.name())));
    for (const char* key : {"shared_memory_region", "shared_memory_byte_size"}) {
      if (in.parameters().count(key) != 0) {
        return UnimplementedError("detection input " + Quoted(in.name()) +
                                  ": encoded images in shared memory are not supported");
      }
    }
    if (in.shape_size() != 1 || in.shape(0) < 1 || in.shape(0) > kMaxDetectImages) {
      std::vector<int64_t> shape(in.shape().begin(), in.shape().end());
      return InvalidArgumentError("detection input " + Quoted(in.name()) + " has shape " +
                                  ShapeToString(shape) + "; it takes [N] encoded images, N 1.." +
                                  std::to_string(kMaxDetectImages));
    }
    const auto count = static_cast<uint64_t>(in.shape(0));
    std::vector<std::span<const uint8_t>> encoded;
    if (request.raw_input_contents_size() > 0) {
      if (request.raw_input_contents_size() != 1) {
        return InvalidArgumentError("a detection request has 1 input but " +
                                    std::to_string(request.raw_input_contents_size()) +
                                    " raw_input_contents");
      }
      if (ContentsFieldsSet(in.contents()) > 0) {
        return InvalidArgumentError("input " + Quoted(in.name()) +
                                    " has typed contents and raw_input_contents");
      }
      ZD_ASSIGN_OR_RETURN(encoded,
                          SplitBytesElements(request.raw_input_contents(0), count, in.name()));
    } else {
      const pb::InferTensorContents& c = in.contents();
      if (ContentsFieldsSet(c) != 1 || c.bytes_contents_size() == 0 ||
          static_cast<uint64_t>(c.bytes_contents_size()) != count) {
        return InvalidArgumentError("input " + Quoted(in.name()) + " has shape [" +
                                    std::to_string(count) + "] but " +
                                    std::to_string(c.bytes_contents_size()) +
                                    " bytes_contents (and no raw_input_contents)");
      }
      for (const std::string& b : c.bytes_contents()) {
        encoded.emplace_back(reinterpret_cast<const uint8_t*>(b.data()), b.size());
      }
    }

    DetectRequest detect;
    detect.model_name = request.model_name();
    detect.model_version = version;
    detect.deadline = deadline;
    const Parameters& params = request.parameters();
    ZD_ASSIGN_OR_RETURN(std::optional<double> conf, NumberParameter(params, "conf"));
    ZD_ASSIGN_OR_RETURN(std::optional<double> iou, NumberParameter(params, "iou"));
    ZD_ASSIGN_OR_RETURN(std::optional<double> max_det, NumberParameter(params, "max_det"));
    ZD_ASSIGN_OR_RETURN(std::optional<bool> agnostic, BoolParameter(params, "agnostic"));
    ZD_ASSIGN_OR_RETURN(std::optional<bool> annotate, BoolParameter(params, "annotate"));
    if (conf) detect.conf = static_cast<float>(*conf);
    if (iou) detect.iou = static_cast<float>(*iou);
    if (max_det) {
      if (!(*max_det >= 1 && *max_det <= 10000) ||
          *max_det != static_cast<double>(static_cast<int>(*max_det))) {
        return InvalidArgumentError("max_det must be an integer within 1..10000");
      }
      detect.max_detections = static_cast<int>(*max_det);
    }
    detect.agnostic = agnostic;
    detect.annotate = annotate.value_or(false);

    // Outputs: "detections", and "annotated" when asked for (by parameter or by name).
    std::vector<std::string> outputs;
    for (const auto& out : request.outputs()) {
      if (out.name() != "detections" && out.name() != "annotated") {
        return InvalidArgumentError(
            "a detection request has the outputs 'detections' and "
            "'annotated', not " +
            Quoted(out.name()));
      }
      if (out.name() == "annotated") detect.annotate = true;
      outputs.push_back(out.name());
    }
    if (outputs.empty()) {
      outputs.push_back("detections");
      if (detect.annotate) outputs.push_back("annotated");
    }

    std::string detections_raw;
    std::string annotated_raw;
    for (uint64_t i = 0; i < count; ++i) {
      detect.image = encoded[i];
      detect.source_name = count == 1 ? "image" : "image " + std::to_string(i);
      ZD_ASSIGN_OR_RETURN(DetectResponse result, service.Detect(detect));
      served = result.served_by;
      AppendBytesElement(DetectResponseJson(result), detections_raw);
      AppendBytesElement(
          std::string_view(reinterpret_cast<const char*>(result.annotated_jpeg.data()),
                           result.annotated_jpeg.size()),
          annotated_raw);
      const auto ms_to_ns = [](double ms) { return static_cast<uint64_t>(ms * 1e6); };
      timing.compute_input.Add(ms_to_ns(result.timing.decode_ms + result.timing.preprocess_ms));
      timing.compute_infer.Add(ms_to_ns(result.timing.infer_ms));
      timing.compute_output.Add(ms_to_ns(result.timing.postprocess_ms));
      images += 1;
    }
    for (const std::string& name : outputs) {
      pb::ModelInferResponse::InferOutputTensor* tensor = response.add_outputs();
      tensor->set_name(name);
      tensor->set_datatype("BYTES");
      tensor->add_shape(static_cast<int64_t>(count));
      response.add_raw_output_contents(name == "detections" ? detections_raw : annotated_raw);
    }
    return Status::Ok();
  }

  static bool IsDetectRequest(const pb::ModelInferRequest& request) {
    return std::any_of(request.inputs().begin(), request.inputs().end(),
                       [](const auto& in) { return in.datatype() == "BYTES"; });
  }

  // One inference (ModelInfer and each request of a stream).
  grpc::Status InferOne(const pb::ModelInferRequest& request, Deadline deadline,
                        pb::ModelInferResponse& response) {
    const auto start = Clock::now();
    ZD_ASSIGN_OR_RETURN_GRPC(std::optional<int64_t> version, ParseVersion(request.model_version()));
    ZD_RETURN_IF_ERROR_GRPC(RefuseStoreObjects(request.parameters(), "the request"));
    ServedBy served;
    VersionCounters timing;
    uint64_t images = 1;
    Status status;
    if (IsDetectRequest(request)) {
      if (request.inputs_size() != 1) {
        return InvalidArgument("a detection request (BYTES input) has exactly one input, not " +
                               std::to_string(request.inputs_size()));
      }
      images = 0;
      status = DetectImages(request, deadline, version, response, served, timing, images);
    } else {
      uint64_t infer_ns = 0;
      status = InferTensors(request, deadline, version, response, served, infer_ns);
      if (status.ok()) timing.compute_infer.Add(infer_ns);
    }
    const uint64_t elapsed = ElapsedNs(start);
    if (!status.ok()) {
      response.Clear();
      CountFailure(request.model_name(), version, elapsed);
      return ToGrpc(status);
    }
    response.set_model_name(served.model_name);
    response.set_model_version(std::to_string(served.model_version));
    response.set_id(request.id());
    std::lock_guard lock(counters_mu);
    VersionCounters& c = counters[{served.model_name, served.model_version}];
    c.success.Add(elapsed);
    c.inference_count += images;
    c.last_inference_ms = EpochMs();
    for (auto [from, to] : {std::pair{&timing.compute_input, &c.compute_input},
                            {&timing.compute_infer, &c.compute_infer},
                            {&timing.compute_output, &c.compute_output}}) {
      to->count += from->count;
      to->ns += from->ns;
    }
    return grpc::Status::OK;
  }

  // ---- RPCs ----

  grpc::Status ServerLive(grpc::ServerContext*, const pb::ServerLiveRequest*,
                          pb::ServerLiveResponse* response) override {
    return Guard("ServerLive", [&] {
      response->set_live(true);
      return grpc::Status::OK;
    });
  }

  grpc::Status ServerReady(grpc::ServerContext*, const pb::ServerReadyRequest*,
                           pb::ServerReadyResponse* response) override {
    return Guard("ServerReady", [&] {
      response->set_ready(!shutting_down.load());
      return grpc::Status::OK;
    });
  }

  grpc::Status ServerMetadata(grpc::ServerContext*, const pb::ServerMetadataRequest*,
                              pb::ServerMetadataResponse* response) override {
    return Guard("ServerMetadata", [&] {
      response->set_name(service.name());
      response->set_version(service.version());
      for (const std::string& e : service.extensions()) response->add_extensions(e);
      response->add_extensions("statistics");
      return grpc::Status::OK;
    });
  }

  grpc::Status ModelReady(grpc::ServerContext*, const pb::ModelReadyRequest* request,
                          pb::ModelReadyResponse* response) override {
    return Guard("ModelReady", [&]() -> grpc::Status {
      ZD_ASSIGN_OR_RETURN_GRPC(std::optional<int64_t> version, ParseVersion(request->version()));
      ZD_ASSIGN_OR_RETURN_GRPC(bool ready, service.ModelReady(request->name(), version));
      response->set_ready(ready);
      return grpc::Status::OK;
    });
  }

  grpc::Status ModelMetadata(grpc::ServerContext* context, const pb::ModelMetadataRequest* request,
                             pb::ModelMetadataResponse* response) override {
    return Guard("ModelMetadata", [&]() -> grpc::Status {
      ZD_ASSIGN_OR_RETURN_GRPC(std::optional<int64_t> version, ParseVersion(request->version()));
      ZD_ASSIGN_OR_RETURN_GRPC(server::ModelMetadata metadata,
                               service.Metadata(request->name(), version, DeadlineOf(*context)));
      response->set_name(metadata.name);
      for (const std::string& v : metadata.versions) response->add_versions(v);
      response->set_platform(metadata.platform);
      for (auto [tensors, out] : {std::pair{&metadata.inputs, response->mutable_inputs()},
                                  {&metadata.outputs, response->mutable_outputs()}}) {
        for (const TensorMetadata& t : *tensors) {
          pb::ModelMetadataResponse::TensorMetadata* m = out->Add();
          m->set_name(t.name);
          m->set_datatype(t.datatype);
          for (int64_t d : t.shape) m->add_shape(d);
        }
      }
      return grpc::Status::OK;
    });
  }

  grpc::Status ModelInfer(grpc::ServerContext* context, const pb::ModelInferRequest* request,
                          pb::ModelInferResponse* response) override {
    return Guard("ModelInfer", [&] { return InferOne(*request, DeadlineOf(*context), *response); });
  }

  grpc::Status ModelStreamInfer(grpc::ServerContext* context,
                                grpc::ServerReaderWriter<pb::ModelStreamInferResponse,
                                                         pb::ModelInferRequest>* stream) override {
    return Guard("ModelStreamInfer", [&]() -> grpc::Status {
      pb::ModelInferRequest request;
      while (stream->Read(&request)) {
        pb::ModelStreamInferResponse answer;
        grpc::Status status;
        try {
          status = InferOne(request, DeadlineOf(*context), *answer.mutable_infer_response());
        } catch (const std::bad_alloc&) {
          status = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "out of memory");
        } catch (const std::exception& e) {
          status = grpc::Status(grpc::StatusCode::INTERNAL, OneLine(e.what()));
        }
        if (!status.ok()) {
          answer.set_error_message(status.error_message());
          pb::ModelInferResponse* r = answer.mutable_infer_response();
          r->Clear();
          r->set_model_name(request.model_name());
          r->set_model_version(request.model_version());
          r->set_id(request.id());
        }
        if (!stream->Write(answer)) break;  // the client is gone
        request.Clear();
      }
      return grpc::Status::OK;
    });
  }

  grpc::Status ModelConfig(grpc::ServerContext* context, const pb::ModelConfigRequest* request,
                           pb::ModelConfigResponse* response) override {
    return Guard("ModelConfig", [&]() -> grpc::Status {
      ZD_ASSIGN_OR_RETURN_GRPC(std::optional<int64_t> version, ParseVersion(request->version()));
      ZD_ASSIGN_OR_RETURN_GRPC(server::ModelMetadata metadata,
                               service.Metadata(request->name(), version, DeadlineOf(*context)));
      const zerodet::RepositoryIndex index = service.manager().Index();
      const ModelEntry* entry = index.Find(request->name());
      if (entry == nullptr) {
        return ToGrpc(
            NotFoundError("model " + Quoted(request->name()) + " is not in the repository"));
      }
      FillModelConfig(entry->config, metadata, *response->mutable_config());
      return grpc::Status::OK;
    });
  }

  // Triton's ModelConfig of a model: its config's fields that have a Triton form, and its
  // tensors (with the batch dimension left out when the model batches, as Triton writes it).
  static void FillModelConfig(const zerodet::ModelConfig& config,
                              const server::ModelMetadata& metadata,
                              zerodet::triton::ModelConfig& out) {
    out.set_name(metadata.name);
    out.set_platform(metadata.platform);
    out.set_backend("onnxruntime");
    out.set_default_model_filename(config.model_filename);
    switch (config.version_policy.kind) {
      case VersionPolicy::Kind::kLatest:
        out.mutable_version_policy()->mutable_latest()->set_num_versions(
            config.version_policy.latest);
        break;
      case VersionPolicy::Kind::kAll:
        out.mutable_version_policy()->mutable_all();
        break;
      case VersionPolicy::Kind::kSpecific:
        for (int64_t v : config.version_policy.specific) {
          out.mutable_version_policy()->mutable_specific()->add_versions(v);
        }
        break;
    }
    const bool batched = config.max_batch > 1 && !metadata.inputs.empty() &&
                         !metadata.inputs[0].shape.empty() && metadata.inputs[0].shape[0] < 0;
    out.set_max_batch_size(batched ? config.max_batch : 0);
    for (const TensorMetadata& t : metadata.inputs) {
      zerodet::triton::ModelInput* in = out.add_input();
      in->set_name(t.name);
      in->set_data_type(TritonDataTypeOf(t.datatype));
      for (size_t i = batched ? 1 : 0; i < t.shape.size(); ++i) in->add_dims(t.shape[i]);
    }
    for (const TensorMetadata& t : metadata.outputs) {
      zerodet::triton::ModelOutput* o = out.add_output();
      o->set_name(t.name);
      o->set_data_type(TritonDataTypeOf(t.datatype));
      for (size_t i = batched ? 1 : 0; i < t.shape.size(); ++i) o->add_dims(t.shape[i]);
    }
    zerodet::triton::ModelInstanceGroup* group = out.add_instance_group();
    group->set_count(config.instances);
    if (config.provider == ExecutionProvider::kCpu) {
      group->set_kind(zerodet::triton::ModelInstanceGroup::KIND_CPU);
    } else {
      group->set_kind(zerodet::triton::ModelInstanceGroup::KIND_GPU);
      group->add_gpus(config.device_id);
    }
    if (config.dynamic_batching) {
      zerodet::triton::ModelDynamicBatching* b = out.mutable_dynamic_batching();
      for (int size : config.dynamic_batching->preferred_batch_sizes) {
        b->add_preferred_batch_size(size);
      }
      b->set_max_queue_delay_microseconds(config.dynamic_batching->max_queue_delay_us);
    }
  }

  grpc::Status ModelStatistics(grpc::ServerContext*, const pb::ModelStatisticsRequest* request,
                               pb::ModelStatisticsResponse* response) override {
    return Guard("ModelStatistics", [&]() -> grpc::Status {
      ZD_ASSIGN_OR_RETURN_GRPC(std::optional<int64_t> version, ParseVersion(request->version()));
      const zerodet::RepositoryIndex index = service.manager().Index();
      if (!request->name().empty() && index.Find(request->name()) == nullptr) {
        return ToGrpc(
            NotFoundError("model " + Quoted(request->name()) + " is not in the repository"));
      }
      const ManagerStats stats = service.manager().Stats();
      // (name, version) -> memory charged, for every version the manager holds.
      std::map<std::pair<std::string, int64_t>, const VersionStats*> loaded;
      for (const ModelStats& m : stats.models) {
        for (const VersionStats& v : m.versions) loaded[{m.name, v.version}] = &v;
      }
      std::map<std::pair<std::string, int64_t>, VersionCounters> counted;
      {
        std::lock_guard lock(counters_mu);
        counted = counters;
      }
      std::vector<std::pair<std::string, int64_t>> keys;
      for (const auto& [key, v] : loaded) keys.push_back(key);
      for (const auto& [key, c] : counted) {
        if (loaded.count(key) == 0) keys.push_back(key);
      }
      std::sort(keys.begin(), keys.end());
      for (const auto& key : keys) {
        if (!request->name().empty() && key.first != request->name()) continue;
        if (version && key.second != *version) continue;
        pb::ModelStatistics* s = response->add_model_stats();
        s->set_name(key.first);
        s->set_version(std::to_string(key.second));
        if (const auto it = counted.find(key); it != counted.end()) {
          const VersionCounters& c = it->second;
          s->set_last_inference(c.last_inference_ms);
          s->set_inference_count(c.inference_count);
          s->set_execution_count(c.success.count);
          pb::InferStatistics* is = s->mutable_inference_stats();
          SetDuration(c.success, is->mutable_success());
          SetDuration(c.fail, is->mutable_fail());
          SetDuration(c.compute_input, is->mutable_compute_input());
          SetDuration(c.compute_infer, is->mutable_compute_infer());
          SetDuration(c.compute_output, is->mutable_compute_output());
        }
        if (const auto it = loaded.find(key); it != loaded.end()) {
          for (const auto& [device, bytes] : it->second->charge) {
            pb::MemoryUsage* m = s->add_memory_usage();
            const bool gpu = device.starts_with("cuda:");
            m->set_type(gpu ? "GPU" : "CPU");
            int64_t id = 0;
            if (gpu) {
              const std::string_view n = std::string_view(device).substr(5);
              std::from_chars(n.data(), n.data() + n.size(), id);
            }
            m->set_id(id);
            m->set_byte_size(bytes);
          }
        }
      }
      return grpc::Status::OK;
    });
  }

  grpc::Status RepositoryIndex(grpc::ServerContext*, const pb::RepositoryIndexRequest* request,
                               pb::RepositoryIndexResponse* response) override {
    return Guard("RepositoryIndex", [&]() -> grpc::Status {
      const zerodet::RepositoryIndex index = service.manager().Index();
      const ManagerStats stats = service.manager().Stats();
      std::map<std::string, const ModelStats*> by_name;
      for (const ModelStats& m : stats.models) by_name[m.name] = &m;
      const auto add = [&](const std::string& name, std::string version, std::string state,
                           std::string reason) {
        if (request->ready() && state != "READY") return;
        pb::RepositoryIndexResponse::ModelIndex* m = response->add_models();
        m->set_name(name);
        m->set_version(std::move(version));
        m->set_state(std::move(state));
        m->set_reason(OneLine(reason));
      };
      for (const ModelEntry& entry : index.models) {
        if (!entry.status.ok()) {
          add(entry.name, "", "UNAVAILABLE", entry.status.message());
          continue;
        }
        const auto it = by_name.find(entry.name);
        if (it == by_name.end() || it->second->versions.empty()) {
          add(entry.name, "", "", "not loaded (loads on its first request)");
          continue;
        }
        for (const VersionStats& v : it->second->versions) {
          switch (v.state) {
            case ModelState::kReady:
              add(entry.name, std::to_string(v.version), "READY", "");
              break;
            case ModelState::kLoading:
              add(entry.name, std::to_string(v.version), "LOADING", "");
              break;
            case ModelState::kFailed:
              add(entry.name, std::to_string(v.version), "UNAVAILABLE", v.reason);
              break;
            case ModelState::kUnloaded:
              add(entry.name, std::to_string(v.version), "UNAVAILABLE",
                  v.reason.empty() ? "unloaded" : v.reason);
              break;
          }
        }
      }
      return grpc::Status::OK;
    });
  }

  grpc::Status RepositoryModelLoad(grpc::ServerContext* context,
                                   const pb::RepositoryModelLoadRequest* request,
                                   pb::RepositoryModelLoadResponse*) override {
    return Guard("RepositoryModelLoad", [&]() -> grpc::Status {
      if (grpc::Status auth = Authorize(*context); !auth.ok()) return auth;
      if (request->model_name().empty()) return InvalidArgument("model_name is empty");
      for (const auto& [key, value] : request->parameters()) {
        if (key == "config" || key.starts_with("file:")) {
          return ToGrpc(UnimplementedError("load parameter " + Quoted(key) +
                                           " is not supported: zerodet loads the model as its "
                                           "repository holds it"));
        }
      }
      return ToGrpc(service.manager().Load(request->model_name()));
    });
  }

  grpc::Status RepositoryModelUnload(grpc::ServerContext* context,
                                     const pb::RepositoryModelUnloadRequest* request,
                                     pb::RepositoryModelUnloadResponse*) override {
    return Guard("RepositoryModelUnload", [&]() -> grpc::Status {
      if (grpc::Status auth = Authorize(*context); !auth.ok()) return auth;
      if (request->model_name().empty()) return InvalidArgument("model_name is empty");
      return ToGrpc(service.manager().Unload(request->model_name()));
    });
  }

  static grpc::Status NoSharedMemory(std::string_view kind) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        std::string(kind) + " shared memory is not available on this server yet");
  }

  static std::optional<std::string> RegionName(const std::string& name) {
    return name.empty() ? std::nullopt : std::optional<std::string>(name);
  }

  grpc::Status SystemSharedMemoryStatus(grpc::ServerContext*,
                                        const pb::SystemSharedMemoryStatusRequest* request,
                                        pb::SystemSharedMemoryStatusResponse* response) override {
    return Guard("SystemSharedMemoryStatus", [&]() -> grpc::Status {
      ZD_ASSIGN_OR_RETURN_GRPC(std::vector<SharedMemoryRegionStatus> regions,
                               service.SharedMemoryStatus(RegionName(request->name())));
      for (const SharedMemoryRegionStatus& region : regions) {
        auto& status = (*response->mutable_regions())[region.name];
        status.set_name(region.name);
        status.set_key(region.key);
        status.set_offset(region.offset);
        status.set_byte_size(region.byte_size);
      }
      return grpc::Status::OK;
    });
  }
  grpc::Status SystemSharedMemoryRegister(grpc::ServerContext* context,
                                          const pb::SystemSharedMemoryRegisterRequest* request,
                                          pb::SystemSharedMemoryRegisterResponse*) override {
    return Guard("SystemSharedMemoryRegister", [&]() -> grpc::Status {
      if (grpc::Status auth = Authorize(*context); !auth.ok()) return auth;
      return ToGrpc(service.RegisterSharedMemory(request->name(), request->key(), request->offset(),
                                                 request->byte_size()));
    });
  }
  grpc::Status SystemSharedMemoryUnregister(grpc::ServerContext* context,
                                            const pb::SystemSharedMemoryUnregisterRequest* request,
                                            pb::SystemSharedMemoryUnregisterResponse*) override {
    return Guard("SystemSharedMemoryUnregister", [&]() -> grpc::Status {
      if (grpc::Status auth = Authorize(*context); !auth.ok()) return auth;
      return ToGrpc(service.UnregisterSharedMemory(RegionName(request->name())));
    });
  }
  grpc::Status CudaSharedMemoryStatus(grpc::ServerContext*,
                                      const pb::CudaSharedMemoryStatusRequest*,
                                      pb::CudaSharedMemoryStatusResponse*) override {
    return NoSharedMemory("CUDA");
  }
  grpc::Status CudaSharedMemoryRegister(grpc::ServerContext* context,
                                        const pb::CudaSharedMemoryRegisterRequest*,
                                        pb::CudaSharedMemoryRegisterResponse*) override {
    if (grpc::Status auth = Authorize(*context); !auth.ok()) return auth;
    return NoSharedMemory("CUDA");
  }
  grpc::Status CudaSharedMemoryUnregister(grpc::ServerContext* context,
                                          const pb::CudaSharedMemoryUnregisterRequest*,
                                          pb::CudaSharedMemoryUnregisterResponse*) override {
    if (grpc::Status auth = Authorize(*context); !auth.ok()) return auth;
    return NoSharedMemory("CUDA");
  }
};

Result<std::unique_ptr<GrpcServer>> GrpcServer::Start(InferenceService& service,
                                                      GrpcServerOptions options) {
  if (options.threads < 1 || options.threads > 1024) {
    return InvalidArgumentError("grpc threads must be within 1..1024, not " +
                                std::to_string(options.threads));
  }
  if (options.max_message_bytes < 1024 || options.max_message_bytes > (uint64_t{1} << 30)) {
    return InvalidArgumentError("grpc max message size must be within 1 KiB..1 GiB, not " +
                                std::to_string(options.max_message_bytes) + " bytes");
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return InvalidArgumentError("TLS needs both a certificate and a key");
  }
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!options.tls_cert.empty()) {
    ZD_ASSIGN_OR_RETURN(std::string cert, ReadFileText(options.tls_cert, uint64_t{1} << 20));
    ZD_ASSIGN_OR_RETURN(std::string key, ReadFileText(options.tls_key, uint64_t{1} << 20));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }

  auto impl = std::make_unique<Impl>(service, options);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.address, credentials, &impl->port);
  builder.RegisterService(impl.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  // gRPC sets SO_REUSEPORT by default, so a second server on a port in use would share it
  // silently; a port in use must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Bounded handler threads: one poller at least, a second while the first serves a call; the
  // quota caps every thread of the sync server (pollers included).
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 2);
  grpc::ResourceQuota quota("zerodet-grpc");
  quota.SetMaxThreads(options.threads + 1);
  builder.SetResourceQuota(quota);
  impl->server = builder.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return UnavailableError("grpc: cannot listen on " + options.address +
                            " (address in use, or not an address of this host)");
  }
  return std::unique_ptr<GrpcServer>(new GrpcServer(std::move(impl)));
}

GrpcServer::GrpcServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

GrpcServer::~GrpcServer() {
  Shutdown(std::chrono::milliseconds(0));
}

int GrpcServer::port() const {
  return impl_->port;
}

int GrpcServer::in_flight() const {
  return impl_->in_flight.load();
}

void GrpcServer::Shutdown(std::chrono::milliseconds grace) {
  std::call_once(impl_->shutdown_once, [&] {
    impl_->shutting_down.store(true);
    impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
    impl_->server->Wait();
  });
}

}  // namespace zerodet::server

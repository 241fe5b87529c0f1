// The KServe v2 HTTP/REST body formats (internal to the server module), without sockets: infer
// requests as JSON with tensor data inline or in the binary tensor data extension (a JSON header
// of Inference-Header-Content-Length bytes, then each binary tensor's bytes in order), infer
// responses in either form, and the other endpoints' JSON. These parse bytes from the network:
// every input gives a result or an error, never an exception (fuzzed: fuzz/server).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/core/status.h"
#include "zerodet/models/model_stats.h"
#include "zerodet/models/repository.h"
#include "zerodet/server/inference_service.h"

namespace zerodet::server::detail {

// An infer request parsed from a body. Input data points into the body (binary tensors) or into
// `owned` (tensors given as JSON numbers): the body must outlive it. Move-only in effect.
struct ParsedInferRequest {
  InferRequest request;
  std::vector<std::vector<uint8_t>> owned;
  bool binary_all_outputs = false;          // parameters.binary_data_output
  std::vector<std::string> binary_outputs;  // outputs[i].parameters.binary_data == true
};

// Parses an infer request body. `header_length`: the Inference-Header-Content-Length header
// (nullopt: the whole body is JSON). The model name and version come from the URL, not the body.
// Errors: kInvalidArgument naming what is wrong (JSON that does not parse, a field of the wrong
// type, a datatype or shape that is not valid, data whose element count does not match the
// shape, binary sizes that do not add up to the body, numbers out of the datatype's range).
Result<ParsedInferRequest> ParseInferRequest(std::string_view body,
                                             std::optional<uint64_t> header_length);

// An infer response body: JSON, and when some outputs are binary, their bytes after it.
struct EncodedResponse {
  std::string body;
  std::optional<uint64_t> header_length;  // set when binary data follows the JSON
};
// Encodes the outputs. An output is binary when `parsed` asks for it (all or by name).
EncodedResponse EncodeInferResponse(const ServedBy& served_by, std::string_view id,
                                    std::span<const InferOutput> outputs,
                                    const ParsedInferRequest& parsed);

// {"error": "..."} (the protocol's error body).
std::string ErrorBody(std::string_view message);
// GET /v2: {"name", "version", "extensions"}.
std::string ServerMetadataBody(std::string_view name, std::string_view version,
                               const std::vector<std::string>& extensions);
// GET /v2/models/<name>: {"name", "versions", "platform", "inputs", "outputs"}.
std::string ModelMetadataBody(const ModelMetadata& metadata);
// POST /v2/repository/index: [{"name", "version", "state", "reason"}], one entry per version
// (Triton's shape), states READY / LOADING / UNAVAILABLE.
std::string RepositoryIndexBody(const RepositoryIndex& index, const ManagerStats& stats);
// POST /v2/systemsharedmemory/region/<name>/register: {"key", "offset", "byte_size"}.
struct SharedMemoryRegistration {
  std::string key;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};
// Errors: kInvalidArgument naming the missing or mistyped field.
Result<SharedMemoryRegistration> ParseSharedMemoryRegistration(std::string_view body);
// GET /v2/systemsharedmemory[/region/<name>]/status: [{"name", "key", "offset", "byte_size"}].
std::string SharedMemoryStatusBody(const std::vector<SharedMemoryRegionStatus>& regions);
// Half-precision to single (FP16 outputs as JSON numbers).
float HalfToFloat(uint16_t half);

}  // namespace zerodet::server::detail

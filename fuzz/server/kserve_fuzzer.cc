// libFuzzer target for the KServe v2 HTTP infer body parser (src/server/kserve_http.h): any body
// a client sends, with or without an Inference-Header-Content-Length (taken from the first two
// bytes), parses into a request or gives kInvalidArgument, never crashes, hangs or reads out of
// bounds (ASan+UBSan). Every tensor of a parsed request lies inside the body or in its own
// storage (or, naming a shared-memory region, carries no bytes), with a size that fits its shape;
// an encoded response of those tensors parses as JSON. The same bytes as a shared-memory
// registration body parse or are refused as invalid.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "kserve_http.h"

using namespace zerodet;
using namespace zerodet::server;
using namespace zerodet::server::detail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const bool binary = (data[0] & 1) != 0;
  const uint64_t header_length = data[1];
  const std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);
  Result<ParsedInferRequest> parsed =
      ParseInferRequest(body, binary ? std::optional<uint64_t>(header_length) : std::nullopt);
  if (!parsed.ok()) {
    if (parsed.status().code() != StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  std::vector<InferOutput> outputs;
  for (const InferInput& input : parsed->request.inputs) {
    const auto* begin = reinterpret_cast<const uint8_t*>(body.data());
    const bool in_body =
        input.data.data() >= begin && input.data.data() + input.data.size() <= begin + body.size();
    bool owned = false;
    for (const auto& buffer : parsed->owned) {
      owned |= input.data.data() == buffer.data() && input.data.size() == buffer.size();
    }
    if (!in_body && !owned && !input.data.empty()) std::abort();
    // A tensor in shared memory carries no bytes in the body.
    if (input.shared_memory && !input.data.empty()) std::abort();
    auto dtype = ParseKServeDatatype(input.datatype);
    if (!dtype.ok()) std::abort();
    // Encode what fits a shape (the parser checked JSON data against it; binary sizes are the
    // service's to check).
    if (owned) {
      outputs.push_back({input.name, *dtype, input.shape, input.data, nullptr});
    }
  }
  const EncodedResponse encoded =
      EncodeInferResponse({"m", 1}, parsed->request.id, outputs, *parsed);
  const std::string_view header =
      encoded.header_length ? std::string_view(encoded.body).substr(0, *encoded.header_length)
                            : std::string_view(encoded.body);
  if (nlohmann::json::parse(header, nullptr, false).is_discarded()) std::abort();
  // The same bytes as a shared-memory registration body: parsed or refused as invalid.
  const auto registration = ParseSharedMemoryRegistration(body);
  if (!registration.ok() && registration.status().code() != StatusCode::kInvalidArgument) {
    std::abort();
  }
  return 0;
}

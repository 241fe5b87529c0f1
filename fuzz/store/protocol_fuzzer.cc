// libFuzzer target for the store's wire protocol parsers (src/store/protocol.h): every byte
// string a client could send must parse to a request or give kCorruptData, never crash or read
// out of bounds (built with ASan+UBSan). An accepted request must survive a serialize/parse
// round trip unchanged (every field, including the hello's access and the create flags), and
// must carry only known access values and create flags. The reply decoders, which parse what
// the store sends, are fuzzed too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "protocol.h"

namespace {

using namespace zerodet;
using namespace zerodet::store::internal;

bool SameRequest(const Request& a, const Request& b) {
  return a.type == b.type && a.protocol_version == b.protocol_version && a.access == b.access &&
         a.id == b.id && a.data_size == b.data_size && a.flags == b.flags &&
         a.metadata == b.metadata && a.ids == b.ids && a.timeout_ms == b.timeout_ms &&
         a.cursor == b.cursor;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> message(data, size);
  Result<Request> request = ParseRequest(message);
  if (request.ok()) {
    if ((request->flags & ~kKnownCreateFlags) != 0) std::abort();
    if (request->type == MessageType::kHello && request->protocol_version == kProtocolVersion &&
        request->access != static_cast<uint32_t>(store::StoreAccess::kReadOnly) &&
        request->access != static_cast<uint32_t>(store::StoreAccess::kReadWrite)) {
      std::abort();
    }
    const std::vector<uint8_t> again = SerializeRequest(*request);
    Result<Request> reparsed = ParseRequest(again);
    if (!reparsed.ok() || !SameRequest(*request, *reparsed)) std::abort();
  } else if (request.status().code() != StatusCode::kCorruptData) {
    std::abort();
  }

  // Replies: the same bytes as a reply of each type, then its body through the decoders.
  for (uint32_t type = 1; type <= 8; ++type) {
    std::span<const uint8_t> body;
    if (!ParseReply(message, static_cast<MessageType>(type), &body).ok()) continue;
    (void)DecodeHelloReply(body);
    (void)DecodeCreateReply(body);
    (void)DecodeGetReply(body);
    (void)DecodeListReply(body);
    (void)DecodeStats(body);
  }
  return 0;
}

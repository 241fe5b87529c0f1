// libFuzzer target for the pipeline's message parsers (src/pipeline/protocol.h and
// control_protocol.h): any bytes a child process or a control client could send must decode or
// give an error, never crash, hang or read out of bounds (built with ASan+UBSan). A decoded
// message must survive an encode/decode round trip unchanged; a decoded control request must
// re-encode to a line that decodes to the same request. The MessageReader is fed the same bytes
// in two pieces, as a pipe may deliver them.
// Encoding normalizes (line breaks inside a field become spaces), so the round trip is checked on
// the encoded form: encode(decode(encode(m))) == encode(m).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "control_protocol.h"
#include "protocol.h"

namespace {

using namespace zerodet;
using namespace zerodet::pipeline;
using namespace zerodet::pipeline::detail;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  Result<Message> message = DecodeMessage(bytes);
  if (message.ok()) {
    const std::string line = EncodeMessage(*message);
    if (line.empty() || line.back() != '\n' || line.find('\n') != line.size() - 1) std::abort();
    Result<Message> again = DecodeMessage(std::string_view(line).substr(0, line.size() - 1));
    if (!again.ok() || EncodeMessage(*again) != line) std::abort();
  }

  MessageReader reader;
  reader.Append(bytes.substr(0, size / 2));
  reader.Append(bytes.substr(size / 2));
  for (int i = 0; i < 1000; ++i) {
    auto next = reader.Next();
    if (next.ok() && !next->has_value()) break;
  }

  Result<ControlRequest> request = DecodeControlRequest(bytes);
  if (request.ok()) {
    const std::string line = EncodeControlRequest(*request);
    Result<ControlRequest> again =
        DecodeControlRequest(std::string_view(line).substr(0, line.size() - 1));
    if (!again.ok() || again->kind != request->kind ||
        again->switch_request.source != request->switch_request.source ||
        again->switch_request.model != request->switch_request.model ||
        again->switch_request.entry != request->switch_request.entry) {
      std::abort();
    }
  }
  Result<std::vector<ModelAssignment>> reply = DecodeControlReply(bytes);
  if (reply.ok()) {
    const std::string line = EncodeControlReply(reply);
    Result<std::vector<ModelAssignment>> again =
        DecodeControlReply(std::string_view(line).substr(0, line.size() - 1));
    if (!again.ok() || EncodeControlReply(again) != line) std::abort();
  }
  return 0;
}

// The messages of the control socket (internal; the public side is pipeline/control.h): one
// typed encode/decode unit, so that the client and the supervisor agree on one definition.
//
// One request per connection, one reply, each a single JSON line ending in '\n':
//   {"op":"switch","source":"gate","model":"yolo11n:2","entry":"inspect"}   ("entry" optional)
//   {"op":"models"}
//   -> {"ok":true,"models":[{"entry":"inspect","source":"gate","model":"yolo11n:2",
//                            "switchable":true}, ...]}
//   -> {"ok":false,"code":5,"error":"..."}      (code: the StatusCode's number)
// A switch replies with the one assignment it made. Lines are at most kMaxControlLineBytes.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/core/status.h"
#include "zerodet/pipeline/control.h"

namespace zerodet::pipeline::detail {

inline constexpr size_t kMaxControlLineBytes = 64 * 1024;

struct ControlRequest {
  enum class Kind { kSwitch, kModels };
  Kind kind = Kind::kModels;
  SwitchRequest switch_request;  // kSwitch only
};

// The request as its line, '\n' included.
std::string EncodeControlRequest(const ControlRequest& request);
// Decodes one line (without its '\n'). Errors: kInvalidArgument saying what is wrong (not JSON,
// an unknown op, a missing or mistyped field, an unknown field, names too long).
Result<ControlRequest> DecodeControlRequest(std::string_view line);

// The reply as its line, '\n' included: the assignments, or the error.
std::string EncodeControlReply(const Result<std::vector<ModelAssignment>>& reply);
// Decodes a reply line: the assignments, or the error the pipeline sent (its code and message).
// Errors besides those: kCorruptData for a line that is not a reply.
Result<std::vector<ModelAssignment>> DecodeControlReply(std::string_view line);

}  // namespace zerodet::pipeline::detail

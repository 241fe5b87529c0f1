// The messages between the pipeline's supervisor and its child processes (internal): one typed
// encode/decode unit, so that both sides agree on one definition and the supervisor never
// parses a child's output with string searches.
//
// Each child writes its messages into its own pipe; the supervisor reads them. A message is one
// line of text, '\n'-terminated, fields separated by one space, numbers in decimal:
//   READY                               ingest: its ring exists (readers may attach)
//   STATS <published> <dropped> <overwritten>
//                                       ingest: its ring's counters (cumulative over every
//                                       writer of the ring), at most every kStatsIntervalMs
//                                       while frames come, and before it exits
//   BEGIN <source> <sequence>           worker: took frame <sequence> of source <source>
//   RESULT <source> <sequence> <failed> <decode_ns> <queue_ns> <preprocess_ns> <infer_ns>
//          <postprocess_ns> <total_ns> <json>
//                                       worker: the result line of that frame (single-line
//                                       JSON); <failed> 1 when the detector failed on it (the
//                                       line has "error" and the times are 0), else 0; the
//                                       times are those of the line's latency_ms, in ns
//   ERROR <code> <message>              either: why it exits with kExitFatal; <code> is the
//                                       StatusCode's number, so the caller gets the child's code
//   PREPARED <source> <model> <code> [<message>]
//                                       worker: the answer to PREPARE (code 0: ready to switch)
// A worker of a repository model also reads messages from the supervisor on a second channel
// (a model switch in two phases, so that every worker of a model switches or none does):
//   PREPARE <source> <model>            load <model> (NAME[:VERSION]) for <source>; keep serving
//                                       the current one
//   COMMIT <source> <model>             take <source>'s next frames with <model>
// <source> is the index of the source in the PipelineConfig. A line is at most kMaxMessageBytes
// long; anything else is malformed (kCorruptData), and a peer that sends it is faulty.
//
// Thread-safety: free functions are pure; a MessageReader is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "zerodet/core/status.h"

namespace zerodet::pipeline::detail {

// Longest message line, '\n' included. A result line with 300 detections is about 30 KB.
inline constexpr size_t kMaxMessageBytes = size_t{1} << 20;

struct ReadyMessage {
  bool operator==(const ReadyMessage&) const = default;
};
struct StatsMessage {
  uint64_t frames_published = 0;
  uint64_t frames_dropped = 0;
  uint64_t frames_overwritten = 0;
  bool operator==(const StatsMessage&) const = default;
};
struct BeginMessage {
  uint32_t source = 0;
  uint64_t sequence = 0;
  bool operator==(const BeginMessage&) const = default;
};
// How often a running ingest reports its ring's counters (STATS) while frames come.
inline constexpr int64_t kStatsIntervalMs = 500;

// A frame's stage times, as its result line's latency_ms (see pipeline.h), in nanoseconds.
struct FrameTimes {
  uint64_t decode_ns = 0;  // capture (timestamp_ns) to publication in the ring
  uint64_t queue_ns = 0;   // publication to a worker taking it
  uint64_t preprocess_ns = 0;
  uint64_t infer_ns = 0;
  uint64_t postprocess_ns = 0;
  uint64_t total_ns = 0;  // capture to the result
  bool operator==(const FrameTimes&) const = default;
};

struct ResultMessage {
  uint32_t source = 0;
  uint64_t sequence = 0;
  std::string json;     // one line; encoding turns any line break into a space (JSON whitespace)
  bool failed = false;  // the detector failed on the frame ("error" in json; times all 0)
  FrameTimes times;
  bool operator==(const ResultMessage&) const = default;
};
struct ErrorMessage {
  Status status;  // not OK; encoding turns line breaks in the message into spaces
};

// A model reference as the messages carry it: one field, so no spaces, at most this long.
inline constexpr size_t kMaxModelReferenceBytes = 256;

struct PrepareMessage {
  uint32_t source = 0;
  std::string model;  // NAME[:VERSION]
  bool operator==(const PrepareMessage&) const = default;
};
struct CommitMessage {
  uint32_t source = 0;
  std::string model;
  bool operator==(const CommitMessage&) const = default;
};
struct PreparedMessage {
  uint32_t source = 0;
  std::string model;
  Status status;  // OK: loaded and ready; else why not (encoding turns line breaks into spaces)
};

using Message = std::variant<ReadyMessage, StatsMessage, BeginMessage, ResultMessage, ErrorMessage,
                             PrepareMessage, CommitMessage, PreparedMessage>;

// The message as its line, '\n' included. REQUIRES: an ErrorMessage's status is not OK; a
// model reference is 1..kMaxModelReferenceBytes bytes without spaces or line breaks.
std::string EncodeMessage(const Message& message);

// Decodes one line (without its '\n'). Errors: kCorruptData saying what is wrong (unknown kind,
// missing or extra fields, numbers that are not decimal or overflow, an unknown status code).
Result<Message> DecodeMessage(std::string_view line);

// Writes EncodeMessage(message) to `fd` (retrying short writes and EINTR). A socket is written
// with MSG_NOSIGNAL; a pipe's writer must ignore SIGPIPE. Returns false when the reader is gone
// (EPIPE), when a non-blocking `fd` is full (EAGAIN), or on another write error.
bool SendMessage(int fd, const Message& message);

// Splits the bytes read from a child's pipe into messages.
class MessageReader {
 public:
  // Adds bytes read from the pipe.
  void Append(std::string_view bytes);

  // The next complete message, or nullopt when no complete line is buffered. Errors:
  // kCorruptData for a malformed line (skipped: the next call continues after it), and
  // kResourceExhausted when more than kMaxMessageBytes arrive without a line break (the
  // stream cannot be resynchronized; the buffer is dropped).
  Result<std::optional<Message>> Next();

  // Bytes buffered that do not form a complete line yet.
  size_t pending_bytes() const { return buffer_.size() - start_; }

 private:
  std::string buffer_;
  size_t start_ = 0;  // where the next line begins in buffer_
};

}  // namespace zerodet::pipeline::detail

#include "protocol.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

namespace zerodet::pipeline::detail {
namespace {

constexpr std::string_view kReady = "READY";
constexpr std::string_view kStats = "STATS";
constexpr std::string_view kBegin = "BEGIN";
constexpr std::string_view kResult = "RESULT";
constexpr std::string_view kError = "ERROR";
constexpr std::string_view kPrepare = "PREPARE";
constexpr std::string_view kCommit = "COMMIT";
constexpr std::string_view kPrepared = "PREPARED";

// Line breaks would split a message in two.
std::string OneLine(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\r', ' ');
  return text;
}

Status Malformed(std::string_view line, std::string_view why) {
  constexpr size_t kShown = 80;
  std::string shown(line.substr(0, kShown));
  if (line.size() > kShown) shown += "...";
  return CorruptDataError("malformed message from a pipeline process (" + std::string(why) +
                          "): '" + shown + "'");
}

// Reads fields from a line: each Take* consumes one space-separated field.
class Fields {
 public:
  explicit Fields(std::string_view text) : rest_(text) {}

  // The next field; nullopt at the end of the line or on an empty field (two spaces).
  std::optional<std::string_view> Word() {
    if (done_) return std::nullopt;
    const size_t space = rest_.find(' ');
    const std::string_view word = rest_.substr(0, space);
    if (space == std::string_view::npos) {
      done_ = true;
      rest_ = {};
    } else {
      rest_.remove_prefix(space + 1);
    }
    if (word.empty()) return std::nullopt;
    return word;
  }

  template <typename T>
  std::optional<T> Number() {
    const std::optional<std::string_view> word = Word();
    if (!word) return std::nullopt;
    T value{};
    const auto [end, ec] = std::from_chars(word->data(), word->data() + word->size(), value);
    if (ec != std::errc() || end != word->data() + word->size()) return std::nullopt;
    return value;
  }

  // Everything after the fields taken so far (may be empty); nullopt when the line ended
  // without the separating space.
  std::optional<std::string_view> Rest() {
    if (done_) return std::nullopt;
    done_ = true;
    return rest_;
  }

  bool AtEnd() const { return done_; }

 private:
  std::string_view rest_;
  bool done_ = false;
};

// A model reference field: non-empty, bounded, and without the characters that would break the
// line or its fields.
bool ValidReference(std::string_view model) {
  return !model.empty() && model.size() <= kMaxModelReferenceBytes &&
         model.find_first_of(" \n\r") == std::string_view::npos;
}

// A status code as the messages carry it: kOk only where `ok_allowed`.
std::optional<Status> DecodeStatus(std::optional<int> code, std::optional<std::string_view> text,
                                   bool ok_allowed) {
  if (!code || *code < 0 || *code > static_cast<int>(StatusCode::kInternal)) return std::nullopt;
  if (*code == static_cast<int>(StatusCode::kOk)) {
    if (!ok_allowed) return std::nullopt;
    return Status::Ok();
  }
  return Status(static_cast<StatusCode>(*code), std::string(text.value_or("")));
}

}  // namespace

std::string EncodeMessage(const Message& message) {
  struct Encoder {
    std::string operator()(const ReadyMessage&) const { return std::string(kReady) + "\n"; }
    std::string operator()(const StatsMessage& m) const {
      return std::string(kStats) + " " + std::to_string(m.frames_published) + " " +
             std::to_string(m.frames_dropped) + " " + std::to_string(m.frames_overwritten) + "\n";
    }
    std::string operator()(const BeginMessage& m) const {
      return std::string(kBegin) + " " + std::to_string(m.source) + " " +
             std::to_string(m.sequence) + "\n";
    }
    std::string operator()(const ResultMessage& m) const {
      const FrameTimes& t = m.times;
      // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on a long chain of +.
      std::string line(kResult);
      for (const uint64_t number :
           {uint64_t{m.source}, m.sequence, uint64_t{m.failed}, t.decode_ns, t.queue_ns,
            t.preprocess_ns, t.infer_ns, t.postprocess_ns, t.total_ns}) {
        line += ' ';
        line += std::to_string(number);
      }
      line += ' ';
      line += OneLine(m.json);
      line += '\n';
      return line;
    }
    std::string operator()(const ErrorMessage& m) const {
      return std::string(kError) + " " + std::to_string(static_cast<int>(m.status.code())) + " " +
             OneLine(m.status.message()) + "\n";
    }
    std::string operator()(const PrepareMessage& m) const {
      return std::string(kPrepare) + " " + std::to_string(m.source) + " " + m.model + "\n";
    }
    std::string operator()(const CommitMessage& m) const {
      return std::string(kCommit) + " " + std::to_string(m.source) + " " + m.model + "\n";
    }
    std::string operator()(const PreparedMessage& m) const {
      return std::string(kPrepared) + " " + std::to_string(m.source) + " " + m.model + " " +
             std::to_string(static_cast<int>(m.status.code())) + " " + OneLine(m.status.message()) +
             "\n";
    }
  };
  return std::visit(Encoder{}, message);
}

Result<Message> DecodeMessage(std::string_view line) {
  Fields fields(line);
  const std::optional<std::string_view> kind = fields.Word();
  if (!kind) return Malformed(line, "no message kind");
  if (*kind == kReady) {
    if (!fields.AtEnd()) return Malformed(line, "READY takes no fields");
    return Message(ReadyMessage{});
  }
  if (*kind == kStats) {
    const auto published = fields.Number<uint64_t>();
    const auto dropped = fields.Number<uint64_t>();
    const auto overwritten = fields.Number<uint64_t>();
    if (!published || !dropped || !overwritten || !fields.AtEnd()) {
      return Malformed(line, "STATS takes three counters");
    }
    return Message(StatsMessage{*published, *dropped, *overwritten});
  }
  if (*kind == kBegin) {
    const auto source = fields.Number<uint32_t>();
    const auto sequence = fields.Number<uint64_t>();
    if (!source || !sequence || !fields.AtEnd()) {
      return Malformed(line, "BEGIN takes a source index and a sequence number");
    }
    return Message(BeginMessage{*source, *sequence});
  }
  if (*kind == kResult) {
    const auto source = fields.Number<uint32_t>();
    const auto sequence = fields.Number<uint64_t>();
    const auto failed = fields.Number<uint32_t>();
    std::optional<uint64_t> times[6];
    for (std::optional<uint64_t>& t : times) t = fields.Number<uint64_t>();
    const auto json = fields.Rest();
    bool complete = source && sequence && failed && *failed <= 1 && json && !json->empty();
    for (const std::optional<uint64_t>& t : times) complete = complete && t.has_value();
    if (!complete) {
      return Malformed(line,
                       "RESULT takes a source index, a sequence number, a failed flag, six stage "
                       "times and a JSON line");
    }
    ResultMessage result{*source, *sequence, std::string(*json), *failed == 1, {}};
    result.times = {*times[0], *times[1], *times[2], *times[3], *times[4], *times[5]};
    return Message(std::move(result));
  }
  if (*kind == kError) {
    const auto code = fields.Number<int>();
    const auto text = fields.Rest();
    if (!code || !text) return Malformed(line, "ERROR takes a status code and a message");
    if (*code <= static_cast<int>(StatusCode::kOk) ||
        *code > static_cast<int>(StatusCode::kInternal)) {
      return Malformed(line, "unknown status code " + std::to_string(*code));
    }
    return Message(ErrorMessage{Status(static_cast<StatusCode>(*code), std::string(*text))});
  }
  if (*kind == kPrepare || *kind == kCommit) {
    const auto source = fields.Number<uint32_t>();
    const auto model = fields.Word();
    if (!source || !model || !ValidReference(*model) || !fields.AtEnd()) {
      return Malformed(line, std::string(*kind) + " takes a source index and a model reference");
    }
    if (*kind == kPrepare) return Message(PrepareMessage{*source, std::string(*model)});
    return Message(CommitMessage{*source, std::string(*model)});
  }
  if (*kind == kPrepared) {
    const auto source = fields.Number<uint32_t>();
    const auto model = fields.Word();
    const auto code = fields.Number<int>();
    const auto text = fields.Rest();
    std::optional<Status> status = DecodeStatus(code, text, /*ok_allowed=*/true);
    if (!source || !model || !ValidReference(*model) || !status || !text) {
      return Malformed(line,
                       "PREPARED takes a source index, a model reference, a status code and a "
                       "message");
    }
    return Message(PreparedMessage{*source, std::string(*model), std::move(*status)});
  }
  return Malformed(line, "unknown message kind");
}

bool SendMessage(int fd, const Message& message) {
  const std::string line = EncodeMessage(message);
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::send(fd, line.data() + done, line.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK) n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

void MessageReader::Append(std::string_view bytes) {
  // Drop consumed lines before growing, so the buffer holds at most one partial line plus
  // what was just read.
  if (start_ > 0) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  buffer_.append(bytes);
}

Result<std::optional<Message>> MessageReader::Next() {
  const size_t newline = buffer_.find('\n', start_);
  if (newline == std::string::npos) {
    if (pending_bytes() >= kMaxMessageBytes) {
      buffer_.clear();
      start_ = 0;
      return ResourceExhaustedError("a pipeline process sent more than " +
                                    std::to_string(kMaxMessageBytes) +
                                    " bytes without a line break");
    }
    return std::optional<Message>();
  }
  const std::string_view line = std::string_view(buffer_).substr(start_, newline - start_);
  start_ = newline + 1;
  if (line.size() + 1 > kMaxMessageBytes) {
    return ResourceExhaustedError("a pipeline process sent a message of " +
                                  std::to_string(line.size() + 1) + " bytes (at most " +
                                  std::to_string(kMaxMessageBytes) + ")");
  }
  ZD_ASSIGN_OR_RETURN(Message message, DecodeMessage(line));
  return std::optional<Message>(std::move(message));
}

}  // namespace zerodet::pipeline::detail

// The supervisor-child protocol: every message round-trips, malformed lines are errors (never a
// crash or a half-parsed message), and a reader splits a byte stream at any boundary.
#include "protocol.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

namespace zerodet::pipeline::detail {
namespace {

Message RoundTrip(const Message& message) {
  const std::string line = EncodeMessage(message);
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line per message: " << line;
  auto decoded = DecodeMessage(std::string_view(line).substr(0, line.size() - 1));
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  return decoded.ok() ? *decoded : Message(ReadyMessage{});
}

TEST(PipelineProtocolTest, EveryMessageRoundTrips) {
  EXPECT_TRUE(std::holds_alternative<ReadyMessage>(RoundTrip(ReadyMessage{})));

  const StatsMessage stats{18446744073709551615ull, 0, 42};
  EXPECT_EQ(std::get<StatsMessage>(RoundTrip(stats)), stats);

  const BeginMessage begin{4294967295u, 7};
  EXPECT_EQ(std::get<BeginMessage>(RoundTrip(begin)), begin);

  const ResultMessage result{2, 99, R"({"source":"a b","detections":[]})", false,
                             FrameTimes{1, 2, 3, 4, 5, 18446744073709551615ull}};
  EXPECT_EQ(std::get<ResultMessage>(RoundTrip(result)), result);
  EXPECT_EQ(EncodeMessage(result).substr(0, 51),
            "RESULT 2 99 0 1 2 3 4 5 18446744073709551615 {\"sour");
  const ResultMessage frame_failed{0, 3, R"({"error":"x"})", true, {}};
  EXPECT_EQ(std::get<ResultMessage>(RoundTrip(frame_failed)), frame_failed);
  // A line break inside the JSON (whitespace between tokens) cannot split the message.
  const ResultMessage pretty{0, 1, "{\n  \"a\": 1\n}", false, {}};
  EXPECT_EQ(std::get<ResultMessage>(RoundTrip(pretty)).json, "{   \"a\": 1 }");

  const ErrorMessage error{NotFoundError("source gate: no such file\nsecond line")};
  const Status back = std::get<ErrorMessage>(RoundTrip(error)).status;
  EXPECT_EQ(back.code(), StatusCode::kNotFound);
  EXPECT_EQ(back.message(), "source gate: no such file second line");
  const ErrorMessage empty{InternalError("")};
  EXPECT_EQ(std::get<ErrorMessage>(RoundTrip(empty)).status.code(), StatusCode::kInternal);

  const PrepareMessage prepare{3, "yolo11n:12"};
  EXPECT_EQ(std::get<PrepareMessage>(RoundTrip(prepare)), prepare);
  const CommitMessage commit{0, "line-b"};
  EXPECT_EQ(std::get<CommitMessage>(RoundTrip(commit)), commit);
  const auto ready = std::get<PreparedMessage>(RoundTrip(PreparedMessage{1, "a:2", Status::Ok()}));
  EXPECT_EQ(ready.source, 1u);
  EXPECT_EQ(ready.model, "a:2");
  EXPECT_TRUE(ready.status.ok());
  const auto failed = std::get<PreparedMessage>(
      RoundTrip(PreparedMessage{1, "a", CorruptDataError("model.onnx: not\nONNX")}));
  EXPECT_EQ(failed.status.code(), StatusCode::kCorruptData);
  EXPECT_EQ(failed.status.message(), "model.onnx: not ONNX");
}

TEST(PipelineProtocolTest, MalformedLinesAreCorruptData) {
  const std::vector<std::string> bad = {
      "",
      " ",
      "HELLO",
      "READY ",
      "READY now",
      "ready",
      "STATS",
      "STATS 1 2",
      "STATS 1 2 3 4",
      "STATS 1  2 3",
      "STATS -1 2 3",
      "STATS +1 2 3",
      "STATS 1 2 3x",
      "STATS 18446744073709551616 0 0",  // one past uint64
      "BEGIN",
      "BEGIN 1",
      "BEGIN x 1",
      "BEGIN 4294967296 1",  // one past uint32
      "BEGIN 1 2 3",
      "RESULT",
      "RESULT 1",
      "RESULT 1 2",
      "RESULT 1 2 ",
      "RESULT one 2 {}",
      "RESULT 1 2 {}",                 // no failed flag and times
      "RESULT 1 2 0 1 2 3 4 5 {}",     // five times
      "RESULT 1 2 2 1 2 3 4 5 6 {}",   // a flag that is not 0 or 1
      "RESULT 1 2 0 1 2 3 4 5 -6 {}",  // a negative time
      "RESULT 1 2 0 1 2 3 4 5 6",      // no JSON
      "RESULT 1 2 0 1 2 3 4 5 6 ",
      "ERROR",
      "ERROR 5",
      "ERROR x message",
      "ERROR 0 an OK status is no error",
      "ERROR 99 unknown code",
      "ERROR -3 negative",
      "PREPARE",
      "PREPARE 1",
      "PREPARE x model",
      "PREPARE 1 model extra",
      "COMMIT 1",
      "COMMIT 1 " + std::string(300, 'm'),  // longer than a model reference
      "PREPARED 1 model",
      "PREPARED 1 model x",
      "PREPARED 1 model 99 unknown code",
      "PREPARED 1 model 0",  // the message field (empty) needs its separator
      std::string("READY\0", 6),
  };
  for (const std::string& line : bad) {
    auto decoded = DecodeMessage(line);
    EXPECT_FALSE(decoded.ok()) << "'" << line << "' decoded";
    if (!decoded.ok()) {
      EXPECT_EQ(decoded.status().code(), StatusCode::kCorruptData) << line;
      EXPECT_NE(decoded.status().message().find("malformed message"), std::string::npos);
    }
  }
  // The message quotes a bounded prefix of what it got.
  auto long_line = DecodeMessage("NOISE " + std::string(100000, 'x'));
  ASSERT_FALSE(long_line.ok());
  EXPECT_LT(long_line.status().message().size(), 300u);
}

TEST(PipelineProtocolTest, ReaderSplitsAStreamAtAnyBoundary) {
  const std::string stream = EncodeMessage(ReadyMessage{}) + EncodeMessage(BeginMessage{1, 5}) +
                             EncodeMessage(ResultMessage{1, 5, R"({"x":[1,2]})", false, {}}) +
                             EncodeMessage(StatsMessage{3, 2, 1});
  for (size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    MessageReader reader;
    std::vector<Message> got;
    for (size_t at = 0; at < stream.size(); at += chunk) {
      reader.Append(std::string_view(stream).substr(at, chunk));
      for (;;) {
        auto next = reader.Next();
        ASSERT_TRUE(next.ok()) << next.status().ToString();
        if (!next->has_value()) break;
        got.push_back(**next);
      }
    }
    ASSERT_EQ(got.size(), 4u) << "chunk " << chunk;
    EXPECT_TRUE(std::holds_alternative<ReadyMessage>(got[0]));
    EXPECT_EQ(std::get<BeginMessage>(got[1]), (BeginMessage{1, 5}));
    EXPECT_EQ(std::get<ResultMessage>(got[2]).json, R"({"x":[1,2]})");
    EXPECT_EQ(std::get<StatsMessage>(got[3]), (StatsMessage{3, 2, 1}));
    EXPECT_EQ(reader.pending_bytes(), 0u);
  }
}

TEST(PipelineProtocolTest, ReaderSkipsAMalformedLineAndBoundsItsBuffer) {
  MessageReader reader;
  reader.Append("GARBAGE 1\nREADY\n");
  auto bad = reader.Next();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruptData);
  auto next = reader.Next();
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(next->has_value());
  EXPECT_TRUE(std::holds_alternative<ReadyMessage>(**next));

  // A peer that never sends a line break cannot make the supervisor buffer without limit.
  const std::string chunk(64 * 1024, 'x');
  Status overflow;
  for (size_t sent = 0; sent <= kMaxMessageBytes && overflow.ok(); sent += chunk.size()) {
    reader.Append(chunk);
    auto partial = reader.Next();
    if (!partial.ok()) {
      overflow = partial.status();
    } else {
      EXPECT_FALSE(partial->has_value());
    }
  }
  EXPECT_EQ(overflow.code(), StatusCode::kResourceExhausted) << overflow.ToString();
  EXPECT_LT(reader.pending_bytes(), kMaxMessageBytes);
}

TEST(PipelineProtocolTest, SendMessageWritesOneLineAndReportsAGoneReader) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_TRUE(SendMessage(fds[1], BeginMessage{3, 4}));
  char buffer[64] = {};
  const ssize_t n = ::read(fds[0], buffer, sizeof(buffer));
  EXPECT_EQ(std::string(buffer, static_cast<size_t>(std::max<ssize_t>(n, 0))), "BEGIN 3 4\n");
  ::close(fds[0]);
  // The supervisor is gone: EPIPE (SIGPIPE ignored, as in the pipeline's children).
  struct sigaction ignore = {}, previous = {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &previous);
  EXPECT_FALSE(SendMessage(fds[1], ReadyMessage{}));
  ::sigaction(SIGPIPE, &previous, nullptr);
  ::close(fds[1]);
}

}  // namespace
}  // namespace zerodet::pipeline::detail

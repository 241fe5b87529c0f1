// The control socket of a pipeline without a pipeline: its messages (every request and reply
// round-trips, hostile lines are errors, never exceptions), and the listening side against the
// real client over a Unix socket (replies, errors, refused peers, too many connections).
#include "zerodet/pipeline/control.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "control_protocol.h"
#include "control_server.h"
#include "test_support.h"
#include "zerodet/core/unix_socket.h"

namespace zerodet::pipeline::detail {
namespace {

using zerodet::testing::TempDir;

TEST(PipelineControlProtocolTest, RequestsAndRepliesRoundTrip) {
  ControlRequest request;
  request.kind = ControlRequest::Kind::kSwitch;
  request.switch_request = {"gate", "yolo11n:2", "inspect"};
  const std::string line = EncodeControlRequest(request);
  ASSERT_EQ(line.find('\n'), line.size() - 1);
  auto decoded = DecodeControlRequest(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->kind, ControlRequest::Kind::kSwitch);
  EXPECT_EQ(decoded->switch_request.source, "gate");
  EXPECT_EQ(decoded->switch_request.model, "yolo11n:2");
  EXPECT_EQ(decoded->switch_request.entry, "inspect");

  auto models = DecodeControlRequest(R"({"op":"models"})");
  ASSERT_TRUE(models.ok());
  EXPECT_EQ(models->kind, ControlRequest::Kind::kModels);

  const std::vector<ModelAssignment> assignments = {{"inspect", "gate", "yolo11n:2", true},
                                                    {"file", "gate", "/m/x.onnx", false}};
  const std::string reply = EncodeControlReply(assignments);
  auto back = DecodeControlReply(std::string_view(reply).substr(0, reply.size() - 1));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, assignments);

  // An error travels with its code; a message that is not valid UTF-8 still makes a line.
  const std::string error =
      EncodeControlReply(Result<std::vector<ModelAssignment>>(NotFoundError("no model \xff here")));
  auto failed = DecodeControlReply(std::string_view(error).substr(0, error.size() - 1));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kNotFound);
  EXPECT_NE(failed.status().message().find("no model"), std::string::npos);
}

TEST(PipelineControlProtocolTest, HostileRequestsAreErrors) {
  const std::vector<std::string> bad = {
      "",
      "null",
      "[]",
      "\"switch\"",
      "{",
      R"({"op":1})",
      R"({"op":"reboot"})",
      R"({"op":"switch"})",
      R"({"op":"switch","source":"a"})",
      R"({"op":"switch","source":1,"model":"m"})",
      R"({"op":"switch","source":"a","model":"m","entry":[]})",
      R"({"op":"switch","source":"a","model":"m","force":true})",
      R"({"op":"models","x":1})",
      "{\"op\":\"switch\",\"source\":\"\xff\",\"model\":\"m\"}",  // not UTF-8
      R"({"op":"switch","source":")" + std::string(1000, 'a') + R"(","model":"m"})",
      std::string(100, '[') + std::string(100, ']'),
      std::string(kMaxControlLineBytes, ' '),
  };
  for (const std::string& line : bad) {
    auto decoded = DecodeControlRequest(line);
    EXPECT_FALSE(decoded.ok()) << line.substr(0, 80);
    if (!decoded.ok()) {
      EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
    }
  }
  for (const std::string& line :
       {std::string("{}"), std::string(R"({"ok":false,"code":0,"error":"x"})"),
        std::string(R"({"ok":false,"code":99,"error":"x"})"), std::string(R"({"ok":true})"),
        std::string(R"({"ok":true,"models":[{"entry":"a"}]})"), std::string("garbage")}) {
    auto decoded = DecodeControlReply(line);
    ASSERT_FALSE(decoded.ok()) << line;
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruptData) << line;
  }
}

// Serves `server` on this thread until `done`, answering each request with `reply`.
void Serve(ControlServer& server, const std::atomic<bool>& done,
           const Result<std::vector<ModelAssignment>>& reply, int* requests = nullptr) {
  while (!done.load()) {
    std::vector<pollfd> fds;
    server.AppendPollFds(fds);
    ::poll(fds.data(), fds.size(), 20);
    for (const ControlServer::Incoming& in : server.Service()) {
      if (requests != nullptr) ++*requests;
      server.Reply(in.client, reply);
    }
  }
}

TEST(PipelineControlServerTest, AnswersTheClientAndRemovesItsSocket) {
  const TempDir dir("control");
  const std::string path = dir.File("ctl.sock");
  {
    auto server = ControlServer::Listen(path);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    // A second pipeline on the same socket is refused while the first one lives.
    auto second = ControlServer::Listen(path);
    EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists);

    std::atomic<bool> done{false};
    int requests = 0;
    const std::vector<ModelAssignment> assignment = {{"inspect", "gate", "b:2", true}};
    std::thread serving([&] { Serve(**server, done, assignment, &requests); });
    auto switched =
        SwitchModel(path, {"gate", "b:2", ""}, Deadline::After(std::chrono::seconds(10)));
    auto listed = QueryModels(path, Deadline::After(std::chrono::seconds(10)));
    done = true;
    serving.join();
    ASSERT_TRUE(switched.ok()) << switched.status().ToString();
    EXPECT_EQ(*switched, assignment[0]);
    ASSERT_TRUE(listed.ok()) << listed.status().ToString();
    EXPECT_EQ(*listed, assignment);
    EXPECT_EQ(requests, 2);
  }
  EXPECT_FALSE(std::filesystem::exists(path)) << "the socket outlived its server";
  // No pipeline: a clear kNotFound.
  auto none = QueryModels(path, Deadline::After(std::chrono::seconds(1)));
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("no pipeline"), std::string::npos);
}

TEST(PipelineControlServerTest, ErrorsReachTheClientWithTheirCode) {
  const TempDir dir("control");
  const std::string path = dir.File("ctl.sock");
  auto server = ControlServer::Listen(path);
  ASSERT_TRUE(server.ok());
  std::atomic<bool> done{false};
  std::thread serving([&] { Serve(**server, done, NotFoundError("no source is named 'dock'")); });
  auto switched = SwitchModel(path, {"dock", "b", ""}, Deadline::After(std::chrono::seconds(10)));
  // A malformed request is answered by the server itself.
  auto fd = ConnectUnix(path);
  ASSERT_TRUE(fd.ok());
  const std::string junk = "{\"op\":\"reboot\"}\n";
  ASSERT_EQ(::write(fd->get(), junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  std::string reply;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fd->get(), buf, sizeof(buf))) > 0) reply.append(buf, static_cast<size_t>(n));
  done = true;
  serving.join();
  EXPECT_EQ(switched.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(switched.status().message(), "no source is named 'dock'");
  auto decoded = DecodeControlReply(reply.substr(0, reply.find('\n')));
  EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument) << reply;
  EXPECT_NE(decoded.status().message().find("reboot"), std::string::npos);
}

TEST(PipelineControlServerTest, TooManyConnectionsAreTurnedAwayAndHangUpsForgotten) {
  const TempDir dir("control");
  const std::string path = dir.File("ctl.sock");
  auto server = ControlServer::Listen(path);
  ASSERT_TRUE(server.ok());
  std::vector<UniqueFd> idle;
  for (size_t i = 0; i < ControlServer::kMaxClients; ++i) {
    auto fd = ConnectUnix(path);
    ASSERT_TRUE(fd.ok());
    idle.push_back(std::move(fd).value());
  }
  (void)(*server)->Service();  // accepts them
  auto extra = ConnectUnix(path);
  ASSERT_TRUE(extra.ok());
  (void)(*server)->Service();
  std::string reply;
  char buf[512];
  ssize_t n;
  while ((n = ::read(extra->get(), buf, sizeof(buf))) > 0)
    reply.append(buf, static_cast<size_t>(n));
  EXPECT_EQ(DecodeControlReply(reply.substr(0, reply.find('\n'))).status().code(),
            StatusCode::kUnavailable)
      << reply;
  // Clients that hang up are closed: the next client gets an answer again.
  idle.clear();
  std::atomic<bool> done{false};
  std::thread serving([&] { Serve(**server, done, std::vector<ModelAssignment>{}); });
  auto listed = QueryModels(path, Deadline::After(std::chrono::seconds(10)));
  done = true;
  serving.join();
  EXPECT_TRUE(listed.ok()) << listed.status().ToString();
}

TEST(PipelineControlServerTest, OtherUsersAreRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another user";
  const TempDir dir("control");
  const std::string path = dir.File("ctl.sock");
  auto server = ControlServer::Listen(path);
  ASSERT_TRUE(server.ok());
  ::chmod(dir.path().c_str(), 0755);
  ::chmod(path.c_str(), 0666);  // let the other user reach the check behind the permissions
  const pid_t child = ::fork();
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(10);
    auto result = QueryModels(path, Deadline::After(std::chrono::seconds(10)));
    if (result.status().code() != StatusCode::kPermissionDenied) {
      std::fprintf(stderr, "child got: %s\n", result.status().ToString().c_str());
      ::_exit(11);
    }
    ::_exit(0);
  }
  std::atomic<bool> done{false};
  std::thread serving([&] { Serve(**server, done, std::vector<ModelAssignment>{}); });
  int status = 0;
  ::waitpid(child, &status, 0);
  done = true;
  serving.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace zerodet::pipeline::detail

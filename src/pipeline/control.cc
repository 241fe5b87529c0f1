#include "zerodet/pipeline/control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "control_protocol.h"
#include "zerodet/core/unix_socket.h"

namespace zerodet::pipeline {
namespace {

// FNV-1a, 64 bits: a stable name for a path (not a security boundary: the socket's owner is
// checked on connecting).
uint64_t HashPath(std::string_view text) {
  uint64_t hash = 14695981039346656037ull;
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

// Waits until `fd` is ready for `events` or the deadline passes.
Status WaitReady(int fd, short events, const Deadline& deadline) {
  for (;;) {
    const int remaining = deadline.RemainingMs(60'000);
    if (deadline.expired()) {
      return DeadlineExceededError(
          "the pipeline did not answer in time (the request may still "
          "complete; `zerodet pipeline models` shows the outcome)");
    }
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, remaining);
    if (rc < 0 && errno != EINTR) return ErrnoError("poll", errno);
    if (rc > 0) return Status::Ok();
  }
}

Result<std::vector<ModelAssignment>> Exchange(const std::string& socket,
                                              const detail::ControlRequest& request,
                                              const Deadline& deadline) {
  auto connected = ConnectUnix(socket);
  if (!connected.ok()) {
    if (connected.status().code() == StatusCode::kNotFound ||
        connected.status().code() == StatusCode::kUnavailable) {
      return NotFoundError("no pipeline is running with control socket " + socket + " (" +
                           connected.status().message() + ")");
    }
    return connected.status();
  }
  const UniqueFd fd = std::move(connected).value();
  // Talk only to a pipeline of our own user: in a shared directory such as /tmp another user
  // could have put a socket at the expected path.
  ZD_ASSIGN_OR_RETURN(const PeerCredentials peer, PeerCredentialsOf(fd.get()));
  if (peer.uid != ::geteuid() && peer.uid != 0) {
    return PermissionDeniedError("control socket " + socket + " belongs to another user (uid " +
                                 std::to_string(peer.uid) + ")");
  }
  ::fcntl(fd.get(), F_SETFL, O_NONBLOCK);
  const std::string line = detail::EncodeControlRequest(request);
  size_t sent = 0;
  while (sent < line.size()) {
    ZD_RETURN_IF_ERROR(WaitReady(fd.get(), POLLOUT, deadline));
    const ssize_t n = ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    // The pipeline may answer (a refusal) and close before reading the whole request: its
    // reply is still there to read.
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) break;
    if (n <= 0) return ErrnoError("sending to control socket " + socket, errno);
    sent += static_cast<size_t>(n);
  }
  std::string reply;
  for (;;) {
    ZD_RETURN_IF_ERROR(WaitReady(fd.get(), POLLIN, deadline));
    char buf[4096];
    const ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return ErrnoError("reading from control socket " + socket, errno);
    if (n == 0) break;
    reply.append(buf, static_cast<size_t>(n));
    if (reply.find('\n') != std::string::npos) break;
    if (reply.size() > detail::kMaxControlLineBytes * 16) {
      return CorruptDataError("control socket " + socket + " sent an over-long reply");
    }
  }
  const size_t newline = reply.find('\n');
  if (newline == std::string::npos) {
    return UnavailableError("the pipeline closed its control connection without a reply");
  }
  return detail::DecodeControlReply(std::string_view(reply).substr(0, newline));
}

}  // namespace

std::string DefaultControlSocket(const std::filesystem::path& config_path) {
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(config_path, ec);
  if (ec) absolute = config_path;
  char name[96];
  std::snprintf(name, sizeof(name), "zerodet-pipeline-%u-%016llx.sock",
                static_cast<unsigned>(::geteuid()),
                static_cast<unsigned long long>(HashPath(absolute.lexically_normal().string())));
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  if (runtime != nullptr && runtime[0] == '/') {
    const std::string in_runtime = (std::filesystem::path(runtime) / name).string();
    if (in_runtime.size() <= MaxUnixSocketPath()) return in_runtime;
  }
  return (std::filesystem::path("/tmp") / name).string();
}

Result<ModelAssignment> SwitchModel(const std::string& socket, const SwitchRequest& request,
                                    Deadline deadline) {
  detail::ControlRequest control;
  control.kind = detail::ControlRequest::Kind::kSwitch;
  control.switch_request = request;
  ZD_ASSIGN_OR_RETURN(std::vector<ModelAssignment> reply, Exchange(socket, control, deadline));
  if (reply.size() != 1) {
    return CorruptDataError("the pipeline answered a switch with " + std::to_string(reply.size()) +
                            " assignments");
  }
  return reply.front();
}

Result<std::vector<ModelAssignment>> QueryModels(const std::string& socket, Deadline deadline) {
  detail::ControlRequest control;
  control.kind = detail::ControlRequest::Kind::kModels;
  return Exchange(socket, control, deadline);
}

}  // namespace zerodet::pipeline

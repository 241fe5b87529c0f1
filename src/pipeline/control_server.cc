#include "control_server.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace zerodet::pipeline::detail {

Result<std::unique_ptr<ControlServer>> ControlServer::Listen(const std::string& path) {
  ZD_ASSIGN_OR_RETURN(UnixListener listener, UnixListener::Bind(path, {}));
  return std::unique_ptr<ControlServer>(new ControlServer(std::move(listener)));
}

void ControlServer::AppendPollFds(std::vector<pollfd>& fds) const {
  fds.push_back({listener_.fd(), POLLIN, 0});
  for (const auto& [id, c] : connections_) {
    // A request with the supervisor: only a hang-up matters (poll reports it unasked), and
    // more bytes from the client must not wake the supervisor again and again.
    const short events = !c.output.empty() ? POLLOUT : WaitingForSupervisor(c) ? 0 : POLLIN;
    fds.push_back({c.fd.get(), events, 0});
  }
}

std::vector<ControlServer::Incoming> ControlServer::Service() {
  std::vector<Incoming> requests;
  for (auto it = connections_.begin(); it != connections_.end();) {
    Connection& c = it->second;
    bool keep = true;
    if (WaitingForSupervisor(c)) {
      // A request still being worked on (a switch waiting for its workers) is the supervisor's
      // to time out; a client that hung up meanwhile is dropped (its reply would go nowhere).
      char byte;
      const ssize_t n = ::recv(c.fd.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      keep = n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
    } else {
      if (!c.answered) Read(it->first, c, requests);
      keep = Write(c);
      // A client that sends nothing, or does not read its reply, is dropped.
      if (keep && !WaitingForSupervisor(c) && c.deadline.expired()) keep = false;
    }
    it = keep ? std::next(it) : connections_.erase(it);
  }
  // After the connections that ended are closed, so they do not count against kMaxClients; new
  // ones are read at the next call (the supervisor's poll wakes up for them).
  Accept();
  return requests;
}

void ControlServer::Accept() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      // EAGAIN: none waiting. EMFILE and the like: the connection stays queued and is tried on
      // the next poll; the supervisor polls at least every 100 ms, so this cannot spin.
      return;
    }
    Connection c;
    c.fd = std::move(fd);
    c.deadline = Deadline::After(kRequestTimeout);
    auto peer = PeerCredentialsOf(c.fd.get());
    if (!peer.ok() || (peer->uid != ::geteuid() && peer->uid != 0)) {
      Queue(c, PermissionDeniedError("the pipeline's control socket serves only its own user"));
    } else if (connections_.size() >= kMaxClients) {
      Queue(c, UnavailableError("the pipeline's control socket has " + std::to_string(kMaxClients) +
                                " connections open; try again"));
    }
    // A refusal is written at once (a short line fits the socket's buffer).
    if (c.answered && !Write(c)) continue;
    connections_.emplace(next_id_++, std::move(c));
  }
}

bool ControlServer::WaitingForSupervisor(const Connection& c) {
  return !c.answered && !c.input.empty() && c.input.back() == '\n';
}

void ControlServer::Read(uint64_t id, Connection& c, std::vector<Incoming>& requests) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(c.fd.get(), buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // EAGAIN, or an error the write or the deadline will end
    if (n == 0) {
      Queue(c, InvalidArgumentError("control request without a line break"));
      return;
    }
    c.input.append(buf, static_cast<size_t>(n));
    const size_t newline = c.input.find('\n');
    if (newline != std::string::npos) {
      c.input.resize(newline + 1);  // one request per connection: the rest is ignored
      auto request = DecodeControlRequest(std::string_view(c.input).substr(0, newline));
      if (!request.ok()) {
        Queue(c, request.status());
      } else {
        requests.push_back({id, std::move(request).value()});
      }
      return;
    }
    if (c.input.size() >= kMaxControlLineBytes) {
      Queue(c, InvalidArgumentError("control request longer than " +
                                    std::to_string(kMaxControlLineBytes) + " bytes"));
      return;
    }
  }
}

bool ControlServer::Write(Connection& c) {
  while (!c.output.empty()) {
    const ssize_t n = ::send(c.fd.get(), c.output.data(), c.output.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n <= 0) return false;  // the client is gone
    c.output.erase(0, static_cast<size_t>(n));
  }
  return !c.answered;
}

void ControlServer::Queue(Connection& c, const Result<std::vector<ModelAssignment>>& reply) {
  c.output = EncodeControlReply(reply);
  c.answered = true;
  c.deadline = Deadline::After(kRequestTimeout);
}

void ControlServer::CloseAfterFork() {
  listener_.CloseAfterFork();
  for (auto& [id, c] : connections_) c.fd.Reset();
}

void ControlServer::Reply(uint64_t client, const Result<std::vector<ModelAssignment>>& reply) {
  const auto it = connections_.find(client);
  if (it == connections_.end()) return;
  Queue(it->second, reply);
  if (!Write(it->second)) connections_.erase(it);
}

}  // namespace zerodet::pipeline::detail

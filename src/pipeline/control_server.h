// The listening side of a pipeline's control socket (internal): accepts connections from the
// pipeline's own user (and root), reads one request line from each, and sends the supervisor's
// reply, which may come later (a switch waits for the workers). Non-blocking throughout: the
// supervisor polls its descriptors along with the children's pipes.
//
// Bounds: at most kMaxClients connections at once (more are answered with an error and closed),
// a request of at most kMaxControlLineBytes, sent within kRequestTimeout of connecting, and a
// reply written within the same time (a client that stops reading is dropped).
//
// Ownership: owns the listening socket (and its path, see core/unix_socket.h) and the
// connections. Thread-compatible: one thread (the supervisor's) uses it.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "control_protocol.h"
#include "zerodet/core/clock.h"
#include "zerodet/core/status.h"
#include "zerodet/core/unique_fd.h"
#include "zerodet/core/unix_socket.h"

namespace zerodet::pipeline::detail {

class ControlServer {
 public:
  static constexpr size_t kMaxClients = 16;
  static constexpr std::chrono::seconds kRequestTimeout{10};

  // Listens on `path` (see UnixListener::Bind for its errors).
  static Result<std::unique_ptr<ControlServer>> Listen(const std::string& path);

  // A request read from a connection, to be answered with Reply(client, ...).
  struct Incoming {
    uint64_t client = 0;
    ControlRequest request;
  };

  // Adds the descriptors to poll (the listening socket and each connection).
  void AppendPollFds(std::vector<pollfd>& fds) const;
  // Accepts, reads and writes what is ready, drops connections past their time, answers
  // malformed requests and refused peers itself, and returns the complete requests read.
  std::vector<Incoming> Service();
  // Sends the reply to `client`'s request and closes the connection once it is written. A
  // client that is gone is ignored.
  void Reply(uint64_t client, const Result<std::vector<ModelAssignment>>& reply);

  // In a forked child: closes the inherited descriptors, leaving the socket's path to the
  // parent. The object must not be used afterwards.
  void CloseAfterFork();

  const std::string& path() const { return listener_.path(); }

 private:
  struct Connection {
    UniqueFd fd;
    std::string input;
    std::string output;
    bool answered = false;  // a reply is queued: the connection closes once it is written
    Deadline deadline = Deadline::Never();
  };

  explicit ControlServer(UnixListener listener) : listener_(std::move(listener)) {}
  // A complete request was handed to the supervisor and is not answered yet.
  static bool WaitingForSupervisor(const Connection& c);
  void Accept();
  // Reads what `c` sent; a complete line becomes a request (or an error reply).
  void Read(uint64_t id, Connection& c, std::vector<Incoming>& requests);
  // Writes what is queued for `c`; false when the connection is finished (written or broken).
  bool Write(Connection& c);
  void Queue(Connection& c, const Result<std::vector<ModelAssignment>>& reply);

  UnixListener listener_;
  std::map<uint64_t, Connection> connections_;
  uint64_t next_id_ = 1;
};

}  // namespace zerodet::pipeline::detail

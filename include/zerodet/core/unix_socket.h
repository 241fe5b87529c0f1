// Unix-domain sockets bound to a path: the listening side owns its path (it removes a stale
// socket left by a process that died, refuses to take over one that a live process serves, and
// on destruction unlinks the path only if it is still the socket it bound), and the connecting
// side checks who answers.
//
// Ownership: a UnixListener owns its descriptor and its path's socket. Move-only; use one object
// from one thread at a time.
#pragma once

#include <sys/types.h>

#include <string>

#include "zerodet/core/status.h"
#include "zerodet/core/unique_fd.h"

namespace zerodet {

// Longest socket path a sockaddr_un holds (107 bytes on Linux).
size_t MaxUnixSocketPath();

class UnixListener {
 public:
  struct Options {
    int type = 0;  // SOCK_STREAM or SOCK_SEQPACKET; 0: SOCK_STREAM
    int backlog = 128;
  };

  // Binds `path` with mode 0600 (never looser, not even for an instant) and listens; the
  // descriptor is non-blocking and close-on-exec. A socket already at `path` that nothing
  // accepts on (its server died) is replaced. Errors: kInvalidArgument for an empty path or one
  // longer than MaxUnixSocketPath(); kAlreadyExists when a live server answers on `path`, or
  // `path` is something other than a socket; the errno of socket/bind/listen otherwise.
  static Result<UnixListener> Bind(const std::string& path, const Options& options);

  UnixListener() = default;
  UnixListener(UnixListener&& other) noexcept;
  UnixListener& operator=(UnixListener&& other) noexcept;
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;
  // Closes the socket and unlinks its path, unless the path now holds something else (another
  // server started on it after this one's socket was removed, or a file put there).
  ~UnixListener();

  // In a child forked from the owner: closes the inherited descriptor and forgets the path,
  // which stays the parent's (not unlinked).
  void CloseAfterFork();

  bool valid() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }

 private:
  void Close();

  UniqueFd fd_;
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// Connects to the socket at `path` (blocking, close-on-exec). Errors: kInvalidArgument for a
// path too long; kNotFound when nothing is there; kUnavailable when nothing accepts on it
// (ECONNREFUSED); the errno of socket/connect otherwise.
Result<UniqueFd> ConnectUnix(const std::string& path, int type = 0);

// The credentials of the process at the other end of a connected Unix socket (SO_PEERCRED).
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};
Result<PeerCredentials> PeerCredentialsOf(int fd);

}  // namespace zerodet

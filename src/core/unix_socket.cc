#include "zerodet/core/unix_socket.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace zerodet {
namespace {

Result<sockaddr_un> AddressOf(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty()) return InvalidArgumentError("empty socket path");
  if (path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgumentError("socket path '" + path + "' is longer than " +
                                std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

int SocketType(int type) {
  return type == 0 ? SOCK_STREAM : type;
}

}  // namespace

size_t MaxUnixSocketPath() {
  return sizeof(sockaddr_un::sun_path) - 1;
}

Result<UnixListener> UnixListener::Bind(const std::string& path, const Options& options) {
  ZD_ASSIGN_OR_RETURN(const sockaddr_un addr, AddressOf(path));
  const int type = SocketType(options.type);
  UnixListener listener;
  listener.fd_ = UniqueFd(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener.fd_.valid()) return ErrnoError("socket", errno);

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return AlreadyExistsError("'" + path + "' exists and is not a socket");
    UniqueFd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (probe.valid() &&
        ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
      return AlreadyExistsError("another process is serving '" + path + "'");
    }
    spdlog::info("replacing stale socket {}", path);
    ::unlink(path.c_str());
  }
  const mode_t old_umask = ::umask(0177);
  const int bound =
      ::bind(listener.fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bound != 0) return ErrnoError("cannot bind '" + path + "'", bind_errno);
  if (::lstat(path.c_str(), &st) != 0) {
    const int err = errno;
    return ErrnoError("cannot stat the socket '" + path + "'", err);
  }
  listener.path_ = path;
  listener.dev_ = st.st_dev;
  listener.ino_ = st.st_ino;
  if (::listen(listener.fd_.get(), options.backlog) != 0) return ErrnoError("listen", errno);
  return listener;
}

UnixListener::UnixListener(UnixListener&& other) noexcept
    : fd_(std::move(other.fd_)), path_(std::move(other.path_)), dev_(other.dev_), ino_(other.ino_) {
  other.path_.clear();
}

UnixListener& UnixListener::operator=(UnixListener&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = std::move(other.fd_);
    path_ = std::move(other.path_);
    dev_ = other.dev_;
    ino_ = other.ino_;
    other.path_.clear();
  }
  return *this;
}

UnixListener::~UnixListener() {
  Close();
}

void UnixListener::CloseAfterFork() {
  fd_.Reset();
  path_.clear();
}

void UnixListener::Close() {
  fd_.Reset();
  if (path_.empty()) return;
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev_ &&
      st.st_ino == ino_) {
    ::unlink(path_.c_str());
  } else {
    spdlog::info("leaving {} in place: it is no longer this process's socket", path_);
  }
  path_.clear();
}

Result<UniqueFd> ConnectUnix(const std::string& path, int type) {
  ZD_ASSIGN_OR_RETURN(const sockaddr_un addr, AddressOf(path));
  UniqueFd fd(::socket(AF_UNIX, SocketType(type) | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("socket", errno);
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    if (err == ENOENT) return NotFoundError("no socket at '" + path + "'");
    if (err == ECONNREFUSED)
      return UnavailableError("nothing accepts connections on '" + path + "'");
    return ErrnoError("cannot connect to '" + path + "'", err);
  }
  return fd;
}

Result<PeerCredentials> PeerCredentialsOf(int fd) {
  ucred cred{};
  socklen_t length = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0) {
    return ErrnoError("SO_PEERCRED", errno);
  }
  return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

}  // namespace zerodet

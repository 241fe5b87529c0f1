#include "shm_util.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace zerodet::store::internal {

Result<Mapping> MapShared(int fd, uint64_t size, bool writable, const std::string& what) {
  const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  void* address = ::mmap(nullptr, size, prot, MAP_SHARED, fd, 0);
  if (address == MAP_FAILED) {
    const int err = errno;
    if (err == ENOMEM) {
      return ResourceExhaustedError(
          fmt::format("cannot map {} ({} bytes): {}", what, size, std::strerror(err)));
    }
    return ErrnoError(fmt::format("cannot map {} ({} bytes)", what, size), err);
  }
  return Mapping(address, size);
}

Status SendMessage(int socket_fd, std::span<const uint8_t> message, std::span<const int> fds,
                   bool dont_wait) {
  iovec iov{const_cast<uint8_t*>(message.data()), message.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  const int flags = MSG_NOSIGNAL | (dont_wait ? MSG_DONTWAIT : 0);
  for (;;) {
    const ssize_t sent = ::sendmsg(socket_fd, &msg, flags);
    if (sent >= 0) return Status::Ok();
    if (errno == EINTR) continue;
    if (errno == EPIPE || errno == ECONNRESET) return UnavailableError("peer closed the socket");
    return ErrnoError("sendmsg", errno);
  }
}

Status ReceiveMessage(int socket_fd, std::vector<uint8_t>* buffer, size_t max_size,
                      std::vector<UniqueFd>* fds, size_t max_fds, bool dont_wait) {
  buffer->resize(max_size + 1);
  iovec iov{buffer->data(), buffer->size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  if (max_fds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * std::min<size_t>(max_fds, 4));
  }
  const int flags = MSG_CMSG_CLOEXEC | (dont_wait ? MSG_DONTWAIT : 0);
  ssize_t received = 0;
  for (;;) {
    received = ::recvmsg(socket_fd, &msg, flags);
    if (received >= 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return DeadlineExceededError("no message");
    if (errno == ECONNRESET) return UnavailableError("peer closed the socket");
    return ErrnoError("recvmsg", errno);
  }
  // Take ownership of any passed fds first, so none leaks on the error paths below.
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
      if (fds != nullptr && fds->size() < max_fds) {
        fds->emplace_back(fd);
      } else {
        ::close(fd);
      }
    }
  }
  if (received == 0) return UnavailableError("peer closed the socket");
  if ((msg.msg_flags & MSG_TRUNC) || static_cast<size_t>(received) > max_size) {
    return CorruptDataError(fmt::format("message larger than the {}-byte limit", max_size));
  }
  buffer->resize(static_cast<size_t>(received));
  return Status::Ok();
}

}  // namespace zerodet::store::internal

#include "mqtt_relay.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "zerodet/core/child_process.h"
#include "zerodet/core/clock.h"

namespace zerodet::pipeline::detail {
namespace {

bool ReadExactly(int fd, void* data, size_t size) {
  auto* at = static_cast<uint8_t*>(data);
  while (size > 0) {
    const ssize_t n = ::read(fd, at, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    at += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<MqttRelay>> MqttRelay::Start(const MqttOptions& options) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return ErrnoError("mqtt relay: socketpair", errno);
  }
  std::fflush(nullptr);
  const pid_t supervisor = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return ErrnoError("mqtt relay: fork", err);
  }
  if (pid == 0) {
    if (!TieToParent(supervisor, SIGTERM)) ::_exit(1);
    ::close(fds[0]);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    ::signal(SIGINT, SIG_IGN);  // the supervisor decides when results end
    ::_exit(RunMqttRelay(options, fds[1], std::chrono::seconds(5)));
  }
  ::close(fds[1]);
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  auto relay = std::unique_ptr<MqttRelay>(new MqttRelay());
  relay->pid_ = pid;
  relay->fd_ = fds[0];
  return relay;
}

MqttRelay::~MqttRelay() {
  if (fd_ >= 0) ::close(fd_);
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

void MqttRelay::CloseInChild() const {
  if (fd_ >= 0) ::close(fd_);
}

bool MqttRelay::Flush() {
  while (sent_ < buffer_.size()) {
    const ssize_t n =
        ::send(fd_, buffer_.data() + sent_, buffer_.size() - sent_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      if (!dead_)
        spdlog::error("mqtt relay: gone ({}); results no longer reach the broker",
                      std::strerror(errno));
      dead_ = true;
      return false;
    }
    sent_ += static_cast<size_t>(n);
  }
  if (sent_ == buffer_.size()) {
    buffer_.clear();
    sent_ = 0;
  } else if (sent_ > buffer_.size() / 2) {
    buffer_.erase(0, sent_);
    sent_ = 0;
  }
  return true;
}

bool MqttRelay::Send(std::string_view source, std::string_view payload) {
  const size_t record = 8 + source.size() + payload.size();
  if (dead_ || buffer_.size() - sent_ + record > kMaxBuffered) {
    ++dropped_;
    return false;
  }
  const uint32_t lengths[2] = {static_cast<uint32_t>(source.size()),
                               static_cast<uint32_t>(payload.size())};
  buffer_.append(reinterpret_cast<const char*>(lengths), sizeof(lengths));
  buffer_.append(source);
  buffer_.append(payload);
  ++records_;
  if (!Flush()) {
    ++dropped_;
    return false;
  }
  return true;
}

MqttRelay::Counts MqttRelay::Finish(std::chrono::milliseconds grace) {
  Counts counts;
  const Deadline deadline = Deadline::After(grace);
  // The rest of the buffer, waiting for room (the relay reads as fast as it publishes).
  while (!dead_ && sent_ < buffer_.size() && !deadline.expired()) {
    if (!Flush()) break;
    if (sent_ < buffer_.size()) {
      pollfd p{fd_, POLLOUT, 0};
      ::poll(&p, 1, 10);
    }
  }
  ::shutdown(fd_, SHUT_WR);
  uint64_t reported[2] = {0, 0};
  bool have_report = false;
  if (!dead_) {
    ::fcntl(fd_, F_SETFL, 0);
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, deadline.RemainingMs(60'000)) > 0) {
      have_report = ReadExactly(fd_, reported, sizeof(reported));
    }
  }
  ::close(fd_);
  fd_ = -1;
  if (!have_report) ::kill(pid_, SIGKILL);
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  if (have_report) {
    counts.published = reported[0];
    counts.dropped = dropped_ + reported[1];
  } else {
    counts.dropped = records_;  // the relay never said what became of them
  }
  return counts;
}

int RunMqttRelay(const MqttOptions& options, int fd, std::chrono::milliseconds flush) {
  auto created = MqttPublisher::Create(options);
  if (!created.ok()) {
    spdlog::error("mqtt relay: {}", created.status().ToString());
    return 1;
  }
  std::unique_ptr<MqttPublisher> publisher = std::move(created).value();
  std::string source;
  std::string payload;
  while (true) {
    uint32_t lengths[2];
    if (!ReadExactly(fd, lengths, sizeof(lengths))) break;  // the end of the results
    if (lengths[0] > 4096 || lengths[1] > (256u << 20)) {
      spdlog::error("mqtt relay: a malformed record; stopping");
      break;
    }
    source.resize(lengths[0]);
    payload.resize(lengths[1]);
    if (!ReadExactly(fd, source.data(), source.size()) ||
        !ReadExactly(fd, payload.data(), payload.size())) {
      break;
    }
    publisher->Publish(source, payload);  // a refusal is counted in its stats
  }
  const Deadline deadline = Deadline::After(flush);
  while (!deadline.expired()) {
    const MqttStats stats = publisher->stats();
    if (stats.acknowledged >= stats.published) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const MqttStats stats = publisher->stats();
  // Unacknowledged at the end counts as dropped: the broker may not have it.
  const uint64_t counts[2] = {stats.published,
                              stats.dropped + (stats.published - stats.acknowledged)};
  publisher.reset();
  const ssize_t written = ::write(fd, counts, sizeof(counts));
  ::close(fd);
  return written == static_cast<ssize_t>(sizeof(counts)) ? 0 : 1;
}

}  // namespace zerodet::pipeline::detail

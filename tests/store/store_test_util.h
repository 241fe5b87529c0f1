// Store-specific helpers of the store suites, on top of the one test-support library
// (tests/support/test_support.h: TempDir, WaitFor, ForkChild/WaitChild, Pipe, RunZerodet,
// ChildProcess): a small store's options, connecting, deterministic object contents, a store
// in a forked process, and a raw protocol connection for tests that must hold a connection in
// a state a StoreClient never leaves it in.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <concepts>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "protocol.h"
#include "shm_util.h"
#include "test_support.h"
#include "zerodet/core/unique_fd.h"
#include "zerodet/store/client.h"
#include "zerodet/store/server.h"

namespace zerodet::testing {

inline store::StoreOptions SmallStore(const std::string& socket, uint64_t capacity = 8 << 20) {
  store::StoreOptions options;
  options.socket_path = socket;
  options.capacity = capacity;
  options.max_objects = 1024;
  options.max_clients = 64;
  return options;
}

inline std::unique_ptr<store::StoreClient> MustConnect(const std::string& socket) {
  auto client = store::StoreClient::Connect(socket);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(*client) : nullptr;
}

inline store::ObjectId IdOf(std::integral auto i) {
  return store::ObjectId::FromName("object-" + std::to_string(i));
}

// Fills `data` with bytes derived from `seed`, so readers can verify them.
inline void FillPattern(std::span<uint8_t> data, std::integral auto seed) {
  uint64_t x = static_cast<uint64_t>(seed) * uint64_t{0x9E3779B97F4A7C15} + 1;
  for (auto& byte : data) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    byte = static_cast<uint8_t>(x);
  }
}

inline bool CheckPattern(std::span<const uint8_t> data, std::integral auto seed) {
  uint64_t x = static_cast<uint64_t>(seed) * uint64_t{0x9E3779B97F4A7C15} + 1;
  for (auto byte : data) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if (byte != static_cast<uint8_t>(x)) return false;
  }
  return true;
}

// A StoreServer in a forked child process (started before the test creates threads), serving
// until the destructor sends SIGTERM; the destructor expects a clean exit.
class StoreProcess {
 public:
  explicit StoreProcess(const store::StoreOptions& options) {
    pid_ = ForkChild([&] {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGTERM);
      ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
      auto server = store::StoreServer::Create(options);
      if (!server.ok()) return 3;
      (*server)->Start();
      int sig = 0;
      ::sigwait(&set, &sig);
      (*server)->Stop();
      return 0;
    });
    EXPECT_TRUE(WaitFor([&] { return store::StoreClient::Connect(options.socket_path).ok(); }))
        << "store process did not come up";
  }
  ~StoreProcess() {
    ::kill(pid_, SIGTERM);
    EXPECT_EQ(WaitChild(pid_), 0) << "store process exit";
  }
  StoreProcess(const StoreProcess&) = delete;
  StoreProcess& operator=(const StoreProcess&) = delete;

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// A connection that speaks the store protocol by hand.
class RawConnection {
 public:
  explicit RawConnection(const std::string& socket)
      : fd_(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket.c_str(), sizeof(addr.sun_path) - 1);
    connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  bool connected() const { return connected_; }
  int fd() const { return fd_.get(); }
  void Close() { fd_.Reset(); }

  // Sends `request` and returns the reply's status; the reply's fds go to *fds.
  Status Transact(const store::internal::Request& request, std::vector<UniqueFd>* fds = nullptr) {
    ZD_RETURN_IF_ERROR(Send(request));
    return Receive(request.type, fds);
  }
  Status Send(const store::internal::Request& request) {
    return store::internal::SendMessage(fd_.get(), store::internal::SerializeRequest(request), {},
                                        false);
  }
  Status Receive(store::internal::MessageType type, std::vector<UniqueFd>* fds = nullptr) {
    std::vector<UniqueFd> received;
    ZD_RETURN_IF_ERROR(store::internal::ReceiveMessage(
        fd_.get(), &reply_, store::internal::kMaxMessageSize, &received, 4, false));
    if (fds != nullptr) *fds = std::move(received);
    return store::internal::ParseReply(reply_, type, &body_);
  }
  // The body of the last OK reply.
  std::span<const uint8_t> body() const { return body_; }

 private:
  UniqueFd fd_;
  bool connected_ = false;
  std::vector<uint8_t> reply_;
  std::span<const uint8_t> body_;
};

inline store::internal::Request HelloRequest(
    store::StoreAccess access = store::StoreAccess::kReadWrite) {
  store::internal::Request hello;
  hello.type = store::internal::MessageType::kHello;
  hello.protocol_version = store::internal::kProtocolVersion;
  hello.access = static_cast<uint32_t>(access);
  return hello;
}

}  // namespace zerodet::testing

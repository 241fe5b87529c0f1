// Small RAII helpers for mappings and fd passing (internal to src/store/).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "zerodet/core/status.h"
#include "zerodet/core/unique_fd.h"

namespace zerodet::store::internal {

class Mapping {
 public:
  Mapping() = default;
  Mapping(void* address, uint64_t size) : address_(address), size_(size) {}
  ~Mapping() { Reset(); }
  Mapping(Mapping&& other) noexcept : address_(other.address_), size_(other.size_) {
    other.address_ = nullptr;
    other.size_ = 0;
  }
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      Reset();
      address_ = other.address_;
      size_ = other.size_;
      other.address_ = nullptr;
      other.size_ = 0;
    }
    return *this;
  }
  uint8_t* data() const { return static_cast<uint8_t*>(address_); }
  uint64_t size() const { return size_; }
  void Reset() {
    if (address_ != nullptr) ::munmap(address_, size_);
    address_ = nullptr;
    size_ = 0;
  }

 private:
  void* address_ = nullptr;
  uint64_t size_ = 0;
};

// Maps `size` bytes of `fd` shared. `what` names the region in errors.
Result<Mapping> MapShared(int fd, uint64_t size, bool writable, const std::string& what);

// Sends one message with `fds` attached (SCM_RIGHTS). MSG_NOSIGNAL; non-blocking when
// `dont_wait`.
Status SendMessage(int socket_fd, std::span<const uint8_t> message, std::span<const int> fds,
                   bool dont_wait);
// Receives one message into `buffer` (resized to the message size), and up to `max_fds` fds.
// Returns kUnavailable on EOF, kCorruptData when the message was truncated, kIoError else.
// With `dont_wait`, EAGAIN gives kDeadlineExceeded (nothing pending).
Status ReceiveMessage(int socket_fd, std::vector<uint8_t>* buffer, size_t max_size,
                      std::vector<UniqueFd>* fds, size_t max_fds, bool dont_wait);

}  // namespace zerodet::store::internal

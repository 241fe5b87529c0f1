// SharedMemoryRegistry: the system shared-memory regions clients registered with `zerodet serve`
// (the KServe v2 / Triton system shared-memory extension). A client puts a tensor into a POSIX
// shared-memory object it created (shm_open), registers a region of it under a name (key,
// offset, byte size), and then names the region in infer requests instead of sending the bytes:
// the server binds the input straight from the mapping (no copy) and writes outputs into it.
//
// Checks: a key names only a POSIX shared-memory object ("name" or "/name": letters, digits,
// '.', '_', '-'; no further '/', no "." or ".."), opened with O_NOFOLLOW; it must be a regular
// object we may read and write; offset + byte size must lie within its real size (fstat), at
// registration and again at every use (a client may shrink its object). Region names are 1..128
// printable characters; at most kMaxRegions regions at once.
//
// Ownership and lifetime: the registry maps each region when it is registered and owns the
// mapping. A request leases the regions it uses (Lease, a shared reference): unregistering a
// region removes its name at once, but its mapping lives on until the last request using it
// ends, so a region can never be unmapped under a running request (Triton crashed on exactly
// that). The object itself belongs to the client; the registry never unlinks it.
// Remaining risk, documented: a client that truncates its own object while a request reads it
// makes that read fault (SIGBUS, fatal to the process, as in Triton); the checks at each use
// narrow this to requests already running, and the extension is off unless allowed.
//
// Thread-safety: every method may be called from any thread concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/core/status.h"

namespace zerodet::server {

struct SharedMemoryRegionStatus {
  std::string name;
  std::string key;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
  long leases = 0;  // requests using it now
};

// A registered region's bytes, held for one request. Keeps the mapping alive while it lives.
class SharedMemoryLease {
 public:
  SharedMemoryLease() = default;
  std::span<uint8_t> bytes() const { return bytes_; }

 private:
  friend class SharedMemoryRegistry;
  std::shared_ptr<const void> mapping_;
  std::span<uint8_t> bytes_;
};

class SharedMemoryRegistry {
 public:
  static constexpr size_t kMaxRegions = 1024;

  SharedMemoryRegistry() = default;
  SharedMemoryRegistry(const SharedMemoryRegistry&) = delete;
  SharedMemoryRegistry& operator=(const SharedMemoryRegistry&) = delete;

  // Maps [offset, offset + byte_size) of POSIX shared-memory object `key` under `name`.
  // Errors: kInvalidArgument for a bad name or key, a zero size, or a range outside the object
  // (naming its size); kAlreadyExists for a name in use; kNotFound when the object does not
  // exist; kPermissionDenied when it cannot be opened read-write; kResourceExhausted at
  // kMaxRegions; kIoError when it cannot be mapped.
  Status Register(const std::string& name, const std::string& key, uint64_t offset,
                  uint64_t byte_size);

  // Removes the region `name` (its mapping ends with its last lease). Errors: kNotFound.
  Status Unregister(const std::string& name);
  // Removes every region.
  void UnregisterAll();

  // The regions (all, or only `name`). Errors: kNotFound for an unknown name.
  Result<std::vector<SharedMemoryRegionStatus>> Regions(std::optional<std::string> name) const;

  // `byte_size` bytes at `offset` within region `name`, for one request. Errors: kNotFound for
  // an unregistered region; kInvalidArgument when the range is outside the region, or the
  // object has shrunk below the region since it was registered.
  Result<SharedMemoryLease> Lease(const std::string& name, uint64_t offset,
                                  uint64_t byte_size) const;

  struct Region;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Region>> regions_;
};

}  // namespace zerodet::server

// The memory a store shares (internal to src/store/): sealed memfds for the arena, the index
// and the client regions; the arena's read-only descriptor for clients; huge pages; and how
// much memory the machine can back at all.
//
// Ownership: an Arena owns its descriptors and the store's own writable mapping; clients get
// the descriptors through the hello (shm_layout.h). Thread safety: none needed; the store
// creates it before serving and only reads it afterwards.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "shm_util.h"
#include "zerodet/core/status.h"
#include "zerodet/core/unique_fd.h"

namespace zerodet::store::internal {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kHugePageSize = 2 * 1024 * 1024;

// What this machine (and this process's memory cgroup) can back with memory and swap.
struct MemoryLimit {
  uint64_t bytes = 0;      // the smaller of MemTotal + SwapTotal and any cgroup limit
  uint64_t available = 0;  // MemAvailable + free swap, right now
  std::string source;      // how `bytes` was found, for messages
};

// Reads /proc/meminfo and the memory cgroup (v2 memory.max and memory.swap.max along the
// cgroup's path, or v1 memory.limit_in_bytes / memory.memsw.limit_in_bytes).
// Errors: kIoError when /proc/meminfo cannot be read.
Result<MemoryLimit> MachineMemoryLimit();

// Whether shmem (memfd) mappings can get transparent huge pages when madvised, per
// /sys/kernel/mm/transparent_hugepage/shmem_enabled ("always", "within_size" or "advise").
bool ShmemTransparentHugePagesAvailable();

// A memfd of `size` bytes whose size is sealed (F_SEAL_SHRINK|GROW|SEAL), mapped writable by
// this process; with `deny_writable_maps`, also F_SEAL_FUTURE_WRITE: no other mapping of it
// can be writable. Errors name `name` and the size.
struct SealedRegion {
  UniqueFd fd;
  Mapping mapping;
};
Result<SealedRegion> NewSealedRegion(const char* name, uint64_t size, bool deny_writable_maps);

struct ArenaOptions {
  uint64_t capacity = 0;   // bytes; rounded up to the page (or huge page) size
  bool hugepages = false;  // hugetlbfs pages (reserved with vm.nr_hugepages)
  bool populate = false;   // fault every page in now (commits the memory up front)
};

class Arena {
 public:
  // Creates the arena after checking that the machine can back it. With transparent huge
  // pages available for shmem the store's mapping is madvised for them (populate then
  // allocates huge pages). Errors: kInvalidArgument (zero capacity), kResourceExhausted
  // (more than the machine, its cgroup or the reserved huge pages can back, naming the
  // sizes), kIoError.
  static Result<Arena> Create(const ArenaOptions& options);

  // The store's writable mapping.
  std::span<uint8_t> memory() const { return {mapping_.data(), mapping_.size()}; }
  uint64_t size() const { return mapping_.size(); }
  // The granularity of mappings of the arena: 4 KiB, or 2 MiB with hugetlbfs pages.
  uint64_t page_size() const { return options_.hugepages ? kHugePageSize : kPageSize; }
  int writable_fd() const { return writable_fd_.get(); }
  // Opened O_RDONLY: mappings of it cannot be made writable, fallocate and ftruncate fail.
  int read_only_fd() const { return read_only_fd_.get(); }
  // "1.00 GiB arena (huge pages, populated)".
  std::string Describe() const;

 private:
  Arena() = default;
  UniqueFd writable_fd_, read_only_fd_;
  Mapping mapping_;
  ArenaOptions options_;
  bool transparent_hugepages_ = false;
};

}  // namespace zerodet::store::internal

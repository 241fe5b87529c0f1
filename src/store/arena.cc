#include "arena.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

#include "human_bytes.h"
#include "zerodet/core/file.h"

namespace zerodet::store::internal {
namespace {

uint64_t RoundUp(uint64_t value, uint64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    lines.push_back(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

std::optional<uint64_t> ParseUnsigned(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A cgroup limit file: nullopt for "max", a missing file, or v1's "no limit" (close to 2^63).
std::optional<uint64_t> ReadLimit(const std::filesystem::path& path) {
  Result<std::string> text = ReadFileText(path, 4096);
  if (!text.ok()) return std::nullopt;
  std::optional<uint64_t> value = ParseUnsigned(*text);
  if (!value || *value >= (uint64_t{1} << 62)) return std::nullopt;
  return value;
}

// The tightest memory (RAM) and swap limits of this process's cgroups, with their file names.
struct CgroupLimits {
  std::optional<uint64_t> memory, swap;
  std::string where;
};

void Tighten(std::optional<uint64_t>* limit, std::optional<uint64_t> candidate) {
  if (candidate && (!*limit || *candidate < **limit)) *limit = candidate;
}

CgroupLimits ReadCgroupLimits() {
  CgroupLimits limits;
  Result<std::string> cgroups = ReadFileText("/proc/self/cgroup", 65536);
  if (!cgroups.ok()) return limits;
  for (std::string_view line : Lines(*cgroups)) {
    // "hierarchy-ID:controllers:path"; v2 is "0::path", v1 memory is "N:memory:path".
    const size_t first = line.find(':');
    const size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    const std::string_view controllers = line.substr(first + 1, second - first - 1);
    std::filesystem::path path(std::string(line.substr(second + 1)));
    const bool v2 = line.substr(0, first) == "0" && controllers.empty();
    bool v1_memory = false;
    for (std::string_view rest = controllers; !rest.empty();) {
      const size_t comma = rest.find(',');
      v1_memory |= rest.substr(0, comma) == "memory";
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    if (!v2 && !v1_memory) continue;
    const std::filesystem::path root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
    // Every ancestor's limit applies too.
    for (std::filesystem::path p = path;; p = p.parent_path()) {
      const std::filesystem::path dir = root / p.relative_path();
      const auto memory = ReadLimit(dir / (v2 ? "memory.max" : "memory.limit_in_bytes"));
      if (memory && (!limits.memory || *memory < *limits.memory)) {
        limits.where = (dir / (v2 ? "memory.max" : "memory.limit_in_bytes")).string();
      }
      Tighten(&limits.memory, memory);
      if (v2) {
        Tighten(&limits.swap, ReadLimit(dir / "memory.swap.max"));
      } else if (const auto memsw = ReadLimit(dir / "memory.memsw.limit_in_bytes");
                 memsw && memory && *memsw >= *memory) {
        Tighten(&limits.swap, *memsw - *memory);
      }
      if (p == p.root_path() || p.empty() || p == p.parent_path()) break;
    }
  }
  return limits;
}

Status SealFd(int fd, bool deny_writable_maps, const char* what) {
  int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  if (deny_writable_maps) seals |= F_SEAL_FUTURE_WRITE;
  if (::fcntl(fd, F_ADD_SEALS, seals) != 0) {
    return ErrnoError(fmt::format("cannot seal the {} memfd", what), errno);
  }
  return Status::Ok();
}

Result<UniqueFd> NewMemfd(const char* name, uint64_t size, bool hugepages) {
  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  if (hugepages) flags |= MFD_HUGETLB;
  UniqueFd fd(::memfd_create(name, flags));
  if (!fd.valid()) {
    const int err = errno;
    if (hugepages) {
      return ResourceExhaustedError(
          fmt::format("cannot create a huge-page arena ({}): {}; is hugetlbfs available?",
                      HumanBytes(size), std::strerror(err)));
    }
    return ErrnoError(fmt::format("memfd_create({})", name), err);
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return ErrnoError(fmt::format("cannot size {} to {}", name, HumanBytes(size)), errno);
  }
  return fd;
}

// Free huge pages of the default size (hugetlbfs), from /proc/meminfo.
uint64_t FreeHugePages() {
  Result<std::string> meminfo = ReadFileText("/proc/meminfo", 1 << 20);
  if (!meminfo.ok()) return 0;
  for (std::string_view line : Lines(*meminfo)) {
    if (!line.starts_with("HugePages_Free:")) continue;
    line.remove_prefix(std::strlen("HugePages_Free:"));
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    return ParseUnsigned(line).value_or(0);
  }
  return 0;
}

}  // namespace

Result<MemoryLimit> MachineMemoryLimit() {
  ZD_ASSIGN_OR_RETURN(std::string meminfo, ReadFileText("/proc/meminfo", 1 << 20));
  uint64_t mem_total = 0, swap_total = 0, mem_available = 0, swap_free = 0;
  for (std::string_view line : Lines(meminfo)) {
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (value.ends_with(" kB")) value.remove_suffix(3);
    const uint64_t bytes = ParseUnsigned(value).value_or(0) * 1024;
    const std::string_view key = line.substr(0, colon);
    if (key == "MemTotal") mem_total = bytes;
    if (key == "SwapTotal") swap_total = bytes;
    if (key == "MemAvailable") mem_available = bytes;
    if (key == "SwapFree") swap_free = bytes;
  }
  if (mem_total == 0) return IoError("/proc/meminfo has no MemTotal");
  MemoryLimit limit;
  limit.bytes = mem_total + swap_total;
  limit.available = mem_available + swap_free;
  limit.source =
      fmt::format("{} of memory + {} of swap", HumanBytes(mem_total), HumanBytes(swap_total));
  const CgroupLimits cgroup = ReadCgroupLimits();
  if (cgroup.memory) {
    const uint64_t memory = std::min(*cgroup.memory, mem_total);
    const uint64_t swap = std::min(cgroup.swap.value_or(swap_total), swap_total);
    if (memory + swap < limit.bytes) {
      limit.bytes = memory + swap;
      limit.available = std::min(limit.available, limit.bytes);
      limit.source = fmt::format("the memory cgroup limit {} ({}) + {} of swap",
                                 HumanBytes(*cgroup.memory), cgroup.where, HumanBytes(swap));
    }
  }
  return limit;
}

bool ShmemTransparentHugePagesAvailable() {
  Result<std::string> mode =
      ReadFileText("/sys/kernel/mm/transparent_hugepage/shmem_enabled", 4096);
  if (!mode.ok()) return false;
  return mode->find("[always]") != std::string::npos ||
         mode->find("[within_size]") != std::string::npos ||
         mode->find("[advise]") != std::string::npos;
}

Result<SealedRegion> NewSealedRegion(const char* name, uint64_t size, bool deny_writable_maps) {
  SealedRegion region;
  ZD_ASSIGN_OR_RETURN(region.fd, NewMemfd(name, size, false));
  ZD_ASSIGN_OR_RETURN(region.mapping, MapShared(region.fd.get(), size, true, name));
  if (Status sealed = SealFd(region.fd.get(), deny_writable_maps, name); !sealed.ok()) {
    if (!deny_writable_maps) return sealed;
    // F_SEAL_FUTURE_WRITE needs Linux 5.1.
    spdlog::warn("store: {} (kernel < 5.1?); clients could map the {} writable", sealed.message(),
                 name);
    ZD_RETURN_IF_ERROR(SealFd(region.fd.get(), false, name));
  }
  return region;
}

Result<Arena> Arena::Create(const ArenaOptions& options) {
  if (options.capacity == 0) return InvalidArgumentError("store: capacity must be > 0 bytes");
  const uint64_t page = options.hugepages ? kHugePageSize : kPageSize;
  if (options.capacity > (uint64_t{1} << 50)) {
    return InvalidArgumentError(
        fmt::format("store: capacity {} is beyond any machine", HumanBytes(options.capacity)));
  }
  const uint64_t size = RoundUp(options.capacity, page);
  if (options.hugepages) {
    const uint64_t needed = size / kHugePageSize, free = FreeHugePages();
    if (needed > free) {
      return ResourceExhaustedError(fmt::format(
          "store: a {} huge-page arena needs {} huge pages of 2 MiB, {} are free; reserve them "
          "with `sysctl vm.nr_hugepages=N` or drop --hugepages",
          HumanBytes(size), needed, free));
    }
  } else {
    ZD_ASSIGN_OR_RETURN(MemoryLimit limit, MachineMemoryLimit());
    if (size > limit.bytes) {
      return ResourceExhaustedError(
          fmt::format("store: capacity {} is more than this machine can back: {} at most ({})",
                      HumanBytes(size), HumanBytes(limit.bytes), limit.source));
    }
    if (size > limit.available) {
      spdlog::warn(
          "store: capacity {} is more than the {} available now; writers may fail or "
          "be killed once the arena fills",
          HumanBytes(size), HumanBytes(limit.available));
    }
  }
  Arena arena;
  arena.options_ = options;
  ZD_ASSIGN_OR_RETURN(arena.writable_fd_, NewMemfd("zerodet-store-arena", size, options.hugepages));
  Result<Mapping> mapping = MapShared(arena.writable_fd_.get(), size, true, "the arena");
  if (!mapping.ok() && options.hugepages) {
    return ResourceExhaustedError(
        fmt::format("store: cannot reserve {} of huge pages for the arena ({}); reserve pages with "
                    "`sysctl vm.nr_hugepages=N`",
                    HumanBytes(size), mapping.status().message()));
  }
  ZD_RETURN_IF_ERROR(mapping.status());
  arena.mapping_ = std::move(*mapping);
  ZD_RETURN_IF_ERROR(SealFd(arena.writable_fd_.get(), false, "arena"));
  // Clients get this descriptor: a mapping of it can never be made writable.
  const std::string self = fmt::format("/proc/self/fd/{}", arena.writable_fd_.get());
  arena.read_only_fd_ = UniqueFd(::open(self.c_str(), O_RDONLY | O_CLOEXEC));
  if (!arena.read_only_fd_.valid()) {
    return ErrnoError(fmt::format("store: cannot reopen the arena read-only through {} (is /proc "
                                  "mounted?)",
                                  self),
                      errno);
  }
  if (!options.hugepages && ShmemTransparentHugePagesAvailable()) {
    arena.transparent_hugepages_ =
        ::madvise(arena.mapping_.data(), arena.mapping_.size(), MADV_HUGEPAGE) == 0;
  }
  if (options.populate &&
      ::madvise(arena.mapping_.data(), arena.mapping_.size(), MADV_POPULATE_WRITE) != 0) {
    const int err = errno;
    if (err == EINVAL) {
      return UnimplementedError("store: populating the arena needs Linux 5.14 or later");
    }
    return ResourceExhaustedError(fmt::format("store: cannot populate the {} arena: {}",
                                              HumanBytes(size), std::strerror(err)));
  }
  return arena;
}

std::string Arena::Describe() const {
  std::string what = HumanBytes(size()) + " arena";
  std::vector<std::string> traits;
  if (options_.hugepages) traits.push_back("huge pages");
  if (transparent_hugepages_) traits.push_back("transparent huge pages");
  if (options_.populate) traits.push_back("populated");
  for (size_t i = 0; i < traits.size(); ++i) what += (i == 0 ? " (" : ", ") + traits[i];
  if (!traits.empty()) what += ")";
  return what;
}

}  // namespace zerodet::store::internal

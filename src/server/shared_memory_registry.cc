#include "zerodet/server/shared_memory_registry.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace zerodet::server {

struct SharedMemoryRegistry::Region {
  ~Region() {
    if (map_base != nullptr) ::munmap(map_base, map_length);
    if (fd >= 0) ::close(fd);
  }
  std::string key;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
  int fd = -1;  // kept open to re-check the object's size at each lease
  void* map_base = nullptr;
  size_t map_length = 0;
  uint8_t* data = nullptr;  // the region's first byte (map_base + offset % page size)
};

namespace {

Status CheckName(const std::string& name) {
  if (name.empty() || name.size() > 128) {
    return InvalidArgumentError("a shared-memory region name has 1..128 characters");
  }
  for (const char c : name) {
    if (c < 0x21 || c > 0x7e) {
      return InvalidArgumentError("a shared-memory region name has printable characters only");
    }
  }
  return Status::Ok();
}

// The key as shm_open takes it ("/name"). Errors: a key that is not a plain object name.
Result<std::string> ShmName(const std::string& key) {
  const std::string_view bare =
      !key.empty() && key.front() == '/' ? std::string_view(key).substr(1) : std::string_view(key);
  bool plain = !bare.empty() && bare.size() <= 250 && bare != "." && bare != "..";
  for (const char c : bare) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) plain = false;
  }
  if (!plain) {
    return InvalidArgumentError("shared-memory key '" + key.substr(0, 100) +
                                "' is not a POSIX shared-memory object name (letters, digits, "
                                "'.', '_', '-', after an optional leading '/')");
  }
  std::string shm_name;
  shm_name.reserve(bare.size() + 1);
  shm_name.push_back('/');
  shm_name.append(bare);
  return shm_name;
}

// Whether [offset, offset + size) lies within `limit` bytes, without overflow.
bool WithinSize(uint64_t offset, uint64_t size, uint64_t limit) {
  return offset <= limit && size <= limit - offset;
}

}  // namespace

Status SharedMemoryRegistry::Register(const std::string& name, const std::string& key,
                                      uint64_t offset, uint64_t byte_size) {
  ZD_RETURN_IF_ERROR(CheckName(name));
  ZD_ASSIGN_OR_RETURN(const std::string shm_name, ShmName(key));
  if (byte_size == 0) return InvalidArgumentError("a shared-memory region needs byte_size > 0");
  {
    const std::lock_guard lock(mutex_);
    if (regions_.count(name) != 0) {
      return AlreadyExistsError("shared-memory region '" + name + "' is already registered");
    }
    if (regions_.size() >= kMaxRegions) {
      return ResourceExhaustedError("at most " + std::to_string(kMaxRegions) +
                                    " shared-memory regions may be registered");
    }
  }
  auto region = std::make_shared<Region>();
  region->key = key;
  region->offset = offset;
  region->byte_size = byte_size;
  region->fd = ::shm_open(shm_name.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0);
  if (region->fd < 0) {
    const int error = errno;
    const std::string why = "shared-memory key '" + key + "': " + std::strerror(error);
    if (error == ENOENT) return NotFoundError(why);
    if (error == EACCES || error == EPERM) return PermissionDeniedError(why);
    return IoError(why);
  }
  struct stat info {};
  if (::fstat(region->fd, &info) != 0) {
    return IoError("shared-memory key '" + key + "': " + std::strerror(errno));
  }
  if (!S_ISREG(info.st_mode)) {
    return InvalidArgumentError("shared-memory key '" + key + "' is not a shared-memory object");
  }
  const auto object_size = static_cast<uint64_t>(info.st_size);
  if (!WithinSize(offset, byte_size, object_size)) {
    return InvalidArgumentError("shared-memory region '" + name + "' (offset " +
                                std::to_string(offset) + ", byte_size " +
                                std::to_string(byte_size) + ") lies outside '" + key + "' of " +
                                std::to_string(object_size) + " bytes");
  }
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t map_offset = offset - offset % page;
  region->map_length = static_cast<size_t>(offset - map_offset + byte_size);
  void* base = ::mmap(nullptr, region->map_length, PROT_READ | PROT_WRITE, MAP_SHARED, region->fd,
                      static_cast<off_t>(map_offset));
  if (base == MAP_FAILED) {
    return IoError("cannot map shared-memory region '" + name + "': " + std::strerror(errno));
  }
  region->map_base = base;
  region->data = static_cast<uint8_t*>(base) + (offset - map_offset);

  const std::lock_guard lock(mutex_);
  if (regions_.size() >= kMaxRegions) {
    return ResourceExhaustedError("at most " + std::to_string(kMaxRegions) +
                                  " shared-memory regions may be registered");
  }
  if (!regions_.emplace(name, std::move(region)).second) {
    return AlreadyExistsError("shared-memory region '" + name + "' is already registered");
  }
  return Status::Ok();
}

Status SharedMemoryRegistry::Unregister(const std::string& name) {
  std::shared_ptr<Region> removed;
  {
    const std::lock_guard lock(mutex_);
    const auto it = regions_.find(name);
    if (it == regions_.end()) {
      return NotFoundError("shared-memory region '" + name.substr(0, 128) + "' is not registered");
    }
    removed = std::move(it->second);
    regions_.erase(it);
  }
  return Status::Ok();  // unmapped here, or when the last request using it ends
}

void SharedMemoryRegistry::UnregisterAll() {
  std::map<std::string, std::shared_ptr<Region>> removed;
  const std::lock_guard lock(mutex_);
  removed.swap(regions_);
}

Result<std::vector<SharedMemoryRegionStatus>> SharedMemoryRegistry::Regions(
    std::optional<std::string> name) const {
  const std::lock_guard lock(mutex_);
  std::vector<SharedMemoryRegionStatus> out;
  for (const auto& [region_name, region] : regions_) {
    if (name && region_name != *name) continue;
    // The registry's own reference is not a request's.
    out.push_back(
        {region_name, region->key, region->offset, region->byte_size, region.use_count() - 1});
  }
  if (name && out.empty()) {
    return NotFoundError("shared-memory region '" + name->substr(0, 128) + "' is not registered");
  }
  return out;
}

Result<SharedMemoryLease> SharedMemoryRegistry::Lease(const std::string& name, uint64_t offset,
                                                      uint64_t byte_size) const {
  std::shared_ptr<Region> region;
  {
    const std::lock_guard lock(mutex_);
    const auto it = regions_.find(name);
    if (it == regions_.end()) {
      return NotFoundError("shared-memory region '" + name.substr(0, 128) + "' is not registered");
    }
    region = it->second;
  }
  if (!WithinSize(offset, byte_size, region->byte_size)) {
    return InvalidArgumentError("offset " + std::to_string(offset) + " and byte_size " +
                                std::to_string(byte_size) + " lie outside shared-memory region '" +
                                name + "' of " + std::to_string(region->byte_size) + " bytes");
  }
  struct stat info {};
  if (::fstat(region->fd, &info) != 0 ||
      !WithinSize(region->offset, region->byte_size, static_cast<uint64_t>(info.st_size))) {
    return InvalidArgumentError("shared-memory region '" + name + "': its object '" + region->key +
                                "' has shrunk below the registered range");
  }
  SharedMemoryLease lease;
  lease.bytes_ = std::span<uint8_t>(region->data + offset, static_cast<size_t>(byte_size));
  lease.mapping_ = std::move(region);
  return lease;
}

}  // namespace zerodet::server

#include "segment.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <new>

#include "process_identity.h"

namespace zerodet::ring::detail {

Geometry ComputeGeometry(uint32_t slot_count, uint64_t slot_bytes) {
  auto round_up = [](uint64_t v) { return (v + kPageBytes - 1) / kPageBytes * kPageBytes; };
  Geometry g;
  g.slot_stride = round_up(slot_bytes);
  g.data_offset = round_up(sizeof(RingHeader) + sizeof(SlotControl) * slot_count);
  g.total_bytes = g.data_offset + g.slot_stride * slot_count;
  return g;
}

std::string SegmentPath(std::string_view name) {
  std::string path(kSegmentDir);
  path += kSegmentPrefix;
  path += name;
  return path;
}

Status ValidateName(std::string_view name, std::string_view what) {
  if (name.empty() || name.size() > kMaxNameLength) {
    return InvalidArgumentError(std::string(what) + " '" + std::string(name) + "' must have 1 to " +
                                std::to_string(kMaxNameLength) + " characters");
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) {
      return InvalidArgumentError(std::string(what) + " '" + std::string(name) +
                                  "' may only use letters, digits, '_', '-' and '.'");
    }
  }
  if (name.find(".tmp.") != std::string_view::npos) {
    return InvalidArgumentError(std::string(what) + " '" + std::string(name) +
                                "' must not contain '.tmp.' (reserved for segments being created)");
  }
  return Status::Ok();
}

Result<std::unique_ptr<RingSegment>> RingSegment::MapFd(int fd, std::string path, size_t size) {
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    ::close(fd);
    return ErrnoError("mmap " + path + " (" + std::to_string(size) + " bytes)", err);
  }
  return std::unique_ptr<RingSegment>(new RingSegment(fd, base, size, std::move(path)));
}

Result<std::unique_ptr<RingSegment>> RingSegment::OpenExisting(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT)
      return NotFoundError("no ring segment " + path + " (is its writer running?)");
    if (err == EACCES) return PermissionDeniedError(path + ": segment belongs to another user");
    return ErrnoError("open " + path, err);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoError("fstat " + path, err);
  }
  if (st.st_uid != ::geteuid()) {
    ::close(fd);
    return PermissionDeniedError(path + " is owned by uid " + std::to_string(st.st_uid) +
                                 ", not by this user");
  }
  if (static_cast<size_t>(st.st_size) < sizeof(RingHeader)) {
    ::close(fd);
    return CorruptDataError(path + " is not a zerodet ring (" + std::to_string(st.st_size) +
                            " bytes, smaller than a ring header); remove it");
  }
  ZD_ASSIGN_OR_RETURN(auto segment, MapFd(fd, path, static_cast<size_t>(st.st_size)));
  const RingHeader* h = segment->header();
  if (h->magic.load(std::memory_order_acquire) != kMagic || h->version != kLayoutVersion) {
    return CorruptDataError(path + " is not a zerodet ring of layout version " +
                            std::to_string(kLayoutVersion) + "; remove it");
  }
  const Geometry g = ComputeGeometry(h->slot_count, h->slot_bytes);
  if (h->slot_count < 2 || h->max_readers < 1 || h->max_readers > kMaxReaders ||
      g.total_bytes != h->total_bytes || g.data_offset != h->data_offset ||
      g.slot_stride != h->slot_stride || h->total_bytes != static_cast<uint64_t>(st.st_size)) {
    return CorruptDataError(path + ": inconsistent ring header (size " +
                            std::to_string(st.st_size) + " bytes); remove it");
  }
  return segment;
}

RingSegment::~RingSegment() {
  ::munmap(base_, size_);
  ::close(fd_);
}

bool RingSegment::StillLinked() const {
  struct stat by_path, by_fd;
  if (::stat(path_.c_str(), &by_path) != 0 || ::fstat(fd_, &by_fd) != 0) return false;
  return by_path.st_ino == by_fd.st_ino && by_path.st_dev == by_fd.st_dev;
}

RegistryLock::RegistryLock(RingHeader* header) : header_(header) {
  const int rc = ::pthread_mutex_lock(&header_->registry);
  // The previous owner died holding the lock. Table updates are ordered to be safe to redo, so
  // the state is usable as is.
  if (rc == EOWNERDEAD) ::pthread_mutex_consistent(&header_->registry);
}

RegistryLock::~RegistryLock() {
  ::pthread_mutex_unlock(&header_->registry);
}

void InitializeHeader(RingHeader* header, const RingOptions& options, const Geometry& geometry) {
  new (header) RingHeader();
  header->version = kLayoutVersion;
  header->slot_count = static_cast<uint32_t>(options.slot_count);
  header->max_readers = static_cast<uint32_t>(options.max_readers);
  header->slot_bytes = options.slot_bytes;
  header->slot_stride = geometry.slot_stride;
  header->data_offset = geometry.data_offset;
  header->total_bytes = geometry.total_bytes;
  header->policy.store(static_cast<uint32_t>(options.policy));
  pthread_mutexattr_t attr;
  ::pthread_mutexattr_init(&attr);
  ::pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  ::pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  ::pthread_mutex_init(&header->registry, &attr);
  ::pthread_mutexattr_destroy(&attr);
  auto* slots =
      reinterpret_cast<SlotControl*>(reinterpret_cast<uint8_t*>(header) + sizeof(RingHeader));
  for (int i = 0; i < options.slot_count; ++i) new (&slots[i]) SlotControl();
}

int ReclaimDeadReadersLocked(const RingSegment& segment) {
  RingHeader* h = segment.header();
  int reclaimed = 0;
  for (uint32_t r = 0; r < h->max_readers; ++r) {
    ReaderEntry& entry = h->readers[r];
    if (entry.identity == 0 || IdentityAlive(entry.identity)) continue;
    const uint64_t bit = uint64_t{1} << r;
    for (uint32_t s = 0; s < h->slot_count; ++s) {
      const uint64_t before = segment.slot(static_cast<int>(s))->holders.fetch_and(~bit);
      if (before & bit) h->slots_reclaimed.fetch_add(1);
    }
    if (entry.joined.exchange(0) == 1 && entry.group >= 0) {
      h->groups[entry.group].members.fetch_sub(1);
    }
    entry.identity = 0;
    h->readers_attached.fetch_sub(1);
    h->readers_reclaimed.fetch_add(1);
    ++reclaimed;
  }
  return reclaimed;
}

bool HasLiveReaders(const RingSegment& segment) {
  RingHeader* h = segment.header();
  RegistryLock lock(h);
  for (uint32_t r = 0; r < h->max_readers; ++r) {
    if (IdentityAlive(h->readers[r].identity)) return true;
  }
  return false;
}

RingStats ReadStats(const RingHeader* h) {
  RingStats s;
  s.frames_published = h->frames_published.load();
  s.frames_dropped = h->frames_dropped.load();
  s.frames_overwritten = h->frames_overwritten.load();
  s.readers_reclaimed = h->readers_reclaimed.load();
  s.slots_reclaimed = h->slots_reclaimed.load();
  s.last_sequence = h->last_sequence.load();
  s.writer_epoch = h->writer_epoch.load();
  s.readers_attached = static_cast<int>(h->readers_attached.load());
  return s;
}

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ns) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace zerodet::ring::detail

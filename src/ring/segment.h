// Shared-memory layout of a frame ring and the mapping that holds it (internal).
//
// Segment: [RingHeader][SlotControl x slot_count] ... page-aligned [slot data x slot_count].
// Hot-path state (slot states, holder masks, sequence, futex word) is lock-free atomics; the
// reader and group tables are changed under a robust process-shared mutex, so a process that
// dies holding it leaves a lock the next process can recover (EOWNERDEAD). Every table update
// is ordered so that a half-done one is safe to redo.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "zerodet/core/status.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::ring::detail {

inline constexpr uint64_t kMagic = 0x31304e4952445a5aULL;  // "ZZDRIN01"
inline constexpr uint32_t kLayoutVersion = 1;
inline constexpr size_t kPageBytes = 4096;
inline constexpr std::string_view kSegmentDir = "/dev/shm/";
inline constexpr std::string_view kSegmentPrefix = "zerodet-ring-";

static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// A slot's state word: (sequence << 1) | writing. Sequence 0 means empty. The writer sets the
// writing bit before it checks the holder mask (and clears the sequence once it goes ahead);
// a reader sets its holder bit before it checks the state. Both sides use seq_cst, so at least
// one of them sees the other: a held frame is never written.
inline constexpr uint64_t kWritingBit = 1;
inline uint64_t StateSequence(uint64_t state) {
  return state >> 1;
}
inline bool StateWriting(uint64_t state) {
  return (state & kWritingBit) != 0;
}
inline uint64_t PublishedState(uint64_t sequence) {
  return sequence << 1;
}

struct alignas(64) SlotControl {
  std::atomic<uint64_t> state{0};
  std::atomic<uint64_t> holders{0};  // bit i: reader entry i holds (or is taking) this slot
  FrameInfo info;                    // written only while the writer has the slot claimed
};

struct alignas(64) ReaderEntry {
  uint64_t identity = 0;  // 0: free. Registry mutex.
  uint32_t mode = 0;      // ReaderMode
  int32_t group = -1;
  std::atomic<uint32_t> joined{0};  // 1 while counted in groups[group].members
  std::atomic<uint64_t> frames_read{0};
  std::atomic<uint64_t> frames_missed{0};
};

struct alignas(64) GroupEntry {
  uint32_t in_use = 0;  // registry mutex
  char name[kMaxNameLength + 1] = {};
  std::atomic<uint64_t> next_sequence{0};  // the next frame this group wants
  std::atomic<uint32_t> members{0};
  std::atomic<uint64_t> frames_missed{0};
};

struct RingHeader {
  std::atomic<uint64_t> magic{0};
  uint32_t version = 0;
  uint32_t slot_count = 0;
  uint32_t max_readers = 0;
  uint64_t slot_bytes = 0;
  uint64_t slot_stride = 0;
  uint64_t data_offset = 0;
  uint64_t total_bytes = 0;

  std::atomic<uint32_t> policy{0};
  std::atomic<uint64_t> writer_identity{0};  // 0: never had a writer
  std::atomic<uint32_t> writer_open{0};      // 0 after a clean close
  std::atomic<uint64_t> writer_epoch{0};
  pthread_mutex_t registry;

  alignas(64) std::atomic<uint64_t> last_sequence{0};
  std::atomic<uint32_t> notify{0};   // futex word: bumped on every publish and on close
  std::atomic<uint32_t> waiters{0};  // readers inside futex wait

  alignas(64) std::atomic<uint64_t> frames_published{0};
  std::atomic<uint64_t> frames_dropped{0};
  std::atomic<uint64_t> frames_overwritten{0};
  std::atomic<uint64_t> readers_reclaimed{0};
  std::atomic<uint64_t> slots_reclaimed{0};
  std::atomic<uint32_t> readers_attached{0};

  GroupEntry groups[kMaxGroups];
  ReaderEntry readers[kMaxReaders];
  // SlotControl slots[slot_count] follow.
};

struct Geometry {
  uint64_t slot_stride = 0;
  uint64_t data_offset = 0;
  uint64_t total_bytes = 0;
};
Geometry ComputeGeometry(uint32_t slot_count, uint64_t slot_bytes);

// "/dev/shm/zerodet-ring-<name>".
std::string SegmentPath(std::string_view name);
// kInvalidArgument unless `name` is 1..kMaxNameLength of [A-Za-z0-9_.-]; `what` names it.
Status ValidateName(std::string_view name, std::string_view what);

// A mapped ring segment. Owns the mapping and the file descriptor.
class RingSegment {
 public:
  // Opens and maps an existing ring by path, checking owner, size, magic and version.
  // Errors: kNotFound, kPermissionDenied, kCorruptData, kIoError.
  static Result<std::unique_ptr<RingSegment>> OpenExisting(const std::string& path);
  // Wraps a fresh mapping of `size` bytes of `fd` (takes ownership of fd).
  static Result<std::unique_ptr<RingSegment>> MapFd(int fd, std::string path, size_t size);

  ~RingSegment();
  RingSegment(const RingSegment&) = delete;
  RingSegment& operator=(const RingSegment&) = delete;

  RingHeader* header() const { return static_cast<RingHeader*>(base_); }
  SlotControl* slot(int i) const {
    return reinterpret_cast<SlotControl*>(static_cast<uint8_t*>(base_) + sizeof(RingHeader)) + i;
  }
  uint8_t* slot_data(int i) const {
    return static_cast<uint8_t*>(base_) + header()->data_offset +
           static_cast<uint64_t>(i) * header()->slot_stride;
  }
  const std::string& path() const { return path_; }
  // True while the path names this very segment (it was not unlinked or replaced).
  bool StillLinked() const;

 private:
  RingSegment(int fd, void* base, size_t size, std::string path)
      : fd_(fd), base_(base), size_(size), path_(std::move(path)) {}
  int fd_;
  void* base_;
  size_t size_;
  std::string path_;
};

// Holds the registry mutex of a header; recovers it from a dead owner.
class RegistryLock {
 public:
  explicit RegistryLock(RingHeader* header);
  ~RegistryLock();
  RegistryLock(const RegistryLock&) = delete;
  RegistryLock& operator=(const RegistryLock&) = delete;

 private:
  RingHeader* header_;
};

// Initializes a zeroed header for a fresh segment (magic is stored last, by the caller).
void InitializeHeader(RingHeader* header, const RingOptions& options, const Geometry& geometry);

// Releases the entries and slot holdings of dead readers. REQUIRES: the registry lock is held.
int ReclaimDeadReadersLocked(const RingSegment& segment);

// True when some reader entry belongs to a live process. Takes the registry lock.
bool HasLiveReaders(const RingSegment& segment);

RingStats ReadStats(const RingHeader* header);

// Futex on a word of a shared mapping (not FUTEX_PRIVATE: other processes wait on it too).
// Returns when woken, when *word != expected, or after timeout_ns.
void FutexWait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ns);
void FutexWakeAll(std::atomic<uint32_t>* word);

}  // namespace zerodet::ring::detail

#include <algorithm>
#include <cassert>
#include <limits>
#include <thread>

#include "process_identity.h"
#include "segment.h"
#include "zerodet/core/clock.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::ring {

using detail::kWritingBit;
using detail::RingHeader;
using detail::SlotControl;

namespace {

// Readers re-check the writer's liveness at least this often while they wait.
constexpr int64_t kLivenessPollNs = 100'000'000;
// The writer flags a slot it is about to claim, then backs off if a reader holds it; a reader
// that sees the flag waits out this window (a few instructions) rather than skip the frame.
// Bounded, because a writer that dies inside the window leaves the flag set.
constexpr int kClaimWindowSpins = 1000;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Decrements a group's member count without wrapping below zero (a registration cut short by
// a crash may have set `joined` without counting the member).
void LeaveGroup(detail::GroupEntry& group) {
  uint32_t members = group.members.load();
  while (members > 0 && !group.members.compare_exchange_weak(members, members - 1)) {
  }
}

}  // namespace

FrameLease::FrameLease(FrameLease&& other) noexcept
    : reader_(other.reader_), slot_(other.slot_), data_(other.data_), info_(other.info_) {
  other.reader_ = nullptr;
}

FrameLease& FrameLease::operator=(FrameLease&& other) noexcept {
  if (this != &other) {
    Release();
    reader_ = other.reader_;
    slot_ = other.slot_;
    data_ = other.data_;
    info_ = other.info_;
    other.reader_ = nullptr;
  }
  return *this;
}

void FrameLease::Release() {
  if (reader_ == nullptr) return;
  reader_->ReleaseSlot(slot_);
  reader_ = nullptr;
  data_ = nullptr;
}

Result<std::unique_ptr<RingReader>> RingReader::Attach(const ReaderOptions& options) {
  ZD_RETURN_IF_ERROR(detail::ValidateName(options.ring_name, "ring name"));
  if (options.mode == ReaderMode::kWorkGroup) {
    ZD_RETURN_IF_ERROR(detail::ValidateName(options.group, "work group name"));
  }
  if (options.spin < std::chrono::microseconds(0) || options.spin > std::chrono::seconds(1)) {
    return InvalidArgumentError("ring '" + options.ring_name + "': spin of " +
                                std::to_string(options.spin.count()) +
                                " us is outside 0..1000000 us");
  }
  const uint64_t self = detail::SelfIdentity();
  if (self == 0) return InternalError("cannot read /proc/self/stat to identify this process");
  ZD_ASSIGN_OR_RETURN(auto segment,
                      detail::RingSegment::OpenExisting(detail::SegmentPath(options.ring_name)));
  RingHeader* h = segment->header();
  detail::RegistryLock lock(h);
  detail::ReclaimDeadReadersLocked(*segment);
  int index = -1;
  for (uint32_t r = 0; r < h->max_readers; ++r) {
    if (h->readers[r].identity == 0) {
      index = static_cast<int>(r);
      break;
    }
  }
  if (index < 0) {
    return ResourceExhaustedError("ring '" + options.ring_name + "': all " +
                                  std::to_string(h->max_readers) + " reader entries are in use");
  }
  int group = -1;
  if (options.mode == ReaderMode::kWorkGroup) {
    int free_group = -1;
    for (int g = 0; g < kMaxGroups; ++g) {
      detail::GroupEntry& entry = h->groups[g];
      if (entry.in_use != 0 && options.group == entry.name) {
        group = g;
        break;
      }
      if (entry.in_use == 0 && free_group < 0) free_group = g;
    }
    if (group < 0) {
      if (free_group < 0) {
        return ResourceExhaustedError("ring '" + options.ring_name + "': all " +
                                      std::to_string(kMaxGroups) + " work groups are in use");
      }
      group = free_group;
      detail::GroupEntry& entry = h->groups[group];
      std::fill(std::begin(entry.name), std::end(entry.name), '\0');
      std::copy(options.group.begin(), options.group.end(), entry.name);
      entry.next_sequence.store(h->last_sequence.load() + 1);
      entry.members.store(0);
      entry.frames_missed.store(0);
      entry.in_use = 1;
    }
  }
  detail::ReaderEntry& entry = h->readers[index];
  const uint64_t bit = uint64_t{1} << index;
  for (uint32_t s = 0; s < h->slot_count; ++s) {
    segment->slot(static_cast<int>(s))->holders.fetch_and(~bit);
  }
  entry.mode = static_cast<uint32_t>(options.mode);
  entry.group = group;
  entry.frames_read.store(0);
  entry.frames_missed.store(0);
  entry.identity = self;
  if (group >= 0) {
    entry.joined.store(1);
    h->groups[group].members.fetch_add(1);
  }
  h->readers_attached.fetch_add(1);
  auto reader = std::unique_ptr<RingReader>(
      new RingReader(std::move(segment), index, group, options.mode, options.spin));
  reader->cursor_ = h->last_sequence.load() + 1;
  return reader;
}

RingReader::RingReader(std::unique_ptr<detail::RingSegment> segment, int index, int group,
                       ReaderMode mode, std::chrono::microseconds spin)
    : segment_(std::move(segment)), index_(index), group_(group), mode_(mode), spin_(spin) {}

RingReader::~RingReader() {
  assert(leases_out_ == 0 && "a FrameLease outlived its RingReader");
  RingHeader* h = segment_->header();
  detail::RegistryLock lock(h);
  detail::ReaderEntry& entry = h->readers[index_];
  const uint64_t bit = uint64_t{1} << index_;
  for (uint32_t s = 0; s < h->slot_count; ++s) {
    segment_->slot(static_cast<int>(s))->holders.fetch_and(~bit);
  }
  if (entry.joined.exchange(0) == 1 && group_ >= 0) LeaveGroup(h->groups[group_]);
  entry.identity = 0;
  h->readers_attached.fetch_sub(1);
}

bool RingReader::Hold(int slot_index, uint64_t sequence, FrameLease& lease) {
  SlotControl* slot = segment_->slot(slot_index);
  const uint64_t bit = uint64_t{1} << index_;
  const uint64_t published = detail::PublishedState(sequence);
  for (int spin = 0; spin < kClaimWindowSpins; ++spin) {
    slot->holders.fetch_or(bit);
    const uint64_t state = slot->state.load();
    if (state == published) {
      lease.reader_ = this;
      lease.slot_ = slot_index;
      lease.data_ = segment_->slot_data(slot_index);
      lease.info_ = slot->info;
      ++leases_out_;
      return true;
    }
    slot->holders.fetch_and(~bit);
    if (state != (published | kWritingBit)) return false;  // replaced
    CpuRelax();  // the writer is deciding whether to take this slot
  }
  return false;
}

void RingReader::ReleaseSlot(int slot) {
  segment_->slot(slot)->holders.fetch_and(~(uint64_t{1} << index_), std::memory_order_release);
  --leases_out_;
}

bool RingReader::TryTakeGroup(FrameLease& lease) {
  RingHeader* h = segment_->header();
  detail::GroupEntry& group = h->groups[group_];
  const int n = static_cast<int>(h->slot_count);
  for (int spins = 0;; ++spins) {
    const uint64_t wanted = group.next_sequence.load();
    int best = -1;
    uint64_t best_seq = std::numeric_limits<uint64_t>::max();
    uint64_t deciding_seq = std::numeric_limits<uint64_t>::max();
    for (int i = 0; i < n; ++i) {
      const uint64_t state = segment_->slot(i)->state.load(std::memory_order_acquire);
      const uint64_t seq = detail::StateSequence(state);
      if (seq < wanted) continue;  // also skips empty slots (seq 0)
      if (detail::StateWriting(state)) {
        deciding_seq = std::min(deciding_seq, seq);
      } else if (seq < best_seq) {
        best = i;
        best_seq = seq;
      }
    }
    // An older wanted frame may be about to stay (the writer backs off a held slot): wait.
    if (deciding_seq < best_seq && spins < kClaimWindowSpins) {
      CpuRelax();
      continue;
    }
    if (best < 0) return false;
    if (!Hold(best, best_seq, lease)) continue;  // replaced meanwhile: look again
    uint64_t expected = wanted;
    if (group.next_sequence.compare_exchange_strong(expected, best_seq + 1)) {
      if (best_seq > wanted) group.frames_missed.fetch_add(best_seq - wanted);
      h->readers[index_].frames_read.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    lease.Release();  // another member took a frame first
  }
}

bool RingReader::TryTakeBroadcast(FrameLease& lease) {
  RingHeader* h = segment_->header();
  const int n = static_cast<int>(h->slot_count);
  for (int spins = 0;; ++spins) {
    int exact = -1;
    int newest = -1;
    uint64_t newest_seq = 0;
    bool deciding = false;
    for (int i = 0; i < n; ++i) {
      const uint64_t state = segment_->slot(i)->state.load(std::memory_order_acquire);
      const uint64_t seq = detail::StateSequence(state);
      if (seq < cursor_) continue;
      if (detail::StateWriting(state)) {
        if (seq == cursor_) deciding = true;
        continue;
      }
      if (seq == cursor_) exact = i;
      if (seq > newest_seq) {
        newest = i;
        newest_seq = seq;
      }
    }
    if (deciding && exact < 0 && spins < kClaimWindowSpins) {
      CpuRelax();
      continue;
    }
    // Every frame while we keep up; the newest one once the next we wanted is gone.
    const int pick = exact >= 0 ? exact : newest;
    if (pick < 0) return false;
    const uint64_t seq = exact >= 0 ? cursor_ : newest_seq;
    if (!Hold(pick, seq, lease)) continue;
    detail::ReaderEntry& entry = h->readers[index_];
    if (seq > cursor_) entry.frames_missed.fetch_add(seq - cursor_, std::memory_order_relaxed);
    entry.frames_read.fetch_add(1, std::memory_order_relaxed);
    cursor_ = seq + 1;
    return true;
  }
}

bool RingReader::TryTake(FrameLease& lease) {
  return mode_ == ReaderMode::kWorkGroup ? TryTakeGroup(lease) : TryTakeBroadcast(lease);
}

Result<FrameLease> RingReader::Read(std::chrono::milliseconds timeout) {
  RingHeader* h = segment_->header();
  // Deadline saturates: milliseconds::max() means "no deadline" instead of overflowing into
  // one in the past. A negative timeout does not wait.
  const Deadline deadline = timeout.count() <= 0 ? Deadline::After(std::chrono::nanoseconds(0))
                                                 : Deadline::FromTimeoutMs(timeout.count());
  const Deadline spin_until = Deadline::After(spin_);
  FrameLease lease;
  for (;;) {
    const uint32_t seen = h->notify.load();
    if (TryTake(lease)) return lease;
    if (!spin_until.expired()) {
      CpuRelax();
      continue;
    }
    if (h->writer_open.load() == 0) {
      return UnavailableError("ring '" + segment_->path() + "': the writer closed the ring");
    }
    const uint64_t writer = h->writer_identity.load();
    if (!detail::IdentityAlive(writer)) {
      return UnavailableError("ring '" + segment_->path() + "': the writer (pid " +
                              std::to_string(detail::IdentityPid(writer)) +
                              ") died; a restarted writer resumes the ring");
    }
    if (deadline.expired()) {
      return DeadlineExceededError("ring '" + segment_->path() + "': no frame within " +
                                   std::to_string(std::max<int64_t>(timeout.count(), 0)) + " ms");
    }
    int64_t wait_ns = kLivenessPollNs;
    if (!deadline.never()) {
      wait_ns = std::min<int64_t>(wait_ns, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                               deadline.time_point() - MonotonicClock::now())
                                               .count());
    }
    h->waiters.fetch_add(1);
    detail::FutexWait(&h->notify, seen, std::max<int64_t>(wait_ns, 0));
    h->waiters.fetch_sub(1);
  }
}

bool RingReader::WriterAlive() const {
  const RingHeader* h = segment_->header();
  return h->writer_open.load() != 0 && detail::IdentityAlive(h->writer_identity.load());
}

bool RingReader::WriterClosed() const {
  return segment_->header()->writer_open.load() == 0;
}

ReaderStats RingReader::Stats() const {
  const RingHeader* h = segment_->header();
  ReaderStats s;
  s.frames_read = h->readers[index_].frames_read.load();
  s.frames_missed = group_ >= 0 ? h->groups[group_].frames_missed.load()
                                : h->readers[index_].frames_missed.load();
  return s;
}

RingStats RingReader::RingStatistics() const {
  return detail::ReadStats(segment_->header());
}

}  // namespace zerodet::ring

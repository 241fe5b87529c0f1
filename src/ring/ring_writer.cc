#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <limits>
#include <vector>

#include "process_identity.h"
#include "segment.h"
#include "zerodet/core/clock.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::ring {

using detail::kWritingBit;
using detail::RingHeader;
using detail::SlotControl;

namespace {

// How often BeginFrame may look for dead readers when it cannot find a free slot: each check
// reads /proc for every attached reader.
constexpr auto kReclaimInterval = std::chrono::milliseconds(100);

Status ValidateOptions(const RingOptions& o) {
  ZD_RETURN_IF_ERROR(detail::ValidateName(o.name, "ring name"));
  if (o.slot_count < 2 || o.slot_count > 4096) {
    return InvalidArgumentError("ring '" + o.name + "': slot_count " +
                                std::to_string(o.slot_count) + " is outside 2..4096");
  }
  if (o.slot_bytes == 0 || o.slot_bytes > (uint64_t{1} << 34)) {
    return InvalidArgumentError("ring '" + o.name + "': slot_bytes " +
                                std::to_string(o.slot_bytes) + " is outside 1..16 GiB");
  }
  if (o.max_readers < 1 || o.max_readers > kMaxReaders) {
    return InvalidArgumentError("ring '" + o.name + "': max_readers " +
                                std::to_string(o.max_readers) + " is outside 1.." +
                                std::to_string(kMaxReaders));
  }
  if (o.policy != OverflowPolicy::kOverwriteOldest && o.policy != OverflowPolicy::kDropNewest) {
    return InvalidArgumentError("ring '" + o.name + "': unknown overflow policy");
  }
  return Status::Ok();
}

// Creates the segment under a temporary name, initializes it fully, then links it to its real
// name: a reader or a second writer never sees a half-initialized ring. Returns nullptr (and no
// error) when the name already exists.
Result<std::unique_ptr<detail::RingSegment>> CreateFresh(const RingOptions& options,
                                                         uint64_t self) {
  const std::string path = detail::SegmentPath(options.name);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const detail::Geometry geometry =
      detail::ComputeGeometry(static_cast<uint32_t>(options.slot_count), options.slot_bytes);
  ::unlink(tmp.c_str());  // left by a crashed earlier process that had our pid
  const int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoError("create " + tmp, errno);
  // The mode is explicit so that a permissive umask cannot widen it (and a strict one cannot
  // make the segment unusable for its owner).
  if (::fchmod(fd, 0600) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoError("chmod " + tmp, err);
  }
  // Reserve the memory now: on a full /dev/shm this fails here with ENOSPC instead of a SIGBUS
  // on first touch of a slot.
  const int alloc_err = ::posix_fallocate(fd, 0, static_cast<off_t>(geometry.total_bytes));
  if (alloc_err != 0) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoError("ring '" + options.name + "' needs " + std::to_string(geometry.total_bytes) +
                          " bytes in /dev/shm (" + std::to_string(options.slot_count) +
                          " slots of " + std::to_string(options.slot_bytes) + " bytes)",
                      alloc_err);
  }
  auto mapped = detail::RingSegment::MapFd(fd, path, geometry.total_bytes);
  if (!mapped.ok()) {
    ::unlink(tmp.c_str());
    return mapped.status();
  }
  std::unique_ptr<detail::RingSegment> segment = std::move(mapped).value();
  RingHeader* h = segment->header();
  detail::InitializeHeader(h, options, geometry);
  h->writer_identity.store(self);
  h->writer_open.store(1);
  h->writer_epoch.store(1);
  h->magic.store(detail::kMagic, std::memory_order_release);
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    if (err == EEXIST) return std::unique_ptr<detail::RingSegment>();
    return ErrnoError("link " + tmp + " to " + path, err);
  }
  ::unlink(tmp.c_str());
  return segment;
}

bool SameGeometry(const RingHeader* h, const RingOptions& o) {
  return h->slot_count == static_cast<uint32_t>(o.slot_count) && h->slot_bytes == o.slot_bytes &&
         h->max_readers == static_cast<uint32_t>(o.max_readers);
}

}  // namespace

size_t SlotBytesFor(int width, int height, PixelFormat format) {
  if (width <= 0 || height <= 0) return 0;
  return static_cast<size_t>(width) * static_cast<size_t>(height) *
         static_cast<size_t>(ChannelCount(format));
}

Result<std::unique_ptr<RingWriter>> RingWriter::Open(const RingOptions& options) {
  ZD_RETURN_IF_ERROR(ValidateOptions(options));
  const uint64_t self = detail::SelfIdentity();
  if (self == 0) return InternalError("cannot read /proc/self/stat to identify this process");
  const std::string path = detail::SegmentPath(options.name);
  // A few rounds: each loses only to another process creating or removing the same name.
  for (int attempt = 0; attempt < 8; ++attempt) {
    ZD_ASSIGN_OR_RETURN(auto fresh, CreateFresh(options, self));
    if (fresh) return std::unique_ptr<RingWriter>(new RingWriter(std::move(fresh), options.name));

    auto existing = detail::RingSegment::OpenExisting(path);
    if (!existing.ok()) {
      if (existing.status().code() == StatusCode::kNotFound) continue;  // removed meanwhile
      return existing.status();
    }
    std::unique_ptr<detail::RingSegment> segment = std::move(existing).value();
    RingHeader* h = segment->header();
    const uint64_t previous = h->writer_identity.load();
    if (h->writer_open.load() != 0 && detail::IdentityAlive(previous)) {
      return AlreadyExistsError("ring '" + options.name + "' already has a live writer (pid " +
                                std::to_string(detail::IdentityPid(previous)) + ")");
    }
    if (!SameGeometry(h, options)) {
      if (detail::HasLiveReaders(*segment)) {
        return FailedPreconditionError(
            "ring '" + options.name + "' exists with " + std::to_string(h->slot_count) +
            " slots of " + std::to_string(h->slot_bytes) + " bytes and " +
            std::to_string(h->max_readers) + " reader entries, and has live readers; asked for " +
            std::to_string(options.slot_count) + " slots of " + std::to_string(options.slot_bytes) +
            " bytes: stop the readers or use another name");
      }
      // Stale, of another shape, nobody attached: replace it.
      if (segment->StillLinked()) ::unlink(path.c_str());
      continue;
    }
    uint64_t expected = previous;
    if (!h->writer_identity.compare_exchange_strong(expected, self)) {
      return AlreadyExistsError("ring '" + options.name +
                                "' was just taken over by another writer (pid " +
                                std::to_string(detail::IdentityPid(expected)) + ")");
    }
    // Resume. A slot the dead writer was filling holds no complete frame: empty it.
    for (uint32_t s = 0; s < h->slot_count; ++s) {
      SlotControl* slot = segment->slot(static_cast<int>(s));
      if (detail::StateWriting(slot->state.load())) slot->state.store(0);
    }
    h->policy.store(static_cast<uint32_t>(options.policy));
    h->writer_epoch.fetch_add(1);
    h->writer_open.store(1);
    if (!segment->StillLinked()) continue;  // closed and unlinked between open and takeover
    h->notify.fetch_add(1);
    detail::FutexWakeAll(&h->notify);
    return std::unique_ptr<RingWriter>(new RingWriter(std::move(segment), options.name));
  }
  return UnavailableError("ring '" + options.name +
                          "': gave up after repeated races with other processes creating or "
                          "removing it");
}

RingWriter::RingWriter(std::unique_ptr<detail::RingSegment> segment, std::string name)
    : segment_(std::move(segment)), name_(std::move(name)) {}

RingWriter::~RingWriter() {
  Abandon();
  RingHeader* h = segment_->header();
  h->writer_open.store(0);
  h->notify.fetch_add(1);
  detail::FutexWakeAll(&h->notify);
  if (segment_->StillLinked()) ::unlink(segment_->path().c_str());
}

size_t RingWriter::slot_bytes() const {
  return segment_->header()->slot_bytes;
}
int RingWriter::slot_count() const {
  return static_cast<int>(segment_->header()->slot_count);
}

int RingWriter::ChooseSlot() {
  RingHeader* h = segment_->header();
  const bool may_overwrite = h->policy.load(std::memory_order_relaxed) ==
                             static_cast<uint32_t>(OverflowPolicy::kOverwriteOldest);
  // The oldest frame some active work group still wants: frames from it on are unconsumed.
  uint64_t oldest_wanted = std::numeric_limits<uint64_t>::max();
  for (const detail::GroupEntry& g : h->groups) {
    if (g.members.load() > 0) oldest_wanted = std::min(oldest_wanted, g.next_sequence.load());
  }
  const int n = static_cast<int>(h->slot_count);
  std::vector<bool> skip(static_cast<size_t>(n), false);
  for (int round = 0; round < n; ++round) {
    int best = -1;
    uint64_t best_seq = 0;
    bool best_consumed = false;
    for (int i = 0; i < n; ++i) {
      if (skip[static_cast<size_t>(i)]) continue;
      SlotControl* slot = segment_->slot(i);
      const uint64_t state = slot->state.load();
      if (detail::StateWriting(state) || slot->holders.load() != 0) continue;
      const uint64_t seq = detail::StateSequence(state);
      const bool consumed = seq < oldest_wanted;
      if (!consumed && !may_overwrite) continue;
      // Empty slots first (seq 0 is smallest), then consumed frames, then unconsumed ones;
      // the oldest within each.
      if (best < 0 || (consumed && !best_consumed) ||
          (consumed == best_consumed && seq < best_seq)) {
        best = i;
        best_seq = seq;
        best_consumed = consumed;
      }
    }
    if (best < 0) return -1;
    SlotControl* slot = segment_->slot(best);
    const uint64_t state = detail::PublishedState(best_seq);
    slot->state.store(state | kWritingBit);
    if (slot->holders.load() != 0) {
      // A reader got there first; the frame stays as it was.
      slot->state.store(state);
      skip[static_cast<size_t>(best)] = true;
      continue;
    }
    slot->state.store(kWritingBit);  // the old frame is gone from here on
    if (best_seq != 0 && !best_consumed) h->frames_overwritten.fetch_add(1);
    return best;
  }
  return -1;
}

Result<std::span<uint8_t>> RingWriter::BeginFrame() {
  assert(pending_slot_ < 0);
  if (pending_slot_ >= 0) Abandon();
  int slot = ChooseSlot();
  if (slot < 0) {
    const auto now = MonotonicClock::now();
    if (now - last_reclaim_ >= kReclaimInterval) {
      last_reclaim_ = now;
      if (ReclaimDeadReaders() > 0) slot = ChooseSlot();
    }
  }
  RingHeader* h = segment_->header();
  if (slot < 0) {
    h->frames_dropped.fetch_add(1);
    return ResourceExhaustedError("ring '" + name_ + "': all " + std::to_string(h->slot_count) +
                                  " slots are held by readers or not yet taken by a work group; "
                                  "frame dropped");
  }
  pending_slot_ = slot;
  return std::span<uint8_t>(segment_->slot_data(slot), h->slot_bytes);
}

Result<uint64_t> RingWriter::Publish(const FrameInfo& info) {
  if (pending_slot_ < 0) {
    return FailedPreconditionError("ring '" + name_ + "': Publish without BeginFrame");
  }
  RingHeader* h = segment_->header();
  FrameInfo out = info;
  if (out.format == FrameFormat::kRawPixels) {
    const uint64_t row = static_cast<uint64_t>(std::max(out.width, 0)) *
                         static_cast<uint64_t>(ChannelCount(out.pixel_format));
    if (out.width <= 0 || out.height <= 0 || out.stride < row) {
      Abandon();
      return InvalidArgumentError("ring '" + name_ + "': bad frame geometry " +
                                  std::to_string(out.width) + "x" + std::to_string(out.height) +
                                  " stride " + std::to_string(out.stride));
    }
    const uint64_t needed = static_cast<uint64_t>(out.stride) * static_cast<uint64_t>(out.height);
    if (out.payload_bytes == 0) out.payload_bytes = needed;
    if (out.payload_bytes < needed) {
      Abandon();
      return InvalidArgumentError("ring '" + name_ + "': payload of " +
                                  std::to_string(out.payload_bytes) + " bytes is smaller than " +
                                  std::to_string(needed) + " bytes of pixels");
    }
  }
  if (out.payload_bytes > h->slot_bytes) {
    Abandon();
    return InvalidArgumentError("ring '" + name_ + "': frame of " +
                                std::to_string(out.payload_bytes) +
                                " bytes exceeds the slot size " + std::to_string(h->slot_bytes));
  }
  const uint64_t seq = h->last_sequence.load() + 1;
  out.sequence = seq;
  out.writer_epoch = h->writer_epoch.load();
  out.publish_time_ns = MonotonicNowNs();
  SlotControl* slot = segment_->slot(pending_slot_);
  slot->info = out;
  slot->state.store(detail::PublishedState(seq), std::memory_order_release);
  pending_slot_ = -1;
  h->last_sequence.store(seq, std::memory_order_release);
  h->frames_published.fetch_add(1, std::memory_order_relaxed);
  h->notify.fetch_add(1);
  if (h->waiters.load() != 0) detail::FutexWakeAll(&h->notify);
  return seq;
}

void RingWriter::Abandon() {
  if (pending_slot_ < 0) return;
  segment_->slot(pending_slot_)->state.store(0);
  pending_slot_ = -1;
}

Result<uint64_t> RingWriter::WriteImage(const ImageView& image, int64_t timestamp_ns) {
  if (image.empty()) return InvalidArgumentError("ring '" + name_ + "': empty image");
  const size_t row = static_cast<size_t>(image.width) * static_cast<size_t>(image.channels());
  const size_t bytes = row * static_cast<size_t>(image.height);
  if (bytes > slot_bytes()) {
    return InvalidArgumentError("ring '" + name_ + "': " + std::to_string(image.width) + "x" +
                                std::to_string(image.height) + " frame needs " +
                                std::to_string(bytes) + " bytes, slots hold " +
                                std::to_string(slot_bytes()));
  }
  ZD_ASSIGN_OR_RETURN(std::span<uint8_t> dst, BeginFrame());
  if (image.stride == row) {
    std::memcpy(dst.data(), image.data, bytes);
  } else {
    for (int y = 0; y < image.height; ++y) {
      std::memcpy(dst.data() + static_cast<size_t>(y) * row, image.row(y), row);
    }
  }
  FrameInfo info;
  info.timestamp_ns = timestamp_ns;
  info.width = image.width;
  info.height = image.height;
  info.stride = static_cast<uint32_t>(row);
  info.pixel_format = image.format;
  info.format = FrameFormat::kRawPixels;
  info.payload_bytes = bytes;
  return Publish(info);
}

int RingWriter::ReclaimDeadReaders() {
  detail::RegistryLock lock(segment_->header());
  return detail::ReclaimDeadReadersLocked(*segment_);
}

RingStats RingWriter::Stats() const {
  return detail::ReadStats(segment_->header());
}

}  // namespace zerodet::ring

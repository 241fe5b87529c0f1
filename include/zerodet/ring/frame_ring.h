// Frame rings: decoded frames handed from one writer process to many reader processes through
// shared memory, without copies.
//
// A ring is a POSIX shared-memory segment (/dev/shm/zerodet-ring-<name>, mode 0600) holding a
// fixed number of fixed-size slots, each sized for the largest frame, and a header per slot
// (sequence number, timestamp, size, stride, pixel format). One RingWriter owns a ring; any
// number of RingReaders (up to RingOptions::max_readers) attach to it by name.
//
// Readers come in two modes:
//   - work group: every frame goes to exactly one reader of the named group (load balancing
//     across worker processes). Several groups may read one ring: each group sees every frame
//     (fan-out to several models without a second decode).
//   - broadcast: each subscriber sees every frame, or, once it falls behind, the newest one.
//
// Ownership and lifetime, made explicit:
//   - A frame a reader obtained (a FrameLease) is never modified until the lease is released:
//     each slot carries a bit per reader that holds it, and the writer only claims slots whose
//     holder bits are all clear. A reader either gets a complete frame or nothing; there is no
//     torn frame.
//   - The writer never blocks on readers. When no slot is free it overwrites the oldest frame
//     no reader holds (OverflowPolicy::kOverwriteOldest) or drops the new frame
//     (kDropNewest); both are counted in RingStats.
//   - A reader process that dies while holding slots does not leak them: processes are
//     identified by pid and start time (pid reuse cannot fool the check), and the writer (when
//     it needs a slot) or any attaching reader reclaims the holdings of dead readers.
//   - A writer that dies is detected by readers (Read returns kUnavailable); a new writer that
//     opens the same name resumes the ring: attached readers keep working and sequence numbers
//     keep increasing. A writer that shuts down cleanly marks the ring closed and unlinks its
//     name; readers drain what is left, then get kUnavailable and must attach again.
//   - CloseAbandonedRing() ends a ring whose writer died and will not be replaced, for its
//     readers, as the writer's clean shutdown would have. RemoveStaleRings() unlinks segments
//     left behind by dead processes.
//
// Wakeups use a futex in the shared header (no busy waiting unless ReaderOptions::spin asks for
// it); every wait has a timeout. Processes must share a pid namespace.
//
// Thread safety: a RingWriter and a RingReader are each used by one thread at a time. Many
// readers (in any processes, or several in one process) and the writer run concurrently.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/core/clock.h"
#include "zerodet/core/image.h"
#include "zerodet/core/status.h"

namespace zerodet::ring {

// Most readers one ring supports (each holds one bit of a slot's holder mask).
inline constexpr int kMaxReaders = 64;
// Most work groups per ring.
inline constexpr int kMaxGroups = 16;
// Longest ring or group name, in characters ([A-Za-z0-9_.-]).
inline constexpr size_t kMaxNameLength = 64;

enum class OverflowPolicy : uint32_t {
  // When no slot is free, overwrite the oldest frame that no reader holds (live video: workers
  // see fresh frames). Frames overwritten before every work group got them are counted.
  kOverwriteOldest = 1,
  // When no slot is free (held, or not yet taken by some work group), drop the new frame.
  kDropNewest = 2,
};

// How the bytes of a slot are to be read.
enum class FrameFormat : uint32_t {
  kRawPixels = 1,  // width x height pixels of pixel_format, rows `stride` bytes apart
  kEncoded = 2,    // an encoded image (e.g. JPEG) of payload_bytes bytes
};

// The per-slot header, written by the writer before publishing.
struct FrameInfo {
  uint64_t sequence = 0;        // 1, 2, 3... per ring, assigned on publish, never reused
  int64_t timestamp_ns = 0;     // capture time given by the writer (its clock)
  int64_t publish_time_ns = 0;  // CLOCK_MONOTONIC at publish (comparable across processes)
  uint64_t writer_epoch = 0;    // increases each time a writer (re)opens the ring
  uint64_t payload_bytes = 0;   // bytes of the slot that hold the frame
  int32_t width = 0;            // pixels (kRawPixels) or as decoded (kEncoded), 0 if unknown
  int32_t height = 0;
  uint32_t stride = 0;  // bytes per row for kRawPixels
  PixelFormat pixel_format = PixelFormat::kRGB8;
  FrameFormat format = FrameFormat::kRawPixels;
};

struct RingOptions {
  std::string name;               // [A-Za-z0-9_.-], at most kMaxNameLength characters
  int slot_count = 4;             // >= 2
  size_t slot_bytes = 0;          // capacity of one slot; see SlotBytesFor()
  int max_readers = kMaxReaders;  // 1..kMaxReaders
  OverflowPolicy policy = OverflowPolicy::kOverwriteOldest;
};

// Bytes one slot needs for width x height pixels of `format`, tightly packed.
size_t SlotBytesFor(int width, int height, PixelFormat format);

// Counters kept in the shared header; any process may read them.
struct RingStats {
  uint64_t frames_published = 0;
  uint64_t frames_dropped = 0;      // new frames not published: no slot was free
  uint64_t frames_overwritten = 0;  // published frames replaced before every work group took them
  uint64_t readers_reclaimed = 0;   // dead readers whose holdings were released
  uint64_t slots_reclaimed = 0;     // slot holdings released on behalf of dead readers
  uint64_t last_sequence = 0;       // sequence of the newest published frame
  uint64_t writer_epoch = 0;
  int readers_attached = 0;
};

// The ring names (without the zerodet-ring- prefix) present in /dev/shm.
std::vector<std::string> ListRings();

// Unlinks segments whose name starts with `name_prefix` and whose writer and readers are all
// dead (or which were left half-created by a dead process). Segments with a live writer or a
// live reader are kept. Returns the names removed.
Result<std::vector<std::string>> RemoveStaleRings(std::string_view name_prefix = "");

// Closes the ring `name` on behalf of its writer, which died without closing it (a crash, or a
// writer that exited to be restarted) and which no new writer will replace (e.g. its supervisor
// is stopping): marks it closed, wakes the readers and unlinks the name, as RingWriter's
// destructor does. Readers drain what is left, then Read gives kUnavailable and WriterClosed()
// is true; without this they would wait for a writer that never comes. Returns the ring's final
// counters (what the dead writer would have reported).
// Errors: kNotFound (no such ring), kFailedPrecondition (its writer is alive, or took it over
// meanwhile), as RingReader::Attach otherwise (kCorruptData, kPermissionDenied, ...).
Result<RingStats> CloseAbandonedRing(std::string_view name);

namespace detail {
class RingSegment;  // the mapped shared memory (internal)
}  // namespace detail

// The single writer of a ring.
class RingWriter {
 public:
  // Creates the ring, or resumes it when a segment of that name exists whose writer is dead
  // (readers stay attached; sequence numbers continue). A dead segment with a different
  // geometry and no live readers is replaced.
  // Errors: kInvalidArgument (bad name or sizes), kAlreadyExists (a live writer has the ring),
  // kFailedPrecondition (different geometry while readers are attached), kCorruptData (the
  // name is taken by something that is not a ring), kIoError.
  static Result<std::unique_ptr<RingWriter>> Open(const RingOptions& options);

  RingWriter(const RingWriter&) = delete;
  RingWriter& operator=(const RingWriter&) = delete;

  // Clean shutdown: marks the ring closed, wakes readers and unlinks the name. Readers that
  // still hold frames keep them valid until they release them.
  ~RingWriter();

  // Claims a slot for the next frame and returns its memory (slot_bytes long), so the producer
  // can decode straight into shared memory. Finish with Publish() or Abandon().
  // Errors: kResourceExhausted when the frame is dropped (no free slot under the policy); the
  // drop is counted. REQUIRES: no frame is pending (BeginFrame without Publish/Abandon).
  Result<std::span<uint8_t>> BeginFrame();

  // Publishes the pending frame described by `info` (sequence, publish_time_ns and
  // writer_epoch are filled in) and wakes readers. Returns the frame's sequence number.
  // For kRawPixels, payload_bytes 0 means stride * height.
  // Errors: kFailedPrecondition without a pending frame, kInvalidArgument when
  // info.payload_bytes exceeds the slot or the pixel geometry does not fit in it (the pending
  // frame is then abandoned).
  Result<uint64_t> Publish(const FrameInfo& info);

  // Gives the pending slot back without publishing (e.g. decoding failed). No-op without one.
  void Abandon();

  // BeginFrame + copy of `image` + Publish. Errors as those.
  Result<uint64_t> WriteImage(const ImageView& image, int64_t timestamp_ns);

  // Releases the slots and reader entries of readers whose processes are gone. BeginFrame calls
  // this itself when slots are held and none is free. Returns the number of readers reclaimed.
  int ReclaimDeadReaders();

  RingStats Stats() const;
  const std::string& name() const { return name_; }
  size_t slot_bytes() const;
  int slot_count() const;

 private:
  RingWriter(std::unique_ptr<detail::RingSegment> segment, std::string name);
  int ChooseSlot();

  std::unique_ptr<detail::RingSegment> segment_;
  std::string name_;
  int pending_slot_ = -1;
  MonotonicClock::time_point last_reclaim_{};
};

enum class ReaderMode { kWorkGroup, kBroadcast };

struct ReaderOptions {
  std::string ring_name;
  ReaderMode mode = ReaderMode::kWorkGroup;
  std::string group = "default";  // kWorkGroup only; same rules as ring names
  // Poll this long before sleeping on the futex when no frame is ready. Trades a core for
  // wakeup latency; 0 (the default) never spins. At most one second.
  std::chrono::microseconds spin{0};
};

struct ReaderStats {
  uint64_t frames_read = 0;
  // Frames this reader (broadcast) or its group (work group) never got because the writer
  // replaced them first.
  uint64_t frames_missed = 0;
};

class RingReader;

// A frame held by a reader: the slot is not reused until the lease is released (destroyed,
// moved-from or Release()d). Movable, not copyable.
// REQUIRES: a lease does not outlive the RingReader that issued it.
class FrameLease {
 public:
  FrameLease() = default;
  FrameLease(FrameLease&& other) noexcept;
  FrameLease& operator=(FrameLease&& other) noexcept;
  FrameLease(const FrameLease&) = delete;
  FrameLease& operator=(const FrameLease&) = delete;
  ~FrameLease() { Release(); }

  bool valid() const { return reader_ != nullptr; }
  // REQUIRES for the accessors: valid().
  const FrameInfo& info() const { return info_; }
  std::span<const uint8_t> payload() const { return {data_, info_.payload_bytes}; }
  // The frame as pixels. REQUIRES: info().format == FrameFormat::kRawPixels.
  ImageView image() const {
    return ImageView{data_, info_.width, info_.height, info_.stride, info_.pixel_format};
  }

  // Gives the slot back to the writer. Idempotent.
  void Release();

 private:
  friend class RingReader;
  RingReader* reader_ = nullptr;
  int slot_ = -1;
  const uint8_t* data_ = nullptr;
  FrameInfo info_;
};

class RingReader {
 public:
  // Attaches to the ring named options.ring_name (and joins or creates the work group).
  // Errors: kNotFound (no such ring), kResourceExhausted (max_readers or kMaxGroups reached),
  // kInvalidArgument (bad names, spin outside 0..1 s), kCorruptData (not a ring),
  // kPermissionDenied, kIoError.
  static Result<std::unique_ptr<RingReader>> Attach(const ReaderOptions& options);

  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;
  // Detaches (leaves the group). REQUIRES: every lease issued by this reader is released.
  ~RingReader();

  // Returns the next frame for this reader, waiting up to `timeout` for one: 0 or less does not
  // wait, milliseconds::max() (or any timeout beyond a century) waits with no deadline.
  // Errors: kDeadlineExceeded (no frame in time), kUnavailable (the writer closed the ring or
  // died, and no frame is left; after a crash, calling Read again works once a writer resumes).
  Result<FrameLease> Read(std::chrono::milliseconds timeout);

  // True while the ring has an open writer whose process is alive.
  bool WriterAlive() const;
  // True once the writer shut down cleanly (the ring ends; a dead writer does not close it).
  bool WriterClosed() const;

  ReaderStats Stats() const;
  RingStats RingStatistics() const;
  int reader_index() const { return index_; }

 private:
  friend class FrameLease;
  RingReader(std::unique_ptr<detail::RingSegment> segment, int index, int group, ReaderMode mode,
             std::chrono::microseconds spin);
  bool TryTake(FrameLease& lease);
  bool TryTakeGroup(FrameLease& lease);
  bool TryTakeBroadcast(FrameLease& lease);
  bool Hold(int slot, uint64_t sequence, FrameLease& lease);
  void ReleaseSlot(int slot);

  std::unique_ptr<detail::RingSegment> segment_;
  int index_;
  int group_;
  ReaderMode mode_;
  std::chrono::microseconds spin_;
  uint64_t cursor_ = 0;  // broadcast: next sequence wanted
  int leases_out_ = 0;
};

}  // namespace zerodet::ring

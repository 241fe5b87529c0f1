// Layout of the shared memory a store shares with its clients (internal to src/store/).
//
// Three kinds of region, each a sealed memfd whose size cannot change (F_SEAL_SHRINK|GROW), so
// no client can truncate a region under another process and make it fault:
//   arena   - object bytes. Clients map it read-write (they fill the objects they create);
//             the store only ever writes metadata into blocks it allocated itself.
//   index   - IndexHeader + an open-addressing hash table of IndexEntry. Only the store writes
//             it (F_SEAL_FUTURE_WRITE: clients cannot map it writable); clients read it without
//             locks, guarded by each entry's sequence number (a seqlock).
//   client  - one per connection: ClientRegionHeader + one reference counter and one "touched"
//             byte per index slot. Only that client writes it; the store reads it to decide
//             what may be evicted or freed, and drops it when the connection closes, which is
//             how a SIGKILLed client's references disappear.
//
// Reference protocol (why a lock-free get cannot race eviction): a client reads an entry under
// its seqlock (s1 even), increments refs[slot] (seq_cst), then re-reads the sequence (s2). The
// store, before freeing an entry, stores an odd sequence (seq_cst) and then reads every
// client's refs[slot]. With both sides sequentially consistent at least one sees the other:
// either the store sees the reference and keeps the object (bumping the sequence, so the
// client simply retries), or the client sees s2 != s1 and drops its increment.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include "zerodet/store/object_id.h"

namespace zerodet::store::internal {

inline constexpr uint64_t kIndexMagic = 0x3174656432726f7aull;  // "zor2det1"
inline constexpr uint32_t kLayoutVersion = 1;

enum class EntryState : uint32_t {
  kEmpty = 0,      // never used: ends a probe sequence
  kTombstone = 1,  // was used: probes continue past it
  kCreated = 2,    // allocated, being written by its creator, invisible to gets
  kSealed = 3,     // immutable and readable
  kDeleting = 4,   // deleted while referenced: freed when the last reference goes
};

struct alignas(64) IndexEntry {
  std::atomic<uint64_t> seq;  // odd while the store is changing the entry
  std::atomic<uint64_t> id_words[3];
  std::atomic<uint32_t> state;
  std::atomic<uint32_t> metadata_size;
  std::atomic<uint64_t> offset;     // of the data in the arena; metadata follows, aligned
  std::atomic<uint64_t> data_size;  // bytes
};
static_assert(sizeof(IndexEntry) == 64);

struct alignas(64) IndexHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t slot_count;  // power of two
  uint64_t arena_size;
  std::atomic<uint32_t> max_probe;       // longest probe distance any insert used
  std::atomic<uint32_t> store_open;      // 0 once the store has shut down
  std::atomic<uint64_t> mutation_count;  // release-incremented after every store change
};

struct alignas(64) ClientRegionHeader {
  // Release-incremented by the client before each request that publishes arena writes (seal),
  // acquire-read by the store: makes the "data written before seal" ordering explicit.
  std::atomic<uint64_t> publish_count;
};

inline constexpr uint64_t IndexRegionSize(uint32_t slot_count) {
  return sizeof(IndexHeader) + uint64_t{slot_count} * sizeof(IndexEntry);
}
inline constexpr uint64_t ClientRegionSize(uint32_t slot_count) {
  return sizeof(ClientRegionHeader) + uint64_t{slot_count} * sizeof(uint32_t) + slot_count;
}

inline IndexEntry* Entries(IndexHeader* header) {
  return reinterpret_cast<IndexEntry*>(header + 1);
}
inline std::atomic<uint32_t>* Refs(ClientRegionHeader* header) {
  return reinterpret_cast<std::atomic<uint32_t>*>(header + 1);
}
inline std::atomic<uint8_t>* Touched(ClientRegionHeader* header, uint32_t slot_count) {
  return reinterpret_cast<std::atomic<uint8_t>*>(Refs(header) + slot_count);
}

inline void IdToWords(const ObjectId& id, uint64_t words[3]) {
  words[0] = words[1] = words[2] = 0;
  std::memcpy(words, id.bytes.data(), ObjectId::kSize);
}

inline uint32_t HomeSlot(const uint64_t words[3], uint32_t slot_count) {
  // IDs may be user-chosen (sequential counters), so mix all the words.
  uint64_t h = words[0] * 0x9E3779B97F4A7C15ull ^ words[1] * 0xC2B2AE3D27D4EB4Full ^
               words[2] * 0x165667B19E3779F9ull;
  h ^= h >> 31;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return static_cast<uint32_t>(h) & (slot_count - 1);
}

inline constexpr uint64_t kNoSlot = ~uint64_t{0};

// Candidate slot of `id` in the table (kNoSlot if absent). Readers other than the store must
// confirm the result under the entry's seqlock: the table may change during the probe.
inline uint64_t ProbeSlot(IndexHeader* header, const uint64_t words[3]) {
  const uint32_t mask = header->slot_count - 1;
  const uint32_t max_probe = header->max_probe.load(std::memory_order_acquire);
  const uint32_t home = HomeSlot(words, header->slot_count);
  IndexEntry* entries = Entries(header);
  for (uint32_t i = 0; i <= max_probe; ++i) {
    IndexEntry& e = entries[(home + i) & mask];
    const auto state = static_cast<EntryState>(e.state.load(std::memory_order_acquire));
    if (state == EntryState::kEmpty) return kNoSlot;
    if (state == EntryState::kTombstone) continue;
    if (e.id_words[0].load(std::memory_order_relaxed) == words[0] &&
        e.id_words[1].load(std::memory_order_relaxed) == words[1] &&
        e.id_words[2].load(std::memory_order_relaxed) == words[2]) {
      return (home + i) & mask;
    }
  }
  return kNoSlot;
}

}  // namespace zerodet::store::internal

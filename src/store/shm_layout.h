// Layout of the shared memory a store shares with its clients (internal to src/store/).
//
// Three kinds of region, each a sealed memfd whose size cannot change (F_SEAL_SHRINK|GROW), so
// no client can truncate a region under another process and make it fault:
//   arena   - object bytes. Every client maps it read-only, through a read-only descriptor the
//             store opened for that purpose (a mapping from it cannot be made writable, and
//             fallocate/ftruncate on it fail). Read-write clients also receive the writable
//             descriptor and map the pages of the objects they create, one object at a time
//             (see client.cc). The store writes only the metadata of objects it allocated.
//   index   - IndexHeader, the object entries (dense, by handle) and two hash tables that map
//             ids to handles. Only the store writes it (F_SEAL_FUTURE_WRITE: clients cannot map
//             it writable); clients read it without locks, guarded by sequence numbers.
//   client  - one per connection: ClientRegionHeader + one reference counter and one "touched"
//             byte per handle. Only that client writes it; the store reads it to decide what
//             may be evicted or freed, and drops it when the connection closes, which is how a
//             SIGKILLed client's references disappear.
//
// Memory grows with use, not with the limits: an object's entry, reference counter and touched
// byte are found by its handle, and the store hands out the lowest free handles, so only the
// first (peak live objects) entries of each array are ever touched. The hash table starts small
// and is rebuilt twice as large (into the other of its two areas) when it fills up; pages never
// touched cost nothing.
//
// Hash table protocol: a reader loads table_seq (even), then table_which/table_slots/max_probe,
// probes, and reloads table_seq; a change means the table was rebuilt meanwhile: retry. A
// rebuild writes only the area readers are not using, so a reader never sees a half-built table
// without also seeing table_seq change. Entries never move; the table only says where to look,
// and readers confirm every candidate against the entry itself.
//
// Reference protocol (why a lock-free get cannot race eviction): a client reads an entry under
// its seqlock (s1 even), increments refs[handle] (seq_cst), then re-reads the sequence (s2). The
// store, before freeing an entry, stores an odd sequence (seq_cst) and then reads every
// client's refs[handle]. With both sides sequentially consistent at least one sees the other:
// either the store sees the reference and keeps the object (bumping the sequence, so the
// client simply retries), or the client sees s2 != s1 and drops its increment.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>

#include "zerodet/store/object_id.h"

namespace zerodet::store::internal {

inline constexpr uint64_t kIndexMagic = 0x3274656432726f7aull;  // "zor2det2"
inline constexpr uint32_t kLayoutVersion = 2;

// ---- Placement: the one rule both ends compute ----

// Objects start at multiples of this (cache line and SIMD friendly); it is also the allocator's
// granularity (TlsfAllocator::kAlignment, checked where both are visible).
inline constexpr uint64_t kObjectAlignment = 64;

// Bytes from an object's offset to its metadata: the data rounded up to the alignment.
// REQUIRES: data_size <= UINT64_MAX - kObjectAlignment (callers bound it by the arena first).
inline constexpr uint64_t MetadataOffset(uint64_t data_size) {
  return (data_size + kObjectAlignment - 1) / kObjectAlignment * kObjectAlignment;
}

// Whether an object at `offset` with these sizes lies inside an arena of `arena_size` bytes.
// Never overflows, whatever the inputs (they may come from a corrupt message).
inline constexpr bool PlacementFits(uint64_t offset, uint64_t data_size, uint64_t metadata_size,
                                    uint64_t arena_size) {
  if (offset > arena_size || data_size > arena_size) return false;
  const uint64_t span = MetadataOffset(data_size);
  return span <= arena_size - offset && metadata_size <= arena_size - offset - span;
}

// ---- Index ----

enum class EntryState : uint32_t {
  kFree = 0,      // no object: the handle is unused
  kCreated = 2,   // allocated, being written by its creator, invisible to gets
  kSealed = 3,    // immutable and readable
  kDeleting = 4,  // deleted while referenced: freed when the last reference goes
};

enum EntryFlags : uint32_t {
  kEntryPinned = 1,  // never evicted; freed only by a delete
};

struct alignas(64) IndexEntry {
  std::atomic<uint64_t> seq;  // odd while the store is changing the entry
  std::atomic<uint64_t> id_words[3];
  std::atomic<uint32_t> state;
  std::atomic<uint32_t> metadata_size;
  std::atomic<uint64_t> offset;     // of the data in the arena; metadata at MetadataOffset
  std::atomic<uint64_t> data_size;  // bytes
  std::atomic<uint32_t> flags;      // EntryFlags
  uint32_t reserved;
};
static_assert(sizeof(IndexEntry) == 64);

// Hash-table slot values: 0 ends a probe, kTableTombstone continues it, else handle + 1.
inline constexpr uint32_t kTableEmpty = 0;
inline constexpr uint32_t kTableTombstone = ~uint32_t{0};

struct alignas(64) IndexHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t entry_capacity;  // handles 0 .. entry_capacity - 1 (the store's max_objects)
  uint32_t table_capacity;  // slots of each table area; a power of two >= 2 * entry_capacity
  uint32_t reserved;
  uint64_t arena_size;
  std::atomic<uint32_t> store_open;      // 0 once the store has shut down
  std::atomic<uint32_t> max_probe;       // longest probe distance in the current table
  std::atomic<uint64_t> mutation_count;  // release-incremented after every store change
  std::atomic<uint64_t> table_seq;       // odd while the table is being rebuilt
  std::atomic<uint32_t> table_which;     // 0: area A holds the current table, 1: area B
  std::atomic<uint32_t> table_slots;     // slots of the current table; a power of two
};

inline constexpr uint32_t TableCapacity(uint32_t entry_capacity) {
  return std::bit_ceil(uint64_t{entry_capacity} * 2) > (uint64_t{1} << 31)
             ? uint32_t{1} << 31
             : static_cast<uint32_t>(std::bit_ceil(uint64_t{entry_capacity} * 2));
}
inline constexpr uint64_t IndexRegionSize(uint32_t entry_capacity) {
  return sizeof(IndexHeader) + uint64_t{entry_capacity} * sizeof(IndexEntry) +
         2 * uint64_t{TableCapacity(entry_capacity)} * sizeof(uint32_t);
}

inline IndexEntry* Entries(IndexHeader* header) {
  return reinterpret_cast<IndexEntry*>(header + 1);
}
// Area 0 (A) or 1 (B) of the hash table.
inline std::atomic<uint32_t>* TableArea(IndexHeader* header, uint32_t which) {
  auto* first = reinterpret_cast<std::atomic<uint32_t>*>(Entries(header) + header->entry_capacity);
  return first + uint64_t{which} * header->table_capacity;
}

// ---- Client regions ----

struct alignas(64) ClientRegionHeader {
  // Release-incremented by the client before each request that publishes arena writes (seal),
  // acquire-read by the store: makes the "data written before seal" ordering explicit.
  std::atomic<uint64_t> publish_count;
};

inline constexpr uint64_t ClientRegionSize(uint32_t entry_capacity) {
  return sizeof(ClientRegionHeader) + uint64_t{entry_capacity} * sizeof(uint32_t) + entry_capacity;
}
inline std::atomic<uint32_t>* Refs(ClientRegionHeader* header) {
  return reinterpret_cast<std::atomic<uint32_t>*>(header + 1);
}
inline std::atomic<uint8_t>* Touched(ClientRegionHeader* header, uint32_t entry_capacity) {
  return reinterpret_cast<std::atomic<uint8_t>*>(Refs(header) + entry_capacity);
}

// ---- Ids and probing ----

inline void IdToWords(const ObjectId& id, uint64_t words[3]) {
  words[0] = words[1] = words[2] = 0;
  std::memcpy(words, id.bytes.data(), ObjectId::kSize);
}
inline ObjectId WordsToId(const uint64_t words[3]) {
  ObjectId id;
  std::memcpy(id.bytes.data(), words, ObjectId::kSize);
  return id;
}

inline uint32_t HomeSlot(const uint64_t words[3], uint32_t slots) {
  // IDs may be user-chosen (sequential counters), so mix all the words.
  uint64_t h = words[0] * 0x9E3779B97F4A7C15ull ^ words[1] * 0xC2B2AE3D27D4EB4Full ^
               words[2] * 0x165667B19E3779F9ull;
  h ^= h >> 31;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return static_cast<uint32_t>(h) & (slots - 1);
}

inline bool EntryHasId(const IndexEntry& e, const uint64_t words[3]) {
  return e.id_words[0].load(std::memory_order_relaxed) == words[0] &&
         e.id_words[1].load(std::memory_order_relaxed) == words[1] &&
         e.id_words[2].load(std::memory_order_relaxed) == words[2];
}

inline constexpr uint32_t kNoHandle = ~uint32_t{0};

// The handle of a live (not free) entry with id `words` in the current table, or kNoHandle.
// Exact for the store (the only writer); other readers must check table_seq around the call
// and confirm the entry under its seqlock, since the table may change during the probe.
inline uint32_t ProbeHandle(IndexHeader* header, const uint64_t words[3]) {
  const uint32_t slots = header->table_slots.load(std::memory_order_acquire);
  const uint32_t which = header->table_which.load(std::memory_order_acquire);
  const uint32_t max_probe = header->max_probe.load(std::memory_order_acquire);
  if (slots == 0 || slots > header->table_capacity || which > 1) return kNoHandle;
  const std::atomic<uint32_t>* table = TableArea(header, which);
  IndexEntry* entries = Entries(header);
  const uint32_t home = HomeSlot(words, slots);
  for (uint32_t i = 0; i <= max_probe && i < slots; ++i) {
    const uint32_t value = table[(home + i) & (slots - 1)].load(std::memory_order_acquire);
    if (value == kTableEmpty) return kNoHandle;
    if (value == kTableTombstone || value - 1 >= header->entry_capacity) continue;
    const IndexEntry& e = entries[value - 1];
    if (e.state.load(std::memory_order_acquire) != static_cast<uint32_t>(EntryState::kFree) &&
        EntryHasId(e, words)) {
      return value - 1;
    }
  }
  return kNoHandle;
}

}  // namespace zerodet::store::internal

// ObjectTable: the store's objects, without sockets (internal to src/store/).
//
// Concept. Everything the store knows about objects and who uses them: the arena allocator,
// the shared index (this table is its only writer; clients read it lock-free, see
// shm_layout.h), the store's private per-object state, the LRU order and eviction, pinned
// objects, deletions deferred while an object is referenced, and each client's bookkeeping
// (its reference region and the objects it is creating). The event loop (server.cc) turns
// requests into calls; tests drive the table directly, with plain memory as the shared regions.
//
// Cost scales with use: per-object state lives in arrays indexed by handle, and handles are
// handed out lowest first, so memory follows the peak number of live objects, not
// max_objects; disconnecting a client visits only the objects it was creating; LIST visits
// handles up to the highest one in use; a failed create explains itself from counters.
//
// Lifetime of an object: Create (kCreated, owned by its client, invisible to gets) -> Seal
// (kSealed: immutable, readable; evictable when unreferenced unless pinned) -> freed by
// eviction, Delete, Abort or its creator's RemoveClient. Deleting or evicting a referenced
// object is impossible/deferred: Delete marks it kDeleting and SweepPendingDeletes frees it
// once no client references it.
//
// Ownership: the index memory, the arena memory and every client region belong to the caller
// and must outlive the table (a client region: until RemoveClient). Thread safety: none; one
// thread (the store's event loop) makes every call.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <queue>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "protocol.h"
#include "shm_layout.h"
#include "zerodet/core/status.h"
#include "zerodet/store/client.h"
#include "zerodet/store/object_id.h"
#include "zerodet/store/tlsf_allocator.h"

namespace zerodet::store::internal {

// Identifies a client (a connection) to the table; chosen by the caller, never reused.
using ClientId = uint64_t;

struct ObjectPlacement {
  uint32_t handle = 0;
  uint64_t offset = 0;           // of the data in the arena
  uint64_t metadata_offset = 0;  // of the metadata in the arena
};

class ObjectTable {
 public:
  // The hash table never shrinks below this many slots (nor grows past the index's capacity).
  static constexpr uint32_t kMinTableSlots = 1024;

  // Initializes `index` (REQUIRES: at least IndexRegionSize(max_objects) zero-filled bytes) for
  // an arena of arena.size() bytes (REQUIRES: >= kObjectAlignment). `arena` is where the
  // store writes metadata. REQUIRES: 1 <= max_objects <= kMaxObjects.
  ObjectTable(std::span<uint8_t> index, std::span<uint8_t> arena, uint32_t max_objects);
  ~ObjectTable();
  ObjectTable(const ObjectTable&) = delete;
  ObjectTable& operator=(const ObjectTable&) = delete;

  static constexpr uint32_t kMaxObjects = uint32_t{1} << 26;

  IndexHeader* header() const { return header_; }
  uint32_t max_objects() const { return max_objects_; }

  // Registers a client whose references live in `region` (REQUIRES: ClientRegionSize
  // (max_objects()) zero-filled bytes, alive until RemoveClient; `client` not registered).
  void AddClient(ClientId client, ClientRegionHeader* region);
  // Aborts the objects `client` is creating, forgets its references and frees what was only
  // waiting for them. Returns the number of objects aborted. Unknown clients are ignored.
  size_t RemoveClient(ClientId client);

  // Allocates an object for `client` (REQUIRES: registered), evicting unreferenced sealed
  // objects (least recently used first, pinned ones never) when the arena has no room, and
  // copies `metadata` after the data. `flags`: EntryFlags (kEntryPinned).
  // Errors: kAlreadyExists (the id is live: sealed, being created or pending deletion),
  // kResourceExhausted (an object that can never fit, the object table full, or "store full"
  // with the sizes held by referenced, unsealed, pinned and deleted-but-referenced objects).
  Result<ObjectPlacement> Create(ClientId client, const ObjectId& id, uint64_t data_size,
                                 std::span<const uint8_t> metadata, uint32_t flags);
  // Makes `client`'s object immutable and readable. Errors: kNotFound, kFailedPrecondition
  // (not being created), kPermissionDenied (another client's object).
  Status Seal(ClientId client, const ObjectId& id);
  // Frees `client`'s unsealed object. Errors as Seal.
  Status Abort(ClientId client, const ObjectId& id);
  // Deletes objects; referenced ones disappear from gets at once and are freed when their last
  // reference goes. Errors: the first kNotFound (no such object) or kFailedPrecondition (still
  // being created); the other ids are deleted anyway.
  Status Delete(std::span<const ObjectId> ids);
  // Takes a reference for `client` on the sealed object `id` and tells where it is; nullopt
  // when there is no sealed object `id`.
  std::optional<GetReply> Get(ClientId client, const ObjectId& id);
  // Up to kListPageSize live objects with handles >= cursor; next_cursor continues the listing.
  ListReply List(uint32_t cursor) const;

  // Frees deleted objects that nobody references any more.
  void SweepPendingDeletes();
  bool has_pending_deletes() const { return !pending_deletes_.empty(); }

  // Capacity, allocation and object counters (clients: 0; the event loop fills those in).
  StoreStats Stats() const;
  // Tells clients the store is gone (their fast gets then fail with kUnavailable).
  void MarkClosed();

  // Walks every live object and the hash table; returns kInternal naming the first broken
  // invariant (counters, LRU, table, allocator). O(objects + table); for tests.
  Status CheckInvariants() const;

 private:
  struct ObjectState {
    ObjectId id;
    EntryState state = EntryState::kFree;
    bool pinned = false;
    bool in_lru = false;
    uint64_t alloc_offset = 0;
    uint64_t alloc_size = 0;
    ClientId creator = 0;  // while kCreated
    uint32_t lru_prev = kNoHandle;
    uint32_t lru_next = kNoHandle;
  };
  struct ClientRecord {
    ClientRegionHeader* header = nullptr;
    std::atomic<uint32_t>* refs = nullptr;
    std::atomic<uint8_t>* touched = nullptr;
    std::unordered_set<uint32_t> creating;  // handles of its unsealed objects
  };

  IndexEntry& Entry(uint32_t handle) const { return entries_[handle]; }
  uint32_t FindHandle(const ObjectId& id) const;
  Result<uint32_t> FindOwned(ClientId client, const ObjectId& id, const char* action) const;
  uint32_t AllocateHandle();
  // Seqlock writer: an odd sequence announces a change (seq_cst: the Dekker half that pairs
  // with the client's seq_cst reference increment, see shm_layout.h).
  void BeginEntryWrite(IndexEntry& e);
  void EndEntryWrite(IndexEntry& e);
  bool Referenced(uint32_t handle) const;
  // Frees the object unless a client references it; a referenced one gets
  // `state_if_referenced` instead. Returns whether it was freed.
  bool FreeUnlessReferenced(uint32_t handle, EntryState state_if_referenced);
  void FreeNow(uint32_t handle);
  // Frees the object whose entry write has begun (BeginEntryWrite) and ends the write.
  void FinishFree(uint32_t handle);
  void ReleaseAllocation(uint32_t handle);
  void SetState(uint32_t handle, EntryState state);
  std::optional<uint64_t> AllocateWithEviction(uint64_t size, bool pinned);
  Status StoreFullError(const ObjectId& id, uint64_t data_size, uint64_t total) const;
  void Published() { header_->mutation_count.fetch_add(1, std::memory_order_release); }

  void LruPushBack(uint32_t handle);
  void LruRemove(uint32_t handle);

  void TableInsert(uint32_t handle);
  void TableErase(uint32_t handle);
  void TableRebuild(uint32_t slots);

  IndexHeader* header_;
  IndexEntry* entries_;
  std::span<uint8_t> arena_;
  uint32_t max_objects_;
  TlsfAllocator allocator_;

  std::vector<ObjectState> objects_;  // by handle, up to the highest handle ever used
  std::priority_queue<uint32_t, std::vector<uint32_t>, std::greater<>> free_handles_;
  std::unordered_map<ClientId, ClientRecord> clients_;
  uint32_t lru_head_ = kNoHandle;  // least recently used
  uint32_t lru_tail_ = kNoHandle;
  uint64_t lru_size_ = 0;
  std::vector<uint32_t> pending_deletes_;
  uint32_t table_used_ = 0;  // slots of the current table that are not empty (incl. tombstones)

  uint64_t live_objects_ = 0, sealed_objects_ = 0;
  uint64_t unsealed_objects_ = 0, unsealed_bytes_ = 0;
  uint64_t pinned_objects_ = 0, pinned_bytes_ = 0;
  uint64_t pending_delete_bytes_ = 0;
  uint64_t evictions_ = 0, creates_ = 0, socket_gets_ = 0;
};

}  // namespace zerodet::store::internal

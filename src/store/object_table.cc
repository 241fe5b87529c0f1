#include "object_table.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "human_bytes.h"

namespace zerodet::store::internal {

static_assert(kObjectAlignment == TlsfAllocator::kAlignment,
              "the placement rule and the allocator must agree on object alignment");

ObjectTable::ObjectTable(std::span<uint8_t> index, std::span<uint8_t> arena, uint32_t max_objects)
    : header_(new (index.data()) IndexHeader{}),
      entries_(nullptr),
      arena_(arena),
      max_objects_(max_objects),
      allocator_(arena.size()) {
  header_->magic = kIndexMagic;
  header_->version = kLayoutVersion;
  header_->entry_capacity = max_objects;
  header_->table_capacity = TableCapacity(max_objects);
  header_->arena_size = arena.size();
  header_->store_open.store(1, std::memory_order_relaxed);
  header_->table_slots.store(std::min(kMinTableSlots, header_->table_capacity),
                             std::memory_order_relaxed);
  entries_ = Entries(header_);
  // The fresh memory is zero-filled: every entry is kFree with sequence 0, every slot empty.
  Published();
}

ObjectTable::~ObjectTable() = default;

void ObjectTable::MarkClosed() {
  header_->store_open.store(0, std::memory_order_release);
  Published();
}

// ---- Clients ----

void ObjectTable::AddClient(ClientId client, ClientRegionHeader* region) {
  ClientRecord& record = clients_[client];
  record.header = region;
  record.refs = Refs(region);
  record.touched = Touched(region, max_objects_);
}

size_t ObjectTable::RemoveClient(ClientId client) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return 0;
  const std::vector<uint32_t> creating(it->second.creating.begin(), it->second.creating.end());
  for (uint32_t handle : creating) FreeNow(handle);
  clients_.erase(it);
  Published();
  // Its references are gone: objects deleted while it held them can be freed now.
  SweepPendingDeletes();
  return creating.size();
}

// ---- Lookups ----

uint32_t ObjectTable::FindHandle(const ObjectId& id) const {
  uint64_t words[3];
  IdToWords(id, words);
  return ProbeHandle(header_, words);
}

Result<uint32_t> ObjectTable::FindOwned(ClientId client, const ObjectId& id,
                                        const char* action) const {
  const uint32_t handle = FindHandle(id);
  if (handle == kNoHandle)
    return NotFoundError(fmt::format("{}: no object {}", action, id.ToHex()));
  const ObjectState& object = objects_[handle];
  if (object.state != EntryState::kCreated) {
    return FailedPreconditionError(
        fmt::format("{}: object {} is already sealed", action, id.ToHex()));
  }
  if (object.creator != client) {
    return PermissionDeniedError(
        fmt::format("{}: object {} was created by another client", action, id.ToHex()));
  }
  return handle;
}

uint32_t ObjectTable::AllocateHandle() {
  if (!free_handles_.empty()) {
    const uint32_t handle = free_handles_.top();
    free_handles_.pop();
    return handle;
  }
  objects_.emplace_back();
  return static_cast<uint32_t>(objects_.size() - 1);
}

// ---- Entries ----

void ObjectTable::BeginEntryWrite(IndexEntry& e) {
  const uint64_t seq = e.seq.load(std::memory_order_relaxed);
  e.seq.store(seq + 1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_release);
}

void ObjectTable::EndEntryWrite(IndexEntry& e) {
  const uint64_t seq = e.seq.load(std::memory_order_relaxed);
  e.seq.store(seq + 1, std::memory_order_release);
}

void ObjectTable::SetState(uint32_t handle, EntryState state) {
  IndexEntry& e = Entry(handle);
  BeginEntryWrite(e);
  e.state.store(static_cast<uint32_t>(state), std::memory_order_relaxed);
  EndEntryWrite(e);
}

bool ObjectTable::Referenced(uint32_t handle) const {
  for (const auto& [id, client] : clients_) {
    if (client.refs[handle].load(std::memory_order_seq_cst) != 0) return true;
  }
  return false;
}

void ObjectTable::ReleaseAllocation(uint32_t handle) {
  ObjectState& object = objects_[handle];
  if (!allocator_.Free(object.alloc_offset)) {
    // The table and the allocator disagree: a bug. Keep serving; CheckInvariants reports it.
    spdlog::error("store: internal error: object {} at offset {} was not allocated",
                  object.id.ToHex(), object.alloc_offset);
  }
}

void ObjectTable::FreeNow(uint32_t handle) {
  BeginEntryWrite(Entry(handle));
  FinishFree(handle);
}

void ObjectTable::FinishFree(uint32_t handle) {
  ObjectState& object = objects_[handle];
  IndexEntry& e = Entry(handle);
  e.state.store(static_cast<uint32_t>(EntryState::kFree), std::memory_order_relaxed);
  EndEntryWrite(e);
  switch (object.state) {
    case EntryState::kCreated:
      --unsealed_objects_;
      unsealed_bytes_ -= object.alloc_size;
      if (auto it = clients_.find(object.creator); it != clients_.end()) {
        it->second.creating.erase(handle);
      }
      break;
    case EntryState::kSealed:
      --sealed_objects_;
      break;
    case EntryState::kDeleting:
      pending_delete_bytes_ -= object.alloc_size;
      break;
    case EntryState::kFree:
      break;
  }
  if (object.pinned && object.state != EntryState::kDeleting) {
    --pinned_objects_;
    pinned_bytes_ -= object.alloc_size;
  }
  TableErase(handle);
  LruRemove(handle);
  ReleaseAllocation(handle);
  object = ObjectState{};
  free_handles_.push(handle);
  --live_objects_;
}

bool ObjectTable::FreeUnlessReferenced(uint32_t handle, EntryState state_if_referenced) {
  ObjectState& object = objects_[handle];
  IndexEntry& e = Entry(handle);
  // The odd sequence first, then the reference check, and no even sequence in between the
  // check and the free (shm_layout.h, "Reference protocol").
  BeginEntryWrite(e);
  if (!Referenced(handle)) {
    FinishFree(handle);
    return true;
  }
  if (state_if_referenced == EntryState::kDeleting && object.state != EntryState::kDeleting) {
    if (object.state == EntryState::kSealed) --sealed_objects_;
    if (object.pinned) {
      --pinned_objects_;
      pinned_bytes_ -= object.alloc_size;
    }
    pending_delete_bytes_ += object.alloc_size;
    object.state = EntryState::kDeleting;
    LruRemove(handle);
  }
  e.state.store(static_cast<uint32_t>(object.state), std::memory_order_relaxed);
  EndEntryWrite(e);
  return false;
}

// ---- LRU (sealed, unpinned objects; least recently used at the head) ----

void ObjectTable::LruPushBack(uint32_t handle) {
  ObjectState& object = objects_[handle];
  if (object.in_lru) LruRemove(handle);
  object.lru_prev = lru_tail_;
  object.lru_next = kNoHandle;
  if (lru_tail_ != kNoHandle) {
    objects_[lru_tail_].lru_next = handle;
  } else {
    lru_head_ = handle;
  }
  lru_tail_ = handle;
  object.in_lru = true;
  ++lru_size_;
}

void ObjectTable::LruRemove(uint32_t handle) {
  ObjectState& object = objects_[handle];
  if (!object.in_lru) return;
  if (object.lru_prev != kNoHandle) {
    objects_[object.lru_prev].lru_next = object.lru_next;
  } else {
    lru_head_ = object.lru_next;
  }
  if (object.lru_next != kNoHandle) {
    objects_[object.lru_next].lru_prev = object.lru_prev;
  } else {
    lru_tail_ = object.lru_prev;
  }
  object.lru_prev = object.lru_next = kNoHandle;
  object.in_lru = false;
  --lru_size_;
}

// ---- Hash table (id -> handle) ----

void ObjectTable::TableInsert(uint32_t handle) {
  uint32_t slots = header_->table_slots.load(std::memory_order_relaxed);
  if ((uint64_t{table_used_} + 1) * 2 > slots) {
    // Rebuild at a quarter full (or at most the capacity, which holds max_objects at half full):
    // rebuilds double the size, so their cost per insert stays constant.
    const uint64_t wanted = std::bit_ceil((live_objects_ + 1) * 4);
    slots = static_cast<uint32_t>(std::clamp<uint64_t>(
        wanted, std::min(kMinTableSlots, header_->table_capacity), header_->table_capacity));
    TableRebuild(slots);
    return;  // the rebuild inserted every live object, this one included
  }
  uint64_t words[3];
  IdToWords(objects_[handle].id, words);
  std::atomic<uint32_t>* table =
      TableArea(header_, header_->table_which.load(std::memory_order_relaxed));
  const uint32_t home = HomeSlot(words, slots);
  for (uint32_t distance = 0;; ++distance) {
    std::atomic<uint32_t>& slot = table[(home + distance) & (slots - 1)];
    const uint32_t value = slot.load(std::memory_order_relaxed);
    if (value != kTableEmpty && value != kTableTombstone) continue;
    if (value == kTableEmpty) ++table_used_;
    // Readers must probe far enough before they can find the new slot.
    if (distance > header_->max_probe.load(std::memory_order_relaxed)) {
      header_->max_probe.store(distance, std::memory_order_release);
    }
    slot.store(handle + 1, std::memory_order_release);
    return;
  }
}

void ObjectTable::TableErase(uint32_t handle) {
  uint64_t words[3];
  IdToWords(objects_[handle].id, words);
  const uint32_t slots = header_->table_slots.load(std::memory_order_relaxed);
  const uint32_t max_probe = header_->max_probe.load(std::memory_order_relaxed);
  std::atomic<uint32_t>* table =
      TableArea(header_, header_->table_which.load(std::memory_order_relaxed));
  const uint32_t home = HomeSlot(words, slots);
  for (uint32_t distance = 0; distance <= max_probe && distance < slots; ++distance) {
    std::atomic<uint32_t>& slot = table[(home + distance) & (slots - 1)];
    const uint32_t value = slot.load(std::memory_order_relaxed);
    if (value == kTableEmpty) break;
    if (value == handle + 1) {
      slot.store(kTableTombstone, std::memory_order_release);
      return;
    }
  }
  spdlog::error("store: internal error: object {} missing from the hash table",
                objects_[handle].id.ToHex());
}

void ObjectTable::TableRebuild(uint32_t slots) {
  const uint32_t which = 1 - header_->table_which.load(std::memory_order_relaxed);
  std::atomic<uint32_t>* table = TableArea(header_, which);
  // Readers of the area being rewritten (a previous table) see table_seq change and retry.
  const uint64_t seq = header_->table_seq.load(std::memory_order_relaxed);
  header_->table_seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  for (uint32_t i = 0; i < slots; ++i) table[i].store(kTableEmpty, std::memory_order_relaxed);
  uint32_t max_probe = 0, used = 0;
  for (uint32_t handle = 0; handle < objects_.size(); ++handle) {
    if (objects_[handle].state == EntryState::kFree) continue;
    uint64_t words[3];
    IdToWords(objects_[handle].id, words);
    const uint32_t home = HomeSlot(words, slots);
    uint32_t distance = 0;
    while (table[(home + distance) & (slots - 1)].load(std::memory_order_relaxed) != kTableEmpty) {
      ++distance;
    }
    table[(home + distance) & (slots - 1)].store(handle + 1, std::memory_order_relaxed);
    max_probe = std::max(max_probe, distance);
    ++used;
  }
  header_->max_probe.store(max_probe, std::memory_order_relaxed);
  header_->table_slots.store(slots, std::memory_order_relaxed);
  header_->table_which.store(which, std::memory_order_relaxed);
  header_->table_seq.store(seq + 2, std::memory_order_release);
  table_used_ = used;
}

// ---- Requests ----

std::optional<uint64_t> ObjectTable::AllocateWithEviction(uint64_t size, bool pinned) {
  // Pinned objects stay for good: keep them together at the top of the arena, out of the way
  // of the large ordinary objects below.
  auto allocate = [&] {
    return pinned ? allocator_.AllocateHigh(size) : allocator_.Allocate(size);
  };
  if (auto offset = allocate()) return offset;
  SweepPendingDeletes();
  for (;;) {
    if (auto offset = allocate()) return offset;
    // CLOCK-style second chance over the LRU order: an object read through the fast path since
    // the last pass (its touched byte set by some client) moves to the back once.
    bool evicted = false;
    for (uint64_t budget = 2 * lru_size_; budget > 0 && lru_head_ != kNoHandle && !evicted;
         --budget) {
      const uint32_t handle = lru_head_;
      bool touched = false;
      for (auto& [id, client] : clients_) {
        if (client.touched[handle].load(std::memory_order_relaxed) != 0) {
          client.touched[handle].store(0, std::memory_order_relaxed);
          touched = true;
        }
      }
      if (touched) {
        LruPushBack(handle);
        continue;
      }
      if (FreeUnlessReferenced(handle, EntryState::kSealed)) {
        ++evictions_;
        evicted = true;
      } else {
        LruPushBack(handle);  // referenced: in use, never evicted
      }
    }
    if (!evicted) return std::nullopt;
  }
}

Status ObjectTable::StoreFullError(const ObjectId& id, uint64_t data_size, uint64_t total) const {
  // After a failed eviction pass every sealed, unpinned object left is referenced.
  const uint64_t referenced =
      allocator_.bytes_allocated() - unsealed_bytes_ - pinned_bytes_ - pending_delete_bytes_;
  return ResourceExhaustedError(fmt::format(
      "store full: object {} needs {} ({} bytes with metadata); largest free block {}, {} free "
      "of {}; held by objects that cannot be evicted: {} referenced, {} unsealed, {} pinned, {} "
      "deleted but still referenced",
      id.ToHex(), HumanBytes(data_size), total, HumanBytes(allocator_.largest_free_block()),
      HumanBytes(allocator_.bytes_free()), HumanBytes(allocator_.capacity()),
      HumanBytes(referenced), HumanBytes(unsealed_bytes_), HumanBytes(pinned_bytes_),
      HumanBytes(pending_delete_bytes_)));
}

Result<ObjectPlacement> ObjectTable::Create(ClientId client, const ObjectId& id, uint64_t data_size,
                                            std::span<const uint8_t> metadata, uint32_t flags) {
  const std::string hex = id.ToHex();
  auto owner = clients_.find(client);
  if (owner == clients_.end()) return InternalError("create from an unregistered client");
  if (data_size > arena_.size() || metadata.size() > arena_.size() - MetadataOffset(data_size)) {
    return ResourceExhaustedError(
        fmt::format("object {} of {} can never fit: the store's arena holds {}", hex,
                    HumanBytes(data_size), HumanBytes(arena_.size())));
  }
  if (const uint32_t existing = FindHandle(id); existing != kNoHandle) {
    const EntryState state = objects_[existing].state;
    const char* what = state == EntryState::kSealed    ? "exists"
                       : state == EntryState::kCreated ? "is being created"
                                                       : "is deleted but still referenced";
    return AlreadyExistsError(fmt::format("object {} {}", hex, what));
  }
  if (live_objects_ >= max_objects_) {
    return ResourceExhaustedError(fmt::format(
        "store object table full: {} objects (start the store with a larger --max-objects)",
        live_objects_));
  }
  const uint64_t total = MetadataOffset(data_size) + metadata.size();
  const std::optional<uint64_t> offset = AllocateWithEviction(total, (flags & kEntryPinned) != 0);
  if (!offset) return StoreFullError(id, data_size, total);

  const uint32_t handle = AllocateHandle();
  ObjectState& object = objects_[handle];
  object = ObjectState{};
  object.id = id;
  object.state = EntryState::kCreated;
  object.pinned = (flags & kEntryPinned) != 0;
  object.alloc_offset = *offset;
  object.alloc_size = allocator_.BlockSize(*offset);
  object.creator = client;
  owner->second.creating.insert(handle);
  // Metadata is the only thing the store writes into the arena; the block bounds it.
  if (!metadata.empty()) {
    std::memcpy(arena_.data() + *offset + MetadataOffset(data_size), metadata.data(),
                metadata.size());
  }
  uint64_t words[3];
  IdToWords(id, words);
  IndexEntry& e = Entry(handle);
  BeginEntryWrite(e);
  for (int i = 0; i < 3; ++i) e.id_words[i].store(words[i], std::memory_order_relaxed);
  e.offset.store(*offset, std::memory_order_relaxed);
  e.data_size.store(data_size, std::memory_order_relaxed);
  e.metadata_size.store(static_cast<uint32_t>(metadata.size()), std::memory_order_relaxed);
  e.flags.store(object.pinned ? uint32_t{kEntryPinned} : uint32_t{0}, std::memory_order_relaxed);
  e.state.store(static_cast<uint32_t>(EntryState::kCreated), std::memory_order_relaxed);
  EndEntryWrite(e);
  TableInsert(handle);
  ++live_objects_;
  ++unsealed_objects_;
  unsealed_bytes_ += object.alloc_size;
  if (object.pinned) {
    ++pinned_objects_;
    pinned_bytes_ += object.alloc_size;
  }
  ++creates_;
  Published();
  return ObjectPlacement{handle, *offset, *offset + MetadataOffset(data_size)};
}

Status ObjectTable::Seal(ClientId client, const ObjectId& id) {
  ZD_ASSIGN_OR_RETURN(const uint32_t handle, FindOwned(client, id, "seal"));
  ClientRecord& owner = clients_.at(client);
  // Pairs with the creator's release increment: its writes to the object happen before.
  owner.header->publish_count.load(std::memory_order_acquire);
  ObjectState& object = objects_[handle];
  SetState(handle, EntryState::kSealed);
  object.state = EntryState::kSealed;
  object.creator = 0;
  owner.creating.erase(handle);
  --unsealed_objects_;
  unsealed_bytes_ -= object.alloc_size;
  ++sealed_objects_;
  if (!object.pinned) LruPushBack(handle);
  Published();
  return Status::Ok();
}

Status ObjectTable::Abort(ClientId client, const ObjectId& id) {
  Result<uint32_t> handle = FindOwned(client, id, "abort");
  if (!handle.ok()) {
    if (handle.status().code() != StatusCode::kFailedPrecondition) return handle.status();
    return FailedPreconditionError(
        fmt::format("abort: object {} is sealed; delete it instead", id.ToHex()));
  }
  FreeNow(*handle);
  Published();
  return Status::Ok();
}

Status ObjectTable::Delete(std::span<const ObjectId> ids) {
  Status first_error;
  for (const ObjectId& id : ids) {
    const uint32_t handle = FindHandle(id);
    if (handle == kNoHandle) {
      if (first_error.ok())
        first_error = NotFoundError(fmt::format("delete: no object {}", id.ToHex()));
      continue;
    }
    const EntryState state = objects_[handle].state;
    if (state == EntryState::kCreated) {
      if (first_error.ok()) {
        first_error = FailedPreconditionError(fmt::format(
            "delete: object {} is still being created; its creator must seal or abort it",
            id.ToHex()));
      }
      continue;
    }
    if (state == EntryState::kDeleting) continue;
    if (!FreeUnlessReferenced(handle, EntryState::kDeleting)) pending_deletes_.push_back(handle);
  }
  Published();
  return first_error;
}

std::optional<GetReply> ObjectTable::Get(ClientId client, const ObjectId& id) {
  const uint32_t handle = FindHandle(id);
  if (handle == kNoHandle || objects_[handle].state != EntryState::kSealed) return std::nullopt;
  auto it = clients_.find(client);
  if (it == clients_.end()) return std::nullopt;
  it->second.refs[handle].fetch_add(1, std::memory_order_seq_cst);
  const IndexEntry& e = Entry(handle);
  GetReply reply;
  reply.handle = handle;
  reply.offset = e.offset.load(std::memory_order_relaxed);
  reply.data_size = e.data_size.load(std::memory_order_relaxed);
  reply.metadata_size = e.metadata_size.load(std::memory_order_relaxed);
  if (objects_[handle].in_lru) LruPushBack(handle);
  ++socket_gets_;
  Published();
  return reply;
}

ListReply ObjectTable::List(uint32_t cursor) const {
  ListReply reply;
  uint32_t handle = cursor;
  for (; handle < objects_.size() && reply.objects.size() < kListPageSize; ++handle) {
    const ObjectState& object = objects_[handle];
    if (object.state == EntryState::kFree) continue;
    const IndexEntry& e = Entry(handle);
    ObjectInfo info;
    info.id = object.id;
    info.data_size = e.data_size.load(std::memory_order_relaxed);
    info.metadata_size = e.metadata_size.load(std::memory_order_relaxed);
    info.sealed = object.state != EntryState::kCreated;
    info.pending_delete = object.state == EntryState::kDeleting;
    info.pinned = object.pinned;
    reply.objects.push_back(info);
  }
  reply.next_cursor = handle < objects_.size() ? handle : 0;
  return reply;
}

void ObjectTable::SweepPendingDeletes() {
  bool freed = false;
  std::erase_if(pending_deletes_, [&](uint32_t handle) {
    if (objects_[handle].state != EntryState::kDeleting) return true;
    if (FreeUnlessReferenced(handle, EntryState::kDeleting)) {
      freed = true;
      return true;
    }
    return false;
  });
  if (freed) Published();
}

StoreStats ObjectTable::Stats() const {
  StoreStats stats;
  stats.capacity = allocator_.capacity();
  stats.bytes_allocated = allocator_.bytes_allocated();
  stats.largest_free_block = allocator_.largest_free_block();
  stats.objects = live_objects_;
  stats.sealed_objects = sealed_objects_;
  stats.unsealed_objects = unsealed_objects_;
  stats.pending_deletes = pending_deletes_.size();
  stats.max_objects = max_objects_;
  stats.evictions = evictions_;
  stats.creates = creates_;
  stats.socket_gets = socket_gets_;
  stats.pinned_objects = pinned_objects_;
  stats.pinned_bytes = pinned_bytes_;
  stats.unsealed_bytes = unsealed_bytes_;
  stats.pending_delete_bytes = pending_delete_bytes_;
  return stats;
}

Status ObjectTable::CheckInvariants() const {
  uint64_t live = 0, sealed = 0, unsealed = 0, pinned = 0, pinned_bytes = 0, deleting_bytes = 0,
           unsealed_bytes = 0, in_lru = 0;
  for (uint32_t handle = 0; handle < objects_.size(); ++handle) {
    const ObjectState& object = objects_[handle];
    const IndexEntry& e = Entry(handle);
    if (static_cast<uint32_t>(object.state) != e.state.load(std::memory_order_relaxed)) {
      return InternalError(fmt::format("handle {}: state differs from the index", handle));
    }
    if (object.state == EntryState::kFree) continue;
    ++live;
    if (object.state == EntryState::kSealed) ++sealed;
    if (object.state == EntryState::kCreated) {
      ++unsealed;
      unsealed_bytes += object.alloc_size;
    }
    if (object.state == EntryState::kDeleting) deleting_bytes += object.alloc_size;
    if (object.pinned && object.state != EntryState::kDeleting) {
      ++pinned;
      pinned_bytes += object.alloc_size;
    }
    if (object.in_lru != (object.state == EntryState::kSealed && !object.pinned)) {
      return InternalError(fmt::format("handle {}: wrongly {} the LRU list", handle,
                                       object.in_lru ? "in" : "missing from"));
    }
    in_lru += object.in_lru;
    if (FindHandle(object.id) != handle) {
      return InternalError(
          fmt::format("object {} not found at its handle {}", object.id.ToHex(), handle));
    }
    if (allocator_.BlockSize(object.alloc_offset) != object.alloc_size) {
      return InternalError(fmt::format("object {}: allocation mismatch", object.id.ToHex()));
    }
  }
  if (live != live_objects_ || sealed != sealed_objects_ || unsealed != unsealed_objects_ ||
      pinned != pinned_objects_ || pinned_bytes != pinned_bytes_ ||
      unsealed_bytes != unsealed_bytes_ || deleting_bytes != pending_delete_bytes_ ||
      in_lru != lru_size_) {
    return InternalError(
        fmt::format("counters: walked {} live/{} sealed/{} unsealed/{} pinned/{} in LRU, recorded "
                    "{}/{}/{}/{}/{}",
                    live, sealed, unsealed, pinned, in_lru, live_objects_, sealed_objects_,
                    unsealed_objects_, pinned_objects_, lru_size_));
  }
  if (allocator_.allocated_blocks() != live_objects_) {
    return InternalError(fmt::format("{} allocated blocks for {} objects",
                                     allocator_.allocated_blocks(), live_objects_));
  }
  // The hash table: each live object exactly once, nothing else.
  const uint32_t slots = header_->table_slots.load(std::memory_order_relaxed);
  const std::atomic<uint32_t>* table =
      TableArea(header_, header_->table_which.load(std::memory_order_relaxed));
  uint64_t listed = 0, used = 0;
  for (uint32_t i = 0; i < slots; ++i) {
    const uint32_t value = table[i].load(std::memory_order_relaxed);
    if (value == kTableEmpty) continue;
    ++used;
    if (value == kTableTombstone) continue;
    if (value - 1 >= objects_.size() || objects_[value - 1].state == EntryState::kFree) {
      return InternalError(fmt::format("table slot {} names a free handle {}", i, value - 1));
    }
    ++listed;
  }
  if (listed != live_objects_ || used != table_used_) {
    return InternalError(fmt::format("table lists {} objects in {} used slots; {} live, {} used",
                                     listed, used, live_objects_, table_used_));
  }
  uint64_t lru_walk = 0;
  for (uint32_t handle = lru_head_; handle != kNoHandle; handle = objects_[handle].lru_next) {
    if (++lru_walk > lru_size_) return InternalError("LRU list longer than its count");
  }
  if (lru_walk != lru_size_) return InternalError("LRU list shorter than its count");
  return allocator_.CheckInvariants();
}

}  // namespace zerodet::store::internal

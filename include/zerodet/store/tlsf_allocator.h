// TlsfAllocator: a Two-Level Segregated Fit allocator (Masmano et al., "TLSF: a new dynamic
// memory allocator for real-time systems", ECRTS 2004) that hands out byte ranges of an arena it
// never touches.
//
// The store's arena lives in shared memory that clients can write, so no allocator metadata is
// kept inside it: block headers live in this object (ordinary heap memory of the store process),
// and the allocator deals only in offsets. Allocation and free are O(1) (two bitmap scans and a
// constant number of list operations); freed blocks are coalesced with their free physical
// neighbours immediately, so the free space of an idle arena is always one block. TLSF is a
// good-fit allocator: a request of size s is served from a free block of size >= s whenever the
// size class above s holds one, which keeps fragmentation low under mixed object sizes.
//
// Every block is a multiple of kAlignment bytes and starts at a multiple of kAlignment (cache
// line and SIMD friendly for tensors). Not thread-safe: the store calls it from its event loop.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "zerodet/core/status.h"

namespace zerodet::store {

class TlsfAllocator {
 public:
  static constexpr uint64_t kAlignment = 64;

  // Manages [0, capacity) rounded down to kAlignment. REQUIRES: capacity >= kAlignment.
  explicit TlsfAllocator(uint64_t capacity);
  ~TlsfAllocator();

  TlsfAllocator(const TlsfAllocator&) = delete;
  TlsfAllocator& operator=(const TlsfAllocator&) = delete;

  // Returns the offset of a block of at least `size` bytes (a zero-size request takes
  // kAlignment bytes, so every object has a distinct offset), or nullopt when no free block is
  // large enough. Never fails for size <= largest_free_block().
  std::optional<uint64_t> Allocate(uint64_t size);
  // Like Allocate, but from the end of the highest free block that is large enough: for
  // long-lived blocks (pinned objects), which then gather at the top of the arena instead of
  // splitting the free space below. O(number of blocks).
  std::optional<uint64_t> AllocateHigh(uint64_t size);

  // Frees the block at `offset`. Returns false (and changes nothing) when `offset` is not the
  // start of an allocated block: double frees are reported, not undefined. Callers must act on
  // false (it means their bookkeeping and the allocator disagree).
  [[nodiscard]] bool Free(uint64_t offset);

  // Size of the allocated block at `offset` (>= the requested size), or 0 if none starts there.
  uint64_t BlockSize(uint64_t offset) const;

  uint64_t capacity() const { return capacity_; }
  uint64_t bytes_allocated() const { return bytes_allocated_; }
  uint64_t bytes_free() const { return capacity_ - bytes_allocated_; }
  uint64_t allocated_blocks() const { return allocated_.size(); }
  uint64_t free_blocks() const { return free_block_count_; }
  // Largest single free block: the largest request that can succeed right now.
  uint64_t largest_free_block() const;

  // Walks every block and free list; returns kInternal describing the first broken invariant
  // (overlap, gap, uncoalesced neighbours, wrong list, bitmap mismatch, wrong byte counts).
  // O(number of blocks); meant for tests.
  Status CheckInvariants() const;

 private:
  struct Block;
  static constexpr int kSecondLevelLog2 = 4;
  static constexpr int kSecondLevelCount = 1 << kSecondLevelLog2;
  static constexpr int kAlignmentLog2 = 6;
  static constexpr int kFirstLevelShift = kSecondLevelLog2 + kAlignmentLog2;
  static constexpr uint64_t kSmallBlockSize = uint64_t{1} << kFirstLevelShift;
  static constexpr int kFirstLevelCount = 64 - kFirstLevelShift + 1;

  static void MappingInsert(uint64_t size, int* fl, int* sl);
  Block* FindSuitable(uint64_t size) const;
  void InsertFree(Block* block);
  void RemoveFree(Block* block);
  Block* NewBlock();
  void RecycleBlock(Block* block);

  uint64_t capacity_;
  uint64_t bytes_allocated_ = 0;
  uint64_t free_block_count_ = 0;
  uint64_t first_level_bitmap_ = 0;
  uint32_t second_level_bitmap_[kFirstLevelCount] = {};
  Block* free_lists_[kFirstLevelCount][kSecondLevelCount] = {};
  Block* first_block_ = nullptr;  // physical order starts here
  std::unordered_map<uint64_t, Block*> allocated_;
  std::vector<std::unique_ptr<Block>> block_storage_;
  std::vector<Block*> spare_blocks_;
};

}  // namespace zerodet::store

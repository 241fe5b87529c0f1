#include "zerodet/store/tlsf_allocator.h"

#include <fmt/format.h>

#include <bit>
#include <cassert>

namespace zerodet::store {

struct TlsfAllocator::Block {
  uint64_t offset = 0;
  uint64_t size = 0;
  bool free = false;
  Block* prev_phys = nullptr;
  Block* next_phys = nullptr;
  Block* prev_free = nullptr;
  Block* next_free = nullptr;
};

namespace {

uint64_t RoundUp(uint64_t size, uint64_t alignment) {
  return (size + alignment - 1) / alignment * alignment;
}

int MostSignificantBit(uint64_t x) {
  return 63 - std::countl_zero(x);
}

}  // namespace

TlsfAllocator::TlsfAllocator(uint64_t capacity) : capacity_(capacity / kAlignment * kAlignment) {
  assert(capacity_ >= kAlignment);
  Block* all = NewBlock();
  all->offset = 0;
  all->size = capacity_;
  first_block_ = all;
  InsertFree(all);
}

TlsfAllocator::~TlsfAllocator() = default;

void TlsfAllocator::MappingInsert(uint64_t size, int* fl, int* sl) {
  if (size < kSmallBlockSize) {
    *fl = 0;
    *sl = static_cast<int>(size / (kSmallBlockSize / kSecondLevelCount));
  } else {
    const int msb = MostSignificantBit(size);
    *sl = static_cast<int>((size >> (msb - kSecondLevelLog2)) ^ (1u << kSecondLevelLog2));
    *fl = msb - (kFirstLevelShift - 1);
  }
}

TlsfAllocator::Block* TlsfAllocator::FindSuitable(uint64_t size) const {
  // Round the request up to the next size-class boundary so that every block in the class we
  // land in is large enough (the "good fit" of TLSF).
  if (size >= kSmallBlockSize) {
    const uint64_t round = (uint64_t{1} << (MostSignificantBit(size) - kSecondLevelLog2)) - 1;
    if (size > UINT64_MAX - round) return nullptr;
    size += round;
  }
  int fl = 0, sl = 0;
  MappingInsert(size, &fl, &sl);
  if (fl >= kFirstLevelCount) return nullptr;
  uint32_t sl_map = second_level_bitmap_[fl] & (~0u << sl);
  if (sl_map == 0) {
    const uint64_t fl_map = fl + 1 < 64 ? first_level_bitmap_ & (~uint64_t{0} << (fl + 1)) : 0;
    if (fl_map == 0) return nullptr;
    fl = std::countr_zero(fl_map);
    sl_map = second_level_bitmap_[fl];
  }
  sl = std::countr_zero(sl_map);
  return free_lists_[fl][sl];
}

void TlsfAllocator::InsertFree(Block* block) {
  int fl = 0, sl = 0;
  MappingInsert(block->size, &fl, &sl);
  block->free = true;
  block->prev_free = nullptr;
  block->next_free = free_lists_[fl][sl];
  if (block->next_free != nullptr) block->next_free->prev_free = block;
  free_lists_[fl][sl] = block;
  first_level_bitmap_ |= uint64_t{1} << fl;
  second_level_bitmap_[fl] |= 1u << sl;
  ++free_block_count_;
}

void TlsfAllocator::RemoveFree(Block* block) {
  int fl = 0, sl = 0;
  MappingInsert(block->size, &fl, &sl);
  if (block->prev_free != nullptr) block->prev_free->next_free = block->next_free;
  if (block->next_free != nullptr) block->next_free->prev_free = block->prev_free;
  if (free_lists_[fl][sl] == block) {
    free_lists_[fl][sl] = block->next_free;
    if (free_lists_[fl][sl] == nullptr) {
      second_level_bitmap_[fl] &= ~(1u << sl);
      if (second_level_bitmap_[fl] == 0) first_level_bitmap_ &= ~(uint64_t{1} << fl);
    }
  }
  block->free = false;
  block->prev_free = block->next_free = nullptr;
  --free_block_count_;
}

TlsfAllocator::Block* TlsfAllocator::NewBlock() {
  if (!spare_blocks_.empty()) {
    Block* block = spare_blocks_.back();
    spare_blocks_.pop_back();
    *block = Block{};
    return block;
  }
  block_storage_.push_back(std::make_unique<Block>());
  return block_storage_.back().get();
}

void TlsfAllocator::RecycleBlock(Block* block) {
  spare_blocks_.push_back(block);
}

std::optional<uint64_t> TlsfAllocator::Allocate(uint64_t size) {
  if (size > capacity_) return std::nullopt;
  size = size == 0 ? kAlignment : RoundUp(size, kAlignment);
  Block* block = FindSuitable(size);
  if (block == nullptr) {
    // Good fit rounds the request up to the next size class; a block of the request's own
    // class may still be large enough. Scanning that one list keeps the promise that any
    // request up to largest_free_block() succeeds.
    int fl = 0, sl = 0;
    MappingInsert(size, &fl, &sl);
    if (fl < kFirstLevelCount) {
      for (Block* b = free_lists_[fl][sl]; b != nullptr; b = b->next_free) {
        if (b->size >= size) {
          block = b;
          break;
        }
      }
    }
    if (block == nullptr) return std::nullopt;
  }
  RemoveFree(block);
  // Split off the tail when it can hold a block of its own.
  if (block->size - size >= kAlignment) {
    Block* rest = NewBlock();
    rest->offset = block->offset + size;
    rest->size = block->size - size;
    rest->prev_phys = block;
    rest->next_phys = block->next_phys;
    if (rest->next_phys != nullptr) rest->next_phys->prev_phys = rest;
    block->next_phys = rest;
    block->size = size;
    InsertFree(rest);
  }
  allocated_.emplace(block->offset, block);
  bytes_allocated_ += block->size;
  return block->offset;
}

std::optional<uint64_t> TlsfAllocator::AllocateHigh(uint64_t size) {
  if (size > capacity_) return std::nullopt;
  size = size == 0 ? kAlignment : RoundUp(size, kAlignment);
  Block* block = nullptr;
  for (Block* b = first_block_; b != nullptr; b = b->next_phys) {
    if (b->free && b->size >= size) block = b;
  }
  if (block == nullptr) return std::nullopt;
  RemoveFree(block);
  // Split off the head (it stays free) when it can hold a block of its own.
  if (block->size - size >= kAlignment) {
    Block* tail = NewBlock();
    tail->offset = block->offset + block->size - size;
    tail->size = size;
    tail->prev_phys = block;
    tail->next_phys = block->next_phys;
    if (tail->next_phys != nullptr) tail->next_phys->prev_phys = tail;
    block->next_phys = tail;
    block->size -= size;
    InsertFree(block);
    block = tail;
  }
  allocated_.emplace(block->offset, block);
  bytes_allocated_ += block->size;
  return block->offset;
}

bool TlsfAllocator::Free(uint64_t offset) {
  auto it = allocated_.find(offset);
  if (it == allocated_.end()) return false;
  Block* block = it->second;
  allocated_.erase(it);
  bytes_allocated_ -= block->size;
  if (Block* next = block->next_phys; next != nullptr && next->free) {
    RemoveFree(next);
    block->size += next->size;
    block->next_phys = next->next_phys;
    if (block->next_phys != nullptr) block->next_phys->prev_phys = block;
    RecycleBlock(next);
  }
  if (Block* prev = block->prev_phys; prev != nullptr && prev->free) {
    RemoveFree(prev);
    prev->size += block->size;
    prev->next_phys = block->next_phys;
    if (prev->next_phys != nullptr) prev->next_phys->prev_phys = prev;
    RecycleBlock(block);
    block = prev;
  }
  InsertFree(block);
  return true;
}

uint64_t TlsfAllocator::BlockSize(uint64_t offset) const {
  auto it = allocated_.find(offset);
  return it == allocated_.end() ? 0 : it->second->size;
}

uint64_t TlsfAllocator::largest_free_block() const {
  if (first_level_bitmap_ == 0) return 0;
  const int fl = MostSignificantBit(first_level_bitmap_);
  const int sl = MostSignificantBit(second_level_bitmap_[fl]);
  uint64_t largest = 0;
  for (const Block* b = free_lists_[fl][sl]; b != nullptr; b = b->next_free) {
    largest = std::max(largest, b->size);
  }
  return largest;
}

Status TlsfAllocator::CheckInvariants() const {
  uint64_t expected_offset = 0, allocated_bytes = 0, free_count = 0, allocated_count = 0;
  const Block* prev = nullptr;
  for (const Block* b = first_block_; b != nullptr; b = b->next_phys) {
    if (b->offset != expected_offset) {
      return InternalError(fmt::format("block at {} expected at {}", b->offset, expected_offset));
    }
    if (b->size == 0 || b->size % kAlignment != 0 || b->offset % kAlignment != 0) {
      return InternalError(fmt::format("block at {} has bad size {}", b->offset, b->size));
    }
    if (b->prev_phys != prev) return InternalError(fmt::format("bad prev link at {}", b->offset));
    if (b->free) {
      if (prev != nullptr && prev->free) {
        return InternalError(fmt::format("free neighbours not coalesced at {}", b->offset));
      }
      int fl = 0, sl = 0;
      MappingInsert(b->size, &fl, &sl);
      bool listed = false;
      for (const Block* f = free_lists_[fl][sl]; f != nullptr; f = f->next_free) listed |= f == b;
      if (!listed) return InternalError(fmt::format("free block at {} not in its list", b->offset));
      ++free_count;
    } else {
      auto it = allocated_.find(b->offset);
      if (it == allocated_.end() || it->second != b) {
        return InternalError(fmt::format("used block at {} not tracked", b->offset));
      }
      allocated_bytes += b->size;
      ++allocated_count;
    }
    expected_offset += b->size;
    prev = b;
  }
  if (expected_offset != capacity_) {
    return InternalError(fmt::format("blocks cover {} of {} bytes", expected_offset, capacity_));
  }
  for (int fl = 0; fl < kFirstLevelCount; ++fl) {
    const bool fl_set = (first_level_bitmap_ >> fl) & 1;
    if (fl_set != (second_level_bitmap_[fl] != 0)) {
      return InternalError(fmt::format("first-level bitmap wrong at {}", fl));
    }
    for (int sl = 0; sl < kSecondLevelCount; ++sl) {
      const bool sl_set = (second_level_bitmap_[fl] >> sl) & 1;
      if (sl_set != (free_lists_[fl][sl] != nullptr)) {
        return InternalError(fmt::format("second-level bitmap wrong at {}/{}", fl, sl));
      }
    }
  }
  if (allocated_bytes != bytes_allocated_ || allocated_count != allocated_.size() ||
      free_count != free_block_count_) {
    return InternalError(fmt::format("counters: {} bytes/{} blocks walked, {} bytes/{} recorded",
                                     allocated_bytes, allocated_count, bytes_allocated_,
                                     allocated_.size()));
  }
  return Status::Ok();
}

}  // namespace zerodet::store

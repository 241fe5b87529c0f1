// The socket-free object table: plain anonymous memory stands in for the shared regions.
#include "object_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <memory>
#include <random>
#include <set>
#include <vector>

#include "shm_util.h"
#include "store_test_util.h"

namespace zerodet::store::internal {
namespace {

using ::testing::HasSubstr;
using testing::IdOf;

// Zero-filled, page-aligned memory that costs nothing until touched (like a fresh memfd).
Mapping AnonymousMemory(uint64_t size) {
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  EXPECT_NE(address, MAP_FAILED);
  return Mapping(address == MAP_FAILED ? nullptr : address, address == MAP_FAILED ? 0 : size);
}

class ObjectTableTest : public ::testing::Test {
 protected:
  void Init(uint64_t arena_size, uint32_t max_objects) {
    max_objects_ = max_objects;
    index_ = AnonymousMemory(IndexRegionSize(max_objects));
    arena_ = AnonymousMemory(arena_size);
    table_ = std::make_unique<ObjectTable>(std::span<uint8_t>(index_.data(), index_.size()),
                                           std::span<uint8_t>(arena_.data(), arena_.size()),
                                           max_objects);
  }
  void SetUp() override { Init(1 << 20, 1024); }

  ClientRegionHeader* AddClient(ClientId id) {
    regions_.push_back(AnonymousMemory(ClientRegionSize(max_objects_)));
    auto* header = new (regions_.back().data()) ClientRegionHeader{};
    table_->AddClient(id, header);
    return header;
  }

  // Creates and seals an object of `size` bytes for `client`.
  void Put(ClientId client, const ObjectId& id, uint64_t size, uint32_t flags = 0) {
    auto placed = table_->Create(client, id, size, {}, flags);
    ASSERT_TRUE(placed.ok()) << placed.status().ToString();
    ASSERT_TRUE(table_->Seal(client, id).ok());
  }

  bool Contains(const ObjectId& id) {
    uint64_t words[3];
    IdToWords(id, words);
    const uint32_t handle = ProbeHandle(table_->header(), words);
    return handle != kNoHandle && Entries(table_->header())[handle].state.load() ==
                                      static_cast<uint32_t>(EntryState::kSealed);
  }

  void ExpectConsistent() {
    Status status = table_->CheckInvariants();
    EXPECT_TRUE(status.ok()) << status.ToString();
  }

  uint32_t max_objects_ = 0;
  Mapping index_, arena_;
  std::vector<Mapping> regions_;
  std::unique_ptr<ObjectTable> table_;
};

TEST_F(ObjectTableTest, CreateSealGetAbortDelete) {
  AddClient(1);
  const std::vector<uint8_t> metadata = {1, 2, 3};
  auto placed = table_->Create(1, IdOf(1), 100, metadata, 0);
  ASSERT_TRUE(placed.ok()) << placed.status().ToString();
  EXPECT_EQ(placed->offset % kObjectAlignment, 0u);
  EXPECT_EQ(placed->metadata_offset, placed->offset + MetadataOffset(100));
  EXPECT_EQ(std::memcmp(arena_.data() + placed->metadata_offset, metadata.data(), 3), 0);
  EXPECT_FALSE(table_->Get(1, IdOf(1)).has_value());  // not sealed yet
  EXPECT_EQ(table_->Create(1, IdOf(1), 1, {}, 0).status().code(), StatusCode::kAlreadyExists);
  ASSERT_TRUE(table_->Seal(1, IdOf(1)).ok());
  EXPECT_EQ(table_->Seal(1, IdOf(1)).code(), StatusCode::kFailedPrecondition);
  auto got = table_->Get(1, IdOf(1));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->data_size, 100u);
  EXPECT_EQ(got->metadata_size, 3u);
  ExpectConsistent();

  ASSERT_TRUE(table_->Create(1, IdOf(2), 10, {}, 0).ok());
  ASSERT_TRUE(table_->Abort(1, IdOf(2)).ok());
  EXPECT_EQ(table_->Abort(1, IdOf(2)).code(), StatusCode::kNotFound);
  EXPECT_EQ(table_->Delete(std::vector<ObjectId>{IdOf(3)}).code(), StatusCode::kNotFound);
  ExpectConsistent();
  EXPECT_EQ(table_->Stats().objects, 1u);
}

TEST_F(ObjectTableTest, OnlyTheCreatorSealsOrAborts) {
  AddClient(1);
  AddClient(2);
  ASSERT_TRUE(table_->Create(1, IdOf(1), 10, {}, 0).ok());
  EXPECT_EQ(table_->Seal(2, IdOf(1)).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(table_->Abort(2, IdOf(1)).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(table_->Delete(std::vector<ObjectId>{IdOf(1)}).code(), StatusCode::kFailedPrecondition);
}

TEST_F(ObjectTableTest, RemovingAClientAbortsOnlyItsUnsealedObjectsAndDropsItsReferences) {
  AddClient(1);
  ClientRegionHeader* reader = AddClient(2);
  Put(1, IdOf(1), 1000);
  ASSERT_TRUE(table_->Create(1, IdOf(2), 1000, {}, 0).ok());
  ASSERT_TRUE(table_->Create(2, IdOf(3), 1000, {}, 0).ok());
  ASSERT_TRUE(table_->Get(2, IdOf(1)).has_value());  // client 2 holds a reference
  EXPECT_EQ(Refs(reader)[table_->Get(2, IdOf(1))->handle].load(), 2u);
  ASSERT_TRUE(table_->Delete(std::vector<ObjectId>{IdOf(1)}).ok());
  EXPECT_TRUE(table_->has_pending_deletes());
  EXPECT_EQ(table_->RemoveClient(1), 1u);  // its unsealed object 2
  EXPECT_EQ(table_->Stats().objects, 2u);  // 1 (pending delete) and 3
  EXPECT_EQ(table_->RemoveClient(2), 1u);  // object 3; its references go, so 1 is freed
  const StoreStats stats = table_->Stats();
  EXPECT_EQ(stats.objects, 0u);
  EXPECT_EQ(stats.bytes_allocated, 0u);
  EXPECT_FALSE(table_->has_pending_deletes());
  ExpectConsistent();
}

TEST_F(ObjectTableTest, EvictsLeastRecentlyUsedButNeverPinnedOrReferenced) {
  Init(1 << 20, 1024);  // 16 objects of 64 KiB fill the arena
  ClientRegionHeader* client = AddClient(1);
  Put(1, IdOf(0), 64 << 10, kEntryPinned);
  for (int i = 1; i < 16; ++i) Put(1, IdOf(i), 64 << 10);
  auto held = table_->Get(1, IdOf(1));  // referenced: may not go
  ASSERT_TRUE(held.has_value());
  Put(1, IdOf(100), 64 << 10);
  EXPECT_TRUE(Contains(IdOf(0)));   // pinned
  EXPECT_TRUE(Contains(IdOf(1)));   // referenced
  EXPECT_FALSE(Contains(IdOf(2)));  // the least recently used of the others
  EXPECT_EQ(table_->Stats().evictions, 1u);
  EXPECT_EQ(table_->Stats().pinned_bytes, 64u << 10);
  ExpectConsistent();

  // With everything else referenced, only the pinned and referenced objects remain and the
  // error says what holds the room.
  for (int i = 3; i < 16; ++i) ASSERT_TRUE(table_->Get(1, IdOf(i)).has_value());
  ASSERT_TRUE(table_->Get(1, IdOf(100)).has_value());
  auto full = table_->Create(1, IdOf(200), 64 << 10, {}, 0);
  ASSERT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("960.0 KiB referenced"));
  EXPECT_THAT(full.status().message(), HasSubstr("64.0 KiB pinned"));
  (void)client;
  // Only a delete removes a pinned object.
  ASSERT_TRUE(table_->Delete(std::vector<ObjectId>{IdOf(0)}).ok());
  EXPECT_TRUE(table_->Create(1, IdOf(200), 64 << 10, {}, 0).ok());
  ExpectConsistent();
}

TEST_F(ObjectTableTest, RecentlyTouchedObjectsGetASecondChance) {
  Init(1 << 20, 1024);
  ClientRegionHeader* client = AddClient(1);
  for (int i = 0; i < 16; ++i) Put(1, IdOf(i), 64 << 10);
  uint64_t words[3];
  IdToWords(IdOf(0), words);
  // What a fast-path get does after reading the object.
  Touched(client, max_objects_)[ProbeHandle(table_->header(), words)].store(1);
  Put(1, IdOf(100), 64 << 10);
  EXPECT_TRUE(Contains(IdOf(0)));
  EXPECT_FALSE(Contains(IdOf(1)));
}

TEST_F(ObjectTableTest, HandlesAreReusedLowestFirstAndTheTableGrows) {
  Init(64 << 20, 1 << 16);
  AddClient(1);
  // Far more objects than the first table holds: it is rebuilt (twice as large) several times.
  for (int i = 0; i < 20000; ++i) Put(1, IdOf(i), 64);
  EXPECT_GT(table_->header()->table_slots.load(), ObjectTable::kMinTableSlots);
  EXPECT_GT(table_->header()->table_seq.load(), 0u);
  EXPECT_EQ(table_->header()->table_seq.load() % 2, 0u);
  ExpectConsistent();
  std::vector<ObjectId> odd;
  for (int i = 1; i < 20000; i += 2) odd.push_back(IdOf(i));
  ASSERT_TRUE(table_->Delete(odd).ok());
  for (int i = 0; i < 20000; ++i) ASSERT_EQ(Contains(IdOf(i)), i % 2 == 0) << i;
  // New objects take the freed handles, so the highest handle in use stays below 20000.
  for (int i = 0; i < 10000; ++i) Put(1, IdOf(100000 + i), 64);
  uint32_t highest = 0;
  for (int i = 0; i < 10000; ++i) {
    auto got = table_->Get(1, IdOf(100000 + i));
    ASSERT_TRUE(got.has_value());
    highest = std::max(highest, got->handle);
  }
  EXPECT_LT(highest, 20000u);
  ExpectConsistent();
}

TEST_F(ObjectTableTest, ListPagesThroughLiveObjectsOnly) {
  Init(64 << 20, 1 << 16);
  AddClient(1);
  for (int i = 0; i < 3000; ++i) Put(1, IdOf(i), 64, i % 100 == 0 ? uint32_t{kEntryPinned} : 0u);
  std::vector<ObjectId> some;
  for (int i = 0; i < 3000; i += 3) some.push_back(IdOf(i));
  ASSERT_TRUE(table_->Delete(some).ok());
  std::set<std::string> listed;
  uint64_t pinned = 0;
  uint32_t cursor = 0;
  int pages = 0;
  do {
    ListReply page = table_->List(cursor);
    ASSERT_LE(page.objects.size(), kListPageSize);
    for (const ObjectInfo& info : page.objects) {
      EXPECT_TRUE(listed.insert(info.id.ToHex()).second);
      pinned += info.pinned;
    }
    ASSERT_TRUE(page.next_cursor == 0 || page.next_cursor > cursor);
    cursor = page.next_cursor;
    ++pages;
  } while (cursor != 0);
  EXPECT_EQ(listed.size(), 2000u);
  EXPECT_EQ(pinned, 20u);  // multiples of 100 that are not multiples of 3 (of 30 pinned)
  EXPECT_EQ(pages, 2);
}

TEST_F(ObjectTableTest, MemoryFollowsTheObjectsInUseNotMaxObjects) {
  // The largest table a store allows; only the first handles and a small hash table get
  // touched by a few objects (anonymous memory is allocated on first touch, like a memfd).
  Init(64 << 20, ObjectTable::kMaxObjects);
  AddClient(1);
  for (int i = 0; i < 1000; ++i) Put(1, IdOf(i), 64);
  EXPECT_EQ(table_->List(0).objects.size(), 1000u);
  std::vector<unsigned char> resident((index_.size() + 4095) / 4096);
  ASSERT_EQ(::mincore(index_.data(), index_.size(), resident.data()), 0);
  uint64_t pages = 0;
  for (unsigned char r : resident) pages += r & 1;
  // 1000 entries (16 pages), a table of 4096 slots (4 pages) and the header.
  EXPECT_LT(pages * 4096, uint64_t{1} << 20) << pages << " pages of the index touched";
  ExpectConsistent();
}

TEST_F(ObjectTableTest, RandomOperationsKeepEveryInvariant) {
  Init(4 << 20, 256);
  AddClient(1);
  AddClient(2);
  std::mt19937_64 rng(7);
  for (int op = 0; op < 20000; ++op) {
    const ClientId client = 1 + rng() % 2;
    const ObjectId id = IdOf(static_cast<int>(rng() % 300));
    switch (rng() % 6) {
      case 0:
      case 1: {
        const uint64_t size = rng() % (256 << 10);
        (void)table_->Create(client, id, size, {}, rng() % 20 == 0 ? uint32_t{kEntryPinned} : 0u);
        break;
      }
      case 2:
        (void)table_->Seal(client, id);
        break;
      case 3:
        (void)table_->Abort(client, id);
        break;
      case 4:
        (void)table_->Delete(std::vector<ObjectId>{id});
        break;
      case 5:
        (void)table_->Get(client, id);
        break;
    }
    if (op % 1000 == 0) {
      Status status = table_->CheckInvariants();
      ASSERT_TRUE(status.ok()) << "after " << op << " operations: " << status.ToString();
    }
  }
  table_->RemoveClient(1);
  table_->RemoveClient(2);
  ExpectConsistent();
  EXPECT_EQ(table_->Stats().unsealed_objects, 0u);
  EXPECT_EQ(table_->Stats().pending_deletes, 0u);
}

}  // namespace
}  // namespace zerodet::store::internal

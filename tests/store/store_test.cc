// In-process tests of the store: the server runs on a thread of the test process.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "store_test_util.h"

namespace zerodet::store {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
using testing::CheckPattern;
using testing::FillPattern;
using testing::IdOf;
using testing::WaitFor;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { StartStore(8 << 20); }

  void StartStore(uint64_t capacity) {
    socket_ = dir_.File("store.sock");
    auto server = StoreServer::Create(testing::SmallStore(socket_, capacity));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    server_->Start();
    client_ = testing::MustConnect(socket_);
    ASSERT_NE(client_, nullptr);
  }

  // Creates and seals an object of `size` bytes filled with the pattern of `seed`.
  void Put(const ObjectId& id, uint64_t size, std::integral auto seed,
           std::string_view metadata = {}) {
    auto buffer = client_->Create(
        id, size, {reinterpret_cast<const uint8_t*>(metadata.data()), metadata.size()});
    ASSERT_TRUE(buffer.ok()) << buffer.status().ToString();
    FillPattern(buffer->data(), seed);
    ASSERT_TRUE(client_->Seal(std::move(*buffer)).ok());
  }

  StoreStats Stats() {
    auto stats = client_->Stats();
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
    return stats.ok() ? *stats : StoreStats{};
  }

  testing::TempDir dir_;
  std::string socket_;
  std::unique_ptr<StoreServer> server_;
  std::unique_ptr<StoreClient> client_;
};

TEST_F(StoreTest, CreateSealGetRoundTrip) {
  Put(IdOf(1), 100000, 1, "shape=3x224x224");
  auto view = client_->Get(IdOf(1));
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  EXPECT_EQ(view->data().size(), 100000u);
  EXPECT_TRUE(CheckPattern(view->data(), 1));
  EXPECT_EQ(std::string(view->metadata().begin(), view->metadata().end()), "shape=3x224x224");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(view->data().data()) % 64, 0u);
  EXPECT_TRUE(client_->Contains(IdOf(1)));
  EXPECT_FALSE(client_->Contains(IdOf(2)));
}

TEST_F(StoreTest, SocketGetMatchesFastGet) {
  Put(IdOf(1), 5000, 9, "m");
  auto fast = client_->Get(IdOf(1));
  auto slow = client_->Get(IdOf(1), {.timeout = 0ms, .fast_path = false});
  ASSERT_TRUE(fast.ok() && slow.ok()) << slow.status().ToString();
  EXPECT_EQ(fast->data().data(), slow->data().data());
  EXPECT_EQ(slow->metadata().size(), 1u);
  EXPECT_EQ(Stats().socket_gets, 1u);
  auto missing = client_->Get(IdOf(2), {.timeout = 0ms, .fast_path = false});
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

TEST_F(StoreTest, UnsealedObjectsAreInvisibleAndGetWaitsForSeal) {
  auto buffer = client_->Create(IdOf(1), 64);
  ASSERT_TRUE(buffer.ok());
  EXPECT_EQ(client_->Get(IdOf(1)).status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(client_->Contains(IdOf(1)));

  auto reader = testing::MustConnect(socket_);
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    auto view = reader->Get(IdOf(1), {.timeout = 10s});
    EXPECT_TRUE(view.ok()) << view.status().ToString();
    if (view.ok()) {
      EXPECT_TRUE(CheckPattern(view->data(), 5));
    }
    got = true;
  });
  FillPattern(buffer->data(), 5);
  ASSERT_TRUE(client_->Seal(std::move(*buffer)).ok());
  waiter.join();
  EXPECT_TRUE(got);
}

TEST_F(StoreTest, GetTimesOut) {
  auto view = client_->Get(IdOf(1), {.timeout = 50ms});
  EXPECT_EQ(view.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(view.status().message(), HasSubstr(IdOf(1).ToHex()));
  // Batch form: missing objects give empty views, present ones valid views.
  Put(IdOf(2), 10, 2);
  std::vector<ObjectId> ids = {IdOf(1), IdOf(2)};
  auto views = client_->Get(ids, {.timeout = 20ms});
  ASSERT_TRUE(views.ok());
  EXPECT_FALSE((*views)[0].valid());
  EXPECT_TRUE((*views)[1].valid());
}

TEST_F(StoreTest, DuplicateIdsAreRejected) {
  Put(IdOf(1), 10, 1);
  auto again = client_->Create(IdOf(1), 10);
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  auto pending = client_->Create(IdOf(2), 10);
  ASSERT_TRUE(pending.ok());
  EXPECT_THAT(client_->Create(IdOf(2), 10).status().message(), HasSubstr("being created"));
}

TEST_F(StoreTest, ZeroSizeObjects) {
  Put(IdOf(1), 0, 1);
  Put(IdOf(2), 0, 1, "only metadata");
  auto a = client_->Get(IdOf(1));
  auto b = client_->Get(IdOf(2));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->data().size(), 0u);
  EXPECT_EQ(b->metadata().size(), 13u);
  EXPECT_EQ(Stats().sealed_objects, 2u);
}

TEST_F(StoreTest, OversizedRequestsNameTheSizes) {
  auto huge = client_->Create(IdOf(1), uint64_t{1} << 40);
  EXPECT_EQ(huge.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(huge.status().message(), HasSubstr("1024.00 GiB"));
  EXPECT_THAT(huge.status().message(), HasSubstr("8.00 MiB"));
  std::vector<uint8_t> metadata(64 * 1024);
  EXPECT_EQ(client_->Create(IdOf(1), 1, metadata).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, EvictsLeastRecentlyUsedUnreferencedObjects) {
  // 8 MiB arena, 1 MiB objects: the ninth create must evict the oldest.
  for (int i = 0; i < 7; ++i) Put(IdOf(i), 1 << 20, i);
  Put(IdOf(100), 1 << 20, 100);
  EXPECT_EQ(Stats().evictions, 0u);
  Put(IdOf(101), 1 << 20, 101);
  EXPECT_EQ(Stats().evictions, 1u);
  EXPECT_FALSE(client_->Contains(IdOf(0)));
  EXPECT_TRUE(client_->Contains(IdOf(101)));
  EXPECT_TRUE(client_->Contains(IdOf(1)));
}

TEST_F(StoreTest, ReferencedObjectsAreNeverEvicted) {
  for (int i = 0; i < 8; ++i) Put(IdOf(i), 1 << 20, i);
  std::vector<ObjectView> held;
  for (size_t i = 0; i < 8; ++i) held.push_back(std::move(*client_->Get(IdOf(i))));
  auto full = client_->Create(IdOf(100), 1 << 20);
  ASSERT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("store full"));
  EXPECT_THAT(full.status().message(), HasSubstr("8.00 MiB referenced"));
  for (size_t i = 0; i < 8; ++i) EXPECT_TRUE(CheckPattern(held[i].data(), i));
  // Releasing one view makes exactly that object evictable.
  held[3].Release();
  Put(IdOf(100), 1 << 20, 100);
  EXPECT_FALSE(client_->Contains(IdOf(3)));
  for (size_t i : {0u, 1u, 2u, 4u, 5u, 6u, 7u}) EXPECT_TRUE(CheckPattern(held[i].data(), i));
}

TEST_F(StoreTest, RecentlyReadObjectsGetASecondChance) {
  for (int i = 0; i < 8; ++i) Put(IdOf(i), 1 << 20, i);
  { auto touch = client_->Get(IdOf(0)); }  // read, then released: object 0 is "recent"
  Put(IdOf(100), 1 << 20, 100);
  EXPECT_TRUE(client_->Contains(IdOf(0)));
  EXPECT_FALSE(client_->Contains(IdOf(1)));
}

TEST_F(StoreTest, DeleteIsDeferredWhileReferenced) {
  Put(IdOf(1), 4096, 1);
  auto view = client_->Get(IdOf(1));
  ASSERT_TRUE(view.ok());
  ASSERT_TRUE(client_->Delete(IdOf(1)).ok());
  EXPECT_FALSE(client_->Contains(IdOf(1)));
  EXPECT_EQ(client_->Get(IdOf(1)).status().code(), StatusCode::kNotFound);
  StoreStats stats = Stats();
  EXPECT_EQ(stats.pending_deletes, 1u);
  EXPECT_EQ(stats.sealed_objects, 0u);
  EXPECT_TRUE(CheckPattern(view->data(), 1));  // still readable, unchanged
  auto listed = client_->List();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_TRUE((*listed)[0].pending_delete);
  view->Release();
  // The store notices the release on its next sweep (no message is sent).
  EXPECT_TRUE(WaitFor([&] { return Stats().objects == 0; }));
  stats = Stats();
  EXPECT_EQ(stats.objects, 0u);
  EXPECT_EQ(stats.bytes_allocated, 0u);
  EXPECT_EQ(client_->Delete(IdOf(1)).code(), StatusCode::kNotFound);
}

TEST_F(StoreTest, AbortAndDroppedBuffersFreeMemory) {
  auto a = client_->Create(IdOf(1), 1000);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(client_->Abort(std::move(*a)).ok());
  { auto dropped = client_->Create(IdOf(2), 1000); }
  StoreStats stats = Stats();
  EXPECT_EQ(stats.objects, 0u);
  EXPECT_EQ(stats.bytes_allocated, 0u);
  // The ids can be used again.
  Put(IdOf(1), 10, 1);
  Put(IdOf(2), 10, 2);
  // Deleting an unsealed object is refused: its creator owns it.
  auto c = client_->Create(IdOf(3), 10);
  EXPECT_EQ(client_->Delete(IdOf(3)).code(), StatusCode::kFailedPrecondition);
}

TEST_F(StoreTest, OnlyTheCreatorSealsOrAborts) {
  auto other = testing::MustConnect(socket_);
  auto buffer = client_->Create(IdOf(1), 10);
  ASSERT_TRUE(buffer.ok());
  // A buffer belongs to the client that created it.
  EXPECT_EQ(other->Seal(std::move(*buffer)).code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, ListAndStatsAccountForEverything) {
  for (uint64_t i = 0; i < 5; ++i) Put(IdOf(i), 1000 * (i + 1), i);
  auto unsealed = client_->Create(IdOf(99), 10);
  auto listed = client_->List();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 6u);
  StoreStats stats = Stats();
  EXPECT_EQ(stats.objects, 6u);
  EXPECT_EQ(stats.sealed_objects, 5u);
  EXPECT_EQ(stats.unsealed_objects, 1u);
  EXPECT_EQ(stats.clients, 1u);
  EXPECT_EQ(stats.creates, 6u);
  EXPECT_GT(stats.bytes_allocated, 15000u);
  std::vector<ObjectId> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(IdOf(i));
  ASSERT_TRUE(client_->Delete(ids).ok());
  ASSERT_TRUE(client_->Abort(std::move(*unsealed)).ok());
  stats = Stats();
  EXPECT_EQ(stats.objects, 0u);
  EXPECT_EQ(stats.bytes_allocated, 0u);
  EXPECT_EQ(stats.largest_free_block, stats.capacity);
}

TEST_F(StoreTest, ServerStatsAreReadableFromAnyThread) {
  // What `zerodet store --metrics` reads at each scrape, from the exposer's thread, while the
  // loop serves clients (the ThreadSanitizer job checks the copy the loop publishes).
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) {
      const StoreStats stats = server_->Stats();
      EXPECT_LE(stats.objects, 20u);
      EXPECT_EQ(stats.capacity, uint64_t{8} << 20);
    }
  });
  for (int i = 0; i < 20; ++i) Put(IdOf(i), 1000, i);
  done.store(true);
  scraper.join();
  // The loop publishes at the end of the pass that answered the last request.
  const StoreStats by_client = Stats();
  ASSERT_TRUE(WaitFor([&] { return server_->Stats().creates == 20; }));
  const StoreStats stats = server_->Stats();
  EXPECT_EQ(stats.objects, 20u);
  EXPECT_EQ(stats.sealed_objects, 20u);
  EXPECT_EQ(stats.clients, 1u);
  EXPECT_EQ(stats.bytes_allocated, by_client.bytes_allocated);
  EXPECT_GT(stats.bytes_allocated, 20000u);

  // A store that has not run yet reports its empty arena.
  auto idle = StoreServer::Create(testing::SmallStore(dir_.File("idle.sock"), 4 << 20));
  ASSERT_TRUE(idle.ok()) << idle.status().ToString();
  EXPECT_EQ((*idle)->Stats().capacity, uint64_t{4} << 20);
  EXPECT_EQ((*idle)->Stats().objects, 0u);
  EXPECT_EQ((*idle)->Stats().largest_free_block, uint64_t{4} << 20);
}

// Speaks the protocol directly, so the connection can end while it holds an unsealed object
// and a reference (a StoreClient keeps its connection open while any view or buffer lives).
TEST_F(StoreTest, DisconnectAbortsUnsealedObjectsAndDropsReferences) {
  Put(IdOf(1), 1000, 1);
  testing::RawConnection raw(socket_);
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.Transact(testing::HelloRequest()).ok());
  internal::Request create;
  create.type = internal::MessageType::kCreate;
  create.id = IdOf(2);
  create.data_size = 1000;
  ASSERT_TRUE(raw.Transact(create).ok());
  internal::Request get;
  get.type = internal::MessageType::kGet;
  get.id = IdOf(1);
  ASSERT_TRUE(raw.Transact(get).ok());  // the store now holds a reference for this connection
  ASSERT_TRUE(client_->Delete(IdOf(1)).ok());
  StoreStats stats = Stats();
  EXPECT_EQ(stats.pending_deletes, 1u);
  EXPECT_EQ(stats.unsealed_objects, 1u);
  EXPECT_EQ(stats.clients, 2u);
  raw.Close();
  EXPECT_TRUE(WaitFor([&] { return Stats().objects == 0; }));
  stats = Stats();
  EXPECT_EQ(stats.objects, 0u);
  EXPECT_EQ(stats.bytes_allocated, 0u);
  EXPECT_EQ(stats.clients, 1u);
}

TEST_F(StoreTest, ViewsOutliveTheirClient) {
  Put(IdOf(1), 1000, 1);
  auto other = testing::MustConnect(socket_);
  ObjectView view = std::move(*other->Get(IdOf(1)));
  other.reset();
  EXPECT_TRUE(CheckPattern(view.data(), 1));
  ASSERT_TRUE(client_->Delete(IdOf(1)).ok());
  EXPECT_EQ(Stats().pending_deletes, 1u);  // the view still pins it
  EXPECT_TRUE(CheckPattern(view.data(), 1));
}

TEST_F(StoreTest, StoreRestartGivesUnavailableThenReconnects) {
  Put(IdOf(1), 1000, 1);
  auto view = client_->Get(IdOf(1));
  ASSERT_TRUE(view.ok());
  server_.reset();
  EXPECT_EQ(client_->Get(IdOf(1)).status().code(), StatusCode::kUnavailable);
  auto create = client_->Create(IdOf(2), 10);
  EXPECT_EQ(create.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(create.status().message(), HasSubstr("connect again"));
  EXPECT_TRUE(CheckPattern(view->data(), 1));  // mappings outlive the store
  EXPECT_EQ(StoreClient::Connect(socket_).status().code(), StatusCode::kUnavailable);

  StartStore(8 << 20);
  EXPECT_FALSE(client_->Contains(IdOf(1)));  // a fresh store
  Put(IdOf(1), 10, 2);
  EXPECT_TRUE(client_->Contains(IdOf(1)));
}

TEST_F(StoreTest, SecondStoreOnTheSameSocketIsRefused) {
  auto second = StoreServer::Create(testing::SmallStore(socket_));
  EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists);
  EXPECT_TRUE(client_->Stats().ok());
}

TEST_F(StoreTest, SocketIsPrivateToItsUser) {
  struct stat st {};
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(StoreTest, MalformedFramesDisconnectOnlyTheSender) {
  testing::RawConnection garbage_sender(socket_);
  ASSERT_TRUE(garbage_sender.connected());
  const uint8_t garbage[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
  ASSERT_EQ(::send(garbage_sender.fd(), garbage, sizeof(garbage), 0),
            static_cast<ssize_t>(sizeof(garbage)));
  uint8_t reply[4096];
  EXPECT_GT(::recv(garbage_sender.fd(), reply, sizeof(reply), 0), 0);  // an error reply
  EXPECT_EQ(::recv(garbage_sender.fd(), reply, sizeof(reply), 0), 0);  // then the store hangs up

  // A request before the hello is refused too.
  testing::RawConnection impatient(socket_);
  ASSERT_TRUE(impatient.connected());
  internal::Request stats;
  stats.type = internal::MessageType::kStats;
  EXPECT_EQ(impatient.Transact(stats).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(::recv(impatient.fd(), reply, sizeof(reply), 0), 0);

  Put(IdOf(1), 10, 1);
  EXPECT_TRUE(client_->Contains(IdOf(1)));
}

// Issue 8: a store's shutdown removed whatever was at its socket path.
TEST_F(StoreTest, ShutdownLeavesASocketThatReplacedItsOwn) {
  ASSERT_EQ(::unlink(socket_.c_str()), 0);  // someone removed the first store's socket...
  auto second = StoreServer::Create(testing::SmallStore(socket_));  // ...and started another
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  (*second)->Start();
  client_.reset();
  server_.reset();  // the first store shuts down
  EXPECT_TRUE(std::filesystem::exists(socket_));
  EXPECT_TRUE(StoreClient::Connect(socket_).ok());
}

TEST_F(StoreTest, ShutdownLeavesAFileThatReplacedItsSocket) {
  ASSERT_EQ(::unlink(socket_.c_str()), 0);
  { std::ofstream(socket_) << "not a socket"; }
  client_.reset();
  server_.reset();
  EXPECT_EQ(testing::ReadText(socket_), "not a socket");
}

// Issue 11: a GET with a timeout of 3e9 ms made the loop's epoll timeout negative (infinite),
// stalling every other deadline; one of INT64_MAX ms expired at once.
TEST_F(StoreTest, HugeGetTimeoutsNeitherStallOtherDeadlinesNorExpire) {
  auto patient = testing::MustConnect(socket_);
  auto forever = testing::MustConnect(socket_);
  auto hurried = testing::MustConnect(socket_);
  std::atomic<bool> patient_done{false}, forever_done{false}, hurried_done{false};
  Status patient_status, forever_status, hurried_status;
  std::thread patient_thread([&] {
    patient_status =
        patient->Get(IdOf(1), {.timeout = std::chrono::milliseconds(3'000'000'000)}).status();
    patient_done = true;
  });
  std::thread forever_thread([&] {
    forever_status =
        forever->Get(IdOf(1), {.timeout = std::chrono::milliseconds(INT64_MAX)}).status();
    forever_done = true;
  });
  ASSERT_TRUE(WaitFor([&] { return Stats().waiting_gets == 2; }));
  std::thread hurried_thread([&] {
    hurried_status = hurried->Get(IdOf(2), {.timeout = 200ms}).status();
    hurried_done = true;
  });
  EXPECT_TRUE(WaitFor([&] { return hurried_done.load(); }))
      << "a 200 ms get did not expire while a 3e9 ms get was waiting";
  EXPECT_EQ(hurried_status.code(), StatusCode::kDeadlineExceeded);
  // The store has processed a deadline after both huge ones were registered: had either
  // expired, it would have been answered by now.
  EXPECT_FALSE(forever_done.load()) << forever_status.ToString();
  EXPECT_FALSE(patient_done.load()) << patient_status.ToString();
  Put(IdOf(1), 10, 1);
  Put(IdOf(2), 10, 2);  // releases the hurried thread if the fix is missing
  patient_thread.join();
  forever_thread.join();
  hurried_thread.join();
  EXPECT_TRUE(patient_status.ok()) << patient_status.ToString();
  EXPECT_TRUE(forever_status.ok()) << forever_status.ToString();
}

TEST_F(StoreTest, BatchGetWithTheLargestTimeoutWaits) {
  std::thread producer([&] {
    auto writer = testing::MustConnect(socket_);
    WaitFor([&] { return Stats().waiting_gets == 1; });
    auto buffer = writer->Create(IdOf(1), 10);
    ASSERT_TRUE(buffer.ok());
    ASSERT_TRUE(writer->Seal(std::move(*buffer)).ok());
  });
  auto waiting = testing::MustConnect(socket_);
  std::vector<ObjectId> ids = {IdOf(1)};
  auto views = waiting->Get(ids, {.timeout = std::chrono::milliseconds::max()});
  producer.join();
  ASSERT_TRUE(views.ok()) << views.status().ToString();
  EXPECT_TRUE((*views)[0].valid());
}

// Issue 10: connections that never said hello were neither counted nor timed out.
TEST(StoreLimitsTest, IdleConnectionsCountTowardMaxClientsAndAreDropped) {
  testing::TempDir dir;
  StoreOptions options = testing::SmallStore(dir.File("store.sock"));
  options.max_clients = 4;
  options.hello_timeout = 300ms;
  auto server = StoreServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  (*server)->Start();
  std::vector<std::unique_ptr<testing::RawConnection>> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(std::make_unique<testing::RawConnection>(options.socket_path));
    ASSERT_TRUE(idle.back()->connected());
  }
  auto refused = StoreClient::Connect(options.socket_path);
  ASSERT_EQ(refused.status().code(), StatusCode::kResourceExhausted) << refused.status().ToString();
  EXPECT_THAT(refused.status().message(), HasSubstr("maximum of 4 connections"));
  // The store hangs up on each idle connection once its hello deadline has passed.
  for (auto& connection : idle) {
    uint8_t byte[4096];
    ssize_t n = 0;
    do {
      n = ::recv(connection->fd(), byte, sizeof(byte), 0);  // a timeout reply, then EOF
    } while (n > 0);
    EXPECT_EQ(n, 0);
  }
  auto accepted = StoreClient::Connect(options.socket_path);
  ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
  auto stats = (*accepted)->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->hello_timeouts, 4u);
  EXPECT_EQ(stats->connections, 1u);
}

// Issue 13: memory and LIST cost followed max_objects, not the objects in use.
TEST(StoreLimitsTest, MemoryFollowsUseNotMaxObjects) {
  auto rss_anon_kib = [] {
    std::istringstream status(testing::ReadText("/proc/self/status"));
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("RssAnon:", 0) == 0) return std::stoull(line.substr(8));
    }
    return 0ull;
  };
  // Resident kilobytes of this process's mapping of the store's index.
  auto index_rss_kib = [] {
    std::istringstream smaps(testing::ReadText("/proc/self/smaps"));
    bool in_index = false;
    for (std::string line; std::getline(smaps, line);) {
      if (line.find(" /memfd:zerodet-store-index") != std::string::npos) in_index = true;
      if (in_index && line.rfind("Rss:", 0) == 0) return std::stoull(line.substr(4));
    }
    return 0ull;
  };
  testing::TempDir dir;
  StoreOptions options = testing::SmallStore(dir.File("store.sock"));
  options.max_objects = 1 << 22;
  const auto before = rss_anon_kib();
  auto server = StoreServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  (*server)->Start();
  EXPECT_LT(rss_anon_kib() - before, 64u << 10) << "KiB of heap for an idle store";
  auto client = testing::MustConnect(options.socket_path);
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < 1000; ++i) {
    auto buffer = client->Create(IdOf(i), 64);
    ASSERT_TRUE(buffer.ok()) << buffer.status().ToString();
    ASSERT_TRUE(client->Seal(std::move(*buffer)).ok());
  }
  auto listed = client->List();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 1000u);
  EXPECT_LT(index_rss_kib(), 16u << 10) << "KiB of the index touched for 1000 objects";
}

TEST_F(StoreTest, ConcurrentReadersAndWriterThreads) {
  // Threads of one process share a client: fast gets race creates, deletes and evictions.
  constexpr int kObjects = 64;
  std::atomic<bool> stop{false};
  std::atomic<int> verified{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      auto client = testing::MustConnect(socket_);
      uint32_t x = static_cast<uint32_t>(t) + 1;
      while (!stop.load()) {
        x = x * 1664525 + 1013904223;
        const int i = static_cast<int>(x % kObjects);
        auto view = (t == 0 ? client_ : client)->Get(IdOf(i));
        if (!view.ok()) continue;
        uint64_t seed = 0;
        std::memcpy(&seed, view->metadata().data(), sizeof(seed));
        EXPECT_TRUE(CheckPattern(view->data(), seed)) << "torn object " << i;
        ++verified;
      }
    });
  }
  auto writer = testing::MustConnect(socket_);
  uint64_t seed = 1;
  for (int round = 0; round < 600; ++round) {
    const int i = round % kObjects;
    (void)writer->Delete(IdOf(i));
    ++seed;
    auto buffer = writer->Create(IdOf(i), 200000 + 1000 * static_cast<uint64_t>(round % 7),
                                 {reinterpret_cast<const uint8_t*>(&seed), sizeof(seed)});
    if (!buffer.ok()) continue;  // the object was still pending deletion
    FillPattern(buffer->data(), seed);
    ASSERT_TRUE(writer->Seal(std::move(*buffer)).ok());
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_GT(verified.load(), 0);
  EXPECT_GT(Stats().evictions, 0u);
}

}  // namespace
}  // namespace zerodet::store

// Multi-process tests: the store runs in its own forked process, clients in others; clients are
// killed with SIGKILL at awkward moments.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>

#include "store_test_util.h"

namespace zerodet::store {
namespace {

using namespace std::chrono_literals;
using testing::CheckPattern;
using testing::FillPattern;
using testing::ForkChild;
using testing::IdOf;
using testing::Pipe;
using testing::StoreProcess;
using testing::WaitChild;
using testing::WaitFor;

// Polls the store's stats until `done` holds (WaitFor's limit); returns the last stats.
template <typename Pred>
StoreStats WaitForStats(StoreClient& client, Pred done) {
  StoreStats stats;
  WaitFor([&] {
    auto result = client.Stats();
    if (result.ok()) stats = *result;
    return result.ok() && done(stats);
  });
  return stats;
}

// One worker of the stress test: random create/seal/abort/get/release/delete over a small set
// of ids, verifying every object it reads against the checksum seed in its metadata. Returns the
// number of violations (0 = pass).
// With `progress`, sends one byte after the first 200 operations (so a test can kill it mid-run).
int StressWorker(const std::string& socket, int worker, int operations, Pipe* progress = nullptr) {
  auto connected = StoreClient::Connect(socket);
  if (!connected.ok()) return 100;
  StoreClient& client = **connected;
  std::mt19937_64 rng(static_cast<uint64_t>(worker) * 7919 + 1);
  std::vector<std::pair<ObjectView, uint64_t>> held;  // views kept across other operations
  uint64_t counter = 0;
  int violations = 0;
  auto verify = [&](const ObjectView& view) -> uint64_t {
    uint64_t seed = 0;
    if (view.metadata().size() != sizeof(seed)) return ++violations, 0;
    std::memcpy(&seed, view.metadata().data(), sizeof(seed));
    if (!CheckPattern(view.data(), seed)) ++violations;
    return seed;
  };
  for (int op = 0; op < operations; ++op) {
    if (progress != nullptr && op == 200) progress->Send(uint8_t{1});
    const ObjectId id = IdOf(static_cast<int>(rng() % 48));
    const int kind = static_cast<int>(rng() % 100);
    if (kind < 35) {
      const uint64_t seed = (uint64_t(::getpid()) << 32) | ++counter;
      const uint64_t size = rng() % 8 == 0 ? 0 : rng() % (512 * 1024);
      auto buffer =
          client.Create(id, size, {reinterpret_cast<const uint8_t*>(&seed), sizeof(seed)});
      if (!buffer.ok()) {
        const auto code = buffer.status().code();
        if (code != StatusCode::kAlreadyExists && code != StatusCode::kResourceExhausted) {
          ++violations;
        }
        continue;
      }
      FillPattern(buffer->data(), seed);
      Status done =
          rng() % 10 == 0 ? client.Abort(std::move(*buffer)) : client.Seal(std::move(*buffer));
      if (!done.ok()) ++violations;
    } else if (kind < 75) {
      auto view = client.Get(id);
      if (!view.ok()) {
        if (view.status().code() != StatusCode::kNotFound) ++violations;
        continue;
      }
      const uint64_t seed = verify(*view);
      if (held.size() < 6) held.emplace_back(std::move(*view), seed);
    } else if (kind < 90) {
      if (!held.empty()) {
        const size_t i = rng() % held.size();
        // Still intact although others may have deleted it or filled the store meanwhile.
        uint64_t seed = 0;
        std::memcpy(&seed, held[i].first.metadata().data(), sizeof(seed));
        if (seed != held[i].second || !CheckPattern(held[i].first.data(), seed)) ++violations;
        held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
      }
    } else {
      Status deleted = client.Delete(id);
      if (!deleted.ok() && deleted.code() != StatusCode::kNotFound &&
          deleted.code() != StatusCode::kFailedPrecondition) {
        ++violations;
      }
    }
  }
  for (auto& [view, seed] : held) {
    if (!CheckPattern(view.data(), seed)) ++violations;
  }
  return std::min(violations, 99);
}

TEST(StoreMultiProcessTest, RandomOperationsFromManyProcesses) {
  testing::TempDir dir;
  const std::string socket = dir.File("store.sock");
  StoreOptions options = testing::SmallStore(socket, 8 << 20);  // small: forces evictions
  StoreProcess store(options);
  constexpr int kWorkers = 4;
  std::vector<pid_t> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.push_back(ForkChild([&, w] { return StressWorker(socket, w, 3000); }));
  }
  // A fifth worker is killed mid-run (once it has done 200 operations); the others must not
  // notice.
  Pipe progress;
  const pid_t victim = ForkChild([&] { return StressWorker(socket, 99, 1000000, &progress); });
  progress.CloseWrite();
  uint8_t started = 0;
  EXPECT_TRUE(progress.Receive(started));
  ::kill(victim, SIGKILL);
  EXPECT_EQ(WaitChild(victim), 128 + SIGKILL);
  for (pid_t pid : workers) EXPECT_EQ(WaitChild(pid), 0) << "violations in worker " << pid;

  auto client = testing::MustConnect(socket);
  ASSERT_NE(client, nullptr);
  StoreStats stats = WaitForStats(*client, [](const StoreStats& s) {
    return s.clients == 1 && s.unsealed_objects == 0 && s.pending_deletes == 0;
  });
  EXPECT_EQ(stats.clients, 1u);
  EXPECT_EQ(stats.unsealed_objects, 0u);
  EXPECT_EQ(stats.pending_deletes, 0u);
  EXPECT_GT(stats.creates, 100u);
  EXPECT_GT(stats.evictions, 0u);
  // Accounting returns to zero once everything is deleted.
  auto listed = client->List();
  ASSERT_TRUE(listed.ok());
  std::vector<ObjectId> ids;
  for (const auto& info : *listed) ids.push_back(info.id);
  if (!ids.empty()) {
    ASSERT_TRUE(client->Delete(ids).ok());
  }
  stats = WaitForStats(*client, [](const StoreStats& s) { return s.objects == 0; });
  EXPECT_EQ(stats.objects, 0u);
  EXPECT_EQ(stats.bytes_allocated, 0u);
  EXPECT_EQ(stats.largest_free_block, stats.capacity);
}

TEST(StoreMultiProcessTest, KilledClientLosesReferencesAndUnsealedObjects) {
  testing::TempDir dir;
  const std::string socket = dir.File("store.sock");
  StoreProcess store(testing::SmallStore(socket, 8 << 20));
  auto client = testing::MustConnect(socket);
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < 8; ++i) {
    auto buffer = client->Create(IdOf(i), (1 << 20) - 4096);  // leaves room for small objects
    ASSERT_TRUE(buffer.ok());
    FillPattern(buffer->data(), i);
    ASSERT_TRUE(client->Seal(std::move(*buffer)).ok());
  }
  Pipe ready;
  // The victim references every object and sits between create and seal of another.
  const pid_t victim = ForkChild([&] {
    auto c = StoreClient::Connect(socket);
    if (!c.ok()) return 1;
    std::vector<ObjectView> views;
    for (int i = 0; i < 8; ++i) {
      auto view = (*c)->Get(IdOf(i));
      if (!view.ok()) return 2;
      views.push_back(std::move(*view));
    }
    if (!(*c)->Delete(IdOf(0)).ok()) return 5;
    auto unsealed = (*c)->Create(IdOf(100), 0);
    if (!unsealed.ok()) return 3;
    if (!ready.Send(uint8_t{1})) return 4;
    ::pause();
    return 0;
  });
  ready.CloseWrite();
  uint8_t byte = 0;
  if (!ready.Receive(byte)) FAIL() << "victim failed with exit code " << WaitChild(victim);
  // Everything is pinned: a create that needs room fails with "store full".
  auto full = client->Create(IdOf(200), 1 << 20);
  EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  StoreStats stats = *client->Stats();
  EXPECT_EQ(stats.pending_deletes, 1u);
  EXPECT_EQ(stats.unsealed_objects, 1u);

  ::kill(victim, SIGKILL);
  EXPECT_EQ(WaitChild(victim), 128 + SIGKILL);
  stats = WaitForStats(*client, [](const StoreStats& s) {
    return s.clients == 1 && s.unsealed_objects == 0 && s.pending_deletes == 0;
  });
  EXPECT_EQ(stats.unsealed_objects, 0u);
  EXPECT_EQ(stats.pending_deletes, 0u);
  EXPECT_EQ(stats.objects, 7u);
  // The references are gone, so the store can evict again.
  auto buffer = client->Create(IdOf(200), 1 << 20);
  EXPECT_TRUE(buffer.ok()) << buffer.status().ToString();
  for (int i = 1; i < 8; ++i) {
    if (auto view = client->Get(IdOf(i)); view.ok()) {
      EXPECT_TRUE(CheckPattern(view->data(), i));
    }
  }
}

}  // namespace
}  // namespace zerodet::store

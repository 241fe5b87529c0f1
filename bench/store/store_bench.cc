// Hot paths of the object store, one process: the store runs on a thread, the benchmark is its
// client. Get must cost the same for every object size (the view points into the arena; nothing
// is copied); the socket get shows what one request/reply round trip adds; create+seal is the
// producer's per-object cost. The TLSF allocator is measured alone under a mixed-size workload.
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "zerodet/store/client.h"
#include "zerodet/store/server.h"
#include "zerodet/store/tlsf_allocator.h"

namespace zerodet::store {
namespace {

using namespace std::chrono_literals;

// One store and client for the whole program (starting a store per benchmark would dominate).
struct Fixture {
  Fixture() {
    char dir[] = "/tmp/zerodet-store-bench-XXXXXX";
    directory = ::mkdtemp(dir);
    StoreOptions options;
    options.socket_path = directory + "/store.sock";
    options.capacity = uint64_t{256} << 20;
    auto created = StoreServer::Create(options);
    if (!created.ok()) return;
    server = std::move(*created);
    server->Start();
    auto connected = StoreClient::Connect(options.socket_path);
    if (connected.ok()) client = std::move(*connected);
  }
  ~Fixture() {
    client.reset();
    server.reset();
    std::filesystem::remove_all(directory);
  }
  std::string directory;
  std::unique_ptr<StoreServer> server;
  std::unique_ptr<StoreClient> client;
};

Fixture& Store() {
  static Fixture fixture;
  return fixture;
}

// Creates and seals one object of `size` bytes; returns its id.
ObjectId PutObject(StoreClient& client, uint64_t size) {
  const ObjectId id = ObjectId::FromName("bench-" + std::to_string(size));
  if (client.Contains(id)) return id;
  auto buffer = client.Create(id, size);
  if (buffer.ok()) {
    std::fill(buffer->data().begin(), buffer->data().end(), uint8_t{7});
    (void)client.Seal(std::move(*buffer));
  }
  return id;
}

void BM_Get(benchmark::State& state, bool fast_path) {
  StoreClient* client = Store().client.get();
  if (client == nullptr) return state.SkipWithError("store did not start");
  const ObjectId id = PutObject(*client, static_cast<uint64_t>(state.range(0)));
  for (auto _ : state) {
    auto view = client->Get(id, {.timeout = 0ms, .fast_path = fast_path});
    if (!view.ok()) return state.SkipWithError(view.status().ToString().c_str());
    benchmark::DoNotOptimize(view->data().data());
  }
}
BENCHMARK_CAPTURE(BM_Get, fast, true)->RangeMultiplier(64)->Range(64, 64 << 20);
BENCHMARK_CAPTURE(BM_Get, socket, false)->RangeMultiplier(64)->Range(64, 64 << 20);

void BM_CreateSealDelete(benchmark::State& state) {
  StoreClient* client = Store().client.get();
  if (client == nullptr) return state.SkipWithError("store did not start");
  const ObjectId id = ObjectId::FromName("bench-create");
  for (auto _ : state) {
    auto buffer = client->Create(id, static_cast<uint64_t>(state.range(0)));
    if (!buffer.ok()) return state.SkipWithError(buffer.status().ToString().c_str());
    (void)client->Seal(std::move(*buffer));
    (void)client->Delete(id);
  }
}
BENCHMARK(BM_CreateSealDelete)->Arg(4096)->Arg(4 << 20);

// What a producer really pays: the object's bytes are written before the seal.
void BM_CreateFillSealDelete(benchmark::State& state) {
  StoreClient* client = Store().client.get();
  if (client == nullptr) return state.SkipWithError("store did not start");
  const ObjectId id = ObjectId::FromName("bench-create-fill");
  for (auto _ : state) {
    auto buffer = client->Create(id, static_cast<uint64_t>(state.range(0)));
    if (!buffer.ok()) return state.SkipWithError(buffer.status().ToString().c_str());
    std::fill(buffer->data().begin(), buffer->data().end(), uint8_t{1});
    (void)client->Seal(std::move(*buffer));
    (void)client->Delete(id);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_CreateFillSealDelete)->Arg(4096)->Arg(4 << 20);

void BM_TlsfAllocateFree(benchmark::State& state) {
  TlsfAllocator allocator(uint64_t{1} << 30);
  std::mt19937_64 rng(1);
  std::vector<std::optional<uint64_t>> live;
  // Mixed sizes, 1 KiB .. 8 MiB, about half the arena in use.
  for (int i = 0; i < 200; ++i) live.push_back(allocator.Allocate(1024 + rng() % (8 << 20)));
  size_t next = 0;
  for (auto _ : state) {
    const size_t victim = next++ % live.size();
    if (live[victim] && !allocator.Free(*live[victim])) {
      return state.SkipWithError("allocator lost a block");
    }
    live[victim] = allocator.Allocate(1024 + rng() % (8 << 20));
    if (!live[victim]) live[victim] = allocator.Allocate(1024);
    benchmark::DoNotOptimize(live[victim]);
  }
}
BENCHMARK(BM_TlsfAllocateFree);

}  // namespace
}  // namespace zerodet::store

BENCHMARK_MAIN();

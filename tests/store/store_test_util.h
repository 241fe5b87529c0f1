// Helpers shared by the store test suites: a temporary directory and an in-process store.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "zerodet/store/client.h"
#include "zerodet/store/server.h"

namespace zerodet::store::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "zerodet-store-XXXXXX");
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline StoreOptions SmallStore(const std::string& socket, uint64_t capacity = 8 << 20) {
  StoreOptions options;
  options.socket_path = socket;
  options.capacity = capacity;
  options.max_objects = 1024;
  options.max_clients = 64;
  return options;
}

inline std::unique_ptr<StoreClient> MustConnect(const std::string& socket) {
  auto client = StoreClient::Connect(socket);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(*client) : nullptr;
}

inline ObjectId IdOf(int i) {
  return ObjectId::FromName("object-" + std::to_string(i));
}

// Fills `data` with bytes derived from `seed`, so readers can verify them.
inline void FillPattern(std::span<uint8_t> data, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& byte : data) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    byte = static_cast<uint8_t>(x);
  }
}

inline bool CheckPattern(std::span<const uint8_t> data, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto byte : data) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if (byte != static_cast<uint8_t>(x)) return false;
  }
  return true;
}

}  // namespace zerodet::store::testing

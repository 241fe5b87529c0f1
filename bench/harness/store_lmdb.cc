#include "store_lmdb.h"

#include <fmt/format.h>

#include <filesystem>

#ifdef ZERODET_HAVE_LMDB
#include <lmdb.h>
#endif

namespace zerodet::bench {

#ifdef ZERODET_HAVE_LMDB

namespace {

Status LmdbError(const char* what, int rc) {
  return IoError(fmt::format("lmdb {}: {}", what, mdb_strerror(rc)));
}

}  // namespace

struct LmdbCopy::State {
  std::filesystem::path directory;
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
  MDB_txn* txn = nullptr;  // the reader's transaction, reset and renewed per get

  ~State() {
    if (txn != nullptr) mdb_txn_abort(txn);
    if (env != nullptr) mdb_env_close(env);
    std::error_code ec;
    if (!directory.empty()) std::filesystem::remove_all(directory, ec);
  }
};

Result<std::unique_ptr<LmdbCopy>> LmdbCopy::Create(
    const std::string& directory, const std::vector<std::span<const uint8_t>>& values) {
  auto state = std::make_unique<State>();
  std::error_code ec;
  if (!std::filesystem::create_directory(directory, ec)) {
    return IoError(fmt::format("cannot create {}: {}", directory, ec.message()));
  }
  state->directory = directory;
  uint64_t total = 0;
  for (const auto& value : values) total += value.size() + 4096;
  const size_t map_size = static_cast<size_t>(total + total / 4 + (uint64_t{64} << 20));
  {
    // Written as a writer would (pwrite through the file, not a writable map).
    MDB_env* writer = nullptr;
    if (int rc = mdb_env_create(&writer); rc != 0) return LmdbError("env_create", rc);
    std::unique_ptr<MDB_env, void (*)(MDB_env*)> writer_guard(writer, mdb_env_close);
    if (int rc = mdb_env_set_mapsize(writer, map_size); rc != 0) return LmdbError("mapsize", rc);
    if (int rc = mdb_env_open(writer, directory.c_str(), MDB_NOSYNC, 0600); rc != 0) {
      return LmdbError("env_open", rc);
    }
    MDB_txn* txn = nullptr;
    if (int rc = mdb_txn_begin(writer, nullptr, 0, &txn); rc != 0) return LmdbError("txn", rc);
    MDB_dbi dbi = 0;
    if (int rc = mdb_dbi_open(txn, nullptr, MDB_INTEGERKEY, &dbi); rc != 0) {
      mdb_txn_abort(txn);
      return LmdbError("dbi_open", rc);
    }
    for (uint32_t key = 0; key < values.size(); ++key) {
      uint32_t k = key;
      MDB_val mk{sizeof(k), &k};
      MDB_val mv{values[key].size(), const_cast<uint8_t*>(values[key].data())};
      if (int rc = mdb_put(txn, dbi, &mk, &mv, 0); rc != 0) {
        mdb_txn_abort(txn);
        return LmdbError("put", rc);
      }
    }
    if (int rc = mdb_txn_commit(txn); rc != 0) return LmdbError("commit", rc);
  }
  if (int rc = mdb_env_create(&state->env); rc != 0) return LmdbError("env_create", rc);
  if (int rc = mdb_env_set_mapsize(state->env, map_size); rc != 0) return LmdbError("mapsize", rc);
  if (int rc = mdb_env_open(state->env, directory.c_str(), MDB_RDONLY | MDB_NOTLS, 0600); rc != 0) {
    return LmdbError("env_open (read-only)", rc);
  }
  if (int rc = mdb_txn_begin(state->env, nullptr, MDB_RDONLY, &state->txn); rc != 0) {
    return LmdbError("txn_begin", rc);
  }
  if (int rc = mdb_dbi_open(state->txn, nullptr, MDB_INTEGERKEY, &state->dbi); rc != 0) {
    return LmdbError("dbi_open", rc);
  }
  mdb_txn_reset(state->txn);
  return std::unique_ptr<LmdbCopy>(new LmdbCopy(std::move(state)));
}

Result<std::span<const uint8_t>> LmdbCopy::Get(uint32_t key) {
  mdb_txn_reset(state_->txn);
  if (int rc = mdb_txn_renew(state_->txn); rc != 0) return LmdbError("txn_renew", rc);
  MDB_val mk{sizeof(key), &key};
  MDB_val mv{};
  if (int rc = mdb_get(state_->txn, state_->dbi, &mk, &mv); rc != 0) {
    if (rc == MDB_NOTFOUND) return NotFoundError(fmt::format("lmdb: no key {}", key));
    return LmdbError("get", rc);
  }
  return std::span<const uint8_t>(static_cast<const uint8_t*>(mv.mv_data), mv.mv_size);
}

#else  // no liblmdb

struct LmdbCopy::State {};

Result<std::unique_ptr<LmdbCopy>> LmdbCopy::Create(const std::string&,
                                                   const std::vector<std::span<const uint8_t>>&) {
  return UnimplementedError("built without liblmdb (install liblmdb-dev and reconfigure)");
}

Result<std::span<const uint8_t>> LmdbCopy::Get(uint32_t) {
  return UnimplementedError("built without liblmdb");
}

#endif

LmdbCopy::LmdbCopy(std::unique_ptr<State> state) : state_(std::move(state)) {}
LmdbCopy::~LmdbCopy() = default;

}  // namespace zerodet::bench

// LmdbCopy: an LMDB environment holding copies of byte buffers, the memory-mapped key-value
// store `zerodet bench store` reads side by side with the object store.
//
// The environment lives in a directory the caller chooses (on /dev/shm for a like-for-like
// comparison: both then read shared memory through a read-only mapping); it is written with
// LMDB's ordinary write path (not MDB_WRITEMAP) and read through a read-only environment, as
// an LMDB reader would. The directory and its files are removed on destruction.
//
// Built only with liblmdb (ZERODET_HAVE_LMDB); otherwise Create() says so. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "zerodet/core/status.h"

namespace zerodet::bench {

class LmdbCopy {
 public:
  // Writes `values` (keys 0..n-1) into a new environment in `directory` (created; REQUIRES: not
  // existing). Errors: kUnimplemented without liblmdb, kIoError with LMDB's message.
  static Result<std::unique_ptr<LmdbCopy>> Create(
      const std::string& directory, const std::vector<std::span<const uint8_t>>& values);
  ~LmdbCopy();
  LmdbCopy(const LmdbCopy&) = delete;
  LmdbCopy& operator=(const LmdbCopy&) = delete;

  // Value `key` in a read transaction (renewed per call, as a reader loop does); the view is
  // valid until the next Get. Errors: kNotFound, kIoError.
  Result<std::span<const uint8_t>> Get(uint32_t key);

 private:
  struct State;
  explicit LmdbCopy(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace zerodet::bench

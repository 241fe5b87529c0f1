// Ring-specific helpers of the ring test suites: unique ring names and self-checking frame
// contents. Child processes, pipes and WaitFor come from the shared test support
// (tests/support/test_support.h).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "zerodet/ring/frame_ring.h"

namespace zerodet::ring::testing {

// A ring name no other test (or concurrently running test binary) uses.
inline std::string UniqueRingName(const std::string& what) {
  static int counter = 0;
  return "test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + what;
}

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Checksum of all 8-byte words of `bytes` but the last (FNV-1a over words).
inline uint64_t WordChecksum(std::span<const uint8_t> bytes) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  const size_t words = bytes.size() / 8;
  for (size_t i = 0; i + 1 < words; ++i) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i * 8, 8);
    hash = (hash ^ w) * 0x100000001b3ULL;
  }
  return hash;
}

// Fills `bytes` (a multiple of 8, >= 16) with pseudo-random words derived from `tag`: word 0 is
// the tag, the last word the checksum of all others.
inline void FillFrame(uint64_t tag, std::span<uint8_t> bytes) {
  const size_t words = bytes.size() / 8;
  std::memcpy(bytes.data(), &tag, 8);
  for (size_t i = 1; i + 1 < words; ++i) {
    const uint64_t w = SplitMix64(tag + i);
    std::memcpy(bytes.data() + i * 8, &w, 8);
  }
  const uint64_t sum = WordChecksum(bytes);
  std::memcpy(bytes.data() + (words - 1) * 8, &sum, 8);
}

// True when `bytes` is exactly a frame FillFrame(tag) made: right tag, right checksum.
inline bool FrameIntact(uint64_t tag, std::span<const uint8_t> bytes) {
  const size_t words = bytes.size() / 8;
  if (words < 2) return false;
  uint64_t first, last;
  std::memcpy(&first, bytes.data(), 8);
  std::memcpy(&last, bytes.data() + (words - 1) * 8, 8);
  return first == tag && last == WordChecksum(bytes);
}

}  // namespace zerodet::ring::testing

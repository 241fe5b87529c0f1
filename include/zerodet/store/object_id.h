// ObjectId: the 20-byte key of a store object (the size Plasma and Ray use, so IDs can be
// carried over from those systems unchanged).
//
// IDs are chosen by clients. ObjectId::FromName derives one deterministically from a name
// (SHA-1 of the name), so independent processes agree on the ID of "coco-val/000000139.jpg"
// without talking to each other. Plain value type; safe to use from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

#include "zerodet/core/status.h"

namespace zerodet::store {

struct ObjectId {
  static constexpr size_t kSize = 20;
  std::array<uint8_t, kSize> bytes{};

  // SHA-1 of `name`: stable across processes, machines and releases.
  static ObjectId FromName(std::string_view name);
  // Parses 40 hex digits. Errors: kInvalidArgument naming the bad input.
  static Result<ObjectId> FromHex(std::string_view hex);
  // 40 lower-case hex digits.
  std::string ToHex() const;

  friend bool operator==(const ObjectId&, const ObjectId&) = default;
};

}  // namespace zerodet::store

template <>
struct std::hash<zerodet::store::ObjectId> {
  size_t operator()(const zerodet::store::ObjectId& id) const noexcept {
    size_t h = 0;
    std::memcpy(&h, id.bytes.data(), sizeof(h));
    return h;
  }
};

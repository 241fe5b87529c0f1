#include "zerodet/store/object_id.h"

#include <openssl/sha.h>

namespace zerodet::store {

static_assert(SHA_DIGEST_LENGTH == ObjectId::kSize);

ObjectId ObjectId::FromName(std::string_view name) {
  ObjectId id;
  SHA1(reinterpret_cast<const unsigned char*>(name.data()), name.size(), id.bytes.data());
  return id;
}

Result<ObjectId> ObjectId::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kSize) {
    return InvalidArgumentError("object id '" + std::string(hex) + "' must be 40 hex digits, got " +
                                std::to_string(hex.size()) + " characters");
  }
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  ObjectId id;
  for (size_t i = 0; i < kSize; ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return InvalidArgumentError("object id '" + std::string(hex) + "' has a non-hex digit");
    }
    id.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return id;
}

std::string ObjectId::ToHex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(2 * kSize, '0');
  for (size_t i = 0; i < kSize; ++i) {
    hex[2 * i] = kDigits[bytes[i] >> 4];
    hex[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return hex;
}

}  // namespace zerodet::store

// Byte counts as people read them in the store's messages (internal to src/store/).
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>

namespace zerodet::store::internal {

// "12 B", "4.0 KiB", "8.00 MiB", "1.50 GiB".
inline std::string HumanBytes(uint64_t bytes) {
  const auto value = static_cast<double>(bytes);
  if (bytes >= (uint64_t{1} << 30)) return fmt::format("{:.2f} GiB", value / 1073741824.0);
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.2f} MiB", value / 1048576.0);
  if (bytes >= 1024) return fmt::format("{:.1f} KiB", value / 1024.0);
  return fmt::format("{} B", bytes);
}

}  // namespace zerodet::store::internal

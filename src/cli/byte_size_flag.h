// Byte sizes given on the command line ("1073741824", "512M", "4G", "1.5GiB"): one parser for
// every flag that takes one (store --capacity, serve --max-bytes, ...).
#pragma once

#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>

#include "zerodet/core/status.h"

namespace zerodet::cli {

// "1073741824", "512M", "4G", "1.5GiB" -> bytes. Errors: kInvalidArgument naming `flag`.
inline Result<uint64_t> ParseBytes(std::string_view flag, const std::string& text) {
  auto bad = [&] {
    return InvalidArgumentError(std::string(flag) + " '" + text +
                                "' not understood: give bytes, optionally with K, M or G "
                                "(e.g. 4G)");
  };
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    return bad();
  }
  std::string unit = text.substr(used);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double multiple = 1;
  if (unit.empty() || unit == "B") {
    multiple = 1;
  } else if (unit == "K" || unit == "KB" || unit == "KIB") {
    multiple = 1024.0;
  } else if (unit == "M" || unit == "MB" || unit == "MIB") {
    multiple = 1024.0 * 1024;
  } else if (unit == "G" || unit == "GB" || unit == "GIB") {
    multiple = 1024.0 * 1024 * 1024;
  } else {
    return bad();
  }
  // Callers check the size against what it is for; this only keeps the double in range.
  if (!(value > 0) || value * multiple > 1e18) return bad();
  return static_cast<uint64_t>(value * multiple);
}

}  // namespace zerodet::cli

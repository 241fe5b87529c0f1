// The version of zerodet (one definition: the CLI, the servers' metadata and the Python module
// report this).
#pragma once

#include <string_view>

namespace zerodet {

inline constexpr std::string_view kVersion = "0.1.0";

}  // namespace zerodet

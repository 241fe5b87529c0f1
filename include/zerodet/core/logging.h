// Logging setup. zerodet logs through spdlog to stderr; stdout is kept for results (JSON lines)
// so that `zerodet detect ... | jq` works.
#pragma once

#include <string_view>

#include "zerodet/core/status.h"

namespace zerodet {

// Sends the default spdlog logger to stderr at `level` ("trace", "debug", "info", "warn",
// "error", "off"). Thread-safe after it returns; call once at program start.
Status SetupLogging(std::string_view level);

}  // namespace zerodet

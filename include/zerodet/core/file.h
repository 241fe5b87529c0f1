// Whole-file reads with errors that name the file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "zerodet/core/status.h"

namespace zerodet {

// Reads the whole file. Errors: kNotFound when it does not exist, kIoError otherwise, with the
// path in the message. Files larger than max_bytes give kResourceExhausted.
Result<std::vector<uint8_t>> ReadFileBytes(const std::filesystem::path& path,
                                           uint64_t max_bytes = uint64_t{1} << 31);

}  // namespace zerodet

// Files and directories from paths a user typed: reads that never block and never throw, with
// errors that name the path and say what is wrong with it.
//
// Every function here refuses to block on something that is not a regular file: a FIFO given as
// an image or a config is opened with O_NONBLOCK and refused after fstat, instead of waiting
// forever for a writer. No function throws (std::filesystem is used only through its
// error_code overloads). Thread-safe: no shared state.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/core/status.h"
#include "zerodet/core/unique_fd.h"

namespace zerodet {

// The error for a failed system call on `path`: kNotFound for ENOENT ("no such file or
// directory"), kInvalidArgument for ELOOP ("a symlink loop"), ENOTDIR and ENAMETOOLONG,
// kPermissionDenied for EACCES/EPERM, kIoError otherwise. `action` says what failed
// ("cannot open"); the message is "<path>: <action>: <reason>".
Status PathError(const std::filesystem::path& path, std::string_view action, int errno_value);

// Opens a regular file for reading, without blocking. Errors: as PathError, and
// kInvalidArgument for a directory, FIFO, socket or device ("<path>: is a FIFO, not a regular
// file").
Result<UniqueFd> OpenRegularFile(const std::filesystem::path& path);

// Reads the whole regular file, to end of file (kernel pseudo-files in /proc and /sys, whose size
// reads as 0, included). Errors: as OpenRegularFile; files larger than max_bytes give
// kResourceExhausted.
Result<std::vector<uint8_t>> ReadFileBytes(const std::filesystem::path& path,
                                           uint64_t max_bytes = uint64_t{1} << 31);
// The same, as text (configs, annotation files).
Result<std::string> ReadFileText(const std::filesystem::path& path,
                                 uint64_t max_bytes = uint64_t{1} << 31);

// Writes `bytes` to `path` whole or not at all: into a temporary file in the same directory,
// then renamed over `path`. A reader never sees a partial file, and a symlink at `path` is
// replaced rather than written through. Errors: as PathError, naming the path.
Status WriteFileAtomically(const std::filesystem::path& path, std::span<const uint8_t> bytes);

// One entry of a directory listing. Each entry carries its own status: an entry that cannot be
// examined (a symlink loop, a dangling link, no permission) is reported on its own and does not
// fail the listing.
struct DirectoryEntry {
  std::filesystem::path path;
  enum class Kind { kRegular, kDirectory, kOther, kError } kind = Kind::kOther;
  Status error;  // set when kind == kError: why the entry cannot be used
};

// The entries of `dir` (not recursive), sorted by path, symlinks followed for the kind.
// Errors: as PathError when `dir` itself cannot be opened or read.
Result<std::vector<DirectoryEntry>> ListDirectory(const std::filesystem::path& dir);

}  // namespace zerodet

#include "zerodet/core/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace zerodet {
namespace {

const char* FileTypeName(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "a special file";
}

}  // namespace

Status PathError(const std::filesystem::path& path, std::string_view action, int errno_value) {
  std::string message = path.string();
  message += ": ";
  message += action;
  message += ": ";
  switch (errno_value) {
    case ENOENT:
      return NotFoundError(message + "no such file or directory");
    case ELOOP:
      return InvalidArgumentError(message + "too many levels of symbolic links (a symlink loop?)");
    case ENOTDIR:
      return InvalidArgumentError(message + "a component of the path is not a directory");
    case ENAMETOOLONG:
      return InvalidArgumentError(message + "file name too long");
    case EACCES:
    case EPERM:
      return PermissionDeniedError(message + "permission denied");
    default:
      return IoError(message + std::strerror(errno_value));
  }
}

Result<UniqueFd> OpenRegularFile(const std::filesystem::path& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd.valid()) return PathError(path, "cannot open", errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return PathError(path, "cannot stat", errno);
  if (S_ISDIR(st.st_mode)) return InvalidArgumentError(path.string() + ": is a directory");
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgumentError(path.string() + ": is " + FileTypeName(st.st_mode) +
                                ", not a regular file");
  }
  // Regular files never block; plain reads from here on.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

Result<std::vector<uint8_t>> ReadFileBytes(const std::filesystem::path& path, uint64_t max_bytes) {
  ZD_ASSIGN_OR_RETURN(UniqueFd fd, OpenRegularFile(path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return PathError(path, "cannot stat", errno);
  auto too_large = [&](uint64_t size) {
    return ResourceExhaustedError(path.string() + ": file of " + std::to_string(size) +
                                  " bytes exceeds the limit of " + std::to_string(max_bytes));
  };
  const auto stat_size = static_cast<uint64_t>(st.st_size);
  if (stat_size > max_bytes) return too_large(stat_size);
  // st_size is only a hint: kernel pseudo-files (/proc, /sys, cgroupfs) report 0 and a file may
  // grow while it is read, so the read goes on to end of file, within the limit.
  // One byte more than st_size, so that a regular file's end is read without growing.
  std::vector<uint8_t> bytes(
      static_cast<size_t>(std::min(std::max<uint64_t>(stat_size + 1, 4096), max_bytes + 1)));
  size_t done = 0;
  for (;;) {
    if (done == bytes.size()) {
      if (done > max_bytes) return too_large(done);
      bytes.resize(std::min<size_t>(bytes.size() * 2, static_cast<size_t>(max_bytes) + 1));
    }
    const ssize_t n = ::read(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PathError(path, "read failed", errno);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  if (done > max_bytes) return too_large(done);
  bytes.resize(done);
  return bytes;
}

Result<std::string> ReadFileText(const std::filesystem::path& path, uint64_t max_bytes) {
  ZD_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadFileBytes(path, max_bytes));
  return std::string(bytes.begin(), bytes.end());
}

Status WriteFileAtomically(const std::filesystem::path& path, std::span<const uint8_t> bytes) {
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  // fmt rather than operator+: GCC 12 warns falsely (-Wrestrict, its bug 105329) on the latter.
  std::string temp = (dir / fmt::format(".{}.tmp-XXXXXX", path.filename().string())).string();
  UniqueFd fd(::mkostemp(temp.data(), O_CLOEXEC));
  if (!fd.valid()) return PathError(path, "cannot create a temporary file beside it", errno);
  ::fchmod(fd.get(), 0644);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::unlink(temp.c_str());
      return PathError(path, "write failed", err);
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd.Release()) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return PathError(path, "cannot write", err);
  }
  return Status::Ok();
}

Result<std::vector<DirectoryEntry>> ListDirectory(const std::filesystem::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECTORY));
  if (!fd.valid()) return PathError(dir, "cannot open the directory", errno);
  DIR* stream = ::fdopendir(fd.get());
  if (stream == nullptr) return PathError(dir, "cannot list the directory", errno);
  fd.Release();  // owned by the DIR stream now
  std::vector<DirectoryEntry> entries;
  for (;;) {
    errno = 0;
    const dirent* raw = ::readdir(stream);
    if (raw == nullptr) {
      const int err = errno;
      ::closedir(stream);
      if (err != 0) return PathError(dir, "cannot list the directory", err);
      break;
    }
    const std::string_view name = raw->d_name;
    if (name == "." || name == "..") continue;
    DirectoryEntry entry;
    entry.path = dir / name;
    struct stat st {};
    // stat (not lstat): a symlink counts as what it points to; a loop or a dangling link is
    // an error of this entry alone.
    if (::stat(entry.path.c_str(), &st) != 0) {
      entry.kind = DirectoryEntry::Kind::kError;
      entry.error = PathError(entry.path, "cannot examine", errno);
    } else if (S_ISREG(st.st_mode)) {
      entry.kind = DirectoryEntry::Kind::kRegular;
    } else if (S_ISDIR(st.st_mode)) {
      entry.kind = DirectoryEntry::Kind::kDirectory;
    }
    entries.push_back(std::move(entry));
  }
  std::sort(entries.begin(), entries.end(),
            [](const DirectoryEntry& a, const DirectoryEntry& b) { return a.path < b.path; });
  return entries;
}

}  // namespace zerodet

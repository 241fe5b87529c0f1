#include "process_memory.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <string_view>

#include "zerodet/core/file.h"
#include "zerodet/core/unique_fd.h"

namespace zerodet::bench {
namespace {

// A /proc file as text. Its size is 0 to stat(), so it is read until the end rather than by
// size (core's ReadFileText reads what stat() says).
Result<std::string> ReadProcFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return PathError(path, "cannot open", errno);
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PathError(path, "cannot read", errno);
    if (n == 0) return text;
    text.append(buffer, static_cast<size_t>(n));
  }
}

// The number after "<key>:" on its line, in kB as /proc writes it, converted to MiB.
Result<double> FieldMib(std::string_view text, std::string_view key, const std::string& path) {
  for (size_t start = 0; start < text.size();) {
    const size_t end = std::min(text.find('\n', start), text.size());
    const std::string_view line = text.substr(start, end - start);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':') {
      const std::string value(line.substr(key.size() + 1));
      char* parsed_end = nullptr;
      const double kib = std::strtod(value.c_str(), &parsed_end);
      if (parsed_end == value.c_str()) break;
      return kib / 1024.0;
    }
    start = end + 1;
  }
  return UnavailableError(path + " has no field " + std::string(key));
}

}  // namespace

Result<ProcessMemory> ReadProcessMemory(pid_t pid) {
  const std::string dir = "/proc/" + (pid == 0 ? std::string("self") : std::to_string(pid));
  ProcessMemory memory;
  const std::string status_path = dir + "/status";
  ZD_ASSIGN_OR_RETURN(const std::string status, ReadProcFile(status_path));
  ZD_ASSIGN_OR_RETURN(memory.peak_rss_mib, FieldMib(status, "VmHWM", status_path));
  const std::string smaps_path = dir + "/smaps_rollup";
  ZD_ASSIGN_OR_RETURN(const std::string smaps, ReadProcFile(smaps_path));
  ZD_ASSIGN_OR_RETURN(memory.pss_mib, FieldMib(smaps, "Pss", smaps_path));
  return memory;
}

}  // namespace zerodet::bench

#include "process_identity.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace zerodet::ring::detail {

uint64_t ProcessIdentity(pid_t pid) {
  if (pid <= 0 || pid >= (pid_t{1} << kPidBits)) return 0;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  // "pid (comm) S ppid ...": comm may contain spaces and parentheses, so parse after the last
  // ')'. The state is field 3 and the start time field 22.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return 0;
  p += 2;
  const char state = *p;
  if (state == 'Z' || state == 'X' || state == 'x') return 0;
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return 0;
    ++p;
  }
  const uint64_t start_ticks = std::strtoull(p, nullptr, 10);
  return (start_ticks << kPidBits) | static_cast<uint64_t>(pid);
}

uint64_t SelfIdentity() {
  return ProcessIdentity(::getpid());
}

bool IdentityAlive(uint64_t identity) {
  if (identity == 0) return false;
  return ProcessIdentity(IdentityPid(identity)) == identity;
}

}  // namespace zerodet::ring::detail

// Process identities for liveness checks across processes.
//
// A pid alone is not an identity: the kernel reuses pids. An identity packs the pid with the
// process start time (clock ticks since boot, /proc/<pid>/stat field 22), so a recycled pid
// never looks like the dead process it replaces. Zombies (killed, not yet reaped) count as
// dead. Thread-safe: no shared state.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace zerodet::ring::detail {

inline constexpr int kPidBits = 22;  // pid_max is at most 2^22 on Linux

// The identity of process `pid`, or 0 when it does not exist or is a zombie.
uint64_t ProcessIdentity(pid_t pid);
// The identity of the calling process (not cached: stays right across fork()).
uint64_t SelfIdentity();
inline pid_t IdentityPid(uint64_t identity) {
  return static_cast<pid_t>(identity & ((uint64_t{1} << kPidBits) - 1));
}
// True when the process with that identity still runs. IdentityAlive(0) is false.
bool IdentityAlive(uint64_t identity);

}  // namespace zerodet::ring::detail

// The memory a process uses, from /proc, for benchmarks that compare process layouts (N workers
// sharing decoded frames in a ring vs each decoding its own).
//
// Thread-safety: free functions without shared state.
#pragma once

#include <sys/types.h>

#include "zerodet/core/status.h"

namespace zerodet::bench {

struct ProcessMemory {
  // Peak resident set size (VmHWM of /proc/<pid>/status), MiB: every page the process touched,
  // shared ones counted in full.
  double peak_rss_mib = 0;
  // Proportional set size now (Pss of /proc/<pid>/smaps_rollup), MiB: shared pages (such as
  // ring slots) divided among the processes that map them, so the sum over processes is what
  // they use together.
  double pss_mib = 0;
};

// The memory of process `pid` (0: the calling process). REQUIRES: the caller may read the
// process's /proc files (same user, or privileged). Errors: kNotFound when the process is gone,
// kUnavailable when the kernel lacks the field (smaps_rollup needs Linux 4.14), kIoError.
Result<ProcessMemory> ReadProcessMemory(pid_t pid = 0);

}  // namespace zerodet::bench

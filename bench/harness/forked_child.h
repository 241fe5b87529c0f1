// Benchmark child processes: a function run in a forked child that cannot outlive the benchmark
// (it gets SIGKILL when the benchmark process ends, also when that one is killed), plus the
// byte pipes the two sides talk through.
//
// Ownership: the caller waits for every child it forked (WaitForChild). Thread-safety: fork from
// the benchmark's main thread, before it starts threads of its own.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <functional>

#include "zerodet/core/status.h"
#include "zerodet/core/unique_fd.h"

namespace zerodet::bench {

// Forks a child that runs `body` and exits with its return value (1 when it throws). The child
// is tied to this process (core TieToParent): it dies with it.
// Errors: kIoError when fork fails.
Result<pid_t> ForkTiedChild(const std::function<int()>& body);

// Waits for `pid`; its exit code, 128 + signal when a signal ended it, -1 on error.
int WaitForChild(pid_t pid);

// A pipe; either end may be closed early (the other side then sees end of file / EPIPE).
struct BenchPipe {
  UniqueFd read;
  UniqueFd write;
  // Errors: kIoError.
  static Result<BenchPipe> Open();
};

// Writes / reads exactly `size` bytes (retrying short transfers and EINTR). False on error or
// end of file.
bool WriteAll(int fd, const void* data, size_t size);
bool ReadAll(int fd, void* data, size_t size);

}  // namespace zerodet::bench

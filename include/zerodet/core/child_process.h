// Child processes that cannot outlive the process that forked them.
//
// A child forked by a supervisor (the pipeline's ingests and workers, a benchmark's reader)
// must not keep running, holding shared memory and devices, when its parent is killed with
// SIGKILL and gets no chance to stop it. Call TieToParent first thing in the child.
//
// Thread-safety: async-signal-safe system calls only; meant for a freshly forked child.
#pragma once

#include <sys/types.h>

namespace zerodet {

// In a child right after fork(): asks the kernel to send `signal` to this process when its
// parent ends (prctl PR_SET_PDEATHSIG), then checks that the parent is still `parent_pid`: the
// parent may have died between fork() and the request, in which case the child was already
// adopted and the request will never fire. Returns false then (and when prctl fails): the
// caller must exit at once.
// The signal comes when the *thread* that forked the child ends, so fork from a thread that
// lives as long as the children should. It survives execve() of programs that are not
// set-user-ID.
bool TieToParent(pid_t parent_pid, int signal);

}  // namespace zerodet

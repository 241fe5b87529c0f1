#include "zerodet/core/child_process.h"

#include <sys/prctl.h>
#include <unistd.h>

namespace zerodet {

bool TieToParent(pid_t parent_pid, int signal) {
  if (::prctl(PR_SET_PDEATHSIG, signal) != 0) return false;
  return ::getppid() == parent_pid;
}

}  // namespace zerodet

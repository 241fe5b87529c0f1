// RepositoryWatcher: tells the model manager when to rescan its repository. inotify watches the
// root, each model directory and each version directory (where the filesystem reports changes:
// local disks, not NFS or FUSE mounts such as s3fs and rclone for changes made elsewhere), and
// Wait also returns every `poll_interval`, so remote changes are found by polling.
//
// Thread-safety: Wait and Watch are called by the one watcher thread; Stop from any thread.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "zerodet/core/status.h"
#include "zerodet/core/unique_fd.h"
#include "zerodet/models/repository.h"

namespace zerodet::models_internal {

class RepositoryWatcher {
 public:
  // Never fails: without inotify (no kernel support, too many watches) it only polls.
  explicit RepositoryWatcher(const std::filesystem::path& root);

  // Adds watches for the directories of `index` not yet watched.
  void Watch(const RepositoryIndex& index);

  // Waits until something changed under a watched directory, `timeout` passed, or Stop was
  // called. `completed` receives files whose write was closed or which were renamed into place
  // (RepositoryScanner::MarkComplete). Returns false once stopped.
  bool Wait(std::chrono::milliseconds timeout, std::vector<std::filesystem::path>& completed);

  void Stop();
  bool inotify() const { return inotify_.valid(); }

 private:
  void AddWatch(const std::filesystem::path& dir);

  UniqueFd inotify_;
  UniqueFd stop_;                                 // an eventfd
  std::map<int, std::filesystem::path> watches_;  // watch descriptor -> directory
  std::map<std::filesystem::path, int> watched_;
};

}  // namespace zerodet::models_internal

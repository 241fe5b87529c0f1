#include "repository_watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace zerodet::models_internal {

RepositoryWatcher::RepositoryWatcher(const std::filesystem::path& root)
    : inotify_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)),
      stop_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (inotify_.valid()) AddWatch(root);
}

void RepositoryWatcher::AddWatch(const std::filesystem::path& dir) {
  if (!inotify_.valid() || watched_.count(dir)) return;
  const int wd =
      ::inotify_add_watch(inotify_.get(), dir.c_str(),
                          IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE |
                              IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_ONLYDIR);
  if (wd < 0) return;  // polling still finds what this directory would have reported
  watches_[wd] = dir;
  watched_[dir] = wd;
}

void RepositoryWatcher::Watch(const RepositoryIndex& index) {
  for (const ModelEntry& model : index.models) {
    AddWatch(model.dir);
    for (const VersionEntry& version : model.versions) {
      AddWatch(version.model_path.parent_path());
    }
  }
}

bool RepositoryWatcher::Wait(std::chrono::milliseconds timeout,
                             std::vector<std::filesystem::path>& completed) {
  pollfd fds[2] = {{stop_.get(), POLLIN, 0}, {inotify_.valid() ? inotify_.get() : -1, POLLIN, 0}};
  const int ready = ::poll(fds, 2, static_cast<int>(timeout.count()));
  if (ready > 0 && (fds[0].revents & POLLIN)) return false;
  if (ready > 0 && (fds[1].revents & POLLIN)) {
    alignas(inotify_event) char buffer[16384];
    while (true) {
      const ssize_t n = ::read(inotify_.get(), buffer, sizeof(buffer));
      if (n <= 0) break;
      for (ssize_t offset = 0; offset < n;) {
        const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
        offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
        auto it = watches_.find(event->wd);
        if (it == watches_.end()) continue;
        if (event->mask & IN_IGNORED) {
          watched_.erase(it->second);
          watches_.erase(it);
          continue;
        }
        if (event->len > 0 && (event->mask & (IN_CLOSE_WRITE | IN_MOVED_TO))) {
          completed.push_back(it->second / event->name);
        }
      }
    }
  }
  return true;
}

void RepositoryWatcher::Stop() {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(stop_.get(), &one, sizeof(one));
}

}  // namespace zerodet::models_internal

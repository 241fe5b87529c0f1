// Listing and stale-segment cleanup of rings in /dev/shm.
#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "process_identity.h"
#include "segment.h"
#include "zerodet/ring/frame_ring.h"

namespace zerodet::ring {

namespace {

// Calls fn(entry name) for each /dev/shm entry of a ring (with the prefix stripped).
template <typename Fn>
Status ForEachRingEntry(Fn&& fn) {
  const std::string dir(detail::kSegmentDir);
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoError("opendir " + dir, errno);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string_view entry(e->d_name);
    if (entry.substr(0, detail::kSegmentPrefix.size()) == detail::kSegmentPrefix) {
      names.emplace_back(entry.substr(detail::kSegmentPrefix.size()));
    }
  }
  ::closedir(d);
  for (const std::string& name : names) fn(name);
  return Status::Ok();
}

}  // namespace

std::vector<std::string> ListRings() {
  std::vector<std::string> rings;
  (void)ForEachRingEntry([&](const std::string& name) {
    if (name.find(".tmp.") == std::string::npos) rings.push_back(name);
  });
  return rings;
}

Result<std::vector<std::string>> RemoveStaleRings(std::string_view name_prefix) {
  std::vector<std::string> removed;
  Status status = ForEachRingEntry([&](const std::string& name) {
    if (name.substr(0, name_prefix.size()) != name_prefix) return;
    const std::string path = detail::SegmentPath(name);
    const size_t tmp = name.find(".tmp.");
    if (tmp != std::string::npos) {
      // A segment still being created by process <pid>, or left by one that died doing so.
      const pid_t pid = static_cast<pid_t>(std::atoi(name.c_str() + tmp + 5));
      if (detail::ProcessIdentity(pid) == 0 && ::unlink(path.c_str()) == 0) {
        removed.push_back(name);
      }
      return;
    }
    auto segment = detail::RingSegment::OpenExisting(path);
    if (!segment.ok()) return;  // gone meanwhile, or not a ring: not ours to judge
    const detail::RingHeader* h = (*segment)->header();
    if (h->writer_open.load() != 0 && detail::IdentityAlive(h->writer_identity.load())) return;
    if (detail::HasLiveReaders(**segment)) return;
    if ((*segment)->StillLinked() && ::unlink(path.c_str()) == 0) removed.push_back(name);
  });
  if (!status.ok()) return status;
  return removed;
}

}  // namespace zerodet::ring

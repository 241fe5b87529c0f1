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

Result<RingStats> CloseAbandonedRing(std::string_view name) {
  ZD_RETURN_IF_ERROR(detail::ValidateName(name, "ring name"));
  const uint64_t self = detail::SelfIdentity();
  if (self == 0) return InternalError("cannot read /proc/self/stat to identify this process");
  ZD_ASSIGN_OR_RETURN(auto segment, detail::RingSegment::OpenExisting(detail::SegmentPath(name)));
  detail::RingHeader* h = segment->header();
  uint64_t writer = h->writer_identity.load();
  if (h->writer_open.load() != 0 && detail::IdentityAlive(writer)) {
    return FailedPreconditionError("ring '" + std::string(name) + "' has a live writer (pid " +
                                   std::to_string(detail::IdentityPid(writer)) + ")");
  }
  // Take the writer's place as a resuming writer would, so that one that resumes at the same
  // moment and this close cannot both win.
  if (!h->writer_identity.compare_exchange_strong(writer, self)) {
    return FailedPreconditionError("ring '" + std::string(name) +
                                   "' was just taken over by a writer (pid " +
                                   std::to_string(detail::IdentityPid(writer)) + ")");
  }
  // A slot the dead writer was filling holds no complete frame.
  for (uint32_t s = 0; s < h->slot_count; ++s) {
    detail::SlotControl* slot = segment->slot(static_cast<int>(s));
    if (detail::StateWriting(slot->state.load())) slot->state.store(0);
  }
  h->writer_open.store(0);
  h->notify.fetch_add(1);
  detail::FutexWakeAll(&h->notify);
  if (segment->StillLinked()) ::unlink(segment->path().c_str());
  return detail::ReadStats(h);
}

}  // namespace zerodet::ring

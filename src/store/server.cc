#include "zerodet/store/server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

#include "protocol.h"
#include "shm_layout.h"
#include "shm_util.h"
#include "zerodet/store/tlsf_allocator.h"

namespace zerodet::store {

using internal::ClientRegionHeader;
using internal::EntryState;
using internal::IndexEntry;
using internal::IndexHeader;
using internal::Mapping;
using internal::MessageType;
using internal::Request;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kHugePageSize = 2 * 1024 * 1024;
constexpr uint64_t kPageSize = 4096;
// How often deferred deletions (objects deleted while referenced) are retried. References are
// dropped without a message, so the store polls for them.
constexpr int kSweepIntervalMs = 20;

uint64_t RoundUp(uint64_t value, uint64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

std::string Bytes(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30)) return fmt::format("{:.2f} GiB", bytes / 1073741824.0);
  if (bytes >= (uint64_t{1} << 20)) return fmt::format("{:.2f} MiB", bytes / 1048576.0);
  if (bytes >= 1024) return fmt::format("{:.1f} KiB", bytes / 1024.0);
  return fmt::format("{} B", bytes);
}

Status SealFd(int fd, bool future_write, const char* what) {
  int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  if (future_write) seals |= F_SEAL_FUTURE_WRITE;
  if (::fcntl(fd, F_ADD_SEALS, seals) != 0) {
    return ErrnoError(fmt::format("cannot seal the {} memfd", what), errno);
  }
  return Status::Ok();
}

Result<UniqueFd> NewMemfd(const char* name, uint64_t size, bool hugepages) {
  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  if (hugepages) flags |= MFD_HUGETLB;
  UniqueFd fd(::memfd_create(name, flags));
  if (fd.get() < 0) {
    const int err = errno;
    if (hugepages) {
      return ResourceExhaustedError(
          fmt::format("cannot create a huge-page arena ({}): {}; is hugetlbfs available?",
                      Bytes(size), std::strerror(err)));
    }
    return ErrnoError(fmt::format("memfd_create({})", name), err);
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    const int err = errno;
    if (hugepages) {
      return ResourceExhaustedError(fmt::format(
          "cannot size the huge-page arena to {} ({} pages of 2 MiB): {}; reserve pages with "
          "`sysctl vm.nr_hugepages=N`",
          Bytes(size), size / kHugePageSize, std::strerror(err)));
    }
    return ErrnoError(fmt::format("cannot size {} to {}", name, Bytes(size)), err);
  }
  return fd;
}

}  // namespace

class StoreServer::Impl {
 public:
  explicit Impl(const StoreOptions& options) : options_(options) {}
  ~Impl();

  Status Init();
  Status Run();
  void Shutdown() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(event_fd_.get(), &one, sizeof(one));
  }
  const StoreOptions& options() const { return options_; }

 private:
  struct Client {
    UniqueFd fd;
    pid_t pid = 0;
    uid_t uid = 0;
    bool hello_done = false;
    Mapping region;
    std::atomic<uint32_t>* refs = nullptr;
    std::atomic<uint8_t>* touched = nullptr;
    ClientRegionHeader* header = nullptr;
  };
  struct SlotInfo {
    uint64_t alloc_offset = 0;
    int owner_fd = -1;  // the creating connection while unsealed
    bool in_lru = false;
    std::list<uint32_t>::iterator lru_it;
  };
  struct Waiter {
    int client_fd;
    ObjectId id;
    Clock::time_point deadline;
    bool forever;
    int64_t timeout_ms;
  };

  Status InitSocket();
  void Accept();
  void HandleReadable(int fd);
  void DropClient(int fd, const char* why);
  bool Reply(Client& client, MessageType type, const Status& status,
             std::span<const uint8_t> body = {});
  void HandleRequest(Client& client, const Request& request);
  void HandleHello(Client& client, const Request& request);
  Status HandleCreate(Client& client, const Request& request, internal::CreateReply* reply);
  Status HandleSeal(Client& client, const Request& request);
  Status HandleAbort(Client& client, const Request& request);
  Status HandleDelete(const Request& request);
  // Returns true when a reply was sent (false: the request now waits).
  bool HandleGet(Client& client, const Request& request);
  internal::ListReply HandleList(uint32_t cursor);
  StoreStats CollectStats() const;

  IndexEntry& Entry(uint32_t slot) { return internal::Entries(index_)[slot]; }
  uint64_t FindSlot(const ObjectId& id);
  EntryState StateOf(uint32_t slot) {
    return static_cast<EntryState>(Entry(slot).state.load(std::memory_order_relaxed));
  }
  // Seqlock writer: an odd sequence announces a change (seq_cst: the Dekker half that pairs
  // with the client's seq_cst reference increment, see shm_layout.h).
  void BeginEntryWrite(IndexEntry& e);
  void EndEntryWrite(IndexEntry& e);
  bool Referenced(uint32_t slot) const;
  // Frees the object in `slot` unless a client references it; then it gets `state_if_referenced`.
  bool RemoveOrMark(uint32_t slot, EntryState state_if_referenced);
  void FreeSlotNow(uint32_t slot);
  std::optional<uint64_t> AllocateWithEviction(uint64_t size);
  void SweepPendingDeletes();
  void ExpireWaiters();
  void WakeWaiters(const ObjectId& id, uint32_t slot);
  void TakeReference(Client& client, uint32_t slot, internal::GetReply* reply);
  void Published() { index_->mutation_count.fetch_add(1, std::memory_order_release); }
  void LruTouch(uint32_t slot);
  void LruRemove(uint32_t slot);
  bool Authorized(const ucred& cred) const;

  StoreOptions options_;
  UniqueFd arena_fd_, index_fd_, listen_fd_, epoll_fd_, event_fd_;
  Mapping arena_, index_map_;
  IndexHeader* index_ = nullptr;
  uint32_t slot_count_ = 0;
  std::unique_ptr<TlsfAllocator> allocator_;
  bool has_group_ = false;
  gid_t group_gid_ = 0;
  bool socket_bound_ = false;

  std::unordered_map<int, std::unique_ptr<Client>> clients_;
  std::vector<SlotInfo> slots_;
  std::list<uint32_t> lru_;  // sealed objects, least recently used first
  std::vector<uint32_t> pending_deletes_;
  std::vector<Waiter> waiters_;
  uint64_t live_objects_ = 0, sealed_objects_ = 0;
  uint64_t evictions_ = 0, creates_ = 0, socket_gets_ = 0;
  std::vector<uint8_t> receive_buffer_;
};

StoreServer::Impl::~Impl() {
  if (index_ != nullptr) {
    index_->store_open.store(0, std::memory_order_release);
    Published();
  }
  clients_.clear();
  if (socket_bound_) ::unlink(options_.socket_path.c_str());
}

Status StoreServer::Impl::Init() {
  if (options_.socket_path.empty()) return InvalidArgumentError("store: empty socket path");
  if (options_.capacity == 0) return InvalidArgumentError("store: capacity must be > 0 bytes");
  if (options_.max_objects == 0 || options_.max_objects > (1u << 26)) {
    return InvalidArgumentError(
        fmt::format("store: max_objects {} out of range 1..{}", options_.max_objects, 1u << 26));
  }
  if (options_.max_clients == 0 || options_.max_clients > 4096) {
    return InvalidArgumentError(
        fmt::format("store: max_clients {} out of range 1..4096", options_.max_clients));
  }
  if (!options_.group.empty()) {
    std::vector<char> buffer(16384);
    group entry{};
    group* found = nullptr;
    if (::getgrnam_r(options_.group.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
        found == nullptr) {
      return InvalidArgumentError(fmt::format("store: unknown group '{}'", options_.group));
    }
    has_group_ = true;
    group_gid_ = found->gr_gid;
  }

  const uint64_t page = options_.hugepages ? kHugePageSize : kPageSize;
  if (options_.capacity > (uint64_t{1} << 46)) {
    return InvalidArgumentError(fmt::format("store: capacity {} is too large", options_.capacity));
  }
  const uint64_t arena_size = RoundUp(options_.capacity, page);
  ZD_ASSIGN_OR_RETURN(arena_fd_, NewMemfd("zerodet-store-arena", arena_size, options_.hugepages));
  ZD_ASSIGN_OR_RETURN(arena_, internal::MapShared(arena_fd_.get(), arena_size, true, "the arena"));
  ZD_RETURN_IF_ERROR(SealFd(arena_fd_.get(), false, "arena"));
  allocator_ = std::make_unique<TlsfAllocator>(arena_size);

  slot_count_ = std::bit_ceil(options_.max_objects * 2u);
  const uint64_t index_size = internal::IndexRegionSize(slot_count_);
  ZD_ASSIGN_OR_RETURN(index_fd_, NewMemfd("zerodet-store-index", index_size, false));
  ZD_ASSIGN_OR_RETURN(index_map_,
                      internal::MapShared(index_fd_.get(), index_size, true, "the index"));
  index_ = new (index_map_.data()) IndexHeader{};
  index_->magic = internal::kIndexMagic;
  index_->version = internal::kLayoutVersion;
  index_->slot_count = slot_count_;
  index_->arena_size = arena_size;
  index_->store_open.store(1, std::memory_order_relaxed);
  // The fresh memfd is zero-filled: every entry is already kEmpty with sequence 0.
  if (Status s = SealFd(index_fd_.get(), true, "index"); !s.ok()) {
    spdlog::warn("store: {} (kernel < 5.1?); clients could map the index writable", s.message());
    ZD_RETURN_IF_ERROR(SealFd(index_fd_.get(), false, "index"));
  }
  slots_.resize(slot_count_);

  epoll_fd_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  event_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (epoll_fd_.get() < 0 || event_fd_.get() < 0) return ErrnoError("store: epoll/eventfd", errno);
  ZD_RETURN_IF_ERROR(InitSocket());
  for (int fd : {listen_fd_.get(), event_fd_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return ErrnoError("store: epoll_ctl", errno);
    }
  }
  spdlog::info("store: serving {} with a {} arena{}, up to {} objects and {} clients",
               options_.socket_path, Bytes(arena_size), options_.hugepages ? " (huge pages)" : "",
               options_.max_objects, options_.max_clients);
  return Status::Ok();
}

Status StoreServer::Impl::InitSocket() {
  const std::string& path = options_.socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgumentError(fmt::format("store: socket path '{}' is longer than {} bytes", path,
                                            sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  listen_fd_ = UniqueFd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (listen_fd_.get() < 0) return ErrnoError("store: socket", errno);

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return AlreadyExistsError(fmt::format("store: '{}' exists and is not a socket", path));
    }
    UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      return AlreadyExistsError(fmt::format("store: another store is serving '{}'", path));
    }
    spdlog::info("store: replacing stale socket {}", path);
    ::unlink(path.c_str());
  }
  // The socket must never exist with looser permissions than requested, even for an instant.
  const mode_t old_umask = ::umask(0177);
  const int bound = ::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bound != 0) return ErrnoError(fmt::format("store: cannot bind '{}'", path), bind_errno);
  socket_bound_ = true;
  if (has_group_) {
    if (::chown(path.c_str(), static_cast<uid_t>(-1), group_gid_) != 0 ||
        ::chmod(path.c_str(), 0660) != 0) {
      return ErrnoError(fmt::format("store: cannot give '{}' to group '{}'", path, options_.group),
                        errno);
    }
  }
  if (::listen(listen_fd_.get(), 128) != 0) return ErrnoError("store: listen", errno);
  return Status::Ok();
}

bool StoreServer::Impl::Authorized(const ucred& cred) const {
  if (cred.uid == ::geteuid() || cred.uid == 0) return true;
  if (!has_group_) return false;
  if (cred.gid == group_gid_) return true;
  // Supplementary groups of the peer are not in SO_PEERCRED; check the group's member list.
  std::vector<char> buffer(16384);
  group entry{};
  group* found = nullptr;
  if (::getgrgid_r(group_gid_, &entry, buffer.data(), buffer.size(), &found) != 0 || !found) {
    return false;
  }
  std::vector<char> pw_buffer(16384);
  passwd pw{};
  passwd* pw_found = nullptr;
  if (::getpwuid_r(cred.uid, &pw, pw_buffer.data(), pw_buffer.size(), &pw_found) != 0 ||
      !pw_found) {
    return false;
  }
  for (char** member = found->gr_mem; member && *member; ++member) {
    if (std::strcmp(*member, pw_found->pw_name) == 0) return true;
  }
  return false;
}

void StoreServer::Impl::Accept() {
  for (;;) {
    UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (fd.get() < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        spdlog::warn("store: accept: {}", std::strerror(errno));
      }
      return;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      spdlog::warn("store: SO_PEERCRED failed ({}); refusing the connection", std::strerror(errno));
      continue;
    }
    if (!Authorized(cred)) {
      spdlog::warn("store: refused pid {} uid {} gid {}: not the store's user, root or group",
                   cred.pid, cred.uid, cred.gid);
      continue;
    }
    spdlog::info("store: client pid {} uid {} gid {} connected", cred.pid, cred.uid, cred.gid);
    auto client = std::make_unique<Client>();
    client->pid = cred.pid;
    client->uid = cred.uid;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd.get();
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) {
      spdlog::warn("store: epoll_ctl: {}", std::strerror(errno));
      continue;
    }
    const int raw = fd.get();
    client->fd = std::move(fd);
    clients_[raw] = std::move(client);
  }
}

void StoreServer::Impl::DropClient(int fd, const char* why) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& client = *it->second;
  std::erase_if(waiters_, [fd](const Waiter& w) { return w.client_fd == fd; });
  uint64_t aborted = 0;
  for (uint32_t slot = 0; slot < slot_count_; ++slot) {
    if (slots_[slot].owner_fd == fd && StateOf(slot) == EntryState::kCreated) {
      FreeSlotNow(slot);
      ++aborted;
    }
  }
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  spdlog::info("store: client pid {} {}; aborted {} unsealed objects, dropped its references",
               client.pid, why, aborted);
  clients_.erase(it);
  Published();
  // Its references are gone: objects deleted while it held them can be freed now.
  SweepPendingDeletes();
}

bool StoreServer::Impl::Reply(Client& client, MessageType type, const Status& status,
                              std::span<const uint8_t> body) {
  const std::vector<uint8_t> message = internal::SerializeReply(type, status, body);
  Status sent = internal::SendMessage(client.fd.get(), message, {}, /*dont_wait=*/true);
  if (!sent.ok()) {
    spdlog::warn("store: cannot reply to pid {} ({}); disconnecting it", client.pid,
                 sent.message());
    return false;
  }
  return true;
}

void StoreServer::Impl::HandleReadable(int fd) {
  for (;;) {
    auto it = clients_.find(fd);
    if (it == clients_.end()) return;
    Client& client = *it->second;
    Status received = internal::ReceiveMessage(fd, &receive_buffer_, internal::kMaxMessageSize,
                                               nullptr, 0, /*dont_wait=*/true);
    if (received.code() == StatusCode::kDeadlineExceeded) return;  // drained
    if (received.code() == StatusCode::kUnavailable) return DropClient(fd, "disconnected");
    if (!received.ok()) {
      spdlog::warn("store: pid {}: {}", client.pid, received.ToString());
      if (received.code() == StatusCode::kCorruptData) {
        Reply(client, MessageType::kHello, received);
      }
      return DropClient(fd, "sent a malformed message");
    }
    Result<Request> request = internal::ParseRequest(receive_buffer_);
    if (!request.ok()) {
      spdlog::warn("store: pid {}: {}", client.pid, request.status().ToString());
      Reply(client, MessageType::kHello, request.status());
      return DropClient(fd, "sent a malformed message");
    }
    if (!client.hello_done && request->type != MessageType::kHello) {
      Reply(client, request->type, FailedPreconditionError("store: hello expected first"));
      return DropClient(fd, "skipped the hello");
    }
    HandleRequest(client, *request);
  }
}

void StoreServer::Impl::HandleRequest(Client& client, const Request& request) {
  const int fd = client.fd.get();
  bool ok = true;
  switch (request.type) {
    case MessageType::kHello:
      HandleHello(client, request);
      return;
    case MessageType::kCreate: {
      internal::CreateReply reply;
      Status status = HandleCreate(client, request, &reply);
      ok = Reply(client, request.type, status, internal::EncodeCreateReply(reply));
      break;
    }
    case MessageType::kSeal:
      ok = Reply(client, request.type, HandleSeal(client, request));
      break;
    case MessageType::kAbort:
      ok = Reply(client, request.type, HandleAbort(client, request));
      break;
    case MessageType::kDelete:
      ok = Reply(client, request.type, HandleDelete(request));
      break;
    case MessageType::kGet:
      HandleGet(client, request);
      return;
    case MessageType::kList:
      ok = Reply(client, request.type, Status::Ok(),
                 internal::EncodeListReply(HandleList(request.cursor)));
      break;
    case MessageType::kStats:
      ok = Reply(client, request.type, Status::Ok(), internal::EncodeStats(CollectStats()));
      break;
  }
  if (!ok) DropClient(fd, "stopped reading replies");
}

void StoreServer::Impl::HandleHello(Client& client, const Request& request) {
  const int fd = client.fd.get();
  if (client.hello_done) {
    Reply(client, request.type, FailedPreconditionError("store: second hello"));
    return DropClient(fd, "sent a second hello");
  }
  if (request.protocol_version != internal::kProtocolVersion) {
    Reply(client, request.type,
          FailedPreconditionError(fmt::format(
              "store speaks protocol version {}, client {}: use matching zerodet builds",
              internal::kProtocolVersion, request.protocol_version)));
    return DropClient(fd, "speaks another protocol version");
  }
  uint64_t ready = 0;
  for (const auto& [other_fd, other] : clients_) ready += other->hello_done;
  if (ready >= options_.max_clients) {
    Reply(client, request.type,
          ResourceExhaustedError(fmt::format("store {} already serves its maximum of {} clients",
                                             options_.socket_path, options_.max_clients)));
    return DropClient(fd, "was refused (too many clients)");
  }
  const uint64_t region_size = internal::ClientRegionSize(slot_count_);
  Result<UniqueFd> region_fd = NewMemfd("zerodet-store-client", region_size, false);
  Result<Mapping> region =
      region_fd.ok() ? internal::MapShared(region_fd->get(), region_size, true, "a client region")
                     : Result<Mapping>(region_fd.status());
  if (region.ok()) {
    Status sealed = SealFd(region_fd->get(), false, "client region");
    if (!sealed.ok()) region = sealed;
  }
  if (!region.ok()) {
    Reply(client, request.type, region.status());
    return DropClient(fd, "could not get a reference region");
  }
  client.region = std::move(*region);
  client.header = new (client.region.data()) ClientRegionHeader{};
  client.refs = internal::Refs(client.header);
  client.touched = internal::Touched(client.header, slot_count_);
  internal::HelloReply hello{slot_count_, arena_.size(), region_size};
  const std::vector<uint8_t> message =
      internal::SerializeReply(request.type, Status::Ok(), internal::EncodeHelloReply(hello));
  const int fds[3] = {arena_fd_.get(), index_fd_.get(), region_fd->get()};
  Status sent = internal::SendMessage(fd, message, fds, /*dont_wait=*/true);
  if (!sent.ok()) return DropClient(fd, "vanished during the hello");
  client.hello_done = true;
}

uint64_t StoreServer::Impl::FindSlot(const ObjectId& id) {
  uint64_t words[3];
  internal::IdToWords(id, words);
  return internal::ProbeSlot(index_, words);
}

void StoreServer::Impl::BeginEntryWrite(IndexEntry& e) {
  const uint64_t seq = e.seq.load(std::memory_order_relaxed);
  e.seq.store(seq + 1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_release);
}

void StoreServer::Impl::EndEntryWrite(IndexEntry& e) {
  const uint64_t seq = e.seq.load(std::memory_order_relaxed);
  e.seq.store(seq + 1, std::memory_order_release);
}

bool StoreServer::Impl::Referenced(uint32_t slot) const {
  for (const auto& [fd, client] : clients_) {
    if (client->refs != nullptr && client->refs[slot].load(std::memory_order_seq_cst) != 0) {
      return true;
    }
  }
  return false;
}

void StoreServer::Impl::FreeSlotNow(uint32_t slot) {
  IndexEntry& e = Entry(slot);
  BeginEntryWrite(e);
  e.state.store(static_cast<uint32_t>(EntryState::kTombstone), std::memory_order_relaxed);
  EndEntryWrite(e);
  LruRemove(slot);
  allocator_->Free(slots_[slot].alloc_offset);
  slots_[slot] = SlotInfo{};
  --live_objects_;
}

bool StoreServer::Impl::RemoveOrMark(uint32_t slot, EntryState state_if_referenced) {
  IndexEntry& e = Entry(slot);
  const bool was_sealed = StateOf(slot) == EntryState::kSealed;
  BeginEntryWrite(e);
  if (Referenced(slot)) {
    e.state.store(static_cast<uint32_t>(state_if_referenced), std::memory_order_relaxed);
    EndEntryWrite(e);
    if (was_sealed && state_if_referenced != EntryState::kSealed) --sealed_objects_;
    return false;
  }
  e.state.store(static_cast<uint32_t>(EntryState::kTombstone), std::memory_order_relaxed);
  EndEntryWrite(e);
  if (was_sealed) --sealed_objects_;
  if (slots_[slot].in_lru) LruRemove(slot);
  allocator_->Free(slots_[slot].alloc_offset);
  slots_[slot] = SlotInfo{};
  --live_objects_;
  return true;
}

void StoreServer::Impl::LruTouch(uint32_t slot) {
  SlotInfo& info = slots_[slot];
  if (info.in_lru) {
    lru_.splice(lru_.end(), lru_, info.lru_it);
  } else {
    info.lru_it = lru_.insert(lru_.end(), slot);
    info.in_lru = true;
  }
}

void StoreServer::Impl::LruRemove(uint32_t slot) {
  SlotInfo& info = slots_[slot];
  if (!info.in_lru) return;
  lru_.erase(info.lru_it);
  info.in_lru = false;
}

std::optional<uint64_t> StoreServer::Impl::AllocateWithEviction(uint64_t size) {
  if (auto offset = allocator_->Allocate(size)) return offset;
  SweepPendingDeletes();
  for (;;) {
    if (auto offset = allocator_->Allocate(size)) return offset;
    // CLOCK-style second chance over the LRU order: an object read through the fast path since
    // the last pass (its touched byte set by some client) moves to the back once.
    bool evicted = false;
    for (size_t budget = 2 * lru_.size(); budget > 0 && !lru_.empty() && !evicted; --budget) {
      const uint32_t slot = lru_.front();
      bool touched = false;
      for (auto& [fd, client] : clients_) {
        if (client->touched != nullptr &&
            client->touched[slot].load(std::memory_order_relaxed) != 0) {
          client->touched[slot].store(0, std::memory_order_relaxed);
          touched = true;
        }
      }
      if (touched) {
        LruTouch(slot);
        continue;
      }
      if (RemoveOrMark(slot, EntryState::kSealed)) {
        ++evictions_;
        evicted = true;
      } else {
        LruTouch(slot);  // referenced: in use, never evicted
      }
    }
    if (!evicted) return std::nullopt;
  }
}

Status StoreServer::Impl::HandleCreate(Client& client, const Request& request,
                                       internal::CreateReply* reply) {
  const std::string hex = request.id.ToHex();
  if (request.data_size > arena_.size()) {
    return ResourceExhaustedError(
        fmt::format("object {} of {} can never fit: the store's arena holds {}", hex,
                    Bytes(request.data_size), Bytes(arena_.size())));
  }
  const uint64_t slot_found = FindSlot(request.id);
  if (slot_found != internal::kNoSlot) {
    const EntryState state = StateOf(static_cast<uint32_t>(slot_found));
    const char* what = state == EntryState::kSealed    ? "exists"
                       : state == EntryState::kCreated ? "is being created"
                                                       : "is deleted but still referenced";
    return AlreadyExistsError(fmt::format("object {} {}", hex, what));
  }
  if (live_objects_ >= options_.max_objects) {
    return ResourceExhaustedError(fmt::format(
        "store object table full: {} objects (start the store with a larger max_objects)",
        live_objects_));
  }
  const uint64_t data_span = RoundUp(request.data_size, TlsfAllocator::kAlignment);
  const uint64_t total = data_span + request.metadata.size();
  std::optional<uint64_t> offset = AllocateWithEviction(total);
  if (!offset) {
    uint64_t pinned = 0;
    for (uint32_t slot = 0; slot < slot_count_; ++slot) {
      const EntryState state = StateOf(slot);
      if (state == EntryState::kCreated || state == EntryState::kDeleting ||
          (state == EntryState::kSealed && Referenced(slot))) {
        pinned += allocator_->BlockSize(slots_[slot].alloc_offset);
      }
    }
    return ResourceExhaustedError(fmt::format(
        "store full: object {} needs {} ({} bytes with metadata); largest free block {}, {} "
        "free of {}; {} held by referenced or unsealed objects that cannot be evicted",
        hex, Bytes(request.data_size), total, Bytes(allocator_->largest_free_block()),
        Bytes(allocator_->bytes_free()), Bytes(allocator_->capacity()), Bytes(pinned)));
  }
  // Find the insertion slot: the first tombstone or empty slot on the probe path. The table
  // is at most half full, so one exists.
  uint64_t words[3];
  internal::IdToWords(request.id, words);
  const uint32_t home = internal::HomeSlot(words, slot_count_);
  uint32_t slot = 0, distance = 0;
  for (;; ++distance) {
    slot = (home + distance) & (slot_count_ - 1);
    const EntryState state = StateOf(slot);
    if (state == EntryState::kEmpty || state == EntryState::kTombstone) break;
  }
  if (distance > index_->max_probe.load(std::memory_order_relaxed)) {
    index_->max_probe.store(distance, std::memory_order_release);
  }
  // Metadata is the only thing the store writes into the arena; the block bounds it.
  std::memcpy(arena_.data() + *offset + data_span, request.metadata.data(),
              request.metadata.size());
  IndexEntry& e = Entry(slot);
  BeginEntryWrite(e);
  for (int i = 0; i < 3; ++i) e.id_words[i].store(words[i], std::memory_order_relaxed);
  e.offset.store(*offset, std::memory_order_relaxed);
  e.data_size.store(request.data_size, std::memory_order_relaxed);
  e.metadata_size.store(static_cast<uint32_t>(request.metadata.size()), std::memory_order_relaxed);
  e.state.store(static_cast<uint32_t>(EntryState::kCreated), std::memory_order_relaxed);
  EndEntryWrite(e);
  slots_[slot] = SlotInfo{};
  slots_[slot].alloc_offset = *offset;
  slots_[slot].owner_fd = client.fd.get();
  ++live_objects_;
  ++creates_;
  Published();
  reply->offset = *offset;
  reply->metadata_offset = *offset + data_span;
  return Status::Ok();
}

Status StoreServer::Impl::HandleSeal(Client& client, const Request& request) {
  const uint64_t found = FindSlot(request.id);
  if (found == internal::kNoSlot) {
    return NotFoundError(fmt::format("seal: no object {}", request.id.ToHex()));
  }
  const auto slot = static_cast<uint32_t>(found);
  if (StateOf(slot) != EntryState::kCreated) {
    return FailedPreconditionError(
        fmt::format("seal: object {} is already sealed", request.id.ToHex()));
  }
  if (slots_[slot].owner_fd != client.fd.get()) {
    return PermissionDeniedError(
        fmt::format("seal: object {} was created by another client", request.id.ToHex()));
  }
  // Pairs with the creator's release increment: its writes to the object happen before.
  client.header->publish_count.load(std::memory_order_acquire);
  IndexEntry& e = Entry(slot);
  BeginEntryWrite(e);
  e.state.store(static_cast<uint32_t>(EntryState::kSealed), std::memory_order_relaxed);
  EndEntryWrite(e);
  slots_[slot].owner_fd = -1;
  ++sealed_objects_;
  LruTouch(slot);
  Published();
  WakeWaiters(request.id, slot);
  return Status::Ok();
}

Status StoreServer::Impl::HandleAbort(Client& client, const Request& request) {
  const uint64_t found = FindSlot(request.id);
  if (found == internal::kNoSlot) {
    return NotFoundError(fmt::format("abort: no object {}", request.id.ToHex()));
  }
  const auto slot = static_cast<uint32_t>(found);
  if (StateOf(slot) != EntryState::kCreated) {
    return FailedPreconditionError(
        fmt::format("abort: object {} is sealed; delete it instead", request.id.ToHex()));
  }
  if (slots_[slot].owner_fd != client.fd.get()) {
    return PermissionDeniedError(
        fmt::format("abort: object {} was created by another client", request.id.ToHex()));
  }
  FreeSlotNow(slot);
  Published();
  return Status::Ok();
}

Status StoreServer::Impl::HandleDelete(const Request& request) {
  Status first_error;
  for (const ObjectId& id : request.ids) {
    const uint64_t found = FindSlot(id);
    if (found == internal::kNoSlot) {
      if (first_error.ok())
        first_error = NotFoundError(fmt::format("delete: no object {}", id.ToHex()));
      continue;
    }
    const auto slot = static_cast<uint32_t>(found);
    const EntryState state = StateOf(slot);
    if (state == EntryState::kCreated) {
      if (first_error.ok()) {
        first_error = FailedPreconditionError(fmt::format(
            "delete: object {} is still being created; its creator must seal or abort it",
            id.ToHex()));
      }
      continue;
    }
    if (state == EntryState::kDeleting) continue;
    LruRemove(slot);
    if (!RemoveOrMark(slot, EntryState::kDeleting)) pending_deletes_.push_back(slot);
  }
  Published();
  return first_error;
}

void StoreServer::Impl::TakeReference(Client& client, uint32_t slot, internal::GetReply* reply) {
  client.refs[slot].fetch_add(1, std::memory_order_seq_cst);
  IndexEntry& e = Entry(slot);
  reply->slot = slot;
  reply->offset = e.offset.load(std::memory_order_relaxed);
  reply->data_size = e.data_size.load(std::memory_order_relaxed);
  reply->metadata_size = e.metadata_size.load(std::memory_order_relaxed);
  LruTouch(slot);
  ++socket_gets_;
}

bool StoreServer::Impl::HandleGet(Client& client, const Request& request) {
  const uint64_t found = FindSlot(request.id);
  if (found != internal::kNoSlot && StateOf(static_cast<uint32_t>(found)) == EntryState::kSealed) {
    internal::GetReply reply;
    TakeReference(client, static_cast<uint32_t>(found), &reply);
    Published();
    if (!Reply(client, request.type, Status::Ok(), internal::EncodeGetReply(reply))) {
      DropClient(client.fd.get(), "stopped reading replies");
    }
    return true;
  }
  if (request.timeout_ms == 0) {
    if (!Reply(client, request.type,
               NotFoundError(fmt::format("no sealed object {}", request.id.ToHex())))) {
      DropClient(client.fd.get(), "stopped reading replies");
    }
    return true;
  }
  Waiter waiter{client.fd.get(), request.id, Clock::now(), request.timeout_ms < 0,
                request.timeout_ms};
  if (!waiter.forever) waiter.deadline += std::chrono::milliseconds(request.timeout_ms);
  waiters_.push_back(waiter);
  return false;
}

void StoreServer::Impl::WakeWaiters(const ObjectId& id, uint32_t slot) {
  std::vector<int> failed;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->id != id) {
      ++it;
      continue;
    }
    auto client = clients_.find(it->client_fd);
    if (client != clients_.end()) {
      internal::GetReply reply;
      TakeReference(*client->second, slot, &reply);
      if (!Reply(*client->second, MessageType::kGet, Status::Ok(),
                 internal::EncodeGetReply(reply))) {
        failed.push_back(it->client_fd);
      }
    }
    it = waiters_.erase(it);
  }
  Published();
  for (int fd : failed) DropClient(fd, "stopped reading replies");
}

void StoreServer::Impl::ExpireWaiters() {
  const auto now = Clock::now();
  std::vector<int> failed;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->forever || it->deadline > now) {
      ++it;
      continue;
    }
    auto client = clients_.find(it->client_fd);
    if (client != clients_.end() &&
        !Reply(*client->second, MessageType::kGet,
               DeadlineExceededError(fmt::format("object {} was not sealed within {} ms",
                                                 it->id.ToHex(), it->timeout_ms)))) {
      failed.push_back(it->client_fd);
    }
    it = waiters_.erase(it);
  }
  for (int fd : failed) DropClient(fd, "stopped reading replies");
}

void StoreServer::Impl::SweepPendingDeletes() {
  bool freed = false;
  std::erase_if(pending_deletes_, [&](uint32_t slot) {
    if (StateOf(slot) != EntryState::kDeleting) return true;
    if (RemoveOrMark(slot, EntryState::kDeleting)) {
      freed = true;
      return true;
    }
    return false;
  });
  if (freed) Published();
}

internal::ListReply StoreServer::Impl::HandleList(uint32_t cursor) {
  internal::ListReply reply;
  uint32_t slot = cursor;
  for (; slot < slot_count_ && reply.objects.size() < internal::kListPageSize; ++slot) {
    const EntryState state = StateOf(slot);
    if (state != EntryState::kCreated && state != EntryState::kSealed &&
        state != EntryState::kDeleting) {
      continue;
    }
    IndexEntry& e = Entry(slot);
    ObjectInfo info;
    uint64_t words[3];
    for (int i = 0; i < 3; ++i) words[i] = e.id_words[i].load(std::memory_order_relaxed);
    std::memcpy(info.id.bytes.data(), words, ObjectId::kSize);
    info.data_size = e.data_size.load(std::memory_order_relaxed);
    info.metadata_size = e.metadata_size.load(std::memory_order_relaxed);
    info.sealed = state != EntryState::kCreated;
    info.pending_delete = state == EntryState::kDeleting;
    reply.objects.push_back(info);
  }
  reply.next_cursor = slot < slot_count_ ? slot : 0;
  return reply;
}

StoreStats StoreServer::Impl::CollectStats() const {
  StoreStats stats;
  stats.capacity = allocator_->capacity();
  stats.bytes_allocated = allocator_->bytes_allocated();
  stats.largest_free_block = allocator_->largest_free_block();
  stats.objects = live_objects_;
  stats.sealed_objects = sealed_objects_;
  stats.pending_deletes = pending_deletes_.size();
  stats.unsealed_objects = live_objects_ - sealed_objects_ - stats.pending_deletes;
  stats.max_objects = options_.max_objects;
  for (const auto& [fd, client] : clients_) stats.clients += client->hello_done;
  stats.evictions = evictions_;
  stats.creates = creates_;
  stats.socket_gets = socket_gets_;
  return stats;
}

Status StoreServer::Impl::Run() {
  epoll_event events[64];
  for (;;) {
    int timeout_ms = pending_deletes_.empty() ? 1000 : kSweepIntervalMs;
    const auto now = Clock::now();
    for (const Waiter& w : waiters_) {
      if (w.forever) continue;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(w.deadline - now).count() + 1;
      timeout_ms = std::min<int>(timeout_ms, static_cast<int>(std::max<int64_t>(left, 0)));
    }
    const int n = ::epoll_wait(epoll_fd_.get(), events, 64, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("store: epoll_wait", errno);
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == event_fd_.get()) {
        spdlog::info("store: shutting down {}", options_.socket_path);
        index_->store_open.store(0, std::memory_order_release);
        Published();
        while (!clients_.empty()) DropClient(clients_.begin()->first, "disconnected (shutdown)");
        return Status::Ok();
      }
      if (fd == listen_fd_.get()) {
        Accept();
        continue;
      }
      if (events[i].events & EPOLLIN) HandleReadable(fd);
      if (events[i].events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
        // Read what is left first (a final request), then drop on EOF.
        HandleReadable(fd);
        DropClient(fd, "disconnected");
      }
    }
    ExpireWaiters();
    if (!pending_deletes_.empty()) SweepPendingDeletes();
  }
}

StoreServer::StoreServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

StoreServer::~StoreServer() {
  Stop();
}

Result<std::unique_ptr<StoreServer>> StoreServer::Create(const StoreOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  ZD_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<StoreServer>(new StoreServer(std::move(impl)));
}

Status StoreServer::Run() {
  return impl_->Run();
}

void StoreServer::Start() {
  thread_ = std::thread([this] {
    Status status = impl_->Run();
    if (!status.ok()) spdlog::error("store: {}", status.ToString());
  });
}

void StoreServer::Shutdown() {
  impl_->Shutdown();
}

void StoreServer::Stop() {
  if (thread_.joinable()) {
    Shutdown();
    thread_.join();
  }
}

const StoreOptions& StoreServer::options() const {
  return impl_->options();
}

}  // namespace zerodet::store

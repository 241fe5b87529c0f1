#include "zerodet/store/server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "arena.h"
#include "human_bytes.h"
#include "object_table.h"
#include "protocol.h"
#include "shm_layout.h"
#include "shm_util.h"
#include "zerodet/core/clock.h"
#include "zerodet/core/log_rate_limiter.h"
#include "zerodet/core/unix_socket.h"

namespace zerodet::store {

using internal::ClientId;
using internal::ClientRegionHeader;
using internal::HumanBytes;
using internal::Mapping;
using internal::MessageType;
using internal::Request;

namespace {

// How often deferred deletions (objects deleted while referenced) are retried. References are
// dropped without a message, so the store polls for them.
constexpr int kSweepIntervalMs = 20;
// The longest the loop sleeps without a reason to wake.
constexpr int kIdleWakeMs = 1000;
// How long the store stops accepting when the system (not just this process) is out of
// descriptors and the reserve descriptor could not help.
constexpr auto kAcceptPause = std::chrono::milliseconds(100);
// Descriptors the store needs besides one per connection (listen, epoll, eventfd, regions,
// the reserve, logging).
constexpr uint64_t kSpareDescriptors = 32;
// epoll tokens of the two descriptors that are not connections (connections use their id,
// never reused, so an event can never reach a later connection that got the same fd).
constexpr uint64_t kListenToken = ~uint64_t{0};
constexpr uint64_t kWakeToken = ~uint64_t{0} - 1;

// A peer's identity as the kernel recorded it at connect time.
struct Peer {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups

  bool InGroup(gid_t group) const {
    return gid == group || std::find(groups.begin(), groups.end(), group) != groups.end();
  }
};

Result<Peer> ReadPeer(int fd) {
  ZD_ASSIGN_OR_RETURN(const PeerCredentials cred, PeerCredentialsOf(fd));
  Peer peer{cred.pid, cred.uid, cred.gid, {}};
  // SO_PEERGROUPS (Linux 4.13): the groups the peer had when it connected, so supplementary
  // memberships granted by systemd's SupplementaryGroups= or a container's --group-add count.
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 4; ++attempt) {
    socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
      groups.resize(bytes / sizeof(gid_t));
      peer.groups = std::move(groups);
      return peer;
    }
    if (errno != ERANGE) break;
    groups.resize(bytes / sizeof(gid_t) + 1);
  }
  return peer;  // primary group only (old kernel)
}

Result<gid_t> LookUpGroup(const std::string& name, const char* flag) {
  std::vector<char> buffer(16384);
  group entry{};
  group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
      found == nullptr) {
    return InvalidArgumentError(fmt::format("store: unknown {} '{}'", flag, name));
  }
  return found->gr_gid;
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
  // What Stats() returns: CollectStats() as the loop last published it. Any thread.
  StoreStats PublishedStats() const {
    std::lock_guard<std::mutex> lock(published_mu_);
    return published_;
  }

 private:
  struct Connection {
    ClientId id = 0;  // never reused, unlike the fd
    UniqueFd fd;
    Peer peer;
    bool may_write = false;
    bool hello_done = false;
    StoreAccess access = StoreAccess::kReadOnly;
    Mapping region;  // its reference region, as the store maps it
    Deadline hello_deadline = Deadline::Never();
  };
  struct Waiter {
    ClientId connection;
    ObjectId id;
    Deadline deadline;
    int64_t timeout_ms;
  };

  Status InitSocket();
  void RaiseDescriptorLimit();
  bool Authorized(const Peer& peer) const;
  bool MayWrite(const Peer& peer) const;
  void Accept();
  // Refuses one pending connection with a reason using the reserve descriptor; false when
  // nothing was pending (or listening had to pause).
  bool AcceptWithoutDescriptors();
  void Refuse(UniqueFd fd, const Status& why);
  void PauseListening();
  void ResumeListeningIfDue();
  int NextTimeoutMs() const;
  void ExpireHellos();
  void ExpireWaiters();

  Connection* Find(ClientId id);
  void HandleReadable(ClientId id);
  void DropConnection(ClientId id, const std::string& why);
  bool Reply(Connection& connection, MessageType type, const Status& status,
             std::span<const uint8_t> body = {});
  void HandleRequest(Connection& connection, const Request& request);
  void HandleHello(Connection& connection, const Request& request);
  void HandleGet(Connection& connection, const Request& request);
  void WakeWaiters(const ObjectId& id);
  StoreStats CollectStats() const;
  // Publishes CollectStats() for other threads. Loop thread only.
  void PublishStats() {
    const StoreStats stats = CollectStats();
    std::lock_guard<std::mutex> lock(published_mu_);
    published_ = stats;
  }

  StoreOptions options_;
  std::optional<internal::Arena> arena_;
  internal::SealedRegion index_;
  std::unique_ptr<internal::ObjectTable> table_;
  UnixListener listener_;
  UniqueFd epoll_fd_, event_fd_;
  // Kept open so that, when the process has no descriptors left, closing it makes room to
  // accept a connection and tell it why it is refused.
  UniqueFd reserve_fd_;
  std::optional<gid_t> group_gid_, writer_gid_;
  bool listening_ = true;
  Deadline listen_resume_ = Deadline::Never();

  std::unordered_map<ClientId, std::unique_ptr<Connection>> connections_;
  std::deque<ClientId> awaiting_hello_;  // accept order = deadline order
  ClientId next_connection_id_ = 1;
  uint64_t clients_ = 0;  // connections that completed the hello
  uint64_t refused_ = 0, hello_timeouts_ = 0;
  std::vector<Waiter> waiters_;
  // The object table belongs to the loop thread. Other threads (a metrics scrape) read this
  // copy, which the loop refreshes at the end of every pass: the table changes only in a pass,
  // so the copy is exact between passes, and the loop's cost is one uncontended lock and a
  // struct copy per pass (a pass already costs an epoll_wait and a socket message or more).
  mutable std::mutex published_mu_;
  StoreStats published_;
  std::vector<uint8_t> receive_buffer_;
  LogRateLimiter accept_log_, refusal_log_, protocol_log_;
};

StoreServer::Impl::~Impl() {
  if (table_ != nullptr) table_->MarkClosed();
  connections_.clear();
  // listener_ unlinks the socket, if it is still ours, when it is destroyed.
}

Status StoreServer::Impl::Init() {
  if (options_.socket_path.empty()) return InvalidArgumentError("store: empty socket path");
  if (options_.max_objects == 0 || options_.max_objects > internal::ObjectTable::kMaxObjects) {
    return InvalidArgumentError(fmt::format("store: max_objects {} out of range 1..{}",
                                            options_.max_objects,
                                            internal::ObjectTable::kMaxObjects));
  }
  if (options_.max_clients == 0 || options_.max_clients > 4096) {
    return InvalidArgumentError(
        fmt::format("store: max_clients {} out of range 1..4096", options_.max_clients));
  }
  if (options_.hello_timeout.count() <= 0) {
    return InvalidArgumentError("store: hello_timeout must be positive");
  }
  if (!options_.group.empty()) {
    ZD_ASSIGN_OR_RETURN(group_gid_, LookUpGroup(options_.group, "group"));
  }
  if (!options_.writer_group.empty()) {
    ZD_ASSIGN_OR_RETURN(writer_gid_, LookUpGroup(options_.writer_group, "writer group"));
  }

  ZD_ASSIGN_OR_RETURN(arena_, internal::Arena::Create({.capacity = options_.capacity,
                                                       .hugepages = options_.hugepages,
                                                       .populate = options_.populate}));
  ZD_ASSIGN_OR_RETURN(index_,
                      internal::NewSealedRegion("zerodet-store-index",
                                                internal::IndexRegionSize(options_.max_objects),
                                                /*deny_writable_maps=*/true));
  table_ = std::make_unique<internal::ObjectTable>(
      std::span<uint8_t>(index_.mapping.data(), index_.mapping.size()), arena_->memory(),
      options_.max_objects);
  PublishStats();

  epoll_fd_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  event_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!epoll_fd_.valid() || !event_fd_.valid()) return ErrnoError("store: epoll/eventfd", errno);
  RaiseDescriptorLimit();
  reserve_fd_ = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ZD_RETURN_IF_ERROR(InitSocket().WithContext("store"));
  for (const auto& [fd, token] :
       {std::pair{listener_.fd(), kListenToken}, std::pair{event_fd_.get(), kWakeToken}}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = token;
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return ErrnoError("store: epoll_ctl", errno);
    }
  }
  spdlog::info("store: serving {} with a {}, up to {} objects and {} connections",
               options_.socket_path, arena_->Describe(), options_.max_objects,
               options_.max_clients);
  return Status::Ok();
}

void StoreServer::Impl::RaiseDescriptorLimit() {
  const uint64_t needed = uint64_t{options_.max_clients} + kSpareDescriptors;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= needed) return;
  limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, needed);
  ::setrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < needed) {
    spdlog::warn(
        "store: the open-file limit ({}) is below max_clients + {}; connections beyond "
        "it are refused",
        limit.rlim_cur, kSpareDescriptors);
  }
}

Status StoreServer::Impl::InitSocket() {
  const std::string& path = options_.socket_path;
  ZD_ASSIGN_OR_RETURN(listener_,
                      UnixListener::Bind(path, {.type = SOCK_SEQPACKET, .backlog = 128}));
  if (group_gid_) {
    if (::chown(path.c_str(), static_cast<uid_t>(-1), *group_gid_) != 0 ||
        ::chmod(path.c_str(), 0660) != 0) {
      return ErrnoError(fmt::format("store: cannot give '{}' to group '{}'", path, options_.group),
                        errno);
    }
  }
  return Status::Ok();
}

bool StoreServer::Impl::Authorized(const Peer& peer) const {
  if (peer.uid == ::geteuid() || peer.uid == 0) return true;
  return group_gid_ && peer.InGroup(*group_gid_);
}

bool StoreServer::Impl::MayWrite(const Peer& peer) const {
  if (!writer_gid_ || peer.uid == ::geteuid() || peer.uid == 0) return true;
  return peer.InGroup(*writer_gid_);
}

// ---- Accepting ----

void StoreServer::Impl::Refuse(UniqueFd fd, const Status& why) {
  ++refused_;
  const std::vector<uint8_t> message = internal::SerializeReply(MessageType::kHello, why);
  // A fresh connection's buffer is empty: this never blocks, and a peer that is gone is fine.
  (void)internal::SendMessage(fd.get(), message, {}, /*dont_wait=*/true);
}

void StoreServer::Impl::PauseListening() {
  if (!listening_) return;
  epoll_event ev{};
  ev.data.u64 = kListenToken;
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, listener_.fd(), &ev);
  listening_ = false;
  listen_resume_ = Deadline::After(kAcceptPause);
}

void StoreServer::Impl::ResumeListeningIfDue() {
  if (listening_ || !listen_resume_.expired()) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenToken;
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, listener_.fd(), &ev);
  listening_ = true;
  listen_resume_ = Deadline::Never();
}

bool StoreServer::Impl::AcceptWithoutDescriptors() {
  if (!reserve_fd_.valid()) {
    // The whole system is out of descriptors: stop polling the socket for a moment instead of
    // waking up for the same pending connection again and again.
    PauseListening();
    return false;
  }
  reserve_fd_.Reset();
  UniqueFd fd(::accept4(listener_.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  // EAGAIN here means nothing was pending: accept() reports EMFILE before it looks.
  const bool refused = fd.valid();
  if (refused) {
    Refuse(std::move(fd),
           ResourceExhaustedError(fmt::format(
               "store {} has no file descriptors left ({} connections open); try again later",
               options_.socket_path, connections_.size())));
  }
  reserve_fd_ = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!reserve_fd_.valid()) {
    PauseListening();
    return false;
  }
  return refused;
}

void StoreServer::Impl::Accept() {
  while (listening_) {
    UniqueFd fd(::accept4(listener_.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd.valid()) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      LogRateLimited(accept_log_, spdlog::level::warn, "store: accept on {}: {}",
                     options_.socket_path, std::strerror(err));
      if (err == EMFILE || err == ENFILE) {
        if (AcceptWithoutDescriptors()) continue;
        return;
      }
      PauseListening();
      return;
    }
    Result<Peer> peer = ReadPeer(fd.get());
    if (!peer.ok()) {
      LogRateLimited(refusal_log_, spdlog::level::warn, "store: refusing a connection: {}",
                     peer.status().message());
      Refuse(std::move(fd), PermissionDeniedError("store cannot read the peer's credentials"));
      continue;
    }
    if (!Authorized(*peer)) {
      LogRateLimited(refusal_log_, spdlog::level::warn,
                     "store: refused pid {} uid {} gid {}: not the store's user, root or group",
                     peer->pid, peer->uid, peer->gid);
      Refuse(std::move(fd),
             PermissionDeniedError(fmt::format(
                 "store {} refuses uid {} (gid {}): it serves only its own user (uid {}), root{}",
                 options_.socket_path, peer->uid, peer->gid, ::geteuid(),
                 group_gid_ ? fmt::format(" and members of group '{}'", options_.group)
                            : std::string())));
      continue;
    }
    if (connections_.size() >= options_.max_clients) {
      LogRateLimited(refusal_log_, spdlog::level::warn,
                     "store: refused pid {}: {} connections open (--max-clients)", peer->pid,
                     connections_.size());
      Refuse(std::move(fd),
             ResourceExhaustedError(fmt::format(
                 "store {} already has its maximum of {} connections (--max-clients); "
                 "connections that do not say hello within {} ms are dropped",
                 options_.socket_path, options_.max_clients, options_.hello_timeout.count())));
      continue;
    }
    const ClientId id = next_connection_id_++;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = id;
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) {
      LogRateLimited(accept_log_, spdlog::level::warn, "store: epoll_ctl: {}",
                     std::strerror(errno));
      continue;
    }
    spdlog::info("store: pid {} uid {} gid {} connected", peer->pid, peer->uid, peer->gid);
    auto connection = std::make_unique<Connection>();
    connection->id = id;
    connection->peer = std::move(*peer);
    connection->may_write = MayWrite(connection->peer);
    connection->hello_deadline = Deadline::After(
        std::chrono::duration_cast<std::chrono::nanoseconds>(options_.hello_timeout));
    connection->fd = std::move(fd);
    awaiting_hello_.push_back(id);
    connections_[id] = std::move(connection);
  }
}

// ---- Connections ----

StoreServer::Impl::Connection* StoreServer::Impl::Find(ClientId id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

void StoreServer::Impl::DropConnection(ClientId id, const std::string& why) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  Connection& connection = *it->second;
  std::erase_if(waiters_, [id](const Waiter& w) { return w.connection == id; });
  size_t aborted = 0;
  if (connection.hello_done) {
    aborted = table_->RemoveClient(id);
    --clients_;
  }
  ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, connection.fd.get(), nullptr);
  spdlog::info("store: pid {} {}; aborted {} unsealed objects, dropped its references",
               connection.peer.pid, why, aborted);
  connections_.erase(it);
}

bool StoreServer::Impl::Reply(Connection& connection, MessageType type, const Status& status,
                              std::span<const uint8_t> body) {
  const std::vector<uint8_t> message = internal::SerializeReply(type, status, body);
  Status sent = internal::SendMessage(connection.fd.get(), message, {}, /*dont_wait=*/true);
  if (!sent.ok()) {
    LogRateLimited(protocol_log_, spdlog::level::warn,
                   "store: cannot reply to pid {} ({}); disconnecting it", connection.peer.pid,
                   sent.message());
    return false;
  }
  return true;
}

void StoreServer::Impl::HandleReadable(ClientId id) {
  for (;;) {
    Connection* connection = Find(id);
    if (connection == nullptr) return;
    Status received =
        internal::ReceiveMessage(connection->fd.get(), &receive_buffer_, internal::kMaxMessageSize,
                                 nullptr, 0, /*dont_wait=*/true);
    if (received.code() == StatusCode::kDeadlineExceeded) return;  // drained
    if (received.code() == StatusCode::kUnavailable) return DropConnection(id, "disconnected");
    if (!received.ok()) {
      LogRateLimited(protocol_log_, spdlog::level::warn, "store: pid {}: {}", connection->peer.pid,
                     received.ToString());
      if (received.code() == StatusCode::kCorruptData) {
        Reply(*connection, MessageType::kHello, received);
      }
      return DropConnection(id, "sent a malformed message");
    }
    Result<Request> request = internal::ParseRequest(receive_buffer_);
    if (!request.ok()) {
      LogRateLimited(protocol_log_, spdlog::level::warn, "store: pid {}: {}", connection->peer.pid,
                     request.status().ToString());
      Reply(*connection, MessageType::kHello, request.status());
      return DropConnection(id, "sent a malformed message");
    }
    if (!connection->hello_done && request->type != MessageType::kHello) {
      Reply(*connection, request->type, FailedPreconditionError("store: hello expected first"));
      return DropConnection(id, "skipped the hello");
    }
    HandleRequest(*connection, *request);
  }
}

void StoreServer::Impl::HandleRequest(Connection& connection, const Request& request) {
  const ClientId id = connection.id;
  const bool mutates = request.type == MessageType::kCreate || request.type == MessageType::kSeal ||
                       request.type == MessageType::kAbort || request.type == MessageType::kDelete;
  if (mutates && connection.access != StoreAccess::kReadWrite) {
    if (!Reply(connection, request.type,
               PermissionDeniedError("store: this connection is read-only; connect read-write "
                                     "to create, seal, abort or delete objects"))) {
      DropConnection(id, "stopped reading replies");
    }
    return;
  }
  bool ok = true;
  switch (request.type) {
    case MessageType::kHello:
      HandleHello(connection, request);
      return;
    case MessageType::kCreate: {
      Result<internal::ObjectPlacement> placement = table_->Create(
          id, request.id, request.data_size,
          {reinterpret_cast<const uint8_t*>(request.metadata.data()), request.metadata.size()},
          request.flags);
      internal::CreateReply reply;
      if (placement.ok()) reply = {placement->offset, placement->metadata_offset};
      ok = Reply(connection, request.type, placement.status(), internal::EncodeCreateReply(reply));
      break;
    }
    case MessageType::kSeal: {
      const Status sealed = table_->Seal(id, request.id);
      ok = Reply(connection, request.type, sealed);
      if (sealed.ok()) WakeWaiters(request.id);
      break;
    }
    case MessageType::kAbort:
      ok = Reply(connection, request.type, table_->Abort(id, request.id));
      break;
    case MessageType::kDelete:
      ok = Reply(connection, request.type, table_->Delete(request.ids));
      break;
    case MessageType::kGet:
      HandleGet(connection, request);
      return;
    case MessageType::kList:
      ok = Reply(connection, request.type, Status::Ok(),
                 internal::EncodeListReply(table_->List(request.cursor)));
      break;
    case MessageType::kStats:
      ok = Reply(connection, request.type, Status::Ok(), internal::EncodeStats(CollectStats()));
      break;
  }
  if (!ok) DropConnection(id, "stopped reading replies");
}

void StoreServer::Impl::HandleHello(Connection& connection, const Request& request) {
  const ClientId id = connection.id;
  const int fd = connection.fd.get();
  if (connection.hello_done) {
    Reply(connection, request.type, FailedPreconditionError("store: second hello"));
    return DropConnection(id, "sent a second hello");
  }
  if (request.protocol_version != internal::kProtocolVersion) {
    Reply(connection, request.type,
          FailedPreconditionError(fmt::format(
              "store speaks protocol version {}, client {}: use matching zerodet builds",
              internal::kProtocolVersion, request.protocol_version)));
    return DropConnection(id, "speaks another protocol version");
  }
  const auto access = static_cast<StoreAccess>(request.access);
  if (access == StoreAccess::kReadWrite && !connection.may_write) {
    Reply(connection, request.type,
          PermissionDeniedError(fmt::format(
              "store {} gives read-write access only to its own user, root and members of "
              "group '{}'; connect read-only",
              options_.socket_path, options_.writer_group)));
    return DropConnection(id, "was refused read-write access");
  }
  const uint64_t region_size = internal::ClientRegionSize(options_.max_objects);
  Result<internal::SealedRegion> region =
      internal::NewSealedRegion("zerodet-store-client", region_size, false);
  if (!region.ok()) {
    Reply(connection, request.type, region.status());
    return DropConnection(id, "could not get a reference region");
  }
  connection.region = std::move(region->mapping);
  auto* header = new (connection.region.data()) ClientRegionHeader{};
  internal::HelloReply hello{options_.max_objects, request.access, arena_->size(),
                             arena_->page_size(), region_size};
  const std::vector<uint8_t> message =
      internal::SerializeReply(request.type, Status::Ok(), internal::EncodeHelloReply(hello));
  std::vector<int> fds = {arena_->read_only_fd(), index_.fd.get(), region->fd.get()};
  if (access == StoreAccess::kReadWrite) fds.push_back(arena_->writable_fd());
  Status sent = internal::SendMessage(fd, message, fds, /*dont_wait=*/true);
  if (!sent.ok()) return DropConnection(id, "vanished during the hello");
  table_->AddClient(connection.id, header);
  connection.access = access;
  connection.hello_done = true;
  ++clients_;
}

void StoreServer::Impl::HandleGet(Connection& connection, const Request& request) {
  const ClientId id = connection.id;
  if (std::optional<internal::GetReply> reply = table_->Get(id, request.id)) {
    if (!Reply(connection, request.type, Status::Ok(), internal::EncodeGetReply(*reply))) {
      DropConnection(id, "stopped reading replies");
    }
    return;
  }
  if (request.timeout_ms == 0) {
    if (!Reply(connection, request.type,
               NotFoundError(fmt::format("no sealed object {}", request.id.ToHex())))) {
      DropConnection(id, "stopped reading replies");
    }
    return;
  }
  // Saturating: a timeout too large to add to the clock waits forever, never wraps negative.
  waiters_.push_back(
      {id, request.id, Deadline::FromTimeoutMs(request.timeout_ms), request.timeout_ms});
}

void StoreServer::Impl::WakeWaiters(const ObjectId& id) {
  std::vector<ClientId> failed;
  std::erase_if(waiters_, [&](const Waiter& waiter) {
    if (waiter.id != id) return false;
    Connection* connection = Find(waiter.connection);
    if (connection == nullptr) return true;
    std::optional<internal::GetReply> reply = table_->Get(waiter.connection, id);
    if (!reply) return false;  // deleted again before the waiter could have it
    if (!Reply(*connection, MessageType::kGet, Status::Ok(), internal::EncodeGetReply(*reply))) {
      failed.push_back(waiter.connection);
    }
    return true;
  });
  for (ClientId failed_id : failed) DropConnection(failed_id, "stopped reading replies");
}

void StoreServer::Impl::ExpireWaiters() {
  std::vector<ClientId> failed;
  std::erase_if(waiters_, [&](const Waiter& waiter) {
    if (!waiter.deadline.expired()) return false;
    Connection* connection = Find(waiter.connection);
    if (connection != nullptr &&
        !Reply(*connection, MessageType::kGet,
               DeadlineExceededError(fmt::format("object {} was not sealed within {} ms",
                                                 waiter.id.ToHex(), waiter.timeout_ms)))) {
      failed.push_back(waiter.connection);
    }
    return true;
  });
  for (ClientId failed_id : failed) DropConnection(failed_id, "stopped reading replies");
}

void StoreServer::Impl::ExpireHellos() {
  while (!awaiting_hello_.empty()) {
    const ClientId id = awaiting_hello_.front();
    Connection* connection = Find(id);
    if (connection == nullptr || connection->hello_done) {
      awaiting_hello_.pop_front();  // said hello or went away
      continue;
    }
    if (!connection->hello_deadline.expired()) return;
    awaiting_hello_.pop_front();
    ++hello_timeouts_;
    Reply(*connection, MessageType::kHello,
          DeadlineExceededError(
              fmt::format("store: no hello within {} ms", options_.hello_timeout.count())));
    DropConnection(id, fmt::format("said no hello within {} ms", options_.hello_timeout.count()));
  }
}

int StoreServer::Impl::NextTimeoutMs() const {
  int timeout_ms = table_->has_pending_deletes() ? kSweepIntervalMs : kIdleWakeMs;
  for (const Waiter& waiter : waiters_) {
    timeout_ms = std::min(timeout_ms, waiter.deadline.RemainingMs(timeout_ms));
  }
  for (const ClientId id : awaiting_hello_) {
    auto it = connections_.find(id);
    if (it != connections_.end() && !it->second->hello_done) {
      timeout_ms = std::min(timeout_ms, it->second->hello_deadline.RemainingMs(timeout_ms));
      break;  // the oldest live one expires first
    }
  }
  if (!listening_) timeout_ms = std::min(timeout_ms, listen_resume_.RemainingMs(timeout_ms));
  return timeout_ms;
}

StoreStats StoreServer::Impl::CollectStats() const {
  StoreStats stats = table_->Stats();
  stats.clients = clients_;
  stats.connections = connections_.size();
  stats.refused_connections = refused_;
  stats.hello_timeouts = hello_timeouts_;
  stats.waiting_gets = waiters_.size();
  return stats;
}

Status StoreServer::Impl::Run() {
  epoll_event events[64];
  for (;;) {
    const int n = ::epoll_wait(epoll_fd_.get(), events, 64, NextTimeoutMs());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("store: epoll_wait", errno);
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t token = events[i].data.u64;
      if (token == kWakeToken) {
        spdlog::info("store: shutting down {}", options_.socket_path);
        table_->MarkClosed();
        while (!connections_.empty()) {
          DropConnection(connections_.begin()->first, "disconnected (shutdown)");
        }
        PublishStats();
        return Status::Ok();
      }
      if (token == kListenToken) {
        Accept();
        continue;
      }
      if (events[i].events & EPOLLIN) HandleReadable(token);
      if (events[i].events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
        // Read what is left first (a final request), then drop on EOF.
        HandleReadable(token);
        DropConnection(token, "disconnected");
      }
    }
    ExpireWaiters();
    ExpireHellos();
    ResumeListeningIfDue();
    if (table_->has_pending_deletes()) table_->SweepPendingDeletes();
    PublishStats();
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

StoreStats StoreServer::Stats() const {
  return impl_->PublishedStats();
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

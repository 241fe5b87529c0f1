#include "zerodet/store/client.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

#include "protocol.h"
#include "shm_layout.h"
#include "shm_util.h"

namespace zerodet::store {

using internal::EntryState;
using internal::IndexEntry;
using internal::IndexHeader;
using internal::MessageType;
using internal::Request;

namespace internal {

// State shared by a client and every view and buffer it handed out: the socket and the three
// mappings. The last owner to go closes the socket, which is what tells the store to drop this
// process's references; so views keep working after the StoreClient object is destroyed.
struct ClientShared {
  std::string socket_path;
  UniqueFd socket;
  std::mutex mutex;  // one socket request in flight
  Mapping arena, index, region;
  IndexHeader* header = nullptr;
  IndexEntry* entries = nullptr;
  uint32_t slot_count = 0;
  ClientRegionHeader* region_header = nullptr;
  std::atomic<uint32_t>* refs = nullptr;
  std::atomic<uint8_t>* touched = nullptr;
  std::atomic<bool> broken{false};

  Status Gone() const {
    return UnavailableError(
        fmt::format("store at {} is gone (stopped or restarted); connect again", socket_path));
  }

  // Sends `request`, waits for its reply; on OK *body views `*storage`.
  Status Transact(const Request& request, std::vector<uint8_t>* storage,
                  std::span<const uint8_t>* body) {
    std::lock_guard lock(mutex);
    if (broken.load(std::memory_order_relaxed)) return Gone();
    const std::vector<uint8_t> message = SerializeRequest(request);
    Status status = SendMessage(socket.get(), message, {}, /*dont_wait=*/false);
    if (status.ok()) {
      status = ReceiveMessage(socket.get(), storage, kMaxMessageSize, nullptr, 0,
                              /*dont_wait=*/false);
    }
    if (!status.ok()) {
      broken.store(true, std::memory_order_relaxed);
      return status.code() == StatusCode::kUnavailable ? Gone()
                                                       : status.WithContext("store " + socket_path);
    }
    // Pairs with the store's release increment after each change it made (see shm_layout.h).
    header->mutation_count.load(std::memory_order_acquire);
    return ParseReply(*storage, request.type, body);
  }
};

}  // namespace internal

// ---- ObjectView ----

ObjectView::ObjectView(ObjectView&& other) noexcept {
  *this = std::move(other);
}

ObjectView& ObjectView::operator=(ObjectView&& other) noexcept {
  if (this != &other) {
    Release();
    shared_ = std::move(other.shared_);
    id_ = other.id_;
    slot_ = other.slot_;
    data_ = other.data_;
    data_size_ = other.data_size_;
    metadata_ = other.metadata_;
    metadata_size_ = other.metadata_size_;
    other.shared_.reset();
  }
  return *this;
}

void ObjectView::Release() {
  if (shared_ == nullptr) return;
  // Release: our reads of the object happen before the store may reuse its memory.
  shared_->refs[slot_].fetch_sub(1, std::memory_order_release);
  shared_.reset();
  data_ = nullptr;
  metadata_ = nullptr;
  data_size_ = metadata_size_ = 0;
}

// ---- ObjectBuffer ----

ObjectBuffer::~ObjectBuffer() {
  if (shared_ == nullptr) return;
  Request request;
  request.type = MessageType::kAbort;
  request.id = id_;
  std::vector<uint8_t> storage;
  std::span<const uint8_t> body;
  // Best effort: if the store is gone the object is gone with it.
  (void)shared_->Transact(request, &storage, &body);
}

ObjectBuffer::ObjectBuffer(ObjectBuffer&& other) noexcept {
  *this = std::move(other);
}

ObjectBuffer& ObjectBuffer::operator=(ObjectBuffer&& other) noexcept {
  if (this != &other) {
    if (shared_ != nullptr) ObjectBuffer discard(std::move(*this));
    shared_ = std::move(other.shared_);
    id_ = other.id_;
    data_ = other.data_;
    data_size_ = other.data_size_;
    metadata_ = other.metadata_;
    metadata_size_ = other.metadata_size_;
    other.shared_.reset();
  }
  return *this;
}

// ---- StoreClient ----

StoreClient::StoreClient(std::shared_ptr<internal::ClientShared> shared)
    : shared_(std::move(shared)) {}

StoreClient::~StoreClient() = default;

const std::string& StoreClient::socket_path() const {
  return shared_->socket_path;
}

Result<std::unique_ptr<StoreClient>> StoreClient::Connect(const std::string& socket_path) {
  auto shared = std::make_shared<internal::ClientShared>();
  shared->socket_path = socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgumentError(fmt::format("store socket path '{}' is longer than {} bytes",
                                            socket_path, sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  shared->socket = UniqueFd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (shared->socket.get() < 0) return ErrnoError("socket", errno);
  if (::connect(shared->socket.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM) {
      return PermissionDeniedError(
          fmt::format("no permission to connect to store {}", socket_path));
    }
    if (err == ENOENT || err == ECONNREFUSED) {
      return UnavailableError(fmt::format(
          "no store is serving {} (start one: zerodet store --socket {} --capacity BYTES)",
          socket_path, socket_path));
    }
    return ErrnoError(fmt::format("cannot connect to store {}", socket_path), err);
  }

  Request hello;
  hello.type = MessageType::kHello;
  hello.protocol_version = internal::kProtocolVersion;
  ZD_RETURN_IF_ERROR(
      internal::SendMessage(shared->socket.get(), internal::SerializeRequest(hello), {}, false)
          .WithContext("store " + socket_path));
  std::vector<uint8_t> storage;
  std::vector<UniqueFd> fds;
  Status received = internal::ReceiveMessage(shared->socket.get(), &storage,
                                             internal::kMaxMessageSize, &fds, 3, false);
  if (received.code() == StatusCode::kUnavailable) {
    return PermissionDeniedError(
        fmt::format("store {} closed the connection during the hello (not authorized? see its log)",
                    socket_path));
  }
  ZD_RETURN_IF_ERROR(received.WithContext("store " + socket_path));
  std::span<const uint8_t> body;
  ZD_RETURN_IF_ERROR(internal::ParseReply(storage, MessageType::kHello, &body));
  ZD_ASSIGN_OR_RETURN(internal::HelloReply reply, internal::DecodeHelloReply(body));
  if (fds.size() != 3) {
    return CorruptDataError(
        fmt::format("store {} sent {} region fds, expected 3", socket_path, fds.size()));
  }
  const uint64_t sizes[3] = {reply.arena_size, internal::IndexRegionSize(reply.slot_count),
                             reply.client_region_size};
  for (int i = 0; i < 3; ++i) {
    struct stat st {};
    if (::fstat(fds[i].get(), &st) != 0 || static_cast<uint64_t>(st.st_size) != sizes[i]) {
      return CorruptDataError(
          fmt::format("store {}: region {} has the wrong size", socket_path, i));
    }
  }
  if (reply.slot_count == 0 || (reply.slot_count & (reply.slot_count - 1)) != 0 ||
      reply.client_region_size != internal::ClientRegionSize(reply.slot_count)) {
    return CorruptDataError(fmt::format("store {}: inconsistent hello", socket_path));
  }
  ZD_ASSIGN_OR_RETURN(shared->arena,
                      internal::MapShared(fds[0].get(), sizes[0], true, "the store arena"));
  ZD_ASSIGN_OR_RETURN(shared->index,
                      internal::MapShared(fds[1].get(), sizes[1], false, "the store index"));
  ZD_ASSIGN_OR_RETURN(shared->region,
                      internal::MapShared(fds[2].get(), sizes[2], true, "the reference region"));
  shared->header = reinterpret_cast<IndexHeader*>(shared->index.data());
  if (shared->header->magic != internal::kIndexMagic ||
      shared->header->version != internal::kLayoutVersion ||
      shared->header->slot_count != reply.slot_count) {
    return CorruptDataError(fmt::format("store {}: index layout mismatch", socket_path));
  }
  shared->header->mutation_count.load(std::memory_order_acquire);
  shared->entries = internal::Entries(shared->header);
  shared->slot_count = reply.slot_count;
  shared->region_header = reinterpret_cast<internal::ClientRegionHeader*>(shared->region.data());
  shared->refs = internal::Refs(shared->region_header);
  shared->touched = internal::Touched(shared->region_header, reply.slot_count);
  return std::unique_ptr<StoreClient>(new StoreClient(std::move(shared)));
}

Result<ObjectBuffer> StoreClient::Create(const ObjectId& id, uint64_t data_size,
                                         std::span<const uint8_t> metadata) {
  if (metadata.size() > internal::kMaxMetadataSize) {
    return InvalidArgumentError(fmt::format("object {}: metadata of {} bytes exceeds {} bytes",
                                            id.ToHex(), metadata.size(),
                                            internal::kMaxMetadataSize));
  }
  Request request;
  request.type = MessageType::kCreate;
  request.id = id;
  request.data_size = data_size;
  request.metadata.assign(metadata.begin(), metadata.end());
  std::vector<uint8_t> storage;
  std::span<const uint8_t> body;
  ZD_RETURN_IF_ERROR(shared_->Transact(request, &storage, &body));
  ZD_ASSIGN_OR_RETURN(internal::CreateReply reply, internal::DecodeCreateReply(body));
  const uint64_t arena_size = shared_->arena.size();
  if (reply.offset > arena_size || data_size > arena_size - reply.offset ||
      reply.metadata_offset > arena_size || metadata.size() > arena_size - reply.metadata_offset) {
    return CorruptDataError(fmt::format("store {}: object {} placed outside the arena",
                                        shared_->socket_path, id.ToHex()));
  }
  ObjectBuffer buffer;
  buffer.shared_ = shared_;
  buffer.id_ = id;
  buffer.data_ = shared_->arena.data() + reply.offset;
  buffer.data_size_ = data_size;
  buffer.metadata_ = shared_->arena.data() + reply.metadata_offset;
  buffer.metadata_size_ = static_cast<uint32_t>(metadata.size());
  return buffer;
}

Status StoreClient::FinishBuffer(ObjectBuffer& buffer, bool seal) {
  if (buffer.shared_ == nullptr) return InvalidArgumentError("empty object buffer");
  if (buffer.shared_ != shared_) {
    return InvalidArgumentError(
        fmt::format("object {} was created through another store client", buffer.id_.ToHex()));
  }
  // Release: the object's bytes written by this process happen before the store seals it.
  if (seal) shared_->region_header->publish_count.fetch_add(1, std::memory_order_release);
  Request request;
  request.type = seal ? MessageType::kSeal : MessageType::kAbort;
  request.id = buffer.id_;
  buffer.shared_.reset();
  std::vector<uint8_t> storage;
  std::span<const uint8_t> body;
  return shared_->Transact(request, &storage, &body);
}

Status StoreClient::Seal(ObjectBuffer&& buffer) {
  return FinishBuffer(buffer, true);
}
Status StoreClient::Abort(ObjectBuffer&& buffer) {
  return FinishBuffer(buffer, false);
}

Result<ObjectView> StoreClient::FastGet(const ObjectId& id) const {
  internal::ClientShared& s = *shared_;
  if (s.header->store_open.load(std::memory_order_acquire) == 0 ||
      s.broken.load(std::memory_order_relaxed)) {
    return s.Gone();
  }
  uint64_t words[3];
  internal::IdToWords(id, words);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const uint64_t found = internal::ProbeSlot(s.header, words);
    if (found == internal::kNoSlot) break;
    const auto slot = static_cast<uint32_t>(found);
    IndexEntry& e = s.entries[slot];
    const uint64_t seq1 = e.seq.load(std::memory_order_acquire);
    if (seq1 & 1) {
      std::this_thread::yield();
      continue;
    }
    const auto state = static_cast<EntryState>(e.state.load(std::memory_order_relaxed));
    const bool same_id = e.id_words[0].load(std::memory_order_relaxed) == words[0] &&
                         e.id_words[1].load(std::memory_order_relaxed) == words[1] &&
                         e.id_words[2].load(std::memory_order_relaxed) == words[2];
    const uint64_t offset = e.offset.load(std::memory_order_relaxed);
    const uint64_t data_size = e.data_size.load(std::memory_order_relaxed);
    const uint32_t metadata_size = e.metadata_size.load(std::memory_order_relaxed);
    if (!same_id || state != EntryState::kSealed) {
      std::atomic_thread_fence(std::memory_order_acquire);
      if (e.seq.load(std::memory_order_relaxed) != seq1) continue;  // changed under us
      if (!same_id) continue;                                       // slot reused: probe again
      break;                                                        // exists, not sealed
    }
    // Take the reference, then confirm the entry did not change (pairs with the store's odd
    // sequence store before it checks references; see shm_layout.h).
    s.refs[slot].fetch_add(1, std::memory_order_seq_cst);
    if (e.seq.load(std::memory_order_seq_cst) != seq1) {
      s.refs[slot].fetch_sub(1, std::memory_order_relaxed);
      continue;
    }
    const uint64_t data_span = (data_size + 63) / 64 * 64;
    if (offset > s.arena.size() || data_span + metadata_size > s.arena.size() - offset) {
      s.refs[slot].fetch_sub(1, std::memory_order_relaxed);
      return CorruptDataError(
          fmt::format("store {}: object {} lies outside the arena", s.socket_path, id.ToHex()));
    }
    if (s.touched[slot].load(std::memory_order_relaxed) == 0) {
      s.touched[slot].store(1, std::memory_order_relaxed);
    }
    ObjectView view;
    view.shared_ = shared_;
    view.id_ = id;
    view.slot_ = slot;
    view.data_ = s.arena.data() + offset;
    view.data_size_ = data_size;
    view.metadata_ = s.arena.data() + offset + data_span;
    view.metadata_size_ = metadata_size;
    return view;
  }
  return NotFoundError(fmt::format("no sealed object {} in store {}", id.ToHex(), s.socket_path));
}

Result<ObjectView> StoreClient::SocketGet(const ObjectId& id, int64_t timeout_ms) {
  Request request;
  request.type = MessageType::kGet;
  request.id = id;
  request.timeout_ms = timeout_ms;
  std::vector<uint8_t> storage;
  std::span<const uint8_t> body;
  ZD_RETURN_IF_ERROR(shared_->Transact(request, &storage, &body));
  ZD_ASSIGN_OR_RETURN(internal::GetReply reply, internal::DecodeGetReply(body));
  internal::ClientShared& s = *shared_;
  const uint64_t data_span = (reply.data_size + 63) / 64 * 64;
  if (reply.slot >= s.slot_count || reply.offset > s.arena.size() ||
      reply.data_size > s.arena.size() ||
      data_span + reply.metadata_size > s.arena.size() - reply.offset) {
    return CorruptDataError(
        fmt::format("store {}: bad placement of object {}", s.socket_path, id.ToHex()));
  }
  ObjectView view;  // the store took the reference on our behalf
  view.shared_ = shared_;
  view.id_ = id;
  view.slot_ = reply.slot;
  view.data_ = s.arena.data() + reply.offset;
  view.data_size_ = reply.data_size;
  view.metadata_ = s.arena.data() + reply.offset + data_span;
  view.metadata_size_ = reply.metadata_size;
  return view;
}

Result<ObjectView> StoreClient::Get(const ObjectId& id, const GetOptions& options) {
  if (options.fast_path) {
    Result<ObjectView> view = FastGet(id);
    if (view.ok() || view.status().code() != StatusCode::kNotFound ||
        options.timeout.count() == 0) {
      return view;
    }
  }
  return SocketGet(id, options.timeout.count());
}

Result<std::vector<ObjectView>> StoreClient::Get(std::span<const ObjectId> ids,
                                                 const GetOptions& options) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + options.timeout;
  std::vector<ObjectView> views;
  views.reserve(ids.size());
  for (const ObjectId& id : ids) {
    GetOptions one = options;
    if (options.timeout.count() > 0) {
      one.timeout =
          std::max(std::chrono::milliseconds(0),
                   std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    }
    Result<ObjectView> view = Get(id, one);
    if (view.ok()) {
      views.push_back(std::move(*view));
    } else if (view.status().code() == StatusCode::kNotFound ||
               view.status().code() == StatusCode::kDeadlineExceeded) {
      views.emplace_back();
    } else {
      return view.status();
    }
  }
  return views;
}

bool StoreClient::Contains(const ObjectId& id) const {
  return FastGet(id).ok();
}

Status StoreClient::Delete(const ObjectId& id) {
  return Delete(std::span<const ObjectId>(&id, 1));
}

Status StoreClient::Delete(std::span<const ObjectId> ids) {
  Status first_error;
  for (size_t start = 0; start < ids.size(); start += internal::kMaxIdsPerRequest) {
    Request request;
    request.type = MessageType::kDelete;
    const size_t count = std::min<size_t>(internal::kMaxIdsPerRequest, ids.size() - start);
    request.ids.assign(ids.begin() + start, ids.begin() + start + count);
    std::vector<uint8_t> storage;
    std::span<const uint8_t> body;
    Status status = shared_->Transact(request, &storage, &body);
    if (status.code() == StatusCode::kUnavailable) return status;
    if (!status.ok() && first_error.ok()) first_error = status;
  }
  return first_error;
}

Result<std::vector<ObjectInfo>> StoreClient::List() {
  std::vector<ObjectInfo> all;
  uint32_t cursor = 0;
  do {
    Request request;
    request.type = MessageType::kList;
    request.cursor = cursor;
    std::vector<uint8_t> storage;
    std::span<const uint8_t> body;
    ZD_RETURN_IF_ERROR(shared_->Transact(request, &storage, &body));
    ZD_ASSIGN_OR_RETURN(internal::ListReply reply, internal::DecodeListReply(body));
    all.insert(all.end(), reply.objects.begin(), reply.objects.end());
    if (reply.next_cursor != 0 && reply.next_cursor <= cursor) {
      return CorruptDataError("store list cursor went backwards");
    }
    cursor = reply.next_cursor;
  } while (cursor != 0);
  return all;
}

Result<StoreStats> StoreClient::Stats() {
  Request request;
  request.type = MessageType::kStats;
  std::vector<uint8_t> storage;
  std::span<const uint8_t> body;
  ZD_RETURN_IF_ERROR(shared_->Transact(request, &storage, &body));
  return internal::DecodeStats(body);
}

}  // namespace zerodet::store

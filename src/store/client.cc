#include "zerodet/store/client.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>

#include "protocol.h"
#include "shm_layout.h"
#include "shm_util.h"
#include "zerodet/core/clock.h"

namespace zerodet::store {

using internal::EntryState;
using internal::IndexEntry;
using internal::IndexHeader;
using internal::MessageType;
using internal::Request;

namespace internal {

// State shared by a client and every view and buffer it handed out: the socket, the mappings
// and (read-write clients) the arena's writable descriptor. The last owner to go closes the
// socket, which is what tells the store to drop this process's references; so views keep
// working after the StoreClient object is destroyed.
struct ClientShared {
  std::string socket_path;
  StoreAccess access = StoreAccess::kReadOnly;
  UniqueFd socket;
  std::mutex mutex;  // one socket request in flight
  Mapping arena;     // read-only
  Mapping index, region;
  UniqueFd arena_writable;  // read-write clients: maps the objects they create
  uint64_t arena_page_size = 0;
  IndexHeader* header = nullptr;
  IndexEntry* entries = nullptr;
  uint32_t entry_capacity = 0;
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

uint64_t ObjectFootprint(uint64_t data_size, uint64_t metadata_size) {
  // The allocator gives even an empty object one aligned block.
  return std::max(internal::kObjectAlignment,
                  internal::MetadataOffset(internal::MetadataOffset(data_size) + metadata_size));
}

// ---- ObjectView ----

ObjectView::ObjectView(ObjectView&& other) noexcept {
  *this = std::move(other);
}

ObjectView& ObjectView::operator=(ObjectView&& other) noexcept {
  if (this != &other) {
    Release();
    shared_ = std::move(other.shared_);
    id_ = other.id_;
    handle_ = other.handle_;
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
  shared_->refs[handle_].fetch_sub(1, std::memory_order_release);
  shared_.reset();
  data_ = nullptr;
  metadata_ = nullptr;
  data_size_ = metadata_size_ = 0;
}

// ---- ObjectBuffer ----

ObjectBuffer::~ObjectBuffer() {
  if (shared_ == nullptr) return;
  writable_pages_.reset();
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
    writable_pages_ = std::move(other.writable_pages_);
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

StoreAccess StoreClient::access() const {
  return shared_->access;
}

namespace {

Status CheckRegionSize(int fd, uint64_t expected, const std::string& socket_path,
                       const char* what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != expected) {
    return CorruptDataError(fmt::format("store {}: {} has the wrong size", socket_path, what));
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<StoreClient>> StoreClient::Connect(const std::string& socket_path,
                                                          const ConnectOptions& options) {
  auto shared = std::make_shared<internal::ClientShared>();
  shared->socket_path = socket_path;
  shared->access = options.access;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgumentError(fmt::format("store socket path '{}' is longer than {} bytes",
                                            socket_path, sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  shared->socket = UniqueFd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!shared->socket.valid()) return ErrnoError("socket", errno);
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
  hello.access = static_cast<uint32_t>(options.access);
  std::vector<uint8_t> storage;
  std::vector<UniqueFd> fds;
  // A store that refuses the connection sends its reason unasked and hangs up: the hello may
  // then fail to send, but the reason is still there to read.
  const Status sent =
      internal::SendMessage(shared->socket.get(), internal::SerializeRequest(hello), {}, false);
  Status received =
      internal::ReceiveMessage(shared->socket.get(), &storage, internal::kMaxMessageSize, &fds, 4,
                               /*dont_wait=*/!sent.ok());
  if (received.code() == StatusCode::kUnavailable) {
    // A store that hung up with our hello unread makes the first receive fail with
    // ECONNRESET although its reason is queued behind the error.
    Status queued =
        internal::ReceiveMessage(shared->socket.get(), &storage, internal::kMaxMessageSize, &fds, 4,
                                 /*dont_wait=*/true);
    if (queued.ok()) received = queued;
  }
  if (!received.ok()) {
    if (!sent.ok()) return sent.WithContext("store " + socket_path);
    if (received.code() == StatusCode::kUnavailable) {
      return UnavailableError(fmt::format(
          "store {} closed the connection during the hello without saying why (see its log)",
          socket_path));
    }
    return received.WithContext("store " + socket_path);
  }
  std::span<const uint8_t> body;
  ZD_RETURN_IF_ERROR(internal::ParseReply(storage, MessageType::kHello, &body));
  ZD_ASSIGN_OR_RETURN(internal::HelloReply reply, internal::DecodeHelloReply(body));
  const size_t expected_fds = options.access == StoreAccess::kReadWrite ? 4 : 3;
  if (fds.size() != expected_fds || reply.access != static_cast<uint32_t>(options.access)) {
    return CorruptDataError(fmt::format("store {} sent {} region fds for access {}, expected {}",
                                        socket_path, fds.size(), reply.access, expected_fds));
  }
  if (reply.entry_capacity == 0 || reply.entry_capacity > (uint32_t{1} << 26) ||
      reply.client_region_size != internal::ClientRegionSize(reply.entry_capacity) ||
      (reply.arena_page_size != 4096 && reply.arena_page_size != (uint64_t{2} << 20))) {
    return CorruptDataError(fmt::format("store {}: inconsistent hello", socket_path));
  }
  const uint64_t index_size = internal::IndexRegionSize(reply.entry_capacity);
  ZD_RETURN_IF_ERROR(CheckRegionSize(fds[0].get(), reply.arena_size, socket_path, "the arena"));
  ZD_RETURN_IF_ERROR(CheckRegionSize(fds[1].get(), index_size, socket_path, "the index"));
  ZD_RETURN_IF_ERROR(
      CheckRegionSize(fds[2].get(), reply.client_region_size, socket_path, "the client region"));
  ZD_ASSIGN_OR_RETURN(
      shared->arena, internal::MapShared(fds[0].get(), reply.arena_size, false, "the store arena"));
  // Lets the kernel map huge pages where the store got them; a no-op elsewhere.
  (void)::madvise(shared->arena.data(), shared->arena.size(), MADV_HUGEPAGE);
  ZD_ASSIGN_OR_RETURN(shared->index,
                      internal::MapShared(fds[1].get(), index_size, false, "the store index"));
  ZD_ASSIGN_OR_RETURN(shared->region, internal::MapShared(fds[2].get(), reply.client_region_size,
                                                          true, "the reference region"));
  if (options.access == StoreAccess::kReadWrite) {
    ZD_RETURN_IF_ERROR(
        CheckRegionSize(fds[3].get(), reply.arena_size, socket_path, "the writable arena"));
    shared->arena_writable = std::move(fds[3]);
  }
  shared->arena_page_size = reply.arena_page_size;
  shared->header = reinterpret_cast<IndexHeader*>(shared->index.data());
  if (shared->header->magic != internal::kIndexMagic ||
      shared->header->version != internal::kLayoutVersion ||
      shared->header->entry_capacity != reply.entry_capacity ||
      shared->header->table_capacity != internal::TableCapacity(reply.entry_capacity)) {
    return CorruptDataError(fmt::format("store {}: index layout mismatch", socket_path));
  }
  shared->header->mutation_count.load(std::memory_order_acquire);
  shared->entries = internal::Entries(shared->header);
  shared->entry_capacity = reply.entry_capacity;
  shared->region_header = reinterpret_cast<internal::ClientRegionHeader*>(shared->region.data());
  shared->refs = internal::Refs(shared->region_header);
  shared->touched = internal::Touched(shared->region_header, reply.entry_capacity);
  return std::unique_ptr<StoreClient>(new StoreClient(std::move(shared)));
}

Result<ObjectBuffer> StoreClient::Create(const ObjectId& id, uint64_t data_size,
                                         std::span<const uint8_t> metadata,
                                         const CreateOptions& options) {
  if (metadata.size() > internal::kMaxMetadataSize) {
    return InvalidArgumentError(fmt::format("object {}: metadata of {} bytes exceeds {} bytes",
                                            id.ToHex(), metadata.size(),
                                            internal::kMaxMetadataSize));
  }
  if (shared_->access != StoreAccess::kReadWrite) {
    return PermissionDeniedError(
        fmt::format("cannot create object {}: the client of store {} is read-only", id.ToHex(),
                    shared_->socket_path));
  }
  Request request;
  request.type = MessageType::kCreate;
  request.id = id;
  request.data_size = data_size;
  request.flags = options.pinned ? internal::kCreatePinned : 0;
  request.metadata.assign(metadata.begin(), metadata.end());
  std::vector<uint8_t> storage;
  std::span<const uint8_t> body;
  ZD_RETURN_IF_ERROR(shared_->Transact(request, &storage, &body));
  ZD_ASSIGN_OR_RETURN(internal::CreateReply reply, internal::DecodeCreateReply(body));
  const uint64_t arena_size = shared_->arena.size();
  if (!internal::PlacementFits(reply.offset, data_size, metadata.size(), arena_size) ||
      reply.metadata_offset != reply.offset + internal::MetadataOffset(data_size)) {
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
  if (data_size > 0) {
    // The object's pages, writable until seal or abort; everything else stays read-only.
    const uint64_t page = shared_->arena_page_size;
    const uint64_t first = reply.offset / page * page;
    const uint64_t end = std::min(arena_size, (reply.offset + data_size + page - 1) / page * page);
    // The creator is about to write every page: MAP_POPULATE maps them in one go (measured
    // 3x cheaper than MADV_POPULATE_WRITE and 6x cheaper than faulting page by page).
    void* address = ::mmap(nullptr, end - first, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                           shared_->arena_writable.get(), static_cast<off_t>(first));
    if (address == MAP_FAILED) {
      const Status mapped = ErrnoError(
          fmt::format("cannot map object {} ({} bytes) writable", id.ToHex(), data_size), errno);
      (void)Abort(std::move(buffer));
      return mapped;
    }
    auto pages = std::make_shared<internal::Mapping>(address, end - first);
    buffer.data_ = pages->data() + (reply.offset - first);
    buffer.writable_pages_ = std::move(pages);
  }
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
  // No writable mapping of the object survives its seal.
  buffer.writable_pages_.reset();
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
    const uint64_t table_seq = s.header->table_seq.load(std::memory_order_acquire);
    if (table_seq & 1) {
      std::this_thread::yield();  // the store is rebuilding the table
      continue;
    }
    const uint32_t handle = internal::ProbeHandle(s.header, words);
    if (handle == internal::kNoHandle) {
      std::atomic_thread_fence(std::memory_order_acquire);
      if (s.header->table_seq.load(std::memory_order_relaxed) != table_seq) continue;
      break;
    }
    IndexEntry& e = s.entries[handle];
    const uint64_t seq1 = e.seq.load(std::memory_order_acquire);
    if (seq1 & 1) {
      std::this_thread::yield();
      continue;
    }
    const auto state = static_cast<EntryState>(e.state.load(std::memory_order_relaxed));
    const bool same_id = internal::EntryHasId(e, words);
    const uint64_t offset = e.offset.load(std::memory_order_relaxed);
    const uint64_t data_size = e.data_size.load(std::memory_order_relaxed);
    const uint32_t metadata_size = e.metadata_size.load(std::memory_order_relaxed);
    if (!same_id || state != EntryState::kSealed) {
      std::atomic_thread_fence(std::memory_order_acquire);
      if (e.seq.load(std::memory_order_relaxed) != seq1) continue;  // changed under us
      if (!same_id || state == EntryState::kFree) continue;         // reused: probe again
      break;                                                        // exists, not sealed
    }
    // Take the reference, then confirm the entry did not change (pairs with the store's odd
    // sequence store before it checks references; see shm_layout.h).
    s.refs[handle].fetch_add(1, std::memory_order_seq_cst);
    if (e.seq.load(std::memory_order_seq_cst) != seq1) {
      s.refs[handle].fetch_sub(1, std::memory_order_relaxed);
      continue;
    }
    if (!internal::PlacementFits(offset, data_size, metadata_size, s.arena.size())) {
      s.refs[handle].fetch_sub(1, std::memory_order_relaxed);
      return CorruptDataError(
          fmt::format("store {}: object {} lies outside the arena", s.socket_path, id.ToHex()));
    }
    if (s.touched[handle].load(std::memory_order_relaxed) == 0) {
      s.touched[handle].store(1, std::memory_order_relaxed);
    }
    ObjectView view;
    view.shared_ = shared_;
    view.id_ = id;
    view.handle_ = handle;
    view.data_ = s.arena.data() + offset;
    view.data_size_ = data_size;
    view.metadata_ = s.arena.data() + offset + internal::MetadataOffset(data_size);
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
  if (reply.handle >= s.entry_capacity ||
      !internal::PlacementFits(reply.offset, reply.data_size, reply.metadata_size,
                               s.arena.size())) {
    return CorruptDataError(
        fmt::format("store {}: bad placement of object {}", s.socket_path, id.ToHex()));
  }
  ObjectView view;  // the store took the reference on our behalf
  view.shared_ = shared_;
  view.id_ = id;
  view.handle_ = reply.handle;
  view.data_ = s.arena.data() + reply.offset;
  view.data_size_ = reply.data_size;
  view.metadata_ = s.arena.data() + reply.offset + internal::MetadataOffset(reply.data_size);
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
  // Saturating: a huge timeout is "never", not an overflowed time point.
  const Deadline deadline = options.timeout.count() < 0
                                ? Deadline::Never()
                                : Deadline::FromTimeoutMs(options.timeout.count());
  std::vector<ObjectView> views;
  views.reserve(ids.size());
  for (const ObjectId& id : ids) {
    GetOptions one = options;
    if (options.timeout.count() > 0 && !deadline.never()) {
      one.timeout =
          std::chrono::milliseconds(deadline.RemainingMs(std::numeric_limits<int>::max()));
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
    const std::span<const ObjectId> chunk = ids.subspan(start, count);
    request.ids.assign(chunk.begin(), chunk.end());
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

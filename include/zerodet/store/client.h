// StoreClient: a process's connection to a zerodet store (see store/server.h), the shared-memory
// object store that replaces Apache Arrow's Plasma for C++ users.
//
// Concept. A store holds immutable objects: byte buffers of any size with a small metadata blob,
// named by 20-byte ObjectIds, in one arena of shared memory. A producer Create()s an object,
// fills the writable ObjectBuffer and Seal()s it; from then on any number of processes Get() it
// as a read-only ObjectView that points straight into the arena (no copy). A view is a
// reference: while any view of an object exists the store neither evicts nor frees it, and a
// Delete() of a referenced object is deferred until the last view is gone. Views are RAII:
// destroying one (or calling Release()) drops the reference, without a message to the store.
// Objects created pinned are never evicted; only a Delete() removes them (datasets keep their
// manifests that way).
//
// Access. A client connects read-only or read-write (ConnectOptions::access). A read-only
// client gets the arena through a read-only descriptor: its mapping cannot be made writable and
// it cannot punch holes into or resize the arena, so it cannot change anyone's objects; it may
// only get, list and read statistics. A read-write client also maps the arena read-only, and
// maps the pages of each object it creates writable from Create() until Seal() or Abort():
// writing to a sealed object faults (SIGSEGV) in every client. The remaining edge is page
// granularity: objects are 64-byte aligned, so while a writer fills an object it could also
// write the bytes of neighbouring objects that share the object's first or last 4 KiB page; and
// a writer holds the arena's writable descriptor, so a malicious writer is not contained (the
// store can restrict who may write: StoreOptions::writer_group).
//
// Fast path. Get() of a sealed object reads the store's shared index and takes the reference in
// this client's own shared reference slots: no socket round trip, no lock. Only waiting for an
// object that is not sealed yet, and every mutating call (create, seal, abort, delete), talk to
// the store over its Unix-domain socket.
//
// Ownership and lifetime. The client maps the regions the store hands it once, at Connect():
// the arena (read-only), the index (read-only) and its reference slots (read-write, its own).
// Views and buffers keep those mappings alive, so a view stays readable even after its client
// object is destroyed or the store has stopped; its bytes never change while it exists. When
// the process dies (even by SIGKILL) the store sees the socket close, drops all of that
// process's references and aborts its unsealed objects.
//
// Thread safety: a StoreClient may be used from any number of threads at once. Socket requests
// are serialized (one in flight per client); fast-path gets run fully in parallel. ObjectView
// and ObjectBuffer are not synchronized: use each from one thread at a time (move them freely).
//
// Errors name the socket path, the object id and the sizes involved. A store that refuses a
// connection says why (not authorized, too many clients, out of file descriptors, read-write
// access refused). After the store goes away every call returns kUnavailable; Connect() again
// once a store is serving the path.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "zerodet/core/status.h"
#include "zerodet/store/object_id.h"

namespace zerodet::store {

namespace internal {
struct ClientShared;
}

struct ObjectInfo {
  ObjectId id;
  uint64_t data_size = 0;
  uint32_t metadata_size = 0;
  bool sealed = false;          // false: being created
  bool pending_delete = false;  // deleted, freed when its last reference is released
  bool pinned = false;          // never evicted
};

struct StoreStats {
  uint64_t capacity = 0;            // arena bytes
  uint64_t bytes_allocated = 0;     // by live objects (allocator granularity)
  uint64_t largest_free_block = 0;  // largest object that fits without eviction
  uint64_t objects = 0;             // all live objects
  uint64_t sealed_objects = 0;
  uint64_t unsealed_objects = 0;
  uint64_t pending_deletes = 0;
  uint64_t max_objects = 0;
  uint64_t clients = 0;      // connections that completed the hello
  uint64_t connections = 0;  // all open connections, including those before their hello
  uint64_t evictions = 0;    // since the store started
  uint64_t creates = 0;
  uint64_t socket_gets = 0;  // gets that needed the socket (the fast path is not counted)
  uint64_t pinned_objects = 0;
  uint64_t pinned_bytes = 0;          // allocated to pinned objects (never evicted)
  uint64_t unsealed_bytes = 0;        // allocated to objects being created
  uint64_t pending_delete_bytes = 0;  // allocated to deleted objects still referenced
  uint64_t refused_connections = 0;   // not authorized, too many, out of descriptors
  uint64_t hello_timeouts = 0;        // connections dropped for not saying hello in time
  uint64_t waiting_gets = 0;          // socket gets waiting for an object to be sealed
};

enum class StoreAccess : uint32_t {
  kReadOnly = 1,   // get, list, stats
  kReadWrite = 2,  // also create, seal, abort, delete
};

struct ConnectOptions {
  StoreAccess access = StoreAccess::kReadWrite;
};

// Arena bytes an object of these sizes occupies (data rounded up to the 64-byte alignment,
// then the metadata, rounded again): what a create needs free, for planning (datasets).
uint64_t ObjectFootprint(uint64_t data_size, uint64_t metadata_size);

struct CreateOptions {
  // Never evicted; freed only by Delete() (and counted against the room evictions can make).
  bool pinned = false;
};

// Read-only reference to a sealed object. Default-constructed views are empty (!valid()).
class ObjectView {
 public:
  ObjectView() = default;
  ~ObjectView() { Release(); }
  ObjectView(ObjectView&& other) noexcept;
  ObjectView& operator=(ObjectView&& other) noexcept;
  ObjectView(const ObjectView&) = delete;
  ObjectView& operator=(const ObjectView&) = delete;

  bool valid() const { return shared_ != nullptr; }
  // REQUIRES: valid().
  const ObjectId& id() const { return id_; }
  std::span<const uint8_t> data() const { return {data_, data_size_}; }
  std::span<const uint8_t> metadata() const { return {metadata_, metadata_size_}; }

  // Drops the reference; the view becomes empty. Idempotent.
  void Release();

 private:
  friend class StoreClient;
  std::shared_ptr<internal::ClientShared> shared_;
  ObjectId id_;
  uint32_t handle_ = 0;
  const uint8_t* data_ = nullptr;
  uint64_t data_size_ = 0;
  const uint8_t* metadata_ = nullptr;
  uint32_t metadata_size_ = 0;
};

// Writable, not yet sealed object returned by Create(). Hand it to Seal() or Abort(); a buffer
// destroyed without either aborts the object (best effort, over the socket).
class ObjectBuffer {
 public:
  ObjectBuffer() = default;
  ~ObjectBuffer();
  ObjectBuffer(ObjectBuffer&& other) noexcept;
  ObjectBuffer& operator=(ObjectBuffer&& other) noexcept;
  ObjectBuffer(const ObjectBuffer&) = delete;
  ObjectBuffer& operator=(const ObjectBuffer&) = delete;

  bool valid() const { return shared_ != nullptr; }
  const ObjectId& id() const { return id_; }
  // Writable until Seal() or Abort(); the only writable bytes this client has.
  std::span<uint8_t> data() const { return {data_, data_size_}; }
  std::span<const uint8_t> metadata() const { return {metadata_, metadata_size_}; }

 private:
  friend class StoreClient;
  std::shared_ptr<internal::ClientShared> shared_;
  std::shared_ptr<void> writable_pages_;  // the object's writable mapping
  ObjectId id_;
  uint8_t* data_ = nullptr;
  uint64_t data_size_ = 0;
  const uint8_t* metadata_ = nullptr;
  uint32_t metadata_size_ = 0;
};

struct GetOptions {
  // How long to wait for an object that does not exist or is not sealed yet. Zero: do not wait
  // (the call never touches the socket). Negative, or too large to add to the clock: wait
  // without limit.
  std::chrono::milliseconds timeout{0};
  // false forces the socket protocol even for sealed objects (benchmarks, diagnostics).
  bool fast_path = true;
};

class StoreClient {
 public:
  // Connects to the store serving `socket_path` and maps its regions.
  // Errors: kUnavailable when nothing serves the path, kPermissionDenied when the store refuses
  // this user (or read-write access for it), kResourceExhausted when the store has its maximum
  // number of connections or no file descriptors left; the message is the store's reason.
  static Result<std::unique_ptr<StoreClient>> Connect(const std::string& socket_path,
                                                      const ConnectOptions& options = {});
  ~StoreClient();

  StoreClient(const StoreClient&) = delete;
  StoreClient& operator=(const StoreClient&) = delete;

  // Allocates an object of `data_size` bytes with a copy of `metadata`, evicting unreferenced
  // sealed objects (least recently used first, pinned ones never) when the arena has no room.
  // REQUIRES: metadata.size() <= 32 KiB.
  // Errors: kAlreadyExists (id present, sealed, being created or pending deletion),
  // kResourceExhausted "store full" with the requested and available sizes, or when the object
  // table is full; kInvalidArgument for oversized metadata; kPermissionDenied for a read-only
  // client.
  Result<ObjectBuffer> Create(const ObjectId& id, uint64_t data_size,
                              std::span<const uint8_t> metadata = {},
                              const CreateOptions& options = {});
  // Makes the object immutable and visible to Get(); wakes waiting getters. Consumes the buffer.
  Status Seal(ObjectBuffer&& buffer);
  // Discards an unsealed object and frees its memory. Consumes the buffer.
  Status Abort(ObjectBuffer&& buffer);

  // A view of the sealed object `id`, waiting up to options.timeout for it to be created and
  // sealed. Errors: kNotFound (timeout zero and no sealed object), kDeadlineExceeded,
  // kUnavailable (store gone).
  Result<ObjectView> Get(const ObjectId& id, const GetOptions& options = {});
  // Views of several objects in order, sharing one deadline. Objects still missing at the
  // deadline give empty views (not an error); only store failures are errors.
  Result<std::vector<ObjectView>> Get(std::span<const ObjectId> ids,
                                      const GetOptions& options = {});

  // Whether a sealed, not deleted object `id` exists right now (no socket round trip).
  bool Contains(const ObjectId& id) const;

  // Deletes objects. A referenced object disappears from gets at once and is freed when its
  // last view is released. Errors: kNotFound for an id that does not exist (the others are
  // still deleted), kFailedPrecondition for an object that is still being created,
  // kPermissionDenied for a read-only client.
  Status Delete(const ObjectId& id);
  Status Delete(std::span<const ObjectId> ids);

  Result<std::vector<ObjectInfo>> List();
  Result<StoreStats> Stats();

  const std::string& socket_path() const;
  StoreAccess access() const;

 private:
  explicit StoreClient(std::shared_ptr<internal::ClientShared> shared);
  Result<ObjectView> FastGet(const ObjectId& id) const;
  Result<ObjectView> SocketGet(const ObjectId& id, int64_t timeout_ms);
  Status FinishBuffer(ObjectBuffer& buffer, bool seal);

  std::shared_ptr<internal::ClientShared> shared_;
};

}  // namespace zerodet::store

// StoreServer: the process side of the zerodet object store (clients: store/client.h).
//
// One StoreServer owns one arena of shared memory (a sealed memfd, optionally backed by huge
// pages), a shared read-only index of its objects, and a Unix-domain SOCK_SEQPACKET socket. It
// is a single-threaded event loop (epoll): every allocation, seal, deletion and eviction happens
// on that thread, so the allocator (TlsfAllocator) and object table need no locks; clients read
// sealed objects without contacting it at all (see client.h, "Fast path").
//
// Ownership. The store creates every region and is the only process that writes the index or
// changes allocations. Clients receive the fds once (SCM_RIGHTS) and cannot resize any region
// (F_SEAL_SHRINK|F_SEAL_GROW) nor map the index writable (F_SEAL_FUTURE_WRITE). The store never
// reads object bytes, and writes only the metadata of objects it allocated, after checking the
// bounds, so no request can make it touch memory outside the arena.
//
// Lifetime of objects: created (invisible to gets, owned by the creating connection) -> sealed
// (immutable, readable, evictable when unreferenced) -> freed on eviction or delete; a delete of
// a referenced object is deferred until its references are gone. A connection that closes (the
// process exited or was killed) loses its references and its unsealed objects at once.
//
// Eviction: when a create needs room, sealed objects that no client references are evicted in
// least-recently-used order (a CLOCK-style second chance: objects read through the fast path
// since the last pass move to the back), retrying the allocation after each one. Objects in use
// are never evicted; if nothing more can go the create fails with "store full" and the sizes.
//
// Security: the socket is created 0600 (0660 with a group), every peer's credentials are read
// with SO_PEERCRED and logged, and only the store's own user, root, or members of the group
// are served. Request sizes and counts are validated before use (protocol.h).
//
// Thread safety: Run() blocks the calling thread; Shutdown() may be called from any thread and
// from a signal handler. Start() runs the loop on a background thread (tests, embedding).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "zerodet/core/status.h"

namespace zerodet::store {

struct StoreOptions {
  std::string socket_path;
  uint64_t capacity = 0;         // arena bytes; rounded up to the page (or huge page) size
  bool hugepages = false;        // back the arena with huge pages (needs reserved hugetlb pages)
  std::string group;             // if set: socket mode 0660 owned by this group, members served
  uint32_t max_objects = 65536;  // objects alive at once; sizes the index and reference slots
  uint32_t max_clients = 256;
};

class StoreServer {
 public:
  // Creates the arena, the index and the listening socket. A stale socket file (no store
  // answering) is replaced; a live one is an error.
  // Errors: kInvalidArgument (zero capacity, empty path, unknown group, limits out of range),
  // kAlreadyExists (another store serves the path), kResourceExhausted (huge pages or memory
  // unavailable, naming the size), kIoError.
  static Result<std::unique_ptr<StoreServer>> Create(const StoreOptions& options);
  // Stops the loop if running, closes every connection and removes the socket file.
  ~StoreServer();

  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  // Serves until Shutdown(). REQUIRES: neither Run() nor Start() is active.
  Status Run();
  // Runs Run() on a new thread. REQUIRES: neither Run() nor Start() is active.
  void Start();
  // Asks the loop to stop; Run() returns soon after. Async-signal-safe (one write to an eventfd).
  void Shutdown();
  // Shutdown() and wait for the Start() thread.
  void Stop();

  const StoreOptions& options() const;

 private:
  class Impl;
  explicit StoreServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace zerodet::store

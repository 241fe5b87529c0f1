// StoreServer: the process side of the zerodet object store (clients: store/client.h).
//
// One StoreServer owns one arena of shared memory (a sealed memfd, optionally backed by huge
// pages), a shared read-only index of its objects, and a Unix-domain SOCK_SEQPACKET socket. It
// is a single-threaded event loop (epoll) around a socket-free object table
// (src/store/object_table.h): every allocation, seal, deletion and eviction happens on that
// thread, so the allocator and the table need no locks; clients read sealed objects without
// contacting it at all (see client.h, "Fast path").
//
// Ownership. The store creates every region and is the only process that writes the index or
// changes allocations. Clients receive the fds once (SCM_RIGHTS) and cannot resize any region
// (F_SEAL_SHRINK|F_SEAL_GROW) nor map the index writable (F_SEAL_FUTURE_WRITE). Every client
// gets the arena through a read-only descriptor; read-write clients also get the writable one
// (client.h, "Access"). The store never reads object bytes, and writes only the metadata of
// objects it allocated, after checking the bounds, so no request can make it touch memory
// outside the arena.
//
// Lifetime of objects: created (invisible to gets, owned by the creating connection) -> sealed
// (immutable, readable, evictable when unreferenced unless pinned) -> freed on eviction or
// delete; a delete of a referenced object is deferred until its references are gone. A
// connection that closes (the process exited or was killed) loses its references and its
// unsealed objects at once.
//
// Eviction: when a create needs room, sealed objects that no client references are evicted in
// least-recently-used order (a CLOCK-style second chance: objects read through the fast path
// since the last pass move to the back), retrying the allocation after each one. Objects in
// use and pinned objects are never evicted; if nothing more can go the create fails with
// "store full" and the sizes held by each kind of object that cannot go.
//
// Security: the socket is created 0600 (0660 with a group). Every peer's credentials and
// supplementary groups are read from the kernel at connect time (SO_PEERCRED,
// SO_PEERGROUPS); only the store's own user, root, or peers having the group as primary or
// supplementary group are served, and a refused peer is told why before the store hangs up.
// Read-write access can be restricted further (writer_group). Request sizes and counts are
// validated before use (protocol.h).
//
// Resources: every connection counts toward max_clients from the moment it is accepted, and
// one that has not said hello within hello_timeout is dropped, so idle connections cannot
// starve real clients. When the process runs out of file descriptors the store refuses new
// connections with a reason instead of spinning on accept(), and repeated warnings are
// rate-limited. Memory grows with the objects in use, not with max_objects (shm_layout.h).
// Timeouts from clients cannot overflow the loop's deadlines (core/clock.h).
//
// Thread safety: Run() blocks the calling thread; Shutdown() may be called from any thread and
// from a signal handler; Stats() from any thread. Start() runs the loop on a background thread
// (tests, embedding).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "zerodet/core/status.h"
#include "zerodet/store/client.h"

namespace zerodet::store {

struct StoreOptions {
  std::string socket_path;
  // Arena bytes; rounded up to the page (or huge page) size. Refused when more than the
  // machine (memory + swap, or its memory cgroup) can back.
  uint64_t capacity = 0;
  bool hugepages = false;  // back the arena with hugetlbfs pages (reserve them first)
  // Fault the whole arena in at start: commits the memory up front (so a store that cannot be
  // backed fails now, not its writers later), and gives huge pages where transparent huge
  // pages are enabled for shared memory.
  bool populate = false;
  std::string group;             // if set: socket mode 0660 owned by this group, members served
  std::string writer_group;      // if set: read-write only for the store's user, root and members
  uint32_t max_objects = 65536;  // objects alive at once (1 .. 2^26); memory follows use
  uint32_t max_clients = 256;    // open connections at once, including those before the hello
  std::chrono::milliseconds hello_timeout{5000};  // to say hello after connecting
};

class StoreServer {
 public:
  // Creates the arena, the index and the listening socket. A stale socket file (no store
  // answering) is replaced; a live one is an error.
  // Errors: kInvalidArgument (zero capacity, empty path, unknown group, limits out of range),
  // kAlreadyExists (another store serves the path, or the path is not a socket),
  // kResourceExhausted (more than the machine can back, or huge pages unavailable, naming the
  // sizes), kIoError.
  static Result<std::unique_ptr<StoreServer>> Create(const StoreOptions& options);
  // Stops the loop if running, closes every connection and removes the socket file if it is
  // still the one this store created (not a socket or file that replaced it meanwhile).
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

  // The store's statistics (as StoreClient::Stats() reports them) as of the end of the event
  // loop's latest pass: exact between passes, since only a pass changes them; before Run(), the
  // empty store. For the process that runs the store (`zerodet store --metrics`): no socket
  // round trip, no client slot, and the store does not count the reader among its clients.
  // Fast-path gets are not counted (see StoreStats). Any thread; never waits for the loop.
  StoreStats Stats() const;

 private:
  class Impl;
  explicit StoreServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace zerodet::store

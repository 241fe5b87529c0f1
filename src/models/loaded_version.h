// Internals of the model manager shared by its units: the budget ledger and one loaded version.
//
// Ledger: what each device has charged (loaded and draining versions) and reserved (loads in
// flight). Shared by the manager and every loaded version, so that a version released after the
// manager is gone still uncharges it. Guarded by its mutex.
//
// LoadedVersion: one loaded version of one model and its pool of instances, leased one per
// handle. Its bytes are charged to every device its load measured; it counts as one model on its
// own device (ConfigDevice). Destroyed when the manager and every handle let go of it: its
// sessions are released, its charge returned to the ledger and the freed heap to the system.
// Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "zerodet/core/clock.h"
#include "zerodet/core/status.h"
#include "zerodet/models/model_loader.h"

namespace zerodet::models_internal {

class Ledger {
 public:
  struct Device {
    uint64_t bytes = 0;   // charged by loaded and draining versions
    uint64_t models = 0;  // loaded and draining versions
    uint64_t reserved_bytes = 0;
    uint64_t reserved_models = 0;
    int draining = 0;  // versions detached while in use, not yet released
  };

  std::mutex mu;
  std::condition_variable room;  // notified when charges drop or a version becomes unreferenced
  std::map<std::string, Device> devices;
  // Loads waiting in the ledger for room; a released handle notifies `room` only when > 0, so
  // the hot path takes no shared lock otherwise.
  std::atomic<int> waiting{0};

  void NotifyIfWaiting() {
    if (waiting.load(std::memory_order_acquire) > 0) {
      std::lock_guard lock(mu);
      room.notify_all();
    }
  }
};

class LoadedVersion {
 public:
  LoadedVersion(std::string name, int64_t version, ModelConfig config, LoadedModel model,
                std::shared_ptr<Ledger> ledger);
  ~LoadedVersion();
  LoadedVersion(const LoadedVersion&) = delete;
  LoadedVersion& operator=(const LoadedVersion&) = delete;

  // A free instance, waiting until `deadline` for one. Errors: kDeadlineExceeded.
  Result<Detector*> Lease(Deadline deadline);
  // REQUIRES: `instance` came from Lease on this version and is returned once.
  void Return(Detector* instance);
  int leased() const;

  // Marks the version detached while in use: the ledger counts it as draining on `device` until
  // it is destroyed. Called under the ledger's mutex.
  void MarkDraining(const std::string& device) { draining_device_ = device; }

  Ledger& ledger() { return *ledger_; }

  const std::string name;
  const int64_t version;
  const ModelConfig config;
  LoadedModel model;  // not changed after construction (the destructor releases it)
  const MonotonicClock::time_point loaded_at;
  std::atomic<int64_t> last_used_ns;

 private:
  std::shared_ptr<Ledger> ledger_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::vector<Detector*> free_;
  int leased_ = 0;
  std::string draining_device_;  // guarded by ledger_->mu; empty when not draining
};

}  // namespace zerodet::models_internal

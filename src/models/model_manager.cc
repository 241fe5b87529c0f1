// The model manager (see model_manager.h): per-model slots with single-flight loads, routing,
// the loader pool, room-making (LRU eviction under per-device budgets), and applying repository
// changes (hot swap).
//
// Locks, in the order they may nest: ledger.mu -> slots_mu_ (shared) -> ModelSlot::mu.
// LoadedVersion's destructor takes ledger.mu, so a LoadedVersion is never dropped while a slot
// mutex or the ledger mutex is held: detached versions are moved into a local list and released
// after the locks (see Drop).
#include "zerodet/models/model_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <random>
#include <shared_mutex>
#include <thread>
#include <utility>

#include "loaded_version.h"
#include "repository_watcher.h"
#include "zerodet/core/stopwatch.h"

namespace zerodet {

using models_internal::Ledger;
using models_internal::LoadedVersion;

// --- ModelHandle ---------------------------------------------------------------------------

ModelHandle::ModelHandle(std::shared_ptr<LoadedVersion> version, Detector* detector)
    : version_(std::move(version)), detector_(detector) {}

ModelHandle::ModelHandle(ModelHandle&& other) noexcept
    : version_(std::move(other.version_)), detector_(std::exchange(other.detector_, nullptr)) {}

ModelHandle& ModelHandle::operator=(ModelHandle&& other) noexcept {
  if (this != &other) {
    Release();
    version_ = std::move(other.version_);
    detector_ = std::exchange(other.detector_, nullptr);
  }
  return *this;
}

ModelHandle::~ModelHandle() {
  Release();
}

const std::string& ModelHandle::name() const {
  return version_->name;
}
int64_t ModelHandle::version() const {
  return version_->version;
}
const ModelConfig& ModelHandle::config() const {
  return version_->config;
}

void ModelHandle::Release() {
  if (!detector_) return;
  version_->Return(std::exchange(detector_, nullptr));
  std::shared_ptr<LoadedVersion> version = std::move(version_);
  // A load waiting for room may be waiting for exactly this version to become unreferenced.
  version->ledger().NotifyIfWaiting();
}

// --- slots ---------------------------------------------------------------------------------

namespace {

struct VersionSlot {
  ModelState state = ModelState::kUnloaded;
  Status error;                           // the last load failure
  std::shared_ptr<LoadedVersion> loaded;  // while ready
  FileIdentity loaded_identity;
  ConfigIdentity loaded_config_identity;
  bool load_in_flight = false;  // a load or reload of this version is queued or running
  bool reload_wanted = false;   // the file or config changed while a load was in flight
};

struct ModelSlot : std::enable_shared_from_this<ModelSlot> {
  explicit ModelSlot(std::string n) : name(std::move(n)) {}
  const std::string name;
  std::mutex mu;
  std::condition_variable changed;  // a version's state changed
  ModelEntry entry;
  bool removed = false;
  std::map<int64_t, VersionSlot> versions;
  // The version requests without a version went to last: it keeps serving while a newer
  // default version loads in the background, or after the newer one failed.
  std::optional<int64_t> serving;
  ModelStats stats;
  uint64_t last_charge_bytes = 0;  // what the last load of this model measured (estimates)
};

// Versions detached under a lock, released after it (their destructors take the ledger lock).
using Drop = std::vector<std::shared_ptr<LoadedVersion>>;

std::string VersionLabel(const std::string& name, int64_t version) {
  return name + ":" + std::to_string(version);
}

std::string ServedList(const ModelEntry& entry) {
  std::string out;
  for (int64_t v : entry.served) out += (out.empty() ? "" : ", ") + std::to_string(v);
  return out.empty() ? "none" : out;
}

std::string Mib(uint64_t bytes) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buffer;
}

// Per-thread, so that picking a version of a traffic split takes no lock. Seeded from the clock
// and the thread (std::random_device may throw).
thread_local std::mt19937_64 route_random{
    static_cast<uint64_t>(MonotonicNowNs()) ^
    static_cast<uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()))};

}  // namespace

// --- the manager ---------------------------------------------------------------------------

struct ModelManager::Impl {
  ManagerOptions options;
  std::shared_ptr<ModelLoader> loader;
  std::shared_ptr<Ledger> ledger = std::make_shared<Ledger>();

  mutable std::shared_mutex slots_mu;
  std::map<std::string, std::shared_ptr<ModelSlot>, std::less<>> slots;

  std::mutex scan_mu;  // one scan at a time
  RepositoryScanner scanner;
  mutable std::mutex index_mu;
  RepositoryIndex index;

  // Loader pool.
  std::mutex jobs_mu;
  std::condition_variable jobs_cv;
  std::deque<std::function<void()>> jobs;
  bool stopping = false;
  std::atomic<bool> shutting_down{false};  // loads waiting for room give up
  std::vector<std::thread> loaders;

  std::unique_ptr<models_internal::RepositoryWatcher> watcher;
  std::thread watch_thread;

  explicit Impl(ManagerOptions o)
      : options(std::move(o)), scanner(options.repository, {options.settle}) {}

  std::shared_ptr<ModelSlot> FindSlot(std::string_view name) const {
    std::shared_lock lock(slots_mu);
    auto it = slots.find(name);
    return it == slots.end() ? nullptr : it->second;
  }

  std::vector<std::shared_ptr<ModelSlot>> AllSlots() const {
    std::shared_lock lock(slots_mu);
    std::vector<std::shared_ptr<ModelSlot>> out;
    for (const auto& [name, slot] : slots) out.push_back(slot);
    return out;
  }

  DeviceBudget BudgetOf(const std::string& device) const {
    auto it = options.budgets.find(device);
    return it == options.budgets.end() ? DeviceBudget{} : it->second;
  }

  void Enqueue(std::function<void()> job) {
    {
      std::lock_guard lock(jobs_mu);
      jobs.push_back(std::move(job));
    }
    jobs_cv.notify_one();
  }

  void LoaderLoop() {
    while (true) {
      std::function<void()> job;
      {
        std::unique_lock lock(jobs_mu);
        jobs_cv.wait(lock, [&] { return stopping || !jobs.empty(); });
        if (stopping) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      job();
    }
  }

  // --- routing (under slot.mu) ---

  bool Usable(const ModelSlot& slot, int64_t version) const {
    auto it = slot.versions.find(version);
    return it == slot.versions.end() || it->second.state != ModelState::kFailed;
  }
  bool Ready(const ModelSlot& slot, int64_t version) const {
    auto it = slot.versions.find(version);
    return it != slot.versions.end() && it->second.state == ModelState::kReady;
  }
  bool Served(const ModelSlot& slot, int64_t version) const {
    return std::find(slot.entry.served.begin(), slot.entry.served.end(), version) !=
           slot.entry.served.end();
  }

  // The version a request without a version goes to. Errors: no served version.
  Result<int64_t> Route(ModelSlot& slot) {
    const ModelEntry& entry = slot.entry;
    if (!entry.config.traffic.empty()) {
      std::vector<std::pair<int64_t, double>> candidates;
      double total = 0;
      for (const auto& [version, weight] : entry.config.traffic) {
        if (Served(slot, version) && Usable(slot, version)) {
          candidates.emplace_back(version, weight);
          total += weight;
        }
      }
      if (candidates.empty()) {
        return NotFoundError(slot.name + ": no version of its traffic split is served (served: " +
                             ServedList(entry) + ")");
      }
      double pick = std::uniform_real_distribution<double>(0, total)(route_random);
      for (const auto& [version, weight] : candidates) {
        if (pick < weight) return version;
        pick -= weight;
      }
      return candidates.back().first;
    }
    std::optional<int64_t> target = entry.DefaultVersion();
    if (!target)
      return entry.status.ok() ? NotFoundError(slot.name + ": no served version") : entry.status;
    if (Ready(slot, *target)) return *target;
    // While the target loads in the background (a hot swap), or after it failed, the version
    // that served before keeps serving.
    if (slot.serving && *slot.serving != *target && Ready(slot, *slot.serving)) {
      if (Usable(slot, *target)) QueueLoad(slot, *target);
      return *slot.serving;
    }
    if (Usable(slot, *target)) return *target;
    for (auto it = entry.served.rbegin(); it != entry.served.rend(); ++it) {
      if (Usable(slot, *it)) return *it;
    }
    return slot.versions[*target].error;
  }

  // --- loading ---

  // Queues a load of `version` unless one is in flight (single flight). Under slot.mu.
  void QueueLoad(ModelSlot& slot, int64_t version) {
    VersionSlot& vs = slot.versions[version];
    if (vs.load_in_flight) return;
    vs.load_in_flight = true;
    if (vs.state != ModelState::kReady) vs.state = ModelState::kLoading;
    Enqueue([this, shared = slot.shared_from_this(), version] { RunLoad(shared, version); });
  }

  void RunLoad(const std::shared_ptr<ModelSlot>& slot, int64_t version) {
    LoadRequest request;
    uint64_t estimate = 0;
    ConfigIdentity config_identity;
    bool first_load = false;
    Status gone;
    {
      std::lock_guard lock(slot->mu);
      const VersionEntry* entry = slot->entry.FindVersion(version);
      if (slot->removed || !entry) {
        gone = NotFoundError(VersionLabel(slot->name, version) + ": no longer in the repository");
      } else if (!entry->status.ok()) {
        gone = entry->status;
      } else if (!slot->entry.config_ok) {
        gone = slot->entry.status;
      }
      first_load = slot->stats.loads == 0 && slot->stats.failed_loads == 0;
      if (gone.ok()) {
        request.name = slot->name;
        request.version = version;
        request.model_path = entry->model_path;
        request.identity = entry->identity;
        request.config = slot->entry.config;
        request.deadline = Deadline::After(options.load_timeout);
        config_identity = slot->entry.config_identity;
        estimate = slot->last_charge_bytes > 0 ? slot->last_charge_bytes : entry->identity.size;
      }
    }
    if (!gone.ok()) {
      FinishLoad(*slot, version, gone, nullptr, {}, {});
      return;
    }
    const std::string device = ConfigDevice(request.config);
    const std::string label = VersionLabel(request.name, version);
    if (first_load) {
      for (const std::string& line : request.config.unsupported) spdlog::warn("{}", line);
    }

    Status room = MakeRoom(device, estimate, request.deadline, label);
    Result<LoadedModel> loaded = room.ok() ? loader->Load(request) : Result<LoadedModel>(room);
    if (room.ok()) ReleaseReservation(device, estimate);

    std::shared_ptr<LoadedVersion> ready;
    if (loaded.ok()) {
      const auto charged = loaded->charge.find(device);
      const uint64_t bytes = charged == loaded->charge.end() ? 0 : charged->second;
      const DeviceBudget budget = BudgetOf(device);
      // Measured larger than the whole budget: it can never fit. (A charge measured while other
      // loads ran, "rss-shared", includes their growth and does not prove it.)
      if (budget.max_bytes > 0 && bytes > budget.max_bytes &&
          loaded->charge_source.rfind("rss-shared", 0) != 0) {
        {
          std::lock_guard lock(slot->mu);
          slot->last_charge_bytes = bytes;
        }
        loaded = ResourceExhaustedError(label + ": its load took " + Mib(bytes) +
                                        ", more than the whole " + device + " budget of " +
                                        Mib(budget.max_bytes));
      } else {
        ready = std::make_shared<LoadedVersion>(request.name, version, request.config,
                                                std::move(loaded).value(), ledger);
      }
    }
    // A measured charge above the estimate may leave the device over budget: unreferenced
    // versions are evicted before this one is published, so requests never see the excess.
    if (ready) EnforceBudget(device);
    FinishLoad(*slot, version, ready ? Status::Ok() : loaded.status(), std::move(ready),
               request.identity, config_identity);
  }

  // Publishes the outcome of a load of `version` and wakes its waiters.
  void FinishLoad(ModelSlot& slot, int64_t version, const Status& status,
                  std::shared_ptr<LoadedVersion> ready, const FileIdentity& identity,
                  const ConfigIdentity& config_identity) {
    Drop drop;
    {
      std::lock_guard lock(slot.mu);
      VersionSlot& vs = slot.versions[version];
      vs.load_in_flight = false;
      const std::string label = VersionLabel(slot.name, version);
      if (ready) {
        const LoadedModel& model = ready->model;
        slot.stats.loads += 1;
        slot.stats.last_load_ms = model.create_ms + model.warmup_ms;
        slot.stats.last_warmup_ms = model.warmup_ms;
        slot.stats.load_ms.Add(slot.stats.last_load_ms);
        const auto charged = model.charge.find(ConfigDevice(ready->config));
        if (charged != model.charge.end()) slot.last_charge_bytes = charged->second;
        if (vs.loaded) drop.push_back(std::move(vs.loaded));  // the old copy (hot swap)
        vs.loaded = std::move(ready);
        vs.state = ModelState::kReady;
        vs.error = Status::Ok();
        vs.loaded_identity = identity;
        vs.loaded_config_identity = config_identity;
        spdlog::info("{}: ready ({:.1f} ms, {} instance(s){})", label, slot.stats.last_load_ms,
                     vs.loaded->model.instances.size(),
                     vs.loaded->model.from_graph_cache ? ", optimized graph from the cache" : "");
        // A hot swap completes: new requests go to the new default version.
        const std::optional<int64_t> target = slot.entry.DefaultVersion();
        if (!slot.serving || (target && *target == version)) slot.serving = version;
        DetachUnserved(slot, drop);
      } else {
        slot.stats.failed_loads += 1;
        vs.error = status;
        spdlog::warn("{}: load failed: {}", label, status.ToString());
        if (vs.state != ModelState::kReady) {
          // Not enough room is not the model's fault: the next request tries again. Any other
          // failure stays until the file or config changes, or Load is called.
          vs.state = status.code() == StatusCode::kResourceExhausted &&
                             status.message().find("whole") == std::string::npos
                         ? ModelState::kUnloaded
                         : ModelState::kFailed;
        }
      }
      if (vs.reload_wanted && !slot.removed) {
        vs.reload_wanted = false;
        QueueLoad(slot, version);
      }
    }
    slot.changed.notify_all();
  }

  // Versions the policy no longer serves and that are not serving requests without a version:
  // detached (freed when their last handle goes). Under slot.mu.
  void DetachUnserved(ModelSlot& slot, Drop& drop) {
    const std::optional<int64_t> target = slot.entry.DefaultVersion();
    const bool target_ready = target && Ready(slot, *target);
    for (auto& [version, vs] : slot.versions) {
      if (!vs.loaded) continue;
      if (!slot.removed && Served(slot, version)) continue;
      // The version serving requests without a version keeps doing so until its successor is
      // ready (a hot swap in progress, or a successor that failed).
      if (!slot.removed && slot.serving == version && !target_ready) continue;
      drop.push_back(std::move(vs.loaded));
      vs.state = ModelState::kUnloaded;
    }
  }

  // --- room ---

  bool Fits(const Ledger::Device& d, const DeviceBudget& budget, uint64_t bytes) const {
    const bool count_ok =
        budget.max_models == 0 || d.models + d.reserved_models + 1 <= budget.max_models;
    const bool bytes_ok =
        budget.max_bytes == 0 || d.bytes + d.reserved_bytes + bytes <= budget.max_bytes;
    return count_ok && bytes_ok;
  }

  // The least recently used loaded, unpinned version on `device`: unreferenced ones only, or
  // any. Under ledger.mu; takes each slot's mutex in turn. Detaches it into `drop`.
  bool EvictOne(const std::string& device, bool unreferenced_only, Drop& drop) {
    std::shared_ptr<ModelSlot> best_slot;
    int64_t best_version = 0;
    int64_t best_used = 0;
    for (const auto& slot : AllSlots()) {
      std::lock_guard lock(slot->mu);
      for (auto& [version, vs] : slot->versions) {
        if (!vs.loaded || vs.loaded->config.pinned || ConfigDevice(vs.loaded->config) != device) {
          continue;
        }
        if (unreferenced_only && vs.loaded.use_count() != 1) continue;
        const int64_t used = vs.loaded->last_used_ns.load(std::memory_order_relaxed);
        if (!best_slot || used < best_used) {
          best_slot = slot;
          best_version = version;
          best_used = used;
        }
      }
    }
    if (!best_slot) return false;
    std::lock_guard lock(best_slot->mu);
    VersionSlot& vs = best_slot->versions[best_version];
    if (!vs.loaded) return true;  // gone meanwhile: room was made anyway; look again
    if (unreferenced_only && vs.loaded.use_count() != 1) return true;
    const double age_s =
        std::chrono::duration<double>(MonotonicClock::now() - vs.loaded->loaded_at).count();
    best_slot->stats.evictions += 1;
    best_slot->stats.last_eviction_age_s = age_s;
    best_slot->stats.eviction_age_sum_s += age_s;
    if (vs.loaded.use_count() != 1) {
      vs.loaded->MarkDraining(device);
      ledger->devices[device].draining += 1;
    }
    spdlog::info("{}: evicted after {:.1f} s ({})", VersionLabel(best_slot->name, best_version),
                 age_s, vs.loaded.use_count() == 1 ? "unused" : "draining its last requests");
    drop.push_back(std::move(vs.loaded));
    vs.state = ModelState::kUnloaded;
    return true;
  }

  // Reserves room for a load of about `bytes` on `device`, evicting as the file comment says.
  Status MakeRoom(const std::string& device, uint64_t bytes, Deadline deadline,
                  const std::string& label) {
    const DeviceBudget budget = BudgetOf(device);
    if (budget.max_bytes > 0 && bytes > budget.max_bytes) {
      return ResourceExhaustedError(label + ": it needs about " + Mib(bytes) +
                                    ", more than the whole " + device + " budget of " +
                                    Mib(budget.max_bytes));
    }
    std::unique_lock lock(ledger->mu);
    ledger->waiting.fetch_add(1);
    struct Waiting {
      Ledger& ledger;
      ~Waiting() { ledger.waiting.fetch_sub(1); }
    } waiting{*ledger};
    while (true) {
      if (shutting_down.load()) return UnavailableError(label + ": the manager is shutting down");
      Ledger::Device& d = ledger->devices[device];
      if (Fits(d, budget, bytes)) {
        d.reserved_bytes += bytes;
        d.reserved_models += 1;
        return Status::Ok();
      }
      Drop drop;
      bool evicted = EvictOne(device, /*unreferenced_only=*/true, drop);
      if (!evicted && d.draining == 0) evicted = EvictOne(device, false, drop);
      if (!drop.empty()) {
        lock.unlock();
        drop.clear();
        lock.lock();
        continue;
      }
      if (evicted) continue;
      if (d.draining == 0 && d.models == 0 && d.reserved_models == 0) {
        return ResourceExhaustedError(label + ": no room on " + device);
      }
      if (deadline.expired()) {
        return ResourceExhaustedError(
            label + ": no room on " + device + " (" + std::to_string(d.models) + " loaded of " +
            std::to_string(budget.max_models) + ", " + Mib(d.bytes) + " of " +
            Mib(budget.max_bytes) + "; every other version is pinned or in use)");
      }
      // Woken when a version is released or freed; the bound guards against a missed wake-up.
      const auto wake =
          std::min(MonotonicClock::now() + std::chrono::milliseconds(100),
                   deadline.never() ? MonotonicClock::time_point::max() : deadline.time_point());
      ledger->room.wait_until(lock, wake);
    }
  }

  void ReleaseReservation(const std::string& device, uint64_t bytes) {
    std::lock_guard lock(ledger->mu);
    Ledger::Device& d = ledger->devices[device];
    d.reserved_bytes -= std::min(d.reserved_bytes, bytes);
    d.reserved_models -= std::min<uint64_t>(d.reserved_models, 1);
  }

  // After a load whose measured charge exceeded its estimate: evicts unreferenced versions
  // until the device is within budget again (or nothing more can go).
  void EnforceBudget(const std::string& device) {
    const DeviceBudget budget = BudgetOf(device);
    if (budget.max_bytes == 0 && budget.max_models == 0) return;
    std::unique_lock lock(ledger->mu);
    while (true) {
      const Ledger::Device& d = ledger->devices[device];
      const bool over = (budget.max_models > 0 && d.models > budget.max_models) ||
                        (budget.max_bytes > 0 && d.bytes > budget.max_bytes);
      if (!over) return;
      Drop drop;
      if (!EvictOne(device, /*unreferenced_only=*/true, drop)) return;
      lock.unlock();
      drop.clear();
      lock.lock();
    }
  }

  // --- requests ---

  // `request`: a request's Acquire (counted as a hit or a miss), not Load's own wait.
  Result<ModelHandle> Acquire(std::string_view name, const AcquireOptions& options_in,
                              bool request = true) {
    std::shared_ptr<ModelSlot> slot = FindSlot(name);
    if (!slot) return NotFoundError("model '" + std::string(name) + "' is not in the repository");
    const Deadline load_deadline = Deadline::After(options.load_timeout);
    const Deadline deadline =
        options_in.deadline < load_deadline ? options_in.deadline : load_deadline;
    std::shared_ptr<LoadedVersion> version;
    {
      std::unique_lock lock(slot->mu);
      if (slot->removed) return NotFoundError("model '" + slot->name + "' was removed");
      if (!slot->entry.config_ok) return slot->entry.status;
      int64_t number = 0;
      if (options_in.version) {
        number = *options_in.version;
        if (!Served(*slot, number)) {
          const VersionEntry* entry = slot->entry.FindVersion(number);
          if (entry && !entry->status.ok()) return entry->status;
          return NotFoundError(VersionLabel(slot->name, number) +
                               ": not served (served: " + ServedList(slot->entry) + ")");
        }
      } else {
        ZD_ASSIGN_OR_RETURN(number, Route(*slot));
      }
      bool missed = false;
      Stopwatch waited;
      while (true) {
        if (!options_in.version && !Served(*slot, number)) {
          // The version this request was routed to left the repository while it waited (a
          // version removed under load): the model's routing picks the one serving now.
          ZD_ASSIGN_OR_RETURN(number, Route(*slot));
        }
        VersionSlot& vs = slot->versions[number];
        if (vs.state == ModelState::kReady && vs.loaded) {
          version = vs.loaded;
          break;
        }
        if (vs.state == ModelState::kFailed) return vs.error;
        if (slot->removed) return NotFoundError("model '" + slot->name + "' was removed");
        if (vs.state == ModelState::kUnloaded) {
          if (!vs.error.ok() && missed) return vs.error;  // this request's load found no room
          QueueLoad(*slot, number);
        }
        missed = true;
        if (deadline.never()) {
          slot->changed.wait(lock);
        } else if (slot->changed.wait_until(lock, deadline.time_point()) ==
                       std::cv_status::timeout &&
                   deadline.expired()) {
          return DeadlineExceededError(VersionLabel(slot->name, number) +
                                       ": not ready before the deadline (still loading)");
        }
      }
      if (request && missed) {
        slot->stats.misses += 1;
        slot->stats.miss_wait_ms += waited.ElapsedMs();
      } else if (request) {
        slot->stats.hits += 1;
      }
    }
    version->last_used_ns.store(MonotonicNowNs(), std::memory_order_relaxed);
    ZD_ASSIGN_OR_RETURN(Detector * instance, version->Lease(deadline));
    return ModelHandle(std::move(version), instance);
  }

  // The versions Load(name, nullopt) means: the traffic split's, else the default one.
  Result<std::vector<int64_t>> LoadTargets(ModelSlot& slot, std::optional<int64_t> version) {
    if (!slot.entry.config_ok) return slot.entry.status;
    if (version) {
      if (!Served(slot, *version)) {
        return NotFoundError(VersionLabel(slot.name, *version) +
                             ": not served (served: " + ServedList(slot.entry) + ")");
      }
      return std::vector<int64_t>{*version};
    }
    std::vector<int64_t> targets;
    for (const auto& [v, weight] : slot.entry.config.traffic) {
      if (Served(slot, v)) targets.push_back(v);
    }
    if (targets.empty()) {
      std::optional<int64_t> target = slot.entry.DefaultVersion();
      if (!target) return NotFoundError(slot.name + ": no served version");
      targets.push_back(*target);
    }
    return targets;
  }

  Status Load(std::string_view name, std::optional<int64_t> version, bool wait) {
    std::shared_ptr<ModelSlot> slot = FindSlot(name);
    if (!slot || slot->removed) {
      return NotFoundError("model '" + std::string(name) + "' is not in the repository");
    }
    std::vector<int64_t> targets;
    {
      std::lock_guard lock(slot->mu);
      ZD_ASSIGN_OR_RETURN(targets, LoadTargets(*slot, version));
      for (int64_t v : targets) {
        VersionSlot& vs = slot->versions[v];
        if (vs.state == ModelState::kFailed) vs.state = ModelState::kUnloaded;
        if (vs.state == ModelState::kUnloaded) QueueLoad(*slot, v);
        if (!version && !slot->serving) slot->serving = v;
      }
    }
    if (!wait) return Status::Ok();
    for (int64_t v : targets) {
      AcquireOptions acquire;
      acquire.version = v;
      ZD_ASSIGN_OR_RETURN(ModelHandle handle, Acquire(name, acquire, /*request=*/false));
    }
    return Status::Ok();
  }

  Status Unload(std::string_view name, std::optional<int64_t> version) {
    std::shared_ptr<ModelSlot> slot = FindSlot(name);
    if (!slot) return NotFoundError("model '" + std::string(name) + "' is not in the repository");
    Drop drop;
    {
      std::lock_guard lock(slot->mu);
      for (auto& [v, vs] : slot->versions) {
        if (version && *version != v) continue;
        if (vs.loaded) drop.push_back(std::move(vs.loaded));
        if (vs.state != ModelState::kLoading) vs.state = ModelState::kUnloaded;
        vs.error = Status::Ok();
      }
    }
    slot->changed.notify_all();
    return Status::Ok();
  }

  // --- repository changes ---

  Status Rescan() {
    std::lock_guard scan_lock(scan_mu);
    ZD_ASSIGN_OR_RETURN(RepositoryIndex scanned, scanner.Scan());
    Apply(scanned);
    if (watcher) watcher->Watch(scanned);
    std::lock_guard lock(index_mu);
    index = std::move(scanned);
    return Status::Ok();
  }

  void Apply(const RepositoryIndex& scanned) {
    std::vector<std::shared_ptr<ModelSlot>> touched;
    {
      std::unique_lock lock(slots_mu);
      for (const ModelEntry& entry : scanned.models) {
        auto [it, inserted] = slots.try_emplace(entry.name, nullptr);
        if (inserted) it->second = std::make_shared<ModelSlot>(entry.name);
      }
      for (const auto& [name, slot] : slots) touched.push_back(slot);
    }
    for (const auto& slot : touched) {
      const ModelEntry* entry = scanned.Find(slot->name);
      Drop drop;
      {
        std::lock_guard lock(slot->mu);
        if (!entry) {
          slot->removed = true;
          for (auto& [v, vs] : slot->versions) {
            if (vs.loaded) drop.push_back(std::move(vs.loaded));
            vs.state = ModelState::kUnloaded;
          }
        } else {
          ApplyEntry(*slot, *entry, drop);
        }
      }
      slot->changed.notify_all();
    }
  }

  // Applies a model's new entry. Under slot.mu.
  void ApplyEntry(ModelSlot& slot, const ModelEntry& entry, Drop& drop) {
    const bool config_changed = !(slot.entry.config_identity == entry.config_identity);
    slot.removed = false;
    slot.entry = entry;
    slot.stats.pinned = entry.config.pinned;
    for (auto& [version, vs] : slot.versions) {
      const VersionEntry* now = entry.FindVersion(version);
      if (!now || !now->status.ok()) {
        // Removed (or no longer loadable): requests in flight finish on their handles.
        if (vs.loaded) drop.push_back(std::move(vs.loaded));
        if (vs.state != ModelState::kLoading) vs.state = ModelState::kUnloaded;
        vs.error = Status::Ok();
        continue;
      }
      const bool file_changed = !(vs.loaded_identity == now->identity);
      if (vs.state == ModelState::kFailed && (file_changed || config_changed)) {
        vs.state = ModelState::kUnloaded;  // a new file or config may load
        vs.error = Status::Ok();
      }
      if (vs.loaded && (file_changed || config_changed) && entry.config_ok) {
        if (vs.load_in_flight) {
          vs.reload_wanted = true;
        } else {
          QueueLoad(slot, version);  // hot swap: the old copy serves until the new one is ready
        }
      }
    }
    DetachUnserved(slot, drop);
    // A new default version of a model in use loads in the background.
    const std::optional<int64_t> target = entry.DefaultVersion();
    if (target && slot.serving && *slot.serving != *target && entry.config.traffic.empty() &&
        Usable(slot, *target) && !Ready(slot, *target)) {
      QueueLoad(slot, *target);
    }
  }

  void WatchLoop() {
    std::vector<std::filesystem::path> completed;
    while (true) {
      bool pending = false;
      {
        std::lock_guard lock(scan_mu);
        pending = scanner.pending_files();
      }
      const auto timeout =
          pending ? std::min(options.settle, options.poll_interval) : options.poll_interval;
      completed.clear();
      if (!watcher->Wait(timeout, completed)) return;
      {
        std::lock_guard lock(scan_mu);
        for (const auto& file : completed) scanner.MarkComplete(file);
      }
      if (Status status = Rescan(); !status.ok()) {
        spdlog::warn("model repository: {}", status.ToString());
      }
    }
  }

  // --- introspection ---

  ManagerStats Stats() const {
    ManagerStats out;
    for (const auto& slot : AllSlots()) {
      std::lock_guard lock(slot->mu);
      if (slot->removed) continue;
      ModelStats stats = slot->stats;
      stats.name = slot->name;
      stats.pinned = slot->entry.config.pinned;
      stats.state = ModelState::kUnloaded;
      if (!slot->entry.status.ok() && !slot->entry.config_ok) {
        stats.state = ModelState::kFailed;
        stats.reason = slot->entry.status.message();
      }
      for (const auto& [version, vs] : slot->versions) {
        VersionStats v;
        v.version = version;
        v.state = vs.state;
        if (!vs.error.ok()) v.reason = vs.error.message();
        if (vs.loaded) {
          v.charge = vs.loaded->model.charge;
          v.charge_source = vs.loaded->model.charge_source;
          v.handles = vs.loaded->leased();
          v.from_graph_cache = vs.loaded->model.from_graph_cache;
          for (const auto& [device, bytes] : v.charge) stats.bytes[device] += bytes;
          out.loaded_versions += 1;
        }
        if (v.state == ModelState::kUnloaded && v.reason.empty()) continue;
        // The most advanced state wins: ready > loading > failed > unloaded.
        const auto rank = [](ModelState s) {
          return s == ModelState::kReady     ? 3
                 : s == ModelState::kLoading ? 2
                 : s == ModelState::kFailed  ? 1
                                             : 0;
        };
        if (rank(v.state) > rank(stats.state)) {
          stats.state = v.state;
          if (v.state == ModelState::kFailed) stats.reason = v.reason;
        }
        stats.versions.push_back(std::move(v));
      }
      out.hits += stats.hits;
      out.misses += stats.misses;
      out.models.push_back(std::move(stats));
    }
    out.hit_rate = out.hits + out.misses > 0
                       ? static_cast<double>(out.hits) / static_cast<double>(out.hits + out.misses)
                       : 0;
    std::lock_guard lock(ledger->mu);
    for (const auto& [device, d] : ledger->devices) {
      const DeviceBudget budget = BudgetOf(device);
      out.devices[device] = DeviceStats{d.bytes, budget.max_bytes, d.models, budget.max_models};
    }
    for (const auto& [device, budget] : options.budgets) {
      DeviceStats& s = out.devices[device];
      s.bytes_budget = budget.max_bytes;
      s.models_budget = budget.max_models;
    }
    return out;
  }

  RepositoryIndex Index() const {
    std::lock_guard lock(index_mu);
    return index;
  }

  std::optional<BatchingPolicy> Batching(std::string_view name) const {
    std::lock_guard lock(index_mu);
    const ModelEntry* entry = index.Find(name);
    if (entry == nullptr || !entry->config_ok || !entry->config.dynamic_batching) {
      return std::nullopt;
    }
    return BatchingPolicy{entry->config.max_batch, *entry->config.dynamic_batching};
  }

  void Shutdown() {
    shutting_down.store(true);
    {
      std::lock_guard lock(ledger->mu);
      ledger->room.notify_all();
    }
    if (watcher) watcher->Stop();
    if (watch_thread.joinable()) watch_thread.join();
    {
      std::lock_guard lock(jobs_mu);
      stopping = true;
      jobs.clear();
    }
    jobs_cv.notify_all();
    for (std::thread& thread : loaders) thread.join();
    // Waiters of loads that will not run now fail instead of waiting for their deadline.
    for (const auto& slot : AllSlots()) {
      Drop drop;
      {
        std::lock_guard lock(slot->mu);
        slot->removed = true;
        for (auto& [v, vs] : slot->versions) {
          if (vs.loaded) drop.push_back(std::move(vs.loaded));
          vs.state = ModelState::kUnloaded;
        }
      }
      slot->changed.notify_all();
    }
  }
};

// --- public ---------------------------------------------------------------------------------

ModelManager::ModelManager(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

ModelManager::~ModelManager() {
  impl_->Shutdown();
}

Result<std::unique_ptr<ModelManager>> ModelManager::Create(ManagerOptions options) {
  if (options.loader_threads < 1 || options.loader_threads > 64) {
    return InvalidArgumentError("loader_threads must be in 1..64, got " +
                                std::to_string(options.loader_threads));
  }
  for (const std::string& name : options.preload) ZD_RETURN_IF_ERROR(ValidateModelName(name));
  // spdlog's registry is a function-local static inside libspdlog: built here, before the
  // loader threads, their first log lines never race on its construction (a race
  // ThreadSanitizer reports, as it cannot see the guard in the uninstrumented library).
  spdlog::default_logger_raw();
  ZD_RETURN_IF_ERROR(ConfigureSharedThreadPool(options.thread_pool));
  auto impl = std::make_shared<Impl>(std::move(options));
  impl->loader = impl->options.loader ? impl->options.loader
                                      : CreateOnnxModelLoader({impl->options.graph_cache_dir});
  ZD_RETURN_IF_ERROR(impl->Rescan());
  std::unique_ptr<ModelManager> manager(new ModelManager(impl));
  try {
    for (int i = 0; i < impl->options.loader_threads; ++i) {
      impl->loaders.emplace_back([raw = impl.get()] { raw->LoaderLoop(); });
    }
    if (impl->options.watch) {
      impl->watcher =
          std::make_unique<models_internal::RepositoryWatcher>(impl->options.repository);
      impl->watcher->Watch(impl->Index());
      impl->watch_thread = std::thread([raw = impl.get()] { raw->WatchLoop(); });
    }
  } catch (const std::system_error& e) {
    return ResourceExhaustedError(std::string("cannot start the model manager's threads: ") +
                                  e.what());
  }
  std::vector<std::string> preload = impl->options.preload;
  for (const ModelEntry& entry : impl->Index().models) {
    if (entry.config_ok && entry.config.preload) preload.push_back(entry.name);
  }
  for (const std::string& name : preload) {
    if (Status status = impl->Load(name, std::nullopt, /*wait=*/false); !status.ok()) {
      spdlog::warn("preload {}: {}", name, status.ToString());
    }
  }
  return manager;
}

Result<ModelHandle> ModelManager::Acquire(std::string_view name, const AcquireOptions& options) {
  return impl_->Acquire(name, options, /*request=*/true);
}

Status ModelManager::Load(std::string_view name, std::optional<int64_t> version) {
  return impl_->Load(name, version, /*wait=*/true);
}

Status ModelManager::LoadAsync(std::string_view name, std::optional<int64_t> version) {
  return impl_->Load(name, version, /*wait=*/false);
}

Status ModelManager::Unload(std::string_view name, std::optional<int64_t> version) {
  return impl_->Unload(name, version);
}

Status ModelManager::Rescan() {
  return impl_->Rescan();
}

RepositoryIndex ModelManager::Index() const {
  return impl_->Index();
}

std::optional<BatchingPolicy> ModelManager::Batching(std::string_view name) const {
  return impl_->Batching(name);
}

ManagerStats ModelManager::Stats() const {
  return impl_->Stats();
}

Result<OpenedModel> OpenModelFromRepository(const std::filesystem::path& repository,
                                            std::string_view reference, ManagerOptions options) {
  ZD_ASSIGN_OR_RETURN(ModelRef ref, ParseModelRef(reference));
  options.repository = repository;
  options.watch = false;
  const std::chrono::milliseconds settle = options.settle;
  OpenedModel opened;
  ZD_ASSIGN_OR_RETURN(opened.manager, ModelManager::Create(std::move(options)));
  AcquireOptions acquire;
  acquire.version = ref.version;
  Result<ModelHandle> handle = opened.manager->Acquire(ref.name, acquire);
  // A model file that changed moments ago (just copied in) is not loaded until it stays
  // unchanged for `settle`: a one-shot command waits for that, a few times at most, instead of
  // failing.
  for (int attempt = 0;
       attempt < 5 && !handle.ok() && handle.status().code() == StatusCode::kUnavailable;
       ++attempt) {
    std::this_thread::sleep_for(settle);
    ZD_RETURN_IF_ERROR(opened.manager->Rescan());
    handle = opened.manager->Acquire(ref.name, acquire);
  }
  ZD_ASSIGN_OR_RETURN(opened.handle, std::move(handle));
  return opened;
}

}  // namespace zerodet

// ModelManager: serves the models of a repository on demand. A model version is loaded on its
// first Acquire (or preloaded), warmed up before it serves, kept in a cache bounded per device by
// a count of loaded versions and by bytes, evicted least-recently-used when a load needs room
// (pinned models never), swapped for a new version or a changed file in the background while
// the old one keeps serving, and really freed when it goes (sessions released, freed heap
// returned to the system).
//
// Requests:
//   Acquire("yolov8n") returns a ModelHandle: an exclusive lease on one ready instance (a
//   Detector) of the version the model's routing picks (its traffic split, else its default
//   version, else the newest served version); Acquire with a version asks for exactly that one.
//   A model with N instances serves N handles at once; further Acquires wait for a free
//   instance until their deadline. The handle keeps its version alive: eviction, unload, hot
//   swap and version removal only detach a version from new requests, and its memory is freed
//   when its last handle is released (a running request is never unloaded under it).
//   Cache hits take only the model's own lock (no lock shared by unrelated models); misses wait
//   on the one load of that version in flight (single flight: never two loads of one version).
//
// Budgets (per device: "cpu", "cuda:<n>"): at most max_models loaded versions and max_bytes
// charged. A version's charge is what its load measured (model_loader.h). A load first evicts
// unreferenced versions, least recently used first; when only versions in use are left, the
// least recently used one is detached and the load waits (until its deadline) for its last
// handle, so the budget is exceeded only when a load's measured charge exceeds its estimate, by
// at most that one model, and only until the eviction that follows it frees room. A version
// larger than the whole budget fails with an error giving both sizes.
//
// Repository changes: a watcher (inotify where the filesystem reports changes, polling always,
// as NFS and FUSE mounts such as s3fs do not report remote writes) rescans the repository; new
// versions, changed model files and changed configs of loaded models load in the background and
// replace the old version atomically for new requests; a version that fails to load leaves the
// old one serving and records its error. Removed versions and models are detached.
//
// Thread-safety: every method is safe to call from any thread. A ModelHandle is used by one
// thread at a time (as its Detector) and may be released on any thread. Handles may outlive the
// manager (their version is freed when they are released).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/core/clock.h"
#include "zerodet/core/status.h"
#include "zerodet/infer/backend.h"
#include "zerodet/infer/detector.h"
#include "zerodet/models/model_loader.h"
#include "zerodet/models/model_stats.h"
#include "zerodet/models/repository.h"

namespace zerodet {

struct DeviceBudget {
  uint64_t max_models = 0;  // loaded versions; 0: unbounded
  uint64_t max_bytes = 0;   // 0: unbounded
};

struct ManagerOptions {
  std::filesystem::path repository;
  // Per device ("cpu", "cuda:0", ...); a device without an entry is unbounded.
  std::map<std::string, DeviceBudget> budgets;
  // Loads run on this many threads (as Triton's --model-load-thread-count), so one slow model
  // does not hold up the others.
  int loader_threads = 2;
  // How long a load may take (waiting for room, sessions, warm-up). Requests waiting for it
  // fail with kDeadlineExceeded when it passes; the load itself stops at its next check (between
  // instances and warm-up runs) and fails with kDeadlineExceeded. ONNX Runtime cannot interrupt
  // a session being created: a load stuck there keeps its loader thread until it returns, and
  // if it then succeeds, the version serves later requests.
  std::chrono::milliseconds load_timeout{120000};
  // The optimized-graph cache (graph_cache.h); empty: none.
  std::filesystem::path graph_cache_dir;
  // The process-wide ONNX Runtime pools every model without threads of its own runs on.
  SharedThreadPoolOptions thread_pool;
  // Models to load at start (in the background), besides those whose config says preload.
  std::vector<std::string> preload;
  // Watch the repository for changes (hot swap). Off: the index changes only on Rescan().
  bool watch = true;
  std::chrono::milliseconds poll_interval{2000};
  // How long a model file must stay unchanged before it is loaded (repository.h).
  std::chrono::milliseconds settle{1000};
  // Loads versions; null: ONNX Runtime Detectors (CreateOnnxModelLoader with graph_cache_dir).
  std::shared_ptr<ModelLoader> loader;
};

// A model's dynamic batching as the server applies it (ModelConfig's two fields together).
struct BatchingPolicy {
  int max_batch = 1;
  DynamicBatching batching;
};

struct AcquireOptions {
  std::optional<int64_t> version;  // exactly this version; nullopt: the model's routing
  // How long to wait for a load or a free instance. Never(): wait as long as the load timeout.
  Deadline deadline = Deadline::Never();
};

namespace models_internal {
class LoadedVersion;
}

// An exclusive lease on one ready instance of one model version. Move-only; released by its
// destructor or Release(). A default-constructed or moved-from handle is empty.
class ModelHandle {
 public:
  ModelHandle() = default;
  ModelHandle(ModelHandle&& other) noexcept;
  ModelHandle& operator=(ModelHandle&& other) noexcept;
  ModelHandle(const ModelHandle&) = delete;
  ModelHandle& operator=(const ModelHandle&) = delete;
  ~ModelHandle();

  explicit operator bool() const { return detector_ != nullptr; }
  // REQUIRES: a non-empty handle, for each accessor below.
  Detector& detector() const { return *detector_; }
  Detector* operator->() const { return detector_; }
  const std::string& name() const;
  int64_t version() const;
  const ModelConfig& config() const;

  // Returns the instance to its version; the handle becomes empty. Idempotent.
  void Release();

 private:
  friend class ModelManager;
  ModelHandle(std::shared_ptr<models_internal::LoadedVersion> version, Detector* detector);

  std::shared_ptr<models_internal::LoadedVersion> version_;
  Detector* detector_ = nullptr;
};

class ModelManager {
 public:
  // Scans the repository, sizes the shared thread pool, starts the loader threads and the
  // watcher, and queues the preloads. Errors: the repository root cannot be read;
  // ConfigureSharedThreadPool's errors (the pools are process-wide: a second manager in one
  // process must ask for the same sizes); kInvalidArgument for loader_threads outside 1..64 or
  // a preload name that is not valid.
  static Result<std::unique_ptr<ModelManager>> Create(ManagerOptions options);
  // Stops the watcher and the loaders (waiting for loads in flight), and releases every loaded
  // version that no handle holds.
  ~ModelManager();

  // A ready instance of `name` (see the file comment for routing, waiting and lifetime).
  // Errors: kNotFound for a model or version the repository does not serve (or that was
  // removed); the model's config error or the version's load error (kFailed state: a version
  // that failed stays failed until its file or config changes, or Load is called);
  // kResourceExhausted when no room can be made (every loaded version pinned, or larger than
  // the budget); kDeadlineExceeded when the deadline or the load timeout passes first.
  Result<ModelHandle> Acquire(std::string_view name, const AcquireOptions& options = {});

  // Loads (or reloads after a failure) a version and waits until it is ready. nullopt: the
  // version requests without a version go to (for a traffic split, every version of it).
  // Errors: as Acquire.
  Status Load(std::string_view name, std::optional<int64_t> version = std::nullopt);
  // Queues the same load in the background and returns at once (preloading frequent models
  // while idle). Errors: kNotFound for a model the repository does not serve.
  Status LoadAsync(std::string_view name, std::optional<int64_t> version = std::nullopt);
  // Detaches the loaded versions of `name` (or one version) from new requests; each is freed
  // when its last handle is released. The next Acquire loads it again. Pinned models too (an
  // explicit request). Errors: kNotFound for an unknown model.
  Status Unload(std::string_view name, std::optional<int64_t> version = std::nullopt);

  // Rescans the repository now and applies the changes (the watcher does this by itself).
  // Errors: the repository root cannot be read (the previous index stays).
  Status Rescan();

  // The last scanned index: every model with its versions, config source and errors.
  RepositoryIndex Index() const;
  // How `name` is batched: its config's dynamic_batching with max_batch as the largest batch, or
  // nullopt for a model that has none or that the repository does not serve. Cheaper than
  // Index() (copies one small struct), for a per-request decision.
  std::optional<BatchingPolicy> Batching(std::string_view name) const;
  ManagerStats Stats() const;

 private:
  struct Impl;
  explicit ModelManager(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// Opens `reference` ("name" or "name:version") from the repository at `repository` with a
// manager of default options (no watching), for commands that serve one model: the manager and
// the acquired handle. A model file still being written (changed within `settle`) is waited for,
// a few settle periods at most. Errors: as ModelManager::Create, ParseModelRef and Acquire.
struct OpenedModel {
  std::unique_ptr<ModelManager> manager;
  ModelHandle handle;  // declared after the manager: released first
};
Result<OpenedModel> OpenModelFromRepository(const std::filesystem::path& repository,
                                            std::string_view reference,
                                            ManagerOptions options = {});

}  // namespace zerodet

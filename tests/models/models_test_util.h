// Repositories for the models tests, built at test time in a temporary directory from the real
// models in ../shared/models (symlinks) and the small generated ones of tests/infer
// (make_test_models.py), plus loaders that count loads or report fixed charges.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <atomic>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "test_models.h"
#include "test_support.h"
#include "zerodet/models/model_loader.h"
#include "zerodet/models/model_manager.h"

namespace zerodet::testing {

// Sets a file's mtime an hour back, as for a file written long ago.
inline void MakeOld(const std::filesystem::path& file) {
  struct timeval times[2] = {{::time(nullptr) - 3600, 0}, {::time(nullptr) - 3600, 0}};
  ASSERT_EQ(::lutimes(file.c_str(), times), 0) << file;
}

// REPO/<model>/<version>/model.onnx as a fresh copy of `source` (mtime now: "still being
// written" until it settles). Copies, not symlinks: a symlink out of the repository is refused.
inline void CopyVersion(const std::filesystem::path& repo, const std::string& model,
                        int64_t version, const std::filesystem::path& source) {
  const auto dir = repo / model / std::to_string(version);
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(source, dir / "model.onnx",
                             std::filesystem::copy_options::overwrite_existing);
}

// The same, written long ago (stable at once).
inline void AddVersion(const std::filesystem::path& repo, const std::string& model, int64_t version,
                       const std::filesystem::path& source) {
  CopyVersion(repo, model, version, source);
  MakeOld(repo / model / std::to_string(version) / "model.onnx");
}

inline void WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

// The six real models of ../shared/models.
inline std::vector<std::string> RealModelFiles() {
  return {"yolov8n.onnx",  "yolo11n.onnx",    "yolo11n-320.onnx",
          "yolov10n.onnx", "yolox-nano.onnx", "yolox-nano-v5format.onnx"};
}

// Counts loads per "name:version", the most that ran at once for one key, and can report a
// fixed charge per model instead of the measured one.
class CountingLoader final : public ModelLoader {
 public:
  explicit CountingLoader(std::shared_ptr<ModelLoader> inner) : inner_(std::move(inner)) {}

  Result<LoadedModel> Load(const LoadRequest& request) override {
    const std::string key = request.name + ":" + std::to_string(request.version);
    {
      std::lock_guard lock(mu_);
      loads_[key] += 1;
      const int running = ++running_[key];
      max_concurrent_same_ = std::max(max_concurrent_same_, running);
    }
    auto loaded = inner_->Load(request);
    std::lock_guard lock(mu_);
    --running_[key];
    if (loaded.ok() && charges_.count(request.name)) {
      loaded->charge["cpu"] = charges_[request.name];
      loaded->charge_source = "test";
    }
    return loaded;
  }

  void SetCharge(const std::string& model, uint64_t bytes) {
    std::lock_guard lock(mu_);
    charges_[model] = bytes;
  }
  int Loads(const std::string& key) {
    std::lock_guard lock(mu_);
    return loads_[key];
  }
  int TotalLoads() {
    std::lock_guard lock(mu_);
    int total = 0;
    for (const auto& [key, n] : loads_) total += n;
    return total;
  }
  int MaxConcurrentLoadsOfOneVersion() {
    std::lock_guard lock(mu_);
    return max_concurrent_same_;
  }

 private:
  std::shared_ptr<ModelLoader> inner_;
  std::mutex mu_;
  std::map<std::string, int> loads_;
  std::map<std::string, int> running_;
  std::map<std::string, uint64_t> charges_;
  int max_concurrent_same_ = 0;
};

// Every manager of the process asks for the same shared pool (it is process-wide).
inline ManagerOptions ManagerTestOptions(const std::filesystem::path& repo) {
  ManagerOptions options;
  options.repository = repo;
  options.thread_pool = {2, 1};
  options.watch = false;
  options.settle = std::chrono::milliseconds(0);
  options.load_timeout = std::chrono::seconds(60);
  return options;
}

// A copy: the stats are a snapshot the caller does not keep.
inline std::optional<ModelStats> FindStats(const ManagerStats& stats, const std::string& name) {
  for (const ModelStats& m : stats.models) {
    if (m.name == name) return m;
  }
  return std::nullopt;
}

inline const VersionStats* FindVersion(const ModelStats& stats, int64_t version) {
  for (const VersionStats& v : stats.versions) {
    if (v.version == version) return &v;
  }
  return nullptr;
}

}  // namespace zerodet::testing

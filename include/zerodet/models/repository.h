// The model repository: a directory tree in Triton's layout,
//   REPO/<model>/[config.yaml | config.pbtxt]
//   REPO/<model>/<version>/model.onnx      (versions are positive integers)
// read into a RepositoryIndex: every model with its config, its versions, which of them the
// version policy serves, and for each model or version that cannot be used, why (one line).
// A broken model never hides the others.
//
// Hostile trees are expected: model names are validated (letters, digits, '_', '-', '.'; no
// leading '.', which hides a directory, e.g. .git), symlinks may point anywhere inside the
// repository but not outside it, FIFOs and devices are refused without being opened, and a
// model file still being written (on NFS, s3fs or rclone mounts as much as locally) is not
// offered for loading until it is stable: the same size, mtime and inode in two scans at least
// `settle` apart, or an mtime older than `settle`, or a completed write or rename reported by
// the watcher (MarkComplete).
//
// Thread-safety: RepositoryScanner is not thread-safe (one owner scans; the manager serializes
// its scans). RepositoryIndex is a plain value.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "zerodet/core/clock.h"
#include "zerodet/core/status.h"
#include "zerodet/models/model_config.h"

namespace zerodet {

// What tells that a file changed: replaced (inode), rewritten (size, mtime).
struct FileIdentity {
  uint64_t device = 0;
  uint64_t inode = 0;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  friend bool operator==(const FileIdentity&, const FileIdentity&) = default;
};

// The identities of a model's config files (absent files are all zeros).
struct ConfigIdentity {
  FileIdentity pbtxt;
  FileIdentity yaml;
  friend bool operator==(const ConfigIdentity&, const ConfigIdentity&) = default;
};

struct VersionEntry {
  int64_t version = 0;
  std::filesystem::path model_path;  // REPO/<model>/<version>/<model_filename>
  FileIdentity identity;
  // Why this version cannot be loaded: the model file is missing, not a regular file, points
  // outside the repository, or is still being written (kUnavailable). OK when loadable.
  Status status;
  bool served = false;  // loadable and selected by the version policy
};

struct ModelEntry {
  std::string name;
  std::filesystem::path dir;
  // Why the model cannot be served: an invalid name, a config that does not parse, a directory
  // leaving the repository, or no loadable version. OK otherwise.
  Status status;
  ModelConfig config;  // meaningful when the config parsed
  bool config_ok = false;
  ConfigIdentity config_identity;
  std::vector<VersionEntry> versions;  // ascending
  std::vector<int64_t> served;         // ascending

  // The version requests without a version go to, absent a traffic split: default_version when
  // configured and served, else the highest served version. nullopt when none is served.
  std::optional<int64_t> DefaultVersion() const;
  const VersionEntry* FindVersion(int64_t version) const;
};

struct RepositoryIndex {
  std::filesystem::path root;
  std::vector<ModelEntry> models;  // sorted by name

  const ModelEntry* Find(std::string_view name) const;
};

// Errors: kInvalidArgument naming what is wrong ("'../x': model names are letters, digits,
// '_', '-' and '.', not starting with '.'").
Status ValidateModelName(std::string_view name);

// A model as users name it: "yolov8n" or "yolov8n:3".
struct ModelRef {
  std::string name;
  std::optional<int64_t> version;
};
// Errors: kInvalidArgument for an invalid name or a version that is not a positive integer.
Result<ModelRef> ParseModelRef(std::string_view text);

class RepositoryScanner {
 public:
  struct Options {
    // How long a model file must stay unchanged before it is loaded.
    std::chrono::milliseconds settle{1000};
  };

  // REQUIRES: root names a directory (checked by Scan).
  RepositoryScanner(std::filesystem::path root, Options options);

  // Reads the tree. Configs are re-read only when their files changed since the last scan.
  // Errors: as PathError when the root itself cannot be read (a missing repository); everything
  // below the root is reported per model and version in the index.
  Result<RepositoryIndex> Scan();

  // Whether the last Scan saw a version that is not stable yet (scan again after settle).
  bool pending_files() const { return pending_files_; }

  // A completed write (close after writing) or rename into `file`: it is stable at once if its
  // identity is unchanged at the next scan.
  void MarkComplete(const std::filesystem::path& file);

 private:
  struct Seen {
    FileIdentity identity;
    MonotonicClock::time_point since;
  };
  struct CachedConfig {
    bool valid = false;
    ConfigIdentity identity;
    Result<ModelConfig> config = InternalError("unset");
  };

  ModelEntry ScanModel(const std::filesystem::path& dir, const std::string& name,
                       const std::filesystem::path& canonical_root);
  bool Stable(const std::filesystem::path& file, const FileIdentity& identity);

  std::filesystem::path root_;
  Options options_;
  std::map<std::filesystem::path, Seen> seen_;
  std::map<std::filesystem::path, FileIdentity> completed_;
  std::map<std::filesystem::path, CachedConfig> configs_;
  bool pending_files_ = false;
};

}  // namespace zerodet

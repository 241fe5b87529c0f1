// Scanning a model repository into an index (see repository.h).
#include "zerodet/models/repository.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <ctime>
#include <system_error>
#include <utility>

#include "zerodet/core/file.h"

namespace zerodet {
namespace {

namespace fs = std::filesystem;

std::optional<FileIdentity> Identify(const fs::path& path, struct stat* out = nullptr) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  if (out) *out = st;
  return FileIdentity{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                      static_cast<uint64_t>(st.st_size),
                      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// Whether `path` (resolved through every symlink) lies inside `root` (already canonical).
Result<fs::path> ResolveInside(const fs::path& path, const fs::path& root) {
  std::error_code error;
  const fs::path resolved = fs::canonical(path, error);
  if (error) return PathError(path, "cannot resolve", error.value());
  const auto [root_end, ignored] =
      std::mismatch(root.begin(), root.end(), resolved.begin(), resolved.end());
  if (root_end != root.end()) {
    return PermissionDeniedError(path.string() + ": points outside the repository (to " +
                                 resolved.string() + ")");
  }
  return resolved;
}

std::optional<int64_t> ParseVersion(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

ConfigIdentity IdentifyConfigs(const fs::path& dir) {
  ConfigIdentity identity;
  identity.pbtxt = Identify(dir / "config.pbtxt").value_or(FileIdentity{});
  identity.yaml = Identify(dir / "config.yaml").value_or(FileIdentity{});
  return identity;
}

// 'text' (appended piecewise: GCC 12 warns falsely, -Wrestrict, about "'" + std::string).
std::string Quoted(std::string_view text) {
  std::string out(1, '\'');
  out.append(text);
  out.push_back('\'');
  return out;
}

int64_t RealtimeNowNs() {
  struct timespec now {};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

}  // namespace

Status ValidateModelName(std::string_view name) {
  const auto bad = [&](const std::string& why) {
    return InvalidArgumentError(Quoted(name) + ": " + why);
  };
  if (name.empty()) return bad("a model name cannot be empty");
  if (name.size() > 255) return bad("a model name is at most 255 characters");
  if (name.front() == '.') return bad("a model name cannot start with '.'");
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return bad("model names are letters, digits, '_', '-' and '.'");
  }
  return Status::Ok();
}

Result<ModelRef> ParseModelRef(std::string_view text) {
  ModelRef ref;
  const size_t colon = text.rfind(':');
  ref.name = std::string(text.substr(0, colon));
  ZD_RETURN_IF_ERROR(ValidateModelName(ref.name));
  if (colon != std::string_view::npos) {
    const std::optional<int64_t> version = ParseVersion(text.substr(colon + 1));
    if (!version || *version < 1) {
      return InvalidArgumentError(Quoted(text) +
                                  ": the version after ':' must be a positive integer");
    }
    ref.version = version;
  }
  return ref;
}

std::optional<int64_t> ModelEntry::DefaultVersion() const {
  if (served.empty()) return std::nullopt;
  if (config.default_version &&
      std::find(served.begin(), served.end(), *config.default_version) != served.end()) {
    return config.default_version;
  }
  return served.back();
}

const VersionEntry* ModelEntry::FindVersion(int64_t version) const {
  for (const VersionEntry& entry : versions) {
    if (entry.version == version) return &entry;
  }
  return nullptr;
}

const ModelEntry* RepositoryIndex::Find(std::string_view name) const {
  auto it = std::lower_bound(models.begin(), models.end(), name,
                             [](const ModelEntry& m, std::string_view n) { return m.name < n; });
  return it != models.end() && it->name == name ? &*it : nullptr;
}

RepositoryScanner::RepositoryScanner(fs::path root, Options options)
    : root_(std::move(root)), options_(options) {}

void RepositoryScanner::MarkComplete(const fs::path& file) {
  if (auto identity = Identify(file)) completed_[file] = *identity;
}

bool RepositoryScanner::Stable(const fs::path& file, const FileIdentity& identity) {
  const auto now = MonotonicClock::now();
  if (auto done = completed_.find(file); done != completed_.end() && done->second == identity) {
    return true;
  }
  const int64_t settle_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(options_.settle).count();
  if (RealtimeNowNs() - identity.mtime_ns >= settle_ns) return true;
  auto [it, inserted] = seen_.try_emplace(file, Seen{identity, now});
  if (!inserted && !(it->second.identity == identity)) it->second = Seen{identity, now};
  return !inserted && now - it->second.since >= options_.settle && it->second.identity == identity;
}

ModelEntry RepositoryScanner::ScanModel(const fs::path& dir, const std::string& name,
                                        const fs::path& canonical_root) {
  ModelEntry model;
  model.name = name;
  model.dir = dir;
  model.config.name = name;
  if (Status valid = ValidateModelName(name); !valid.ok()) {
    model.status = valid;
    return model;
  }
  if (auto inside = ResolveInside(dir, canonical_root); !inside.ok()) {
    model.status = inside.status();
    return model;
  }
  // A config file may be a symlink, but not to a file outside the repository.
  for (const char* file : {"config.pbtxt", "config.yaml"}) {
    std::error_code error;
    if (!fs::exists(fs::symlink_status(dir / file, error))) continue;
    if (auto inside = ResolveInside(dir / file, canonical_root); !inside.ok()) {
      model.status = inside.status();
      return model;
    }
  }
  // Configs are parsed again only when one of their files changed.
  model.config_identity = IdentifyConfigs(dir);
  CachedConfig& cached = configs_[dir];
  if (!cached.valid || !(cached.identity == model.config_identity)) {
    cached.valid = true;
    cached.identity = model.config_identity;
    cached.config = ReadModelConfig(dir, name);
  }
  if (!cached.config.ok()) {
    model.status = cached.config.status();
  } else {
    model.config = *cached.config;
    model.config_ok = true;
  }

  auto entries = ListDirectory(dir);
  if (!entries.ok()) {
    model.status = entries.status();
    return model;
  }
  std::vector<int64_t> loadable;
  for (const DirectoryEntry& entry : *entries) {
    if (entry.kind != DirectoryEntry::Kind::kDirectory) continue;
    const std::optional<int64_t> number = ParseVersion(entry.path.filename().string());
    if (!number) continue;  // as in Triton, other directories are not versions
    VersionEntry version;
    version.version = *number;
    version.model_path = entry.path / model.config.model_filename;
    const std::string label = name + "/" + entry.path.filename().string();
    struct stat st {};
    if (*number < 1) {
      version.status = InvalidArgumentError(label + ": versions are positive integers");
    } else if (auto inside = ResolveInside(version.model_path, canonical_root); !inside.ok()) {
      version.status = inside.status().code() == StatusCode::kNotFound
                           ? NotFoundError(label + ": no " + model.config.model_filename)
                           : inside.status();
    } else if (auto identity = Identify(version.model_path, &st); !identity) {
      version.status = PathError(version.model_path, "cannot stat", errno);
    } else if (!S_ISREG(st.st_mode)) {
      version.status =
          InvalidArgumentError(label + "/" + model.config.model_filename + ": not a regular file");
    } else {
      version.identity = *identity;
      if (!Stable(version.model_path, version.identity)) {
        version.status = UnavailableError(label + "/" + model.config.model_filename +
                                          ": still being written (changed within the last " +
                                          std::to_string(options_.settle.count()) + " ms)");
        pending_files_ = true;
      }
    }
    if (version.status.ok()) loadable.push_back(version.version);
    model.versions.push_back(std::move(version));
  }
  std::sort(model.versions.begin(), model.versions.end(),
            [](const VersionEntry& a, const VersionEntry& b) { return a.version < b.version; });
  std::sort(loadable.begin(), loadable.end());
  if (model.config_ok) {
    model.served = model.config.version_policy.Select(loadable);
    for (VersionEntry& version : model.versions) {
      version.served = std::find(model.served.begin(), model.served.end(), version.version) !=
                       model.served.end();
    }
    if (model.served.empty() && model.status.ok()) {
      model.status = NotFoundError(
          name + ": no loadable version" +
          (model.versions.empty() ? " (no numbered version directory)" : " the policy serves"));
    }
  }
  return model;
}

Result<RepositoryIndex> RepositoryScanner::Scan() {
  pending_files_ = false;
  ZD_ASSIGN_OR_RETURN(std::vector<DirectoryEntry> entries, ListDirectory(root_));
  std::error_code error;
  const fs::path canonical_root = fs::canonical(root_, error);
  if (error) return PathError(root_, "cannot resolve", error.value());
  RepositoryIndex index;
  index.root = root_;
  for (const DirectoryEntry& entry : entries) {
    const std::string name = entry.path.filename().string();
    if (!name.empty() && name.front() == '.') continue;  // hidden: .git, .cache, editors' files
    if (entry.kind == DirectoryEntry::Kind::kRegular) continue;  // README, scripts
    if (entry.kind == DirectoryEntry::Kind::kError) {
      ModelEntry broken;
      broken.name = name;
      broken.dir = entry.path;
      broken.status = entry.error;
      index.models.push_back(std::move(broken));
      continue;
    }
    if (entry.kind != DirectoryEntry::Kind::kDirectory) continue;
    index.models.push_back(ScanModel(entry.path, name, canonical_root));
  }
  std::sort(index.models.begin(), index.models.end(),
            [](const ModelEntry& a, const ModelEntry& b) { return a.name < b.name; });
  // Forget files that are gone, so the maps stay bounded by the repository's size.
  std::erase_if(seen_, [](const auto& item) { return !Identify(item.first); });
  std::erase_if(completed_, [](const auto& item) { return !Identify(item.first); });
  return index;
}

}  // namespace zerodet

// zerodet's config.yaml, the rules every config shares, and reading a model's config files.
#include "zerodet/models/model_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <set>
#include <string>
#include <system_error>
#include <utility>

#include "zerodet/core/file.h"

namespace zerodet {
namespace {

// Config files are small; a bigger one is not a config.
constexpr uint64_t kMaxConfigBytes = 1 << 20;
constexpr int kMaxInstances = 64;
constexpr int kMaxWarmupRuns = 1000;
constexpr int kMaxBatch = 1024;
// Longest a request may wait for others to batch with (10 s; Triton sets no bound).
constexpr int kMaxQueueDelayUs = 10'000'000;
// Longest a model's queue policy may let a request wait (2000 s).
constexpr int kMaxQueueTimeoutUs = 2'000'000'000;

// Reads a scalar of type T from `node`, or fails naming the key. yaml-cpp throws on conversion
// failures; the caller catches YAML::Exception.
template <typename T>
Result<T> Scalar(const YAML::Node& node, const std::string& where) {
  if (!node.IsScalar()) return InvalidArgumentError(where + ": expected a single value");
  T value;
  if (!YAML::convert<T>::decode(node, value)) {
    return InvalidArgumentError(where + ": '" + node.Scalar() + "' has the wrong type");
  }
  return value;
}

Result<int> IntInRange(const YAML::Node& node, const std::string& where, int min, int max) {
  ZD_ASSIGN_OR_RETURN(int64_t value, Scalar<int64_t>(node, where));
  if (value < min || value > max) {
    return InvalidArgumentError(where + ": " + std::to_string(value) + " is outside " +
                                std::to_string(min) + ".." + std::to_string(max));
  }
  return static_cast<int>(value);
}

Result<float> Fraction(const YAML::Node& node, const std::string& where) {
  ZD_ASSIGN_OR_RETURN(double value, Scalar<double>(node, where));
  if (!(value >= 0 && value <= 1)) return InvalidArgumentError(where + ": must be in [0, 1]");
  return static_cast<float>(value);
}

Result<int64_t> Version(const YAML::Node& node, const std::string& where) {
  ZD_ASSIGN_OR_RETURN(int64_t value, Scalar<int64_t>(node, where));
  if (value < 1) return InvalidArgumentError(where + ": versions are positive integers");
  return value;
}

Status ParseVersionPolicy(const YAML::Node& node, const std::string& where, VersionPolicy& out) {
  if (node.IsScalar() && node.Scalar() == "all") {
    out = VersionPolicy{VersionPolicy::Kind::kAll, 1, {}};
    return Status::Ok();
  }
  if (!node.IsMap() || node.size() != 1) {
    return InvalidArgumentError(where + ": expected all, {latest: N} or {specific: [versions]}");
  }
  const auto entry = *node.begin();
  const std::string kind = entry.first.as<std::string>();
  if (kind == "latest") {
    ZD_ASSIGN_OR_RETURN(int n, IntInRange(entry.second, where + ".latest", 1, 1 << 20));
    out = VersionPolicy{VersionPolicy::Kind::kLatest, static_cast<uint32_t>(n), {}};
  } else if (kind == "specific") {
    if (!entry.second.IsSequence() || entry.second.size() == 0) {
      return InvalidArgumentError(where + ".specific: expected a list of versions");
    }
    VersionPolicy policy{VersionPolicy::Kind::kSpecific, 1, {}};
    for (size_t i = 0; i < entry.second.size(); ++i) {
      ZD_ASSIGN_OR_RETURN(int64_t v, Version(entry.second[i], where + ".specific"));
      policy.specific.push_back(v);
    }
    out = std::move(policy);
  } else {
    return InvalidArgumentError(where + ": unknown policy '" + kind +
                                "' (expected latest, all or specific)");
  }
  return Status::Ok();
}

// dynamic_batching: {max_queue_delay_us: 2000, preferred_batch_sizes: [4, 8], max_queue_size: 64,
// queue_timeout_us: 500000} ({} for the defaults: no delay, no preferred sizes, the server's
// queue policy), as Triton's dynamic_batching and its default_queue_policy.
Status ParseDynamicBatching(const YAML::Node& node, const std::string& where,
                            std::optional<DynamicBatching>& out) {
  if (!node.IsMap()) {
    return InvalidArgumentError(where +
                                ": expected {max_queue_delay_us: N, preferred_batch_sizes: [..]}");
  }
  DynamicBatching batching;
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    if (key == "max_queue_delay_us") {
      ZD_ASSIGN_OR_RETURN(
          int delay, IntInRange(entry.second, where + ".max_queue_delay_us", 0, kMaxQueueDelayUs));
      batching.max_queue_delay_us = static_cast<uint64_t>(delay);
    } else if (key == "preferred_batch_sizes") {
      if (!entry.second.IsSequence()) {
        return InvalidArgumentError(where + ".preferred_batch_sizes: expected a list of sizes");
      }
      for (size_t i = 0; i < entry.second.size(); ++i) {
        ZD_ASSIGN_OR_RETURN(
            int size, IntInRange(entry.second[i], where + ".preferred_batch_sizes", 1, kMaxBatch));
        batching.preferred_batch_sizes.push_back(size);
      }
    } else if (key == "max_queue_size") {
      ZD_ASSIGN_OR_RETURN(int size,
                          IntInRange(entry.second, where + ".max_queue_size", 0, 1'000'000));
      batching.max_queue_size = static_cast<uint32_t>(size);
    } else if (key == "queue_timeout_us") {
      ZD_ASSIGN_OR_RETURN(int timeout, IntInRange(entry.second, where + ".queue_timeout_us", 0,
                                                  kMaxQueueTimeoutUs));
      batching.queue_timeout_us = static_cast<uint64_t>(timeout);
    } else {
      return InvalidArgumentError(where + ": unknown key '" + key +
                                  "' (expected max_queue_delay_us, preferred_batch_sizes, "
                                  "max_queue_size, queue_timeout_us)");
    }
  }
  out = std::move(batching);
  return Status::Ok();
}

Status ApplyYamlOrThrow(const YAML::Node& root, const std::string& origin, ModelConfig& c) {
  if (root.IsNull()) return Status::Ok();  // an empty file
  if (!root.IsMap()) return InvalidArgumentError(origin + ": expected a map of keys");
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>();
    const YAML::Node& v = entry.second;
    const std::string where = origin + ": " + key;
    if (key == "name") {
      ZD_ASSIGN_OR_RETURN(std::string name, Scalar<std::string>(v, where));
      if (name != c.name) {
        return InvalidArgumentError(where + ": '" + name + "' differs from the directory name '" +
                                    c.name + "'");
      }
    } else if (key == "model_filename") {
      ZD_ASSIGN_OR_RETURN(c.model_filename, Scalar<std::string>(v, where));
    } else if (key == "format") {
      ZD_ASSIGN_OR_RETURN(std::string name, Scalar<std::string>(v, where));
      auto format = ParseYoloFormat(name);
      if (!format.ok()) return format.status().WithContext(where);
      c.format = *format;
    } else if (key == "input_size") {
      if (v.IsSequence() && v.size() == 2) {
        ZD_ASSIGN_OR_RETURN(c.input_width, IntInRange(v[0], where, 1, kMaxModelInputSide));
        ZD_ASSIGN_OR_RETURN(c.input_height, IntInRange(v[1], where, 1, kMaxModelInputSide));
      } else {
        ZD_ASSIGN_OR_RETURN(c.input_width, IntInRange(v, where, 1, kMaxModelInputSide));
        c.input_height = c.input_width;
      }
    } else if (key == "class_names") {
      if (!v.IsSequence() || v.size() == 0) {
        return InvalidArgumentError(where + ": expected a list of names");
      }
      c.class_names.clear();
      for (size_t i = 0; i < v.size(); ++i) {
        ZD_ASSIGN_OR_RETURN(std::string name, Scalar<std::string>(v[i], where));
        c.class_names.push_back(std::move(name));
      }
    } else if (key == "provider") {
      ZD_ASSIGN_OR_RETURN(std::string name, Scalar<std::string>(v, where));
      auto provider = ParseExecutionProvider(name);
      if (!provider.ok()) return provider.status().WithContext(where);
      c.provider = *provider;
    } else if (key == "device") {
      ZD_ASSIGN_OR_RETURN(c.device_id, IntInRange(v, where, 0, 1023));
    } else if (key == "provider_options") {
      if (!v.IsMap()) return InvalidArgumentError(where + ": expected a map");
      for (const auto& option : v) {
        ZD_ASSIGN_OR_RETURN(std::string value, Scalar<std::string>(option.second, where));
        c.provider_options[option.first.as<std::string>()] = std::move(value);
      }
    } else if (key == "intra_op_threads") {
      ZD_ASSIGN_OR_RETURN(c.intra_op_threads, IntInRange(v, where, 0, kMaxBackendThreads));
    } else if (key == "graph_optimization_level") {
      ZD_ASSIGN_OR_RETURN(c.graph_optimization_level, IntInRange(v, where, 0, 3));
    } else if (key == "instances") {
      ZD_ASSIGN_OR_RETURN(c.instances, IntInRange(v, where, 1, kMaxInstances));
    } else if (key == "warmup") {
      ZD_ASSIGN_OR_RETURN(c.warmup_runs, IntInRange(v, where, 0, kMaxWarmupRuns));
    } else if (key == "pinned") {
      ZD_ASSIGN_OR_RETURN(c.pinned, Scalar<bool>(v, where));
    } else if (key == "preload") {
      ZD_ASSIGN_OR_RETURN(c.preload, Scalar<bool>(v, where));
    } else if (key == "shrink_arenas") {
      ZD_ASSIGN_OR_RETURN(c.shrink_arenas, Scalar<bool>(v, where));
    } else if (key == "max_batch") {
      ZD_ASSIGN_OR_RETURN(c.max_batch, IntInRange(v, where, 1, kMaxBatch));
    } else if (key == "dynamic_batching") {
      ZD_RETURN_IF_ERROR(ParseDynamicBatching(v, where, c.dynamic_batching));
    } else if (key == "version_policy") {
      ZD_RETURN_IF_ERROR(ParseVersionPolicy(v, where, c.version_policy));
    } else if (key == "default_version") {
      ZD_ASSIGN_OR_RETURN(c.default_version, Version(v, where));
    } else if (key == "traffic") {
      if (!v.IsMap() || v.size() == 0) {
        return InvalidArgumentError(where + ": expected a map of version: weight");
      }
      c.traffic.clear();
      for (const auto& split : v) {
        ZD_ASSIGN_OR_RETURN(int64_t version, Version(split.first, where));
        ZD_ASSIGN_OR_RETURN(double weight, Scalar<double>(split.second, where));
        if (!(weight >= 0) || !std::isfinite(weight)) {
          return InvalidArgumentError(where + ": weights must be finite and >= 0");
        }
        if (weight > 0) c.traffic[version] = weight;
      }
      if (c.traffic.empty()) return InvalidArgumentError(where + ": every weight is 0");
    } else if (key == "conf_threshold") {
      ZD_ASSIGN_OR_RETURN(c.params.conf_threshold, Fraction(v, where));
    } else if (key == "iou_threshold") {
      ZD_ASSIGN_OR_RETURN(c.params.iou_threshold, Fraction(v, where));
    } else if (key == "max_detections") {
      ZD_ASSIGN_OR_RETURN(c.params.max_detections, IntInRange(v, where, 1, 100000));
    } else if (key == "class_agnostic") {
      ZD_ASSIGN_OR_RETURN(c.params.class_agnostic, Scalar<bool>(v, where));
    } else {
      return InvalidArgumentError(origin + ": unknown key '" + key + "'");
    }
  }
  return Status::Ok();
}

// Rules every config must satisfy, whichever file set the values.
Status Validate(const ModelConfig& c, const std::string& origin) {
  const std::filesystem::path file(c.model_filename);
  if (c.model_filename.empty() || file.has_parent_path() || c.model_filename == "." ||
      c.model_filename == "..") {
    return InvalidArgumentError(origin + ": model_filename '" + c.model_filename +
                                "' must be a plain file name inside the version directory");
  }
  if (c.intra_op_threads > 0 && c.instances * c.intra_op_threads > 4 * kMaxBackendThreads) {
    return InvalidArgumentError(origin + ": instances x intra_op_threads is too many threads");
  }
  if (c.dynamic_batching) {
    for (int size : c.dynamic_batching->preferred_batch_sizes) {
      if (size < 1 || size > c.max_batch) {
        return InvalidArgumentError(origin + ": dynamic_batching: preferred batch size " +
                                    std::to_string(size) + " is outside 1..max_batch (" +
                                    std::to_string(c.max_batch) + ")");
      }
    }
    if (c.dynamic_batching->queue_timeout_us > static_cast<uint64_t>(kMaxQueueTimeoutUs)) {
      return InvalidArgumentError(origin + ": dynamic_batching: the queue timeout is over " +
                                  std::to_string(kMaxQueueTimeoutUs) + " us");
    }
    if (c.dynamic_batching->max_queue_delay_us > kMaxQueueDelayUs) {
      return InvalidArgumentError(origin + ": dynamic_batching: max_queue_delay_us is over " +
                                  std::to_string(kMaxQueueDelayUs));
    }
  }
  if (c.default_version && !c.traffic.empty()) {
    return InvalidArgumentError(origin +
                                ": default_version and traffic exclude each other (a split "
                                "already says where requests without a version go)");
  }
  return Status::Ok();
}

}  // namespace

std::vector<int64_t> VersionPolicy::Select(const std::vector<int64_t>& available) const {
  switch (kind) {
    case Kind::kAll:
      return available;
    case Kind::kSpecific: {
      std::vector<int64_t> out;
      for (int64_t v : available) {
        if (std::find(specific.begin(), specific.end(), v) != specific.end()) out.push_back(v);
      }
      return out;
    }
    case Kind::kLatest:
      break;
  }
  const size_t n = std::min<size_t>(latest, available.size());
  return std::vector<int64_t>(available.end() - static_cast<ptrdiff_t>(n), available.end());
}

DetectorOptions ModelConfig::ToDetectorOptions() const {
  DetectorOptions options;
  options.backend.provider = provider;
  options.backend.device_id = device_id;
  options.backend.provider_options = provider_options;
  options.backend.intra_op_threads = intra_op_threads;
  options.backend.shared_thread_pool = intra_op_threads == 0;
  options.backend.graph_optimization_level = graph_optimization_level;
  options.backend.shrink_arenas_after_run = shrink_arenas;
  options.format = format;
  options.params = params;
  options.max_batch = max_batch;
  options.input_width = input_width;
  options.input_height = input_height;
  options.class_names = class_names;
  return options;
}

std::string ConfigDevice(const ModelConfig& config) {
  if (config.provider == ExecutionProvider::kCpu) return "cpu";
  return "cuda:" + std::to_string(config.device_id);
}

Status ApplyYamlConfig(std::string_view text, const std::string& origin, ModelConfig& config) {
  try {
    ZD_RETURN_IF_ERROR(ApplyYamlOrThrow(YAML::Load(std::string(text)), origin, config));
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(origin + ": " + e.what());
  } catch (const std::exception& e) {
    return InvalidArgumentError(origin + ": " + e.what());
  }
  return Status::Ok();
}

Result<ModelConfig> ReadModelConfig(const std::filesystem::path& model_dir,
                                    const std::string& name) {
  ModelConfig config;
  config.name = name;
  std::vector<std::string> sources;
  for (const char* file : {"config.pbtxt", "config.yaml"}) {
    const std::filesystem::path path = model_dir / file;
    std::error_code error;
    const auto status = std::filesystem::symlink_status(path, error);
    if (error || status.type() == std::filesystem::file_type::not_found) continue;
    ZD_ASSIGN_OR_RETURN(std::string text, ReadFileText(path, kMaxConfigBytes));
    const std::string origin = (std::filesystem::path(name) / file).string();
    if (std::string_view(file) == "config.pbtxt") {
      ZD_RETURN_IF_ERROR(ApplyTritonConfig(text, origin, config));
    } else {
      ZD_RETURN_IF_ERROR(ApplyYamlConfig(text, origin, config));
    }
    sources.emplace_back(file);
  }
  ZD_RETURN_IF_ERROR(Validate(config, name));
  if (!sources.empty()) {
    config.source = sources[0];
    for (size_t i = 1; i < sources.size(); ++i) config.source += "+" + sources[i];
  }
  return config;
}

}  // namespace zerodet

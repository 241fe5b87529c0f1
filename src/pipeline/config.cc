#include "zerodet/pipeline/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <exception>
#include <new>
#include <set>

#include "camera_frame.h"
#include "zerodet/core/file.h"
#include "zerodet/core/unix_socket.h"
#include "zerodet/models/repository.h"
#include "zerodet/pipeline/control.h"

namespace zerodet::pipeline {
namespace {

namespace fs = std::filesystem;

// Errors carry the origin (file) and the key path, e.g. "pipeline.yaml: models[0].workers".
class Context {
 public:
  explicit Context(std::string_view origin) : origin_(origin) {}
  Status Error(const std::string& where, const std::string& what) const {
    return InvalidArgumentError(origin_ + ": " + where + ": " + what);
  }

 private:
  std::string origin_;
};

// A node as the user wrote it, on one line and cut short, for error messages.
std::string Shown(const YAML::Node& node) {
  YAML::Emitter out;
  out.SetSeqFormat(YAML::Flow);
  out.SetMapFormat(YAML::Flow);
  out << node;
  std::string text = out.good() ? out.c_str() : "?";
  std::replace(text.begin(), text.end(), '\n', ' ');
  constexpr size_t kShown = 60;
  if (text.size() > kShown) text = text.substr(0, kShown) + "...";
  return text;
}

// "<where>.<key>: '<value as written>' is outside <range>".
Status OutOfRange(const YAML::Node& node, const char* key, const std::string& where,
                  const std::string& range, const Context& ctx) {
  // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) about a chain of operator+.
  std::string what = "'";
  what += Shown(node[key]);
  what += "' is outside ";
  what += range;
  return ctx.Error(where + "." + key, what);
}

Status CheckKeys(const YAML::Node& node, const std::set<std::string>& allowed,
                 const std::string& where, const Context& ctx) {
  if (!node.IsMap()) return ctx.Error(where, "must be a mapping of keys to values");
  std::set<std::string> seen;
  for (const auto& item : node) {
    // A complex key ("[a, b]: 1", "? [a, b]") is valid YAML but never one of ours; reading it
    // as a string would throw.
    if (!item.first.IsScalar()) {
      return ctx.Error(where, "a key must be a plain name, not '" + Shown(item.first) + "'");
    }
    const std::string key = item.first.Scalar();
    if (allowed.count(key) == 0) {
      std::string known;
      for (const std::string& k : allowed) known += (known.empty() ? "" : ", ") + k;
      return ctx.Error(where, "unknown key '" + key + "' (known: " + known + ")");
    }
    // yaml-cpp keeps both; one of the values would be ignored without a word.
    if (!seen.insert(key).second) return ctx.Error(where, "'" + key + "' is given twice");
  }
  return Status::Ok();
}

template <typename T>
Status Get(const YAML::Node& node, const char* key, const std::string& where, const Context& ctx,
           T& out) {
  const YAML::Node value = node[key];
  if (!value) return Status::Ok();
  try {
    out = value.as<T>();
  } catch (const YAML::Exception&) {
    return ctx.Error(where + "." + key,
                     "cannot read '" + Shown(value) + "' as " +
                         (std::is_same_v<T, std::vector<std::string>> ? "a list of names"
                          : std::is_same_v<T, std::string>            ? "a string"
                          : std::is_same_v<T, bool>                   ? "true/false"
                          : std::is_integral_v<T>                     ? "an integer"
                                                                      : "a number"));
  }
  return Status::Ok();
}

Status ValidName(const std::string& name, const std::string& where, const Context& ctx) {
  if (name.empty() || name.size() > 32)
    return ctx.Error(where, "name must have 1 to 32 characters");
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return ctx.Error(where, "name '" + name + "' may only use letters, digits, '_', '-', '.'");
    }
  }
  return Status::Ok();
}

std::string Resolve(const std::string& path, const fs::path& base_dir);

// output.mqtt: the broker and topics of pipeline/mqtt_publisher.h. The password comes from a file
// (its first line), never from the config itself.
Result<MqttOptions> ParseMqtt(const YAML::Node& node, const fs::path& base_dir,
                              const Context& ctx) {
  if (!node.IsMap()) return ctx.Error("output.mqtt", "expected a map (host, port, ...)");
  ZD_RETURN_IF_ERROR(CheckKeys(node,
                               {"host", "port", "topic_prefix", "qos", "client_id", "username",
                                "password_file", "max_queue", "keepalive"},
                               "output.mqtt", ctx));
  MqttOptions options;
  ZD_RETURN_IF_ERROR(Get(node, "host", "output.mqtt", ctx, options.host));
  ZD_RETURN_IF_ERROR(Get(node, "port", "output.mqtt", ctx, options.port));
  ZD_RETURN_IF_ERROR(Get(node, "topic_prefix", "output.mqtt", ctx, options.topic_prefix));
  ZD_RETURN_IF_ERROR(Get(node, "qos", "output.mqtt", ctx, options.qos));
  ZD_RETURN_IF_ERROR(Get(node, "client_id", "output.mqtt", ctx, options.client_id));
  ZD_RETURN_IF_ERROR(Get(node, "username", "output.mqtt", ctx, options.username));
  ZD_RETURN_IF_ERROR(Get(node, "max_queue", "output.mqtt", ctx, options.max_queue));
  ZD_RETURN_IF_ERROR(Get(node, "keepalive", "output.mqtt", ctx, options.keepalive_seconds));
  std::string password_file;
  ZD_RETURN_IF_ERROR(Get(node, "password_file", "output.mqtt", ctx, password_file));
  if (!password_file.empty()) {
    if (options.username.empty()) {
      return ctx.Error("output.mqtt.password_file", "needs a username");
    }
    auto text = ReadFileBytes(Resolve(password_file, base_dir));
    if (!text.ok()) return ctx.Error("output.mqtt.password_file", text.status().message());
    const auto end = std::find(text->begin(), text->end(), '\n');
    options.password.assign(text->begin(), end);
  }
  const Status valid = ValidateMqttOptions(options);
  if (!valid.ok()) return ctx.Error("output.mqtt", valid.message());
  return options;
}

std::string Resolve(const std::string& path, const fs::path& base_dir) {
  if (path.find("://") != std::string::npos) return path;  // a URL for libavformat
  const fs::path p(path);
  return p.is_absolute() ? path : (base_dir / p).lexically_normal().string();
}

Result<SourceConfig> ParseSource(const YAML::Node& node, const std::string& where,
                                 const fs::path& base_dir, const Context& ctx) {
  ZD_RETURN_IF_ERROR(CheckKeys(node,
                               {"name", "type", "path", "fps", "loop", "width", "height",
                                "pixel_format", "ring_slots", "overflow"},
                               where, ctx));
  SourceConfig source;
  ZD_RETURN_IF_ERROR(Get(node, "name", where, ctx, source.name));
  ZD_RETURN_IF_ERROR(ValidName(source.name, where + ".name", ctx));
  std::string type = "video";
  ZD_RETURN_IF_ERROR(Get(node, "type", where, ctx, type));
  if (type == "video") {
    source.type = SourceType::kVideo;
  } else if (type == "images") {
    source.type = SourceType::kImageFolder;
  } else if (type == "v4l2") {
    source.type = SourceType::kV4l2;
  } else {
    return ctx.Error(where + ".type", "'" + type + "' is not one of: video, images, v4l2");
  }
  ZD_RETURN_IF_ERROR(Get(node, "path", where, ctx, source.path));
  if (source.path.empty()) return ctx.Error(where + ".path", "is required");
  source.path = Resolve(source.path, base_dir);
  ZD_RETURN_IF_ERROR(Get(node, "fps", where, ctx, source.fps));
  // Written so that NaN fails too; the lower bound keeps the pacing interval finite.
  if (!(source.fps == 0 || (source.fps >= kMinFps && source.fps <= kMaxFps))) {
    return OutOfRange(node, "fps", where, "0.001..1000 (or 0: the stream's own rate)", ctx);
  }
  if (source.type == SourceType::kImageFolder && source.fps == 0) {
    return ctx.Error(where + ".fps", "is required for an image folder (frames per second)");
  }
  ZD_RETURN_IF_ERROR(Get(node, "loop", where, ctx, source.loop));
  ZD_RETURN_IF_ERROR(Get(node, "width", where, ctx, source.width));
  ZD_RETURN_IF_ERROR(Get(node, "height", where, ctx, source.height));
  ZD_RETURN_IF_ERROR(Get(node, "pixel_format", where, ctx, source.pixel_format));
  if (source.type != SourceType::kV4l2 &&
      (source.width != 0 || source.height != 0 || !source.pixel_format.empty())) {
    return ctx.Error(where, "width, height and pixel_format apply to v4l2 sources only");
  }
  for (const auto& [key, value] : {std::pair{"width", source.width}, {"height", source.height}}) {
    if (value < 0 || value > 16384) {
      return OutOfRange(node, key, where, "0..16384", ctx);
    }
  }
  if (!source.pixel_format.empty()) {
    auto fourcc = detail::ParseFourCc(source.pixel_format);
    if (!fourcc.ok()) return ctx.Error(where + ".pixel_format", fourcc.status().message());
  }
  ZD_RETURN_IF_ERROR(Get(node, "ring_slots", where, ctx, source.ring_slots));
  if (source.ring_slots < 2 || source.ring_slots > 256) {
    return OutOfRange(node, "ring_slots", where, "2..256", ctx);
  }
  std::string overflow = "overwrite_oldest";
  ZD_RETURN_IF_ERROR(Get(node, "overflow", where, ctx, overflow));
  if (overflow == "overwrite_oldest") {
    source.overflow = ring::OverflowPolicy::kOverwriteOldest;
  } else if (overflow == "drop_newest") {
    source.overflow = ring::OverflowPolicy::kDropNewest;
  } else {
    return ctx.Error(where + ".overflow",
                     "'" + overflow + "' is not one of: overwrite_oldest, drop_newest");
  }
  return source;
}

Result<ModelConfig> ParseModel(const YAML::Node& node, const std::string& where,
                               const fs::path& base_dir, bool have_repository, const Context& ctx) {
  ZD_RETURN_IF_ERROR(CheckKeys(
      node, {"name", "path", "model", "workers", "threads", "sources", "conf", "iou"}, where, ctx));
  ModelConfig model;
  std::string path;
  ZD_RETURN_IF_ERROR(Get(node, "path", where, ctx, path));
  ZD_RETURN_IF_ERROR(Get(node, "model", where, ctx, model.reference));
  if (path.empty() == model.reference.empty()) {
    return ctx.Error(where,
                     "needs either path (an ONNX model file) or model (NAME[:VERSION] of "
                     "the repository), not both");
  }
  if (!path.empty()) model.path = Resolve(path, base_dir);
  std::string default_name;
  if (!model.reference.empty()) {
    if (!have_repository) {
      return ctx.Error(where + ".model",
                       "names a repository model, but the config has no "
                       "repository (repository.path)");
    }
    auto ref = ParseModelRef(model.reference);
    if (!ref.ok()) return ctx.Error(where + ".model", ref.status().message());
    default_name = ref->name;
  }
  ZD_RETURN_IF_ERROR(Get(node, "name", where, ctx, model.name));
  if (model.name.empty()) model.name = default_name;
  ZD_RETURN_IF_ERROR(ValidName(model.name, where + ".name", ctx));
  ZD_RETURN_IF_ERROR(Get(node, "workers", where, ctx, model.workers));
  if (model.workers < 1 || model.workers > kMaxWorkersPerModel) {
    return OutOfRange(node, "workers", where, "1.." + std::to_string(kMaxWorkersPerModel), ctx);
  }
  ZD_RETURN_IF_ERROR(Get(node, "threads", where, ctx, model.threads));
  if (model.threads < 1 || model.threads > 64) {
    return OutOfRange(node, "threads", where, "1..64", ctx);
  }
  if (node["sources"]) {
    if (!node["sources"].IsSequence()) {
      return ctx.Error(where + ".sources", "must be a list of source names");
    }
    ZD_RETURN_IF_ERROR(Get(node, "sources", where, ctx, model.sources));
  }
  ZD_RETURN_IF_ERROR(Get(node, "conf", where, ctx, model.conf));
  ZD_RETURN_IF_ERROR(Get(node, "iou", where, ctx, model.iou));
  if (!(model.conf >= 0 && model.conf <= 1)) {
    return OutOfRange(node, "conf", where, "0..1", ctx);
  }
  if (!(model.iou >= 0 && model.iou <= 1)) {
    return OutOfRange(node, "iou", where, "0..1", ctx);
  }
  return model;
}

// What the rings and the machine can take, checked before any process starts: otherwise a
// worker would fail to attach only after every model was loaded.
Status CheckLimits(const PipelineConfig& config, const Context& ctx) {
  size_t processes = config.sources.size();
  for (const ModelConfig& m : config.models) processes += static_cast<size_t>(m.workers);
  if (processes > static_cast<size_t>(kMaxPipelineProcesses)) {
    return ctx.Error("top level", std::to_string(config.sources.size()) + " sources and their " +
                                      "workers make " + std::to_string(processes) +
                                      " processes; at most " +
                                      std::to_string(kMaxPipelineProcesses) + " are allowed");
  }
  for (const SourceConfig& s : config.sources) {
    int readers = 0;
    int groups = 0;
    for (const ModelConfig& m : config.models) {
      if (std::find(m.sources.begin(), m.sources.end(), s.name) == m.sources.end()) continue;
      readers += m.workers;
      ++groups;
    }
    if (readers > ring::kMaxReaders) {
      return ctx.Error("models", "source '" + s.name + "' is read by " + std::to_string(readers) +
                                     " workers; a ring has " + std::to_string(ring::kMaxReaders) +
                                     " reader entries");
    }
    if (groups > ring::kMaxGroups) {
      return ctx.Error("models", "source '" + s.name + "' is read by " + std::to_string(groups) +
                                     " models; a ring has " + std::to_string(ring::kMaxGroups) +
                                     " work groups");
    }
  }
  return Status::Ok();
}

Result<PipelineConfig> ParseConfig(std::string_view yaml, const fs::path& base_dir,
                                   std::string_view origin) {
  const Context ctx(origin);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(std::string(origin) + ": not valid YAML: " + e.what());
  }
  if (!root || root.IsNull()) return ctx.Error("top level", "the file is empty");
  ZD_RETURN_IF_ERROR(
      CheckKeys(root, {"repository", "sources", "models", "output", "supervision", "control"},
                "top level", ctx));
  PipelineConfig config;
  if (const YAML::Node repository = root["repository"]) {
    ZD_RETURN_IF_ERROR(CheckKeys(repository, {"path", "max_models", "max_bytes", "graph_cache"},
                                 "repository", ctx));
    std::string path;
    ZD_RETURN_IF_ERROR(Get(repository, "path", "repository", ctx, path));
    if (path.empty()) return ctx.Error("repository.path", "is required (a model repository)");
    config.repository.path = Resolve(path, base_dir);
    ZD_RETURN_IF_ERROR(
        Get(repository, "max_models", "repository", ctx, config.repository.max_models));
    ZD_RETURN_IF_ERROR(
        Get(repository, "max_bytes", "repository", ctx, config.repository.max_bytes));
    std::string cache;
    ZD_RETURN_IF_ERROR(Get(repository, "graph_cache", "repository", ctx, cache));
    if (!cache.empty()) config.repository.graph_cache = Resolve(cache, base_dir);
  }
  const YAML::Node sources = root["sources"];
  if (!sources || !sources.IsSequence() || sources.size() == 0) {
    return ctx.Error("sources", "needs a list of at least one source");
  }
  std::set<std::string> source_names;
  for (size_t i = 0; i < sources.size(); ++i) {
    const std::string where = "sources[" + std::to_string(i) + "]";
    ZD_ASSIGN_OR_RETURN(SourceConfig source, ParseSource(sources[i], where, base_dir, ctx));
    if (!source_names.insert(source.name).second) {
      return ctx.Error(where + ".name", "'" + source.name + "' is used twice");
    }
    config.sources.push_back(std::move(source));
  }
  const YAML::Node models = root["models"];
  if (!models || !models.IsSequence() || models.size() == 0) {
    return ctx.Error("models", "needs a list of at least one model");
  }
  std::set<std::string> model_names;
  for (size_t i = 0; i < models.size(); ++i) {
    const std::string where = "models[" + std::to_string(i) + "]";
    ZD_ASSIGN_OR_RETURN(ModelConfig model, ParseModel(models[i], where, base_dir,
                                                      !config.repository.path.empty(), ctx));
    if (!model_names.insert(model.name).second) {
      return ctx.Error(where + ".name", "'" + model.name + "' is used twice");
    }
    if (model.sources.empty()) {
      for (const SourceConfig& s : config.sources) model.sources.push_back(s.name);
    }
    std::set<std::string> listed;
    for (const std::string& s : model.sources) {
      if (source_names.count(s) == 0) {
        return ctx.Error(where + ".sources", "no source is named '" + s + "'");
      }
      if (!listed.insert(s).second)
        return ctx.Error(where + ".sources", "'" + s + "' is listed twice");
    }
    config.models.push_back(std::move(model));
  }
  if (const YAML::Node output = root["output"]) {
    ZD_RETURN_IF_ERROR(
        CheckKeys(output, {"results", "results_ring", "annotated_dir", "mqtt"}, "output", ctx));
    if (const YAML::Node mqtt = output["mqtt"]) {
      ZD_ASSIGN_OR_RETURN(config.mqtt, ParseMqtt(mqtt, base_dir, ctx));
    }
    ZD_RETURN_IF_ERROR(Get(output, "annotated_dir", "output", ctx, config.annotated_dir));
    if (!config.annotated_dir.empty())
      config.annotated_dir = Resolve(config.annotated_dir, base_dir);
    ZD_RETURN_IF_ERROR(Get(output, "results", "output", ctx, config.results));
    ZD_RETURN_IF_ERROR(Get(output, "results_ring", "output", ctx, config.results_ring));
    if (!config.results_ring.empty()) {
      ZD_RETURN_IF_ERROR(ValidName(config.results_ring, "output.results_ring", ctx));
    }
    if (config.results.empty()) return ctx.Error("output.results", "must be '-' or a file path");
    if (config.results != "-") config.results = Resolve(config.results, base_dir);
  }
  if (const YAML::Node supervision = root["supervision"]) {
    ZD_RETURN_IF_ERROR(
        CheckKeys(supervision, {"restart_backoff_ms", "max_restarts"}, "supervision", ctx));
    ZD_RETURN_IF_ERROR(
        Get(supervision, "restart_backoff_ms", "supervision", ctx, config.restart_backoff_ms));
    ZD_RETURN_IF_ERROR(Get(supervision, "max_restarts", "supervision", ctx, config.max_restarts));
    if (config.restart_backoff_ms < 0 || config.restart_backoff_ms > 600'000) {
      return ctx.Error("supervision.restart_backoff_ms", "must be within 0..600000");
    }
    if (config.max_restarts < 0) return ctx.Error("supervision.max_restarts", "must be >= 0");
  }
  if (const YAML::Node control = root["control"]) {
    ZD_RETURN_IF_ERROR(CheckKeys(control, {"socket"}, "control", ctx));
    std::string socket;
    ZD_RETURN_IF_ERROR(Get(control, "socket", "control", ctx, socket));
    if (!socket.empty()) {
      socket = Resolve(socket, base_dir);
      if (socket.size() > MaxUnixSocketPath()) {
        return ctx.Error("control.socket", "'" + socket + "' is longer than " +
                                               std::to_string(MaxUnixSocketPath()) +
                                               " bytes (a Unix socket path)");
      }
    }
    config.control_socket = socket;
  }
  ZD_RETURN_IF_ERROR(CheckLimits(config, ctx));
  return config;
}

}  // namespace

Result<PipelineConfig> ParsePipelineConfig(std::string_view yaml, const fs::path& base_dir,
                                           std::string_view origin) {
  // The module boundary: yaml-cpp reports through exceptions, and none may escape. The parser
  // above handles the ones it expects; anything else (a conversion on a node shape no check
  // foresaw, memory) still becomes an error naming the file.
  try {
    return ParseConfig(yaml, base_dir, origin);
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(std::string(origin) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(std::string(origin) + ": out of memory reading the config");
  } catch (const std::exception& e) {
    return InternalError(std::string(origin) + ": " + e.what());
  }
}

Result<PipelineConfig> LoadPipelineConfig(const fs::path& path) {
  // Never blocks: a FIFO or a device given as the config is refused (core/file.h).
  ZD_ASSIGN_OR_RETURN(const std::string text, ReadFileText(path, kMaxConfigBytes));
  ZD_ASSIGN_OR_RETURN(
      PipelineConfig config,
      ParsePipelineConfig(text, path.parent_path().empty() ? fs::path(".") : path.parent_path(),
                          path.string()));
  if (!config.control_socket) config.control_socket = DefaultControlSocket(path);
  return config;
}

}  // namespace zerodet::pipeline

// Triton's config.pbtxt, parsed with protobuf's TextFormat into Triton's ModelConfig message
// (triton_model_config.proto) and mapped onto zerodet's ModelConfig. Every field that is set and
// not mapped is reported in ModelConfig::unsupported, never silently ignored.
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "triton_model_config.pb.h"
#include "zerodet/models/model_config.h"

namespace zerodet {
namespace {

namespace pb = google::protobuf;
namespace triton = zerodet::triton;

// Collects the parser's errors (the first one fails the parse) and its warnings (fields the
// message does not declare, which are reported as unsupported).
class Collector final : public pb::io::ErrorCollector {
 public:
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (error.empty()) error = Where(line, column) + message;
  }
  void AddWarning(int line, pb::io::ColumnNumber column, const std::string& message) override {
    warnings.push_back(Where(line, column) + message);
  }

  std::string error;
  std::vector<std::string> warnings;

 private:
  static std::string Where(int line, pb::io::ColumnNumber column) {
    return "line " + std::to_string(line + 1) + ", column " + std::to_string(column + 1) + ": ";
  }
};

// Appends "origin: <field> is not supported (<why>)".
class Unsupported {
 public:
  Unsupported(const std::string& origin, std::vector<std::string>& out)
      : origin_(origin), out_(out) {}
  void Add(const std::string& field, const std::string& why = "ignored") {
    out_.push_back(origin_ + ": " + field + " is not supported (" + why + ")");
  }

 private:
  const std::string& origin_;
  std::vector<std::string>& out_;
};

// Every set field of `message` except those in `handled`, reported under `prefix`.
void ReportUnhandledFields(const pb::Message& message, const std::string& prefix,
                           const std::vector<std::string>& handled, Unsupported& unsupported) {
  std::vector<const pb::FieldDescriptor*> fields;
  message.GetReflection()->ListFields(message, &fields);
  for (const pb::FieldDescriptor* field : fields) {
    if (std::find(handled.begin(), handled.end(), field->name()) == handled.end()) {
      unsupported.Add(prefix + field->name());
    }
  }
}

void MapInstanceGroups(const triton::ModelConfig& in, ModelConfig& out, Unsupported& unsupported) {
  if (in.instance_group_size() == 0) return;
  int count = 0;
  bool gpu = false;
  for (int i = 0; i < in.instance_group_size(); ++i) {
    const triton::ModelInstanceGroup& group = in.instance_group(i);
    const std::string prefix = "instance_group[" + std::to_string(i) + "].";
    count += group.count() > 0 ? group.count() : 1;
    if (group.kind() == triton::ModelInstanceGroup::KIND_GPU) {
      if (i > 0 && !gpu)
        unsupported.Add(prefix + "kind",
                        "groups on CPU and GPU at once; the first group's kind applies");
      if (i == 0) gpu = true;
    } else if (group.kind() == triton::ModelInstanceGroup::KIND_MODEL) {
      unsupported.Add(prefix + "kind", "KIND_MODEL; instances run on CPU");
    }
    if (group.gpus_size() > 1) {
      unsupported.Add(prefix + "gpus", "instances on more than one GPU; GPU " +
                                           std::to_string(group.gpus(0)) + " is used");
    }
    if (i == 0 && group.gpus_size() > 0) out.device_id = group.gpus(0);
    ReportUnhandledFields(group, prefix, {"name", "kind", "count", "gpus"}, unsupported);
  }
  out.instances = count;
  if (gpu) out.provider = ExecutionProvider::kCuda;
}

void MapTensors(const triton::ModelConfig& in, ModelConfig& out, Unsupported& unsupported) {
  for (int i = 0; i < in.input_size(); ++i) {
    const triton::ModelInput& tensor = in.input(i);
    out.inputs.push_back({tensor.name(), {tensor.dims().begin(), tensor.dims().end()}});
    ReportUnhandledFields(tensor, "input[" + std::to_string(i) + "].",
                          {"name", "data_type", "dims"}, unsupported);
  }
  for (int i = 0; i < in.output_size(); ++i) {
    const triton::ModelOutput& tensor = in.output(i);
    out.outputs.push_back({tensor.name(), {tensor.dims().begin(), tensor.dims().end()}});
    ReportUnhandledFields(tensor, "output[" + std::to_string(i) + "].",
                          {"name", "data_type", "dims"}, unsupported);
  }
}

void MapWarmup(const triton::ModelConfig& in, ModelConfig& out, Unsupported& unsupported) {
  if (in.model_warmup_size() == 0) return;
  int runs = 0;
  for (int i = 0; i < in.model_warmup_size(); ++i) {
    const triton::ModelWarmup& sample = in.model_warmup(i);
    const std::string prefix = "model_warmup[" + std::to_string(i) + "].";
    runs += sample.count() > 0 ? static_cast<int>(std::min<uint32_t>(sample.count(), 1000)) : 1;
    if (sample.batch_size() > 1) unsupported.Add(prefix + "batch_size", "warm-up runs use batch 1");
    for (const auto& [name, input] : sample.inputs()) {
      if (input.has_input_data_file()) {
        unsupported.Add(prefix + "inputs[" + name + "].input_data_file",
                        "warm-up runs on a blank image");
      }
    }
    ReportUnhandledFields(sample, prefix, {"name", "batch_size", "inputs", "count"}, unsupported);
  }
  out.warmup_runs = std::min(runs, 1000);
}

void MapOptimization(const triton::ModelConfig& in, ModelConfig& out, Unsupported& unsupported) {
  if (!in.has_optimization()) return;
  const triton::ModelOptimizationPolicy& policy = in.optimization();
  if (policy.has_graph()) {
    // As Triton's ONNX Runtime backend reads the level: -1 basic optimizations only, 1 basic and
    // extended, 0 (the default) all.
    const int level = policy.graph().level();
    out.graph_optimization_level = level < 0 ? 1 : level == 1 ? 2 : 3;
  }
  if (policy.has_execution_accelerators()) {
    const auto& accelerators = policy.execution_accelerators();
    for (int i = 0; i < accelerators.gpu_execution_accelerator_size(); ++i) {
      const auto& accelerator = accelerators.gpu_execution_accelerator(i);
      if (accelerator.name() == "tensorrt" && i == 0) {
        out.provider = ExecutionProvider::kTensorRT;
        for (const auto& [key, value] : accelerator.parameters()) {
          unsupported.Add("optimization.execution_accelerators.gpu_execution_accelerator[" +
                              std::to_string(i) + "].parameters[" + key + "]",
                          "set TensorRT options in config.yaml provider_options");
        }
      } else {
        unsupported.Add("optimization.execution_accelerators.gpu_execution_accelerator[" +
                        std::to_string(i) + "] '" + accelerator.name() + "'");
      }
    }
    if (accelerators.cpu_execution_accelerator_size() > 0) {
      unsupported.Add("optimization.execution_accelerators.cpu_execution_accelerator");
    }
  }
  ReportUnhandledFields(policy, "optimization.", {"graph", "execution_accelerators"}, unsupported);
}

// Parameters: Triton's ONNX Runtime backend keys that apply, and "zerodet.<key>" for any
// config.yaml key (applied through the one config.yaml parser).
Status MapParameters(const triton::ModelConfig& in, const std::string& origin, ModelConfig& out,
                     Unsupported& unsupported) {
  std::string yaml;
  for (const auto& [key, parameter] : in.parameters()) {
    const std::string& value = parameter.string_value();
    if (key == "intra_op_thread_count") {
      yaml += "intra_op_threads: " + value + "\n";
    } else if (key.rfind("zerodet.", 0) == 0) {
      yaml += key.substr(8) + ": " + value + "\n";
    } else {
      unsupported.Add("parameters[" + key + "]");
    }
  }
  if (yaml.empty()) return Status::Ok();
  return ApplyYamlConfig(yaml, origin + " parameters", out);
}

Status MapConfig(const triton::ModelConfig& in, const std::string& origin, ModelConfig& out) {
  Unsupported unsupported(origin, out.unsupported);
  if (!in.name().empty() && in.name() != out.name) {
    return InvalidArgumentError(origin + ": name '" + in.name() +
                                "' differs from the directory name '" + out.name + "'");
  }
  if (!in.platform().empty() && in.platform() != "onnxruntime_onnx") {
    return InvalidArgumentError(origin + ": platform '" + in.platform() +
                                "' is not served by zerodet (only onnxruntime_onnx is)");
  }
  if (!in.backend().empty() && in.backend() != "onnxruntime") {
    return InvalidArgumentError(origin + ": backend '" + in.backend() +
                                "' is not served by zerodet (only onnxruntime is)");
  }
  if (in.max_batch_size() < 0 || in.max_batch_size() > 1024) {
    return InvalidArgumentError(origin + ": max_batch_size " + std::to_string(in.max_batch_size()) +
                                " is outside 0..1024");
  }
  if (in.max_batch_size() > 0) {
    out.max_batch = in.max_batch_size();
    out.config_batch_dim = true;
  }
  if (in.has_version_policy()) {
    const triton::ModelVersionPolicy& policy = in.version_policy();
    if (policy.has_all()) {
      out.version_policy = VersionPolicy{VersionPolicy::Kind::kAll, 1, {}};
    } else if (policy.has_specific()) {
      VersionPolicy specific{VersionPolicy::Kind::kSpecific, 1, {}};
      for (int64_t v : policy.specific().versions()) {
        if (v < 1) return InvalidArgumentError(origin + ": versions are positive integers");
        specific.specific.push_back(v);
      }
      out.version_policy = std::move(specific);
    } else if (policy.has_latest()) {
      out.version_policy = VersionPolicy{
          VersionPolicy::Kind::kLatest, std::max<uint32_t>(1, policy.latest().num_versions()), {}};
    }
  }
  if (!in.default_model_filename().empty()) out.model_filename = in.default_model_filename();
  MapTensors(in, out, unsupported);
  MapInstanceGroups(in, out, unsupported);
  MapWarmup(in, out, unsupported);
  MapOptimization(in, out, unsupported);
  if (in.has_dynamic_batching()) {
    const triton::ModelDynamicBatching& batching = in.dynamic_batching();
    out.dynamic_batching = DynamicBatching{
        {batching.preferred_batch_size().begin(), batching.preferred_batch_size().end()},
        batching.max_queue_delay_microseconds()};
    std::vector<std::string> handled = {"preferred_batch_size", "max_queue_delay_microseconds"};
    // The queue policy's bound and timeout (REJECT, Triton's default action); DELAY and
    // per-request overrides are reported below.
    if (batching.has_default_queue_policy()) {
      const triton::ModelQueuePolicy& policy = batching.default_queue_policy();
      out.dynamic_batching->max_queue_size = policy.max_queue_size();
      out.dynamic_batching->queue_timeout_us = policy.default_timeout_microseconds();
      ReportUnhandledFields(policy, "dynamic_batching.default_queue_policy.",
                            {"max_queue_size", "default_timeout_microseconds"}, unsupported);
      handled.push_back("default_queue_policy");
    }
    ReportUnhandledFields(batching, "dynamic_batching.", handled, unsupported);
  }
  ZD_RETURN_IF_ERROR(MapParameters(in, origin, out, unsupported));
  ReportUnhandledFields(in, "",
                        {"name", "platform", "backend", "max_batch_size", "version_policy",
                         "default_model_filename", "input", "output", "instance_group",
                         "model_warmup", "optimization", "dynamic_batching", "parameters"},
                        unsupported);
  return Status::Ok();
}

}  // namespace

Status ApplyTritonConfig(std::string_view text, const std::string& origin, ModelConfig& config) {
  try {
    triton::ModelConfig message;
    Collector collector;
    pb::TextFormat::Parser parser;
    parser.RecordErrorsTo(&collector);
    // Fields this declaration of Triton's message lacks (newer Triton releases, typos) are
    // reported as unsupported instead of failing the whole model.
    parser.AllowUnknownField(true);
    if (!parser.ParseFromString(std::string(text), &message)) {
      return InvalidArgumentError(
          origin + ": " +
          (collector.error.empty() ? "not a Triton model configuration" : collector.error));
    }
    for (const std::string& warning : collector.warnings) {
      config.unsupported.push_back(origin + ": " + warning);
    }
    return MapConfig(message, origin, config);
  } catch (const std::exception& e) {
    return InvalidArgumentError(origin + ": " + e.what());
  }
}

}  // namespace zerodet

#include <gtest/gtest.h>

#include <algorithm>

#include "models_test_util.h"
#include "zerodet/models/model_config.h"

namespace zerodet {
namespace {

using ::zerodet::testing::TempDir;
using ::zerodet::testing::WriteFile;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

bool AnyContains(const std::vector<std::string>& lines, const std::string& part) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& line) { return Contains(line, part); });
}

ModelConfig Named(const std::string& name) {
  ModelConfig config;
  config.name = name;
  return config;
}

TEST(YamlConfigTest, ReadsEveryKey) {
  ModelConfig c = Named("cams");
  const Status status = ApplyYamlConfig(R"(
name: cams
model_filename: detector.onnx
format: v8
input_size: [640, 480]
class_names: [person, car]
provider: cpu
device: 1
provider_options: {gpu_mem_limit: 1024}
intra_op_threads: 2
graph_optimization_level: 2
instances: 3
warmup: 4
pinned: true
preload: true
max_batch: 8
version_policy: {specific: [1, 3]}
traffic: {1: 90, 3: 10}
shrink_arenas: true
conf_threshold: 0.4
iou_threshold: 0.5
max_detections: 50
class_agnostic: true
)",
                                        "cams/config.yaml", c);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(c.model_filename, "detector.onnx");
  EXPECT_EQ(c.format, YoloFormat::kV8);
  EXPECT_EQ(c.input_width, 640);
  EXPECT_EQ(c.input_height, 480);
  EXPECT_EQ(c.class_names, (std::vector<std::string>{"person", "car"}));
  EXPECT_EQ(c.device_id, 1);
  EXPECT_EQ(c.provider_options.at("gpu_mem_limit"), "1024");
  EXPECT_EQ(c.intra_op_threads, 2);
  EXPECT_EQ(c.graph_optimization_level, 2);
  EXPECT_EQ(c.instances, 3);
  EXPECT_EQ(c.warmup_runs, 4);
  EXPECT_TRUE(c.pinned);
  EXPECT_TRUE(c.preload);
  EXPECT_EQ(c.max_batch, 8);
  EXPECT_EQ(c.version_policy.kind, VersionPolicy::Kind::kSpecific);
  EXPECT_EQ(c.version_policy.specific, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(c.traffic, (std::map<int64_t, double>{{1, 90.0}, {3, 10.0}}));
  EXPECT_TRUE(c.shrink_arenas);
  EXPECT_FLOAT_EQ(c.params.conf_threshold, 0.4f);
  EXPECT_EQ(c.params.max_detections, 50);
  EXPECT_TRUE(c.params.class_agnostic);
  const DetectorOptions options = c.ToDetectorOptions();
  EXPECT_FALSE(options.backend.shared_thread_pool);  // threads of its own
  EXPECT_EQ(options.input_width, 640);
}

TEST(YamlConfigTest, RejectsUnknownKeysAndBadValues) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"instnces: 2", "unknown key 'instnces'"},
      {"instances: 0", "instances: 0 is outside 1..64"},
      {"name: other", "differs from the directory name"},
      {"traffic: {2: 0}", "every weight is 0"},
      {"traffic: {0: 5}", "versions are positive integers"},
      {"format: v9", "unknown"},
      {"provider: tpu", "unknown execution provider"},
      {"version_policy: newest", "expected all"},
      {"input_size: 100000", "outside"},
      {"conf_threshold: 2", "[0, 1]"},
      {"- a list", "expected a map"},
      {"warmup: [1", "config.yaml"},
  };
  for (const auto& [yaml, expected] : cases) {
    ModelConfig c = Named("m");
    const Status status = ApplyYamlConfig(yaml, "m/config.yaml", c);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << yaml;
    EXPECT_TRUE(Contains(status.message(), expected)) << yaml << " -> " << status.message();
    EXPECT_TRUE(Contains(status.message(), "m/config.yaml")) << status.message();
  }
}

TEST(TritonConfigTest, MapsTheFieldsThatApply) {
  ModelConfig c = Named("yolo");
  const Status status =
      ApplyTritonConfig(R"pb(
                          name: "yolo"
                          platform: "onnxruntime_onnx"
                          max_batch_size: 4
                          default_model_filename: "net.onnx" input
                          [ {
                            name: "images"
                            data_type: TYPE_FP32
                            dims: [ 3, 640, 640 ]
                          }] output
                          [ {
                            name: "output0"
                            data_type: TYPE_FP32
                            dims: [ 84, -1 ]
                          }] instance_group
                          [ { count: 2 kind: KIND_CPU }]
                          dynamic_batching {
                            preferred_batch_size: [ 2, 4 ]
                            max_queue_delay_microseconds: 500
                          }
                          version_policy: { specific: { versions: [ 2, 5 ] } } model_warmup
                          [ {
                            name: "w"
                            batch_size: 1
                            count: 3
                            inputs {
                              key: "images"
                              value: {
                                data_type: TYPE_FP32
                                dims: [ 3, 640, 640 ]
                                zero_data: true
                              }
                            }
                          }]
                          optimization { graph { level: 1 } }
                          parameters {
                            key: "intra_op_thread_count"
                            value: { string_value: "2" }
                          }
                          parameters {
                            key: "zerodet.pinned"
                            value: { string_value: "true" }
                          }
                        )pb",
                        "yolo/config.pbtxt", c);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(c.max_batch, 4);
  EXPECT_TRUE(c.config_batch_dim);
  EXPECT_EQ(c.model_filename, "net.onnx");
  ASSERT_EQ(c.inputs.size(), 1u);
  EXPECT_EQ(c.inputs[0].name, "images");
  EXPECT_EQ(c.inputs[0].dims, (std::vector<int64_t>{3, 640, 640}));
  EXPECT_EQ(c.outputs[0].dims, (std::vector<int64_t>{84, -1}));
  EXPECT_EQ(c.instances, 2);
  EXPECT_EQ(c.provider, ExecutionProvider::kCpu);
  ASSERT_TRUE(c.dynamic_batching.has_value());
  EXPECT_EQ(c.dynamic_batching->preferred_batch_sizes, (std::vector<int>{2, 4}));
  EXPECT_EQ(c.dynamic_batching->max_queue_delay_us, 500u);
  EXPECT_EQ(c.version_policy.kind, VersionPolicy::Kind::kSpecific);
  EXPECT_EQ(c.version_policy.specific, (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(c.warmup_runs, 3);
  EXPECT_EQ(c.graph_optimization_level, 2);
  EXPECT_EQ(c.intra_op_threads, 2);
  EXPECT_TRUE(c.pinned);
  EXPECT_TRUE(c.unsupported.empty()) << c.unsupported[0];
}

TEST(TritonConfigTest, ReportsUnsupportedFieldsOnceInsteadOfIgnoringThem) {
  ModelConfig c = Named("yolo");
  const Status status =
      ApplyTritonConfig(R"pb(
                          backend: "onnxruntime" instance_group
                          [ {
                            count: 1
                            kind: KIND_GPU
                            gpus: [ 0, 1 ]
                          }]
                          sequence_batching { max_sequence_idle_microseconds: 5000 }
                          response_cache { enable: true }
                          parameters {
                            key: "cudnn_conv_use_max_workspace"
                            value: { string_value: "1" }
                          }
                          some_future_field: 3
                        )pb",
                        "yolo/config.pbtxt", c);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(c.provider, ExecutionProvider::kCuda);
  EXPECT_EQ(c.device_id, 0);
  EXPECT_TRUE(AnyContains(c.unsupported, "sequence_batching is not supported"));
  EXPECT_TRUE(AnyContains(c.unsupported, "response_cache is not supported"));
  EXPECT_TRUE(AnyContains(c.unsupported, "instance_group[0].gpus is not supported"));
  EXPECT_TRUE(AnyContains(c.unsupported, "parameters[cudnn_conv_use_max_workspace]"));
  EXPECT_TRUE(AnyContains(c.unsupported, "some_future_field"));
  for (const std::string& line : c.unsupported) {
    EXPECT_TRUE(Contains(line, "yolo/config.pbtxt")) << line;
  }
}

TEST(TritonConfigTest, RejectsOtherPlatformsAndBrokenText) {
  ModelConfig c = Named("yolo");
  Status status = ApplyTritonConfig(R"(platform: "tensorrt_plan")", "yolo/config.pbtxt", c);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status.message(), "tensorrt_plan")) << status.message();
  status = ApplyTritonConfig("name: \"yolo\"\nmax_batch_size: {", "yolo/config.pbtxt", c);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status.message(), "line 2")) << status.message();
  status = ApplyTritonConfig(R"(name: "other")", "yolo/config.pbtxt", c);
  EXPECT_TRUE(Contains(status.message(), "differs from the directory name")) << status.message();
  status = ApplyTritonConfig("\x01\x02\xff garbage", "yolo/config.pbtxt", c);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
}

TEST(ReadModelConfigTest, DynamicBatchingFromYamlWithinMaxBatch) {
  TempDir dir("models_config");
  WriteFile(
      dir.path() / "m" / "config.yaml",
      "max_batch: 8\ndynamic_batching: {max_queue_delay_us: 500, preferred_batch_sizes: [4, 8]}\n");
  auto config = ReadModelConfig(dir.path() / "m", "m");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_TRUE(config->dynamic_batching.has_value());
  EXPECT_EQ(config->dynamic_batching->preferred_batch_sizes, (std::vector<int>{4, 8}));
  EXPECT_EQ(config->dynamic_batching->max_queue_delay_us, 500u);

  WriteFile(dir.path() / "defaults" / "config.yaml", "dynamic_batching: {}\n");
  auto defaults = ReadModelConfig(dir.path() / "defaults", "defaults");
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_TRUE(defaults->dynamic_batching.has_value());

  // A preferred size beyond max_batch (1 unless set), an unknown key, a delay over 10 s.
  for (const std::string& text :
       {std::string("dynamic_batching: {preferred_batch_sizes: [4]}\n"),
        std::string("max_batch: 4\ndynamic_batching: {max_delay: 5}\n"),
        std::string("max_batch: 4\ndynamic_batching: {max_queue_delay_us: 20000000}\n"),
        std::string("dynamic_batching: true\n")}) {
    WriteFile(dir.path() / "bad" / "config.yaml", text);
    auto bad = ReadModelConfig(dir.path() / "bad", "bad");
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_TRUE(Contains(bad.status().message(), "dynamic_batching")) << bad.status().message();
  }
}

TEST(TritonConfigTest, DynamicBatchingQueuePolicy) {
  ModelConfig c = Named("yolo");
  const Status status = ApplyTritonConfig(
      "max_batch_size: 8\n"
      "dynamic_batching { default_queue_policy { max_queue_size: 16 "
      "default_timeout_microseconds: 250000 timeout_action: DELAY } }",
      "yolo/config.pbtxt", c);
  ASSERT_TRUE(status.ok()) << status.ToString();
  ASSERT_TRUE(c.dynamic_batching.has_value());
  EXPECT_EQ(c.dynamic_batching->max_queue_size, 16u);
  EXPECT_EQ(c.dynamic_batching->queue_timeout_us, 250000u);
  EXPECT_TRUE(AnyContains(c.unsupported, "default_queue_policy.timeout_action"));
}

TEST(VersionPolicyTest, SelectsAsTriton) {
  const std::vector<int64_t> available = {1, 2, 3, 7};
  EXPECT_EQ(VersionPolicy{}.Select(available), (std::vector<int64_t>{7}));
  EXPECT_EQ((VersionPolicy{VersionPolicy::Kind::kLatest, 2, {}}.Select(available)),
            (std::vector<int64_t>{3, 7}));
  EXPECT_EQ((VersionPolicy{VersionPolicy::Kind::kAll, 1, {}}.Select(available)), available);
  EXPECT_EQ((VersionPolicy{VersionPolicy::Kind::kSpecific, 1, {2, 9}}.Select(available)),
            (std::vector<int64_t>{2}));
  EXPECT_TRUE(VersionPolicy{}.Select({}).empty());
}

TEST(ReadModelConfigTest, ReadsPbtxtThenYamlOnTop) {
  TempDir dir("models_config");
  WriteFile(dir.path() / "m" / "config.pbtxt",
            "instance_group [ { count: 2 } ]\nmax_batch_size: 2\n");
  WriteFile(dir.path() / "m" / "config.yaml", "instances: 3\n");
  auto config = ReadModelConfig(dir.path() / "m", "m");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->instances, 3);
  EXPECT_EQ(config->max_batch, 2);
  EXPECT_EQ(config->source, "config.pbtxt+config.yaml");

  WriteFile(dir.path() / "n" / "config.yaml", "default_version: 1\ntraffic: {1: 1}\n");
  auto both = ReadModelConfig(dir.path() / "n", "n");
  EXPECT_TRUE(Contains(both.status().message(), "exclude each other")) << both.status().message();

  std::filesystem::create_directories(dir.path() / "plain");
  auto plain = ReadModelConfig(dir.path() / "plain", "plain");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->source, "default");
}

}  // namespace
}  // namespace zerodet

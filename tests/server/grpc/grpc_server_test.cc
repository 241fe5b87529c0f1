// GrpcServer end to end: a server on an ephemeral loopback port over an InferenceService on a
// repository of real models (yolo11n-320, yolov8n), driven through the project's own grpc++
// client stubs (grpc_service.proto). Covers every RPC, raw outputs bit-identical to the same
// model run directly, detection on encoded images equal to InferenceService::Detect, the error
// statuses, streaming, the bearer token, the message size limit, TLS and a shutdown that lets a
// request in flight finish.
#include "zerodet/server/grpc_server.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "grpc_service.grpc.pb.h"
#include "models_test_util.h"
#include "zerodet/core/detection_json.h"
#include "zerodet/core/file.h"
#include "zerodet/server/inference_service.h"

namespace zerodet::server {
namespace {

namespace pb = ::inference;
using ::zerodet::testing::AddVersion;
using ::zerodet::testing::ManagerTestOptions;
using ::zerodet::testing::SharedDir;
using ::zerodet::testing::SharedImage;
using ::zerodet::testing::SharedModel;
using ::zerodet::testing::TempDir;
using ::zerodet::testing::WaitFor;

constexpr char kSmall[] = "yolo11n-320";  // input "images" FP32 [1, 3, 320, 320]
constexpr char kToken[] = "s3cret-token";

// A repository, its manager and service, and a started server with a client stub.
struct Served {
  explicit Served(GrpcServerOptions options = {}, bool big_model = true,
                  std::shared_ptr<ModelLoader> loader = nullptr, bool allow_client_shm = false)
      : repo("grpc_server") {
    AddVersion(repo.path(), kSmall, 1, SharedModel("yolo11n-320.onnx"));
    if (big_model) AddVersion(repo.path(), "yolov8n", 1, SharedModel("yolov8n.onnx"));
    ManagerOptions manager_options = ManagerTestOptions(repo.path());
    manager_options.loader = std::move(loader);
    auto created = ModelManager::Create(manager_options);
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    manager = std::move(created).value();
    InferenceService::Options service_options;
    service_options.allow_client_shm = allow_client_shm;
    service = std::make_unique<InferenceService>(*manager, service_options);
    options.address = "127.0.0.1:0";
    auto started = GrpcServer::Start(*service, options);
    EXPECT_TRUE(started.ok()) << started.status().ToString();
    server = std::move(started).value();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server->port()),
                                        grpc::InsecureChannelCredentials(), args);
    stub = pb::GRPCInferenceService::NewStub(channel);
  }

  TempDir repo;
  std::unique_ptr<ModelManager> manager;
  std::unique_ptr<InferenceService> service;
  std::unique_ptr<GrpcServer> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::GRPCInferenceService::Stub> stub;
};

// One server for the suite (loading the models once).
class GrpcServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    GrpcServerOptions options;
    options.token = kToken;
    served_ = new Served(options);
  }
  static void TearDownTestSuite() {
    delete served_;
    served_ = nullptr;
  }

  pb::GRPCInferenceService::Stub& stub() { return *served_->stub; }
  InferenceService& service() { return *served_->service; }
  ModelManager& manager() { return *served_->manager; }

  static Served* served_;
};
Served* GrpcServerTest::served_ = nullptr;

std::string Describe(const grpc::Status& status) {
  return std::to_string(status.error_code()) + ": " + status.error_message();
}

// A deterministic pseudo-random FP32 tensor of `elements`, as bytes.
std::string RandomTensor(size_t elements, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::string bytes(elements * sizeof(float), '\0');
  for (size_t i = 0; i < elements; ++i) {
    const float v = uniform(rng);
    std::memcpy(bytes.data() + i * sizeof(float), &v, sizeof(float));
  }
  return bytes;
}

constexpr size_t kSmallInputElements = size_t{3} * 320 * 320;

pb::ModelInferRequest RawRequest(const std::string& model, const std::string& tensor,
                                 std::vector<int64_t> shape = {1, 3, 320, 320},
                                 const std::string& datatype = "FP32") {
  pb::ModelInferRequest request;
  request.set_model_name(model);
  request.set_id("req-1");
  auto* input = request.add_inputs();
  input->set_name("images");
  input->set_datatype(datatype);
  for (int64_t d : shape) input->add_shape(d);
  request.add_raw_input_contents(tensor);
  return request;
}

std::string BytesElement(const std::string& payload) {
  std::string out(4, '\0');
  const auto length = static_cast<uint32_t>(payload.size());
  std::memcpy(out.data(), &length, 4);
  return out + payload;
}

std::vector<std::string> SplitBytes(const std::string& raw) {
  std::vector<std::string> elements;
  size_t pos = 0;
  while (pos + 4 <= raw.size()) {
    uint32_t length = 0;
    std::memcpy(&length, raw.data() + pos, 4);
    pos += 4;
    elements.push_back(raw.substr(pos, length));
    pos += length;
  }
  EXPECT_EQ(pos, raw.size());
  return elements;
}

std::string ReadBytes(const std::filesystem::path& path) {
  auto text = ReadFileText(path);
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return text.ok() ? *text : std::string();
}

pb::ModelInferRequest DetectRequestFor(const std::string& model,
                                       const std::vector<std::string>& images) {
  pb::ModelInferRequest request;
  request.set_model_name(model);
  auto* input = request.add_inputs();
  input->set_name("image");
  input->set_datatype("BYTES");
  input->add_shape(static_cast<int64_t>(images.size()));
  std::string raw;
  for (const std::string& image : images) raw += BytesElement(image);
  request.add_raw_input_contents(raw);
  return request;
}

// ---- Health and metadata ----

TEST_F(GrpcServerTest, HealthAndServerMetadata) {
  grpc::ClientContext c1, c2, c3;
  pb::ServerLiveResponse live;
  ASSERT_TRUE(stub().ServerLive(&c1, {}, &live).ok());
  EXPECT_TRUE(live.live());
  pb::ServerReadyResponse ready;
  ASSERT_TRUE(stub().ServerReady(&c2, {}, &ready).ok());
  EXPECT_TRUE(ready.ready());
  pb::ServerMetadataResponse metadata;
  ASSERT_TRUE(stub().ServerMetadata(&c3, {}, &metadata).ok());
  EXPECT_EQ(metadata.name(), "zerodet");
  EXPECT_EQ(metadata.version(), service().version());
  std::vector<std::string> extensions(metadata.extensions().begin(), metadata.extensions().end());
  EXPECT_NE(std::find(extensions.begin(), extensions.end(), "model_repository"), extensions.end());
  EXPECT_NE(std::find(extensions.begin(), extensions.end(), "statistics"), extensions.end());
}

TEST_F(GrpcServerTest, ModelReadyAndMetadata) {
  {
    grpc::ClientContext context;
    pb::ModelMetadataRequest request;
    request.set_name(kSmall);
    pb::ModelMetadataResponse metadata;
    const grpc::Status status = stub().ModelMetadata(&context, request, &metadata);
    ASSERT_TRUE(status.ok()) << Describe(status);
    EXPECT_EQ(metadata.name(), kSmall);
    ASSERT_EQ(metadata.versions_size(), 1);
    EXPECT_EQ(metadata.versions(0), "1");
    EXPECT_EQ(metadata.platform(), "onnxruntime_onnx");
    ASSERT_EQ(metadata.inputs_size(), 1);
    EXPECT_EQ(metadata.inputs(0).name(), "images");
    EXPECT_EQ(metadata.inputs(0).datatype(), "FP32");
    EXPECT_EQ(
        std::vector<int64_t>(metadata.inputs(0).shape().begin(), metadata.inputs(0).shape().end()),
        (std::vector<int64_t>{1, 3, 320, 320}));
    ASSERT_GE(metadata.outputs_size(), 1);
  }
  for (const char* version : {"", "1"}) {
    grpc::ClientContext context;
    pb::ModelReadyRequest request;
    request.set_name(kSmall);
    request.set_version(version);
    pb::ModelReadyResponse ready;
    const grpc::Status status = stub().ModelReady(&context, request, &ready);
    ASSERT_TRUE(status.ok()) << Describe(status);
    EXPECT_TRUE(ready.ready()) << "metadata loaded it; version '" << version << "'";
  }
  struct Case {
    const char* name;
    const char* version;
    grpc::StatusCode code;
  };
  for (const Case& c : {Case{"no-such-model", "", grpc::StatusCode::NOT_FOUND},
                        Case{kSmall, "7", grpc::StatusCode::NOT_FOUND},
                        Case{kSmall, "one", grpc::StatusCode::INVALID_ARGUMENT},
                        Case{kSmall, "-1", grpc::StatusCode::INVALID_ARGUMENT}}) {
    grpc::ClientContext context;
    pb::ModelReadyRequest request;
    request.set_name(c.name);
    request.set_version(c.version);
    pb::ModelReadyResponse ready;
    const grpc::Status status = stub().ModelReady(&context, request, &ready);
    EXPECT_EQ(status.error_code(), c.code) << c.name << ":" << c.version << " " << Describe(status);
    EXPECT_EQ(status.error_message().find('\n'), std::string::npos);
  }
  grpc::ClientContext context;
  pb::ModelMetadataRequest request;
  request.set_name("no-such-model");
  pb::ModelMetadataResponse metadata;
  EXPECT_EQ(stub().ModelMetadata(&context, request, &metadata).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcServerTest, ModelConfigIsTritonsMessage) {
  grpc::ClientContext context;
  pb::ModelConfigRequest request;
  request.set_name(kSmall);
  pb::ModelConfigResponse response;
  const grpc::Status status = stub().ModelConfig(&context, request, &response);
  ASSERT_TRUE(status.ok()) << Describe(status);
  const auto& config = response.config();
  EXPECT_EQ(config.name(), kSmall);
  EXPECT_EQ(config.platform(), "onnxruntime_onnx");
  EXPECT_EQ(config.backend(), "onnxruntime");
  EXPECT_EQ(config.max_batch_size(), 0);
  ASSERT_EQ(config.input_size(), 1);
  EXPECT_EQ(config.input(0).name(), "images");
  EXPECT_EQ(config.input(0).data_type(), zerodet::triton::TYPE_FP32);
  EXPECT_EQ(config.input(0).dims_size(), 4);
  ASSERT_GE(config.output_size(), 1);
  ASSERT_EQ(config.instance_group_size(), 1);
  EXPECT_EQ(config.instance_group(0).kind(), zerodet::triton::ModelInstanceGroup::KIND_CPU);
  EXPECT_EQ(config.instance_group(0).count(), 1);
  EXPECT_EQ(config.default_model_filename(), "model.onnx");

  grpc::ClientContext unknown_context;
  request.set_name("nope");
  EXPECT_EQ(stub().ModelConfig(&unknown_context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

// ---- Inference on raw tensors ----

// What the model computes on `tensor` when run directly on an instance of the same manager.
std::vector<std::string> RunDirectly(ModelManager& manager, const std::string& tensor) {
  auto handle = manager.Acquire(kSmall);
  EXPECT_TRUE(handle.ok()) << handle.status().ToString();
  if (!handle.ok()) return {};
  ConstTensorView input(tensor.data(), DType::kFloat32, {1, 3, 320, 320});
  auto outputs = (*handle)->backend().Run(std::vector<ConstTensorView>{input});
  EXPECT_TRUE(outputs.ok()) << outputs.status().ToString();
  std::vector<std::string> bytes;
  for (const TensorView& out : *outputs) {
    bytes.emplace_back(static_cast<const char*>(out.data), out.size_bytes());
  }
  return bytes;
}

TEST_F(GrpcServerTest, RawInferIsBitIdenticalToTheBackend) {
  const std::string tensor = RandomTensor(kSmallInputElements, 42);
  grpc::ClientContext context;
  pb::ModelInferResponse response;
  const grpc::Status status = stub().ModelInfer(&context, RawRequest(kSmall, tensor), &response);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(response.model_name(), kSmall);
  EXPECT_EQ(response.model_version(), "1");
  EXPECT_EQ(response.id(), "req-1");
  const std::vector<std::string> expected = RunDirectly(manager(), tensor);
  ASSERT_EQ(response.outputs_size(), static_cast<int>(expected.size()));
  ASSERT_EQ(response.raw_output_contents_size(), response.outputs_size());
  for (int i = 0; i < response.outputs_size(); ++i) {
    EXPECT_EQ(response.outputs(i).datatype(), "FP32");
    EXPECT_TRUE(response.raw_output_contents(i) == expected[static_cast<size_t>(i)])
        << "output " << response.outputs(i).name() << " differs from the backend's";
  }
  ASSERT_EQ(response.outputs(0).shape_size(), 3);  // 1 x (4 + 80) x 2100
  EXPECT_EQ(response.outputs(0).shape(1), 84);
}

TEST_F(GrpcServerTest, TypedContentsGiveTheSameOutputs) {
  const std::string tensor = RandomTensor(kSmallInputElements, 7);
  pb::ModelInferRequest request = RawRequest(kSmall, tensor);
  request.clear_raw_input_contents();
  auto* contents = request.mutable_inputs(0)->mutable_contents();
  for (size_t i = 0; i < kSmallInputElements; ++i) {
    float v = 0;
    std::memcpy(&v, tensor.data() + i * sizeof(float), sizeof(float));
    contents->add_fp32_contents(v);
  }
  grpc::ClientContext context;
  pb::ModelInferResponse response;
  const grpc::Status status = stub().ModelInfer(&context, request, &response);
  ASSERT_TRUE(status.ok()) << Describe(status);
  const std::vector<std::string> expected = RunDirectly(manager(), tensor);
  ASSERT_EQ(response.raw_output_contents_size(), static_cast<int>(expected.size()));
  EXPECT_TRUE(response.raw_output_contents(0) == expected[0]);
}

TEST_F(GrpcServerTest, RequestedOutputsAreHonoured) {
  pb::ModelInferRequest request = RawRequest(kSmall, RandomTensor(kSmallInputElements, 1));
  grpc::ClientContext meta_context;
  pb::ModelMetadataRequest meta_request;
  meta_request.set_name(kSmall);
  pb::ModelMetadataResponse metadata;
  ASSERT_TRUE(stub().ModelMetadata(&meta_context, meta_request, &metadata).ok());
  const std::string output = metadata.outputs(0).name();
  request.add_outputs()->set_name(output);
  grpc::ClientContext context;
  pb::ModelInferResponse response;
  ASSERT_TRUE(stub().ModelInfer(&context, request, &response).ok());
  ASSERT_EQ(response.outputs_size(), 1);
  EXPECT_EQ(response.outputs(0).name(), output);

  request.mutable_outputs(0)->set_name("no_such_output");
  grpc::ClientContext bad_context;
  const grpc::Status status = stub().ModelInfer(&bad_context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(status);
  EXPECT_NE(status.error_message().find("no_such_output"), std::string::npos);
}

TEST_F(GrpcServerTest, HostileInferRequestsGetCleanStatuses) {
  const std::string tensor = RandomTensor(kSmallInputElements, 3);
  struct Case {
    std::string what;
    pb::ModelInferRequest request;
    grpc::StatusCode code;
  };
  std::vector<Case> cases;
  cases.push_back({"unknown model", RawRequest("nope", tensor), grpc::StatusCode::NOT_FOUND});
  {
    pb::ModelInferRequest r = RawRequest(kSmall, tensor);
    r.set_model_version("9");
    cases.push_back({"unknown version", r, grpc::StatusCode::NOT_FOUND});
  }
  {
    pb::ModelInferRequest r = RawRequest(kSmall, tensor);
    r.set_model_version("x1");
    cases.push_back({"bad version", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  cases.push_back({"wrong shape", RawRequest(kSmall, tensor, {1, 3, 640, 160}),
                   grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"wrong rank", RawRequest(kSmall, tensor, {3, 320, 320}),
                   grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"wrong datatype", RawRequest(kSmall, tensor, {1, 3, 320, 320}, "INT32"),
                   grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"unknown datatype", RawRequest(kSmall, tensor, {1, 3, 320, 320}, "FP128"),
                   grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"truncated raw contents", RawRequest(kSmall, tensor.substr(0, 1000)),
                   grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"huge shape",
                   RawRequest(kSmall, tensor, {1, 3, int64_t{1} << 40, int64_t{1} << 40}),
                   grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"negative dimension", RawRequest(kSmall, tensor, {1, 3, -320, 320}),
                   grpc::StatusCode::INVALID_ARGUMENT});
  {
    pb::ModelInferRequest r = RawRequest(kSmall, tensor);
    r.add_raw_input_contents("extra");
    cases.push_back({"more raw contents than inputs", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = RawRequest(kSmall, tensor);
    r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1.0f);
    cases.push_back({"raw and typed contents", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = RawRequest(kSmall, tensor);
    r.clear_raw_input_contents();
    r.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1.0f);
    cases.push_back({"too few typed elements", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = RawRequest(kSmall, tensor);
    r.clear_raw_input_contents();
    r.mutable_inputs(0)->mutable_contents()->add_int64_contents(1);
    cases.push_back({"typed contents of another type", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = RawRequest(kSmall, tensor);
    r.clear_inputs();
    r.clear_raw_input_contents();
    cases.push_back({"missing input", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = RawRequest(kSmall, tensor);
    r.mutable_inputs(0)->set_name("pixels");
    cases.push_back({"unknown input", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = RawRequest(kSmall, tensor);
    *r.add_inputs() = r.inputs(0);
    r.add_raw_input_contents(tensor);
    cases.push_back({"input given twice", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = RawRequest(kSmall, tensor);
    (*r.mutable_inputs(0)->mutable_parameters())["shared_memory_region"].set_string_param("r");
    cases.push_back({"shared memory input without a size", r, grpc::StatusCode::INVALID_ARGUMENT});
    (*r.mutable_inputs(0)->mutable_parameters())["shared_memory_byte_size"].set_int64_param(-4);
    cases.push_back(
        {"shared memory input with a negative size", r, grpc::StatusCode::INVALID_ARGUMENT});
    (*r.mutable_inputs(0)->mutable_parameters())["shared_memory_byte_size"].set_int64_param(4);
    cases.push_back(
        {"shared memory input that also carries data", r, grpc::StatusCode::INVALID_ARGUMENT});
    r.clear_raw_input_contents();
    cases.push_back({"shared memory input on a server without shared memory", r,
                     grpc::StatusCode::PERMISSION_DENIED});
    (*r.mutable_inputs(0)->mutable_parameters())["zerodet_store_object"].set_string_param("x");
    cases.push_back({"store input with a bad id", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  for (Case& c : cases) {
    grpc::ClientContext context;
    pb::ModelInferResponse response;
    const grpc::Status status = stub().ModelInfer(&context, c.request, &response);
    EXPECT_EQ(status.error_code(), c.code) << c.what << ": " << Describe(status);
    EXPECT_FALSE(status.error_message().empty()) << c.what;
    EXPECT_EQ(status.error_message().find('\n'), std::string::npos) << c.what;
  }
  // The server is still serving.
  grpc::ClientContext context;
  pb::ModelInferResponse response;
  EXPECT_TRUE(stub().ModelInfer(&context, RawRequest(kSmall, tensor), &response).ok());
}

// ---- Detection on encoded images ----

TEST_F(GrpcServerTest, DetectionMatchesTheServiceOnEveryImage) {
  int images = 0;
  int with_detections = 0;
  for (const auto& file : std::filesystem::directory_iterator(SharedDir() / "images")) {
    const std::string bytes = ReadBytes(file.path());
    DetectRequest direct;
    direct.model_name = "yolov8n";
    direct.image = {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
    direct.source_name = file.path().filename().string();
    auto expected = service().Detect(direct);
    ASSERT_TRUE(expected.ok()) << expected.status().ToString();

    grpc::ClientContext context;
    pb::ModelInferResponse response;
    const grpc::Status status =
        stub().ModelInfer(&context, DetectRequestFor("yolov8n", {bytes}), &response);
    ASSERT_TRUE(status.ok()) << file.path() << ": " << Describe(status);
    ASSERT_EQ(response.outputs_size(), 1);
    EXPECT_EQ(response.outputs(0).name(), "detections");
    EXPECT_EQ(response.outputs(0).datatype(), "BYTES");
    ASSERT_EQ(response.raw_output_contents_size(), 1);
    const std::vector<std::string> elements = SplitBytes(response.raw_output_contents(0));
    ASSERT_EQ(elements.size(), 1u);
    const auto json = nlohmann::ordered_json::parse(elements[0]);
    EXPECT_EQ(json["model"], "yolov8n");
    EXPECT_EQ(json["version"], 1);
    EXPECT_EQ(json["width"], expected->width);
    EXPECT_EQ(json["height"], expected->height);
    EXPECT_EQ(json["detections"], DetectionsToJson(expected->detections, expected->class_names))
        << file.path();
    with_detections += json["detections"].empty() ? 0 : 1;
    ++images;
  }
  EXPECT_GE(images, 9);
  EXPECT_GE(with_detections, 8);  // all but the painting (scream.jpg)
}

TEST_F(GrpcServerTest, DetectionParametersBatchAndAnnotation) {
  const std::string bus = ReadBytes(SharedImage("bus.jpg"));
  const std::string dog = ReadBytes(SharedImage("dog.jpg"));
  pb::ModelInferRequest request = DetectRequestFor("yolov8n", {bus, dog});
  (*request.mutable_parameters())["conf"].set_double_param(0.5);
  (*request.mutable_parameters())["max_det"].set_int64_param(2);
  (*request.mutable_parameters())["annotate"].set_bool_param(true);
  grpc::ClientContext context;
  pb::ModelInferResponse response;
  const grpc::Status status = stub().ModelInfer(&context, request, &response);
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_EQ(response.outputs_size(), 2);
  EXPECT_EQ(response.outputs(1).name(), "annotated");
  EXPECT_EQ(response.outputs(0).shape(0), 2);
  const std::vector<std::string> json = SplitBytes(response.raw_output_contents(0));
  const std::vector<std::string> jpegs = SplitBytes(response.raw_output_contents(1));
  ASSERT_EQ(json.size(), 2u);
  ASSERT_EQ(jpegs.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const auto parsed = nlohmann::json::parse(json[i]);
    EXPECT_LE(parsed["detections"].size(), 2u);
    EXPECT_FALSE(parsed["detections"].empty());
    for (const auto& d : parsed["detections"]) EXPECT_GE(d["score"].get<double>(), 0.5);
    ASSERT_GT(jpegs[i].size(), 2u);
    EXPECT_EQ(static_cast<unsigned char>(jpegs[i][0]), 0xFF);
    EXPECT_EQ(static_cast<unsigned char>(jpegs[i][1]), 0xD8);
  }
  // The same image as bytes_contents gives the same detections.
  pb::ModelInferRequest typed = DetectRequestFor("yolov8n", {bus});
  typed.clear_raw_input_contents();
  typed.mutable_inputs(0)->mutable_contents()->add_bytes_contents(bus);
  (*typed.mutable_parameters())["conf"].set_string_param("0.5");
  (*typed.mutable_parameters())["max_det"].set_int64_param(2);
  grpc::ClientContext typed_context;
  pb::ModelInferResponse typed_response;
  ASSERT_TRUE(stub().ModelInfer(&typed_context, typed, &typed_response).ok());
  EXPECT_EQ(
      nlohmann::json::parse(SplitBytes(typed_response.raw_output_contents(0))[0])["detections"],
      nlohmann::json::parse(json[0])["detections"]);
}

TEST_F(GrpcServerTest, HostileDetectionRequestsGetCleanStatuses) {
  const std::string bus = ReadBytes(SharedImage("bus.jpg"));
  struct Case {
    std::string what;
    pb::ModelInferRequest request;
    grpc::StatusCode code;
  };
  std::vector<Case> cases;
  {
    pb::ModelInferRequest r = DetectRequestFor("yolov8n", {bus});
    r.set_raw_input_contents(0, r.raw_input_contents(0).substr(0, 2));
    cases.push_back({"no length prefix", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = DetectRequestFor("yolov8n", {bus});
    r.set_raw_input_contents(0, r.raw_input_contents(0).substr(0, 1000));
    cases.push_back({"truncated element", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = DetectRequestFor("yolov8n", {bus});
    r.set_raw_input_contents(0, r.raw_input_contents(0) + "xyz");
    cases.push_back({"trailing bytes", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = DetectRequestFor("yolov8n", {bus});
    r.mutable_inputs(0)->set_shape(0, 2);
    cases.push_back({"shape says more images", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = DetectRequestFor("yolov8n", {bus});
    r.mutable_inputs(0)->set_shape(0, 100000);
    cases.push_back({"too many images", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  cases.push_back({"not an image", DetectRequestFor("yolov8n", {"hello, world"}),
                   grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"truncated JPEG", DetectRequestFor("yolov8n", {bus.substr(0, bus.size() / 2)}),
                   grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"unknown model", DetectRequestFor("nope", {bus}), grpc::StatusCode::NOT_FOUND});
  {
    pb::ModelInferRequest r = DetectRequestFor("yolov8n", {bus});
    (*r.mutable_parameters())["conf"].set_double_param(1.5);
    cases.push_back({"conf out of range", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = DetectRequestFor("yolov8n", {bus});
    (*r.mutable_parameters())["iou"].set_string_param("lots");
    cases.push_back({"iou not a number", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = DetectRequestFor("yolov8n", {bus});
    (*r.mutable_parameters())["max_det"].set_double_param(2.5);
    cases.push_back({"max_det not an integer", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = DetectRequestFor("yolov8n", {bus});
    r.add_outputs()->set_name("output0");
    cases.push_back({"raw output requested", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    pb::ModelInferRequest r = DetectRequestFor("yolov8n", {bus});
    auto* second = r.add_inputs();
    second->set_name("images");
    second->set_datatype("FP32");
    r.add_raw_input_contents("");
    cases.push_back({"BYTES and tensor inputs", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  for (Case& c : cases) {
    grpc::ClientContext context;
    pb::ModelInferResponse response;
    const grpc::Status status = stub().ModelInfer(&context, c.request, &response);
    EXPECT_EQ(status.error_code(), c.code) << c.what << ": " << Describe(status);
    EXPECT_EQ(status.error_message().find('\n'), std::string::npos) << c.what;
  }
}

// ---- Streaming ----

TEST_F(GrpcServerTest, StreamAnswersEachRequestInOrder) {
  grpc::ClientContext context;
  auto stream = stub().ModelStreamInfer(&context);
  const std::string tensor = RandomTensor(kSmallInputElements, 11);
  pb::ModelInferRequest good = RawRequest(kSmall, tensor);
  pb::ModelInferRequest bad = RawRequest(kSmall, tensor.substr(0, 8));
  bad.set_id("bad");
  pb::ModelInferRequest detect = DetectRequestFor("yolov8n", {ReadBytes(SharedImage("dog.jpg"))});
  detect.set_id("detect");
  ASSERT_TRUE(stream->Write(good));
  ASSERT_TRUE(stream->Write(bad));
  ASSERT_TRUE(stream->Write(detect));
  ASSERT_TRUE(stream->WritesDone());
  const std::vector<std::string> expected = RunDirectly(manager(), tensor);
  std::vector<pb::ModelStreamInferResponse> answers;
  pb::ModelStreamInferResponse answer;
  while (stream->Read(&answer)) answers.push_back(answer);
  const grpc::Status status = stream->Finish();
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_TRUE(answers[0].error_message().empty()) << answers[0].error_message();
  EXPECT_EQ(answers[0].infer_response().id(), "req-1");
  EXPECT_TRUE(answers[0].infer_response().raw_output_contents(0) == expected[0]);
  EXPECT_NE(answers[1].error_message().find("bytes"), std::string::npos)
      << answers[1].error_message();
  EXPECT_EQ(answers[1].infer_response().id(), "bad");
  EXPECT_TRUE(answers[2].error_message().empty()) << answers[2].error_message();
  EXPECT_EQ(answers[2].infer_response().outputs(0).name(), "detections");
}

// ---- Statistics and the repository ----

TEST_F(GrpcServerTest, StatisticsCountRequestsAndMemory) {
  const auto read = [&](const std::string& name) {
    grpc::ClientContext context;
    pb::ModelStatisticsRequest request;
    request.set_name(name);
    pb::ModelStatisticsResponse response;
    const grpc::Status status = stub().ModelStatistics(&context, request, &response);
    EXPECT_TRUE(status.ok()) << Describe(status);
    return response;
  };
  const pb::ModelStatisticsResponse before = read(kSmall);
  const uint64_t successes =
      before.model_stats_size() > 0 ? before.model_stats(0).inference_stats().success().count() : 0;
  grpc::ClientContext context;
  pb::ModelInferResponse response;
  ASSERT_TRUE(
      stub()
          .ModelInfer(&context, RawRequest(kSmall, RandomTensor(kSmallInputElements, 2)), &response)
          .ok());
  grpc::ClientContext bad_context;
  pb::ModelInferRequest bad = RawRequest(kSmall, "tiny");
  bad.set_model_version("1");
  (void)stub().ModelInfer(&bad_context, bad, &response);

  const pb::ModelStatisticsResponse after = read(kSmall);
  ASSERT_EQ(after.model_stats_size(), 1);
  const pb::ModelStatistics& s = after.model_stats(0);
  EXPECT_EQ(s.name(), kSmall);
  EXPECT_EQ(s.version(), "1");
  EXPECT_EQ(s.inference_stats().success().count(), successes + 1);
  EXPECT_GE(s.inference_stats().fail().count(), 1u);
  EXPECT_GT(s.inference_stats().success().ns(), 0u);
  EXPECT_GT(s.inference_stats().compute_infer().count(), 0u);
  EXPECT_GE(s.inference_count(), s.execution_count());
  EXPECT_GT(s.last_inference(), 0u);
  ASSERT_GE(s.memory_usage_size(), 1);
  EXPECT_EQ(s.memory_usage(0).type(), "CPU");
  EXPECT_GT(s.memory_usage(0).byte_size(), 0u);

  const pb::ModelStatisticsResponse all = read("");
  EXPECT_GE(all.model_stats_size(), 1);

  grpc::ClientContext unknown_context;
  pb::ModelStatisticsRequest unknown;
  unknown.set_name("nope");
  pb::ModelStatisticsResponse unused;
  EXPECT_EQ(stub().ModelStatistics(&unknown_context, unknown, &unused).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcServerTest, RepositoryIndexLoadAndUnloadWithTheToken) {
  const auto index = [&](bool ready_only) {
    grpc::ClientContext context;
    pb::RepositoryIndexRequest request;
    request.set_ready(ready_only);
    pb::RepositoryIndexResponse response;
    EXPECT_TRUE(stub().RepositoryIndex(&context, request, &response).ok());
    return response;
  };
  const auto state_of = [&](const std::string& name) {
    const pb::RepositoryIndexResponse response = index(false);
    for (const auto& m : response.models()) {
      if (m.name() == name) return m.state();
    }
    return std::string("absent");
  };
  const auto load = [&](const std::string& model, const std::string& authorization, bool unload) {
    grpc::ClientContext context;
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    if (unload) {
      pb::RepositoryModelUnloadRequest request;
      request.set_model_name(model);
      pb::RepositoryModelUnloadResponse response;
      return stub().RepositoryModelUnload(&context, request, &response);
    }
    pb::RepositoryModelLoadRequest request;
    request.set_model_name(model);
    pb::RepositoryModelLoadResponse response;
    return stub().RepositoryModelLoad(&context, request, &response);
  };
  EXPECT_EQ(index(false).models_size(), 2);

  EXPECT_EQ(load(kSmall, "", false).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(load(kSmall, "Bearer wrong", false).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(load(kSmall, kToken, false).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(load(kSmall, "", true).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  const std::string bearer = std::string("Bearer ") + kToken;
  EXPECT_EQ(load("nope", bearer, false).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(load("", bearer, false).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  ASSERT_TRUE(load(kSmall, bearer, false).ok());
  EXPECT_EQ(state_of(kSmall), "READY");
  bool listed = false;
  const pb::RepositoryIndexResponse ready_index = index(true);
  for (const auto& m : ready_index.models()) {
    EXPECT_EQ(m.state(), "READY");
    listed |= m.name() == kSmall && m.version() == "1";
  }
  EXPECT_TRUE(listed);

  ASSERT_TRUE(load(kSmall, bearer, true).ok());
  EXPECT_NE(state_of(kSmall), "READY");
  grpc::ClientContext ready_context;
  pb::ModelReadyRequest ready_request;
  ready_request.set_name(kSmall);
  pb::ModelReadyResponse ready;
  ASSERT_TRUE(stub().ModelReady(&ready_context, ready_request, &ready).ok());
  EXPECT_FALSE(ready.ready());
  // On demand: the next infer loads it again.
  grpc::ClientContext infer_context;
  pb::ModelInferResponse response;
  EXPECT_TRUE(stub()
                  .ModelInfer(&infer_context,
                              RawRequest(kSmall, RandomTensor(kSmallInputElements, 9)), &response)
                  .ok());
  EXPECT_EQ(state_of(kSmall), "READY");
}

TEST_F(GrpcServerTest, SystemSharedMemoryIsOffByDefaultAndCudaUnimplemented) {
  grpc::ClientContext c1, c2;
  pb::SystemSharedMemoryStatusResponse status_response;
  const grpc::Status status = stub().SystemSharedMemoryStatus(&c1, {}, &status_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(status.error_message().find("--allow-client-shm"), std::string::npos);
  c2.AddMetadata("authorization", std::string("Bearer ") + kToken);
  pb::CudaSharedMemoryRegisterResponse register_response;
  EXPECT_EQ(stub().CudaSharedMemoryRegister(&c2, {}, &register_response).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

// A POSIX shared-memory object made for a test, unlinked at the end.
class ShmObject {
 public:
  ShmObject(const std::string& name, size_t size) : name_(name), size_(size) {
    const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    EXPECT_GE(fd, 0) << name;
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    void* mapped = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    EXPECT_NE(mapped, MAP_FAILED);
    data_ = static_cast<char*>(mapped);
  }
  ~ShmObject() {
    ::munmap(data_, size_);
    ::shm_unlink(name_.c_str());
  }
  char* data() { return data_; }

 private:
  std::string name_;
  size_t size_;
  char* data_ = nullptr;
};

TEST(GrpcServerSharedMemoryTest, InputsAndOutputsThroughRegisteredRegions) {
  Served served({}, /*big_model=*/false, nullptr, /*allow_client_shm=*/true);
  const std::string tensor = RandomTensor(kSmallInputElements, 11);
  // The output as raw contents, for comparison.
  grpc::ClientContext raw_context;
  pb::ModelInferResponse raw;
  ASSERT_TRUE(served.stub->ModelInfer(&raw_context, RawRequest(kSmall, tensor), &raw).ok());
  ASSERT_EQ(raw.raw_output_contents_size(), 1);
  const std::string& expected = raw.raw_output_contents(0);

  const std::string key = "/zerodet-grpc-shm-" + std::to_string(::getpid());
  ShmObject object(key, tensor.size() + expected.size() + 100);
  std::memcpy(object.data(), tensor.data(), tensor.size());
  const auto register_region = [&](const std::string& name, uint64_t offset, uint64_t size) {
    grpc::ClientContext context;
    pb::SystemSharedMemoryRegisterRequest request;
    request.set_name(name);
    request.set_key(key);
    request.set_offset(offset);
    request.set_byte_size(size);
    pb::SystemSharedMemoryRegisterResponse response;
    return served.stub->SystemSharedMemoryRegister(&context, request, &response);
  };
  ASSERT_TRUE(register_region("in", 0, tensor.size()).ok());
  ASSERT_TRUE(register_region("out", tensor.size() + 100, expected.size()).ok());
  EXPECT_EQ(register_region("in", 0, 8).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(register_region("big", 0, uint64_t{1} << 40).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  pb::ModelInferRequest request;
  request.set_model_name(kSmall);
  auto* input = request.add_inputs();
  input->set_name("images");
  input->set_datatype("FP32");
  for (int64_t d : {1, 3, 320, 320}) input->add_shape(d);
  (*input->mutable_parameters())["shared_memory_region"].set_string_param("in");
  (*input->mutable_parameters())["shared_memory_byte_size"].set_int64_param(
      static_cast<int64_t>(tensor.size()));
  auto* output = request.add_outputs();
  output->set_name("output0");
  (*output->mutable_parameters())["shared_memory_region"].set_string_param("out");
  (*output->mutable_parameters())["shared_memory_byte_size"].set_int64_param(
      static_cast<int64_t>(expected.size()));
  grpc::ClientContext context;
  pb::ModelInferResponse response;
  const grpc::Status status = served.stub->ModelInfer(&context, request, &response);
  ASSERT_TRUE(status.ok()) << Describe(status);
  ASSERT_EQ(response.outputs_size(), 1);
  EXPECT_EQ(response.outputs(0).parameters().at("shared_memory_region").string_param(), "out");
  EXPECT_EQ(response.outputs(0).parameters().at("shared_memory_byte_size").int64_param(),
            static_cast<int64_t>(expected.size()));
  EXPECT_TRUE(response.raw_output_contents(0).empty());
  EXPECT_EQ(std::memcmp(object.data() + tensor.size() + 100, expected.data(), expected.size()), 0)
      << "the output in shared memory differs from the raw output";

  grpc::ClientContext status_context;
  pb::SystemSharedMemoryStatusResponse regions;
  ASSERT_TRUE(served.stub->SystemSharedMemoryStatus(&status_context, {}, &regions).ok());
  ASSERT_EQ(regions.regions_size(), 2);
  EXPECT_EQ(regions.regions().at("out").offset(), tensor.size() + 100);
  EXPECT_EQ(regions.regions().at("in").key(), key);

  // An output range too small, then an unregistered region.
  (*output->mutable_parameters())["shared_memory_byte_size"].set_int64_param(16);
  grpc::ClientContext small_context;
  EXPECT_EQ(served.stub->ModelInfer(&small_context, request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext unregister_context;
  pb::SystemSharedMemoryUnregisterRequest unregister;
  unregister.set_name("in");
  pb::SystemSharedMemoryUnregisterResponse unregistered;
  ASSERT_TRUE(
      served.stub->SystemSharedMemoryUnregister(&unregister_context, unregister, &unregistered)
          .ok());
  grpc::ClientContext gone_context;
  EXPECT_EQ(served.stub->ModelInfer(&gone_context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext all_context;
  ASSERT_TRUE(served.stub->SystemSharedMemoryUnregister(&all_context, {}, &unregistered).ok());
  grpc::ClientContext empty_context;
  ASSERT_TRUE(served.stub->SystemSharedMemoryStatus(&empty_context, {}, &regions).ok());
  EXPECT_EQ(regions.regions_size(), 0);
}

// ---- Server options, limits, TLS, shutdown ----

TEST(GrpcServerStartTest, RefusesBadOptionsAndAPortInUse) {
  Served served({}, /*big_model=*/false);
  for (auto change : std::vector<std::function<void(GrpcServerOptions&)>>{
           [](GrpcServerOptions& o) { o.threads = 0; },
           [](GrpcServerOptions& o) { o.max_message_bytes = 10; },
           [](GrpcServerOptions& o) { o.max_message_bytes = uint64_t{4} << 30; },
           [](GrpcServerOptions& o) { o.tls_cert = "/nonexistent.pem"; }}) {
    GrpcServerOptions options;
    options.address = "127.0.0.1:0";
    change(options);
    auto server = GrpcServer::Start(*served.service, options);
    EXPECT_EQ(server.status().code(), StatusCode::kInvalidArgument) << server.status().ToString();
  }
  GrpcServerOptions options;
  options.address = "127.0.0.1:" + std::to_string(served.server->port());
  auto second = GrpcServer::Start(*served.service, options);
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status().ToString();
}

TEST(GrpcServerLimitTest, MessagesOverTheLimitAreRefused) {
  GrpcServerOptions options;
  options.max_message_bytes = 256 << 10;
  Served served(options, /*big_model=*/false);
  grpc::ClientContext context;
  pb::ModelInferResponse response;
  const grpc::Status status = served.stub->ModelInfer(
      &context, RawRequest(kSmall, RandomTensor(kSmallInputElements, 4)), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << Describe(status);
  // Small requests still work.
  grpc::ClientContext live_context;
  pb::ServerLiveResponse live;
  EXPECT_TRUE(served.stub->ServerLive(&live_context, {}, &live).ok());
}

TEST(GrpcServerTlsTest, ServesOverTls) {
  TempDir dir("grpc_tls");
  const std::string cert = dir.File("cert.pem");
  const std::string key = dir.File("key.pem");
  const auto made = ::zerodet::testing::RunProcess(
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
       cert, "-days", "1", "-subj", "/CN=localhost", "-addext",
       "subjectAltName=DNS:localhost,IP:127.0.0.1"});
  if (made.exit_code != 0) GTEST_SKIP() << "openssl could not make a certificate: " << made.err;
  GrpcServerOptions options;
  options.tls_cert = cert;
  options.tls_key = key;
  Served served(options, /*big_model=*/false);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadBytes(cert);
  // The numeric address keeps name resolution (c-ares, whose resolver state outlives the test
  // and reads as a leak under LeakSanitizer) out of the test; the certificate is still checked
  // against the name "localhost".
  grpc::ChannelArguments arguments;
  arguments.SetSslTargetNameOverride("localhost");
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(served.server->port()),
                                           grpc::SslCredentials(ssl), arguments);
  auto stub = pb::GRPCInferenceService::NewStub(channel);
  grpc::ClientContext context;
  pb::ServerMetadataResponse metadata;
  const grpc::Status status = stub->ServerMetadata(&context, {}, &metadata);
  ASSERT_TRUE(status.ok()) << Describe(status);
  EXPECT_EQ(metadata.name(), "zerodet");
  // A plaintext client cannot talk to it.
  grpc::ClientContext plain_context;
  plain_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  pb::ServerLiveResponse live;
  EXPECT_FALSE(served.stub->ServerLive(&plain_context, {}, &live).ok());
}

// Loads as ONNX Runtime does, after `delay`.
class SlowLoader final : public ModelLoader {
 public:
  explicit SlowLoader(std::chrono::milliseconds delay)
      : inner_(CreateOnnxModelLoader({})), delay_(delay) {}
  Result<LoadedModel> Load(const LoadRequest& request) override {
    std::this_thread::sleep_for(delay_);
    return inner_->Load(request);
  }

 private:
  std::shared_ptr<ModelLoader> inner_;
  std::chrono::milliseconds delay_;
};

TEST(GrpcServerDeadlineTest, TheClientsDeadlineBoundsTheWaitForALoad) {
  // A load takes 3 s; a request with a 300 ms deadline must not wait for it: the server's own
  // wait ends at the client's deadline (the handler returns, the failure is counted).
  Served served({}, /*big_model=*/false, std::make_shared<SlowLoader>(std::chrono::seconds(3)));
  const auto start = std::chrono::steady_clock::now();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  pb::ModelInferResponse response;
  const grpc::Status status = served.stub->ModelInfer(
      &context, RawRequest(kSmall, RandomTensor(kSmallInputElements, 5)), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << Describe(status);
  const auto failures = [&] {
    grpc::ClientContext stats_context;
    pb::ModelStatisticsRequest request;
    request.set_name(kSmall);
    pb::ModelStatisticsResponse stats;
    EXPECT_TRUE(served.stub->ModelStatistics(&stats_context, request, &stats).ok());
    uint64_t fail = 0;
    for (const auto& s : stats.model_stats()) fail += s.inference_stats().fail().count();
    return fail;
  };
  ASSERT_TRUE(WaitFor([&] { return failures() == 1 && served.server->in_flight() == 0; }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500))
      << "the handler waited for the load instead of the deadline";
}

TEST(GrpcServerConcurrencyTest, ConcurrentClientsAreAllServed) {
  Served served({}, /*big_model=*/false);
  const std::string tensor = RandomTensor(kSmallInputElements, 21);
  const std::vector<std::string> expected = RunDirectly(*served.manager, tensor);
  constexpr int kClients = 6;
  constexpr int kRequests = 5;
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      // Half on one shared channel, half on channels of their own.
      auto channel = c % 2 == 0
                         ? served.channel
                         : grpc::CreateChannel("127.0.0.1:" + std::to_string(served.server->port()),
                                               grpc::InsecureChannelCredentials());
      auto stub = pb::GRPCInferenceService::NewStub(channel);
      for (int r = 0; r < kRequests; ++r) {
        grpc::ClientContext context;
        pb::ModelInferResponse response;
        const grpc::Status status =
            stub->ModelInfer(&context, RawRequest(kSmall, tensor), &response);
        if (status.ok() && response.raw_output_contents_size() > 0 &&
            response.raw_output_contents(0) == expected[0]) {
          ok.fetch_add(1);
        } else {
          ADD_FAILURE() << Describe(status);
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(ok.load(), kClients * kRequests);
}

// Round-trip times on loopback, printed for the record (not asserted: shared CI machines).
TEST(GrpcServerTimingTest, ReportsRoundTripTimes) {
  Served served({}, /*big_model=*/false);
  const std::string tensor = RandomTensor(kSmallInputElements, 22);
  const auto median_us = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const auto time_us = [](const std::function<void()>& f) {
    const auto start = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
        .count();
  };
  std::vector<double> live, infer, direct;
  (void)RunDirectly(*served.manager, tensor);  // loaded and warm
  for (int i = 0; i < 30; ++i) {
    live.push_back(time_us([&] {
      grpc::ClientContext context;
      pb::ServerLiveResponse response;
      EXPECT_TRUE(served.stub->ServerLive(&context, {}, &response).ok());
    }));
    infer.push_back(time_us([&] {
      grpc::ClientContext context;
      pb::ModelInferResponse response;
      EXPECT_TRUE(served.stub->ModelInfer(&context, RawRequest(kSmall, tensor), &response).ok());
    }));
    direct.push_back(time_us([&] { (void)RunDirectly(*served.manager, tensor); }));
  }
  std::printf(
      "grpc round trip p50 (us): ServerLive %.0f, ModelInfer %s 1x3x320x320 FP32 %.0f, "
      "same Run in process %.0f, overhead %.0f\n",
      median_us(live), kSmall, median_us(infer), median_us(direct),
      median_us(infer) - median_us(direct));
}

TEST(GrpcServerShutdownTest, ARequestInFlightFinishesAndNewOnesAreRefused) {
  Served served({}, /*big_model=*/true);
  // yolov8n is not loaded: the first infer loads it (session + warm-up), long enough to call
  // Shutdown while it is in flight.
  const std::string tensor = RandomTensor(size_t{3} * 640 * 640, 8);
  grpc::Status in_flight_status;
  pb::ModelInferResponse in_flight_response;
  std::thread client([&] {
    grpc::ClientContext context;
    in_flight_status = served.stub->ModelInfer(
        &context, RawRequest("yolov8n", tensor, {1, 3, 640, 640}), &in_flight_response);
  });
  ASSERT_TRUE(WaitFor([&] { return served.server->in_flight() == 1; }));
  served.server->Shutdown(std::chrono::seconds(60));
  client.join();
  EXPECT_TRUE(in_flight_status.ok()) << Describe(in_flight_status);
  EXPECT_EQ(in_flight_response.model_name(), "yolov8n");
  EXPECT_EQ(in_flight_response.raw_output_contents_size(), 1);
  EXPECT_EQ(served.server->in_flight(), 0);

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  pb::ServerLiveResponse live;
  const grpc::Status after = served.stub->ServerLive(&context, {}, &live);
  EXPECT_EQ(after.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(after);
}

}  // namespace
}  // namespace zerodet::server

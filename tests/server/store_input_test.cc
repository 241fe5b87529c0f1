// Store inputs: an infer request names an object of a real zerodet store (a StoreServer on a
// thread, its socket in a temporary directory) instead of carrying the tensor; the server binds
// the object's bytes as the model input (../shared/models) and answers exactly what the binary
// tensor path answers for the same bytes, also for every sample of ../shared/images preloaded
// as a dataset. Unknown and malformed ids, objects of the wrong size,
// data and an object at once, and a server without a store are clean errors.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "http_client.h"
#include "models_test_util.h"
#include "test_support.h"
#include "zerodet/dataset/dataset.h"
#include "zerodet/server/http_server.h"
#include "zerodet/server/inference_service.h"
#include "zerodet/store/client.h"
#include "zerodet/store/server.h"

namespace zerodet::server {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using zerodet::server::testing::Reply;
using zerodet::server::testing::Send;
using zerodet::testing::AddVersion;
using zerodet::testing::SharedModel;
using zerodet::testing::TempDir;

constexpr size_t kInputBytes = size_t{3} * 320 * 320 * sizeof(float);

class StoreInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::StoreOptions store_options;
    store_options.socket_path = (dir_.path() / "store.sock").string();
    store_options.capacity = 256 << 20;
    auto created = store::StoreServer::Create(store_options);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    store_server_ = std::move(created).value();
    store_server_->Start();
    auto writer = store::StoreClient::Connect(store_options.socket_path);
    ASSERT_TRUE(writer.ok()) << writer.status().ToString();
    writer_ = std::move(writer).value();
    store::ConnectOptions read_only;
    read_only.access = store::StoreAccess::kReadOnly;
    auto reader = store::StoreClient::Connect(store_options.socket_path, read_only);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    reader_ = std::move(reader).value();

    AddVersion(dir_.path() / "repo", "a", 1, SharedModel("yolo11n-320.onnx"));
    ManagerOptions manager_options;
    manager_options.repository = dir_.path() / "repo";
    manager_options.watch = false;
    auto manager = ModelManager::Create(manager_options);
    ASSERT_TRUE(manager.ok()) << manager.status().ToString();
    manager_ = std::move(manager).value();
  }

  void TearDown() override {
    http_server_.reset();
    service_.reset();
    reader_.reset();
    writer_.reset();
    if (store_server_) store_server_->Stop();
  }

  uint16_t StartHttp(store::StoreClient* store) {
    InferenceService::Options options;
    options.store = store;
    service_ = std::make_unique<InferenceService>(*manager_, options);
    HttpServerOptions http_options;
    http_options.port = 0;
    auto server = HttpServer::Start(*service_, http_options);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    http_server_ = std::move(server).value();
    return http_server_->port();
  }

  // An object holding `bytes`, sealed.
  store::ObjectId Put(const std::string& name, const std::vector<uint8_t>& bytes) {
    const store::ObjectId id = store::ObjectId::FromName(name);
    auto buffer = writer_->Create(id, bytes.size());
    EXPECT_TRUE(buffer.ok()) << buffer.status().ToString();
    std::memcpy(buffer->data().data(), bytes.data(), bytes.size());
    EXPECT_TRUE(writer_->Seal(std::move(*buffer)).ok());
    return id;
  }

  TempDir dir_{"server-store"};
  std::unique_ptr<store::StoreServer> store_server_;
  std::unique_ptr<store::StoreClient> writer_;
  std::unique_ptr<store::StoreClient> reader_;
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<HttpServer> http_server_;
};

nlohmann::json StoreRequest(const std::string& id_hex) {
  return {{"inputs",
           {{{"name", "images"},
             {"datatype", "FP32"},
             {"shape", {1, 3, 320, 320}},
             {"parameters", {{"zerodet_store_object", id_hex}}}}}},
          {"parameters", {{"binary_data_output", true}}}};
}

// The output bytes of a binary-data answer.
std::string BinaryOutput(const Reply& reply) {
  const auto it = reply.raw.find("Inference-Header-Content-Length");
  if (it == reply.raw.end()) return {};
  return reply.body.substr(std::stoul(std::string(it->value())));
}

TEST_F(StoreInputTest, AStoreObjectIsTheInputAndAnswersAsTheSameBytesSentInline) {
  const uint16_t port = StartHttp(reader_.get());
  std::vector<uint8_t> tensor(kInputBytes);
  std::mt19937 random(5);
  std::uniform_real_distribution<float> value(0, 1);
  for (size_t i = 0; i < tensor.size() / sizeof(float); ++i) {
    const float v = value(random);
    std::memcpy(tensor.data() + i * sizeof(float), &v, sizeof(float));
  }
  const store::ObjectId id = Put("sample-0", tensor);

  const Reply from_store =
      Send(port, http::verb::post, "/v2/models/a/infer", StoreRequest(id.ToHex()).dump());
  ASSERT_EQ(from_store.status, 200) << from_store.body;

  nlohmann::json header = {{"inputs",
                            {{{"name", "images"},
                              {"datatype", "FP32"},
                              {"shape", {1, 3, 320, 320}},
                              {"parameters", {{"binary_data_size", kInputBytes}}}}}},
                           {"parameters", {{"binary_data_output", true}}}};
  std::string body = header.dump();
  const size_t header_length = body.size();
  body.append(reinterpret_cast<const char*>(tensor.data()), tensor.size());
  const Reply inline_reply =
      Send(port, http::verb::post, "/v2/models/a/infer", body,
           {{"Inference-Header-Content-Length", std::to_string(header_length)}});
  ASSERT_EQ(inline_reply.status, 200) << inline_reply.body;
  const std::string expected = BinaryOutput(inline_reply);
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(BinaryOutput(from_store), expected);

  // The request's view was released: the object can be deleted and is then gone for requests.
  ASSERT_TRUE(writer_->Delete(id).ok());
  const Reply deleted =
      Send(port, http::verb::post, "/v2/models/a/infer", StoreRequest(id.ToHex()).dump());
  EXPECT_EQ(deleted.status, 404) << deleted.body;
}

TEST_F(StoreInputTest, APreloadedDatasetIsServedByIdsAlone) {
  const uint16_t port = StartHttp(reader_.get());
  dataset::PreloadOptions preload;
  preload.dataset = "images";
  preload.layout = dataset::SampleLayout::kLetterbox;
  preload.letterbox_size = 320;
  preload.jobs = 1;
  auto report =
      dataset::PreloadDataset(*writer_, zerodet::testing::SharedDir() / "images", preload);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  store::ConnectOptions read_only;
  read_only.access = store::StoreAccess::kReadOnly;
  auto client = store::StoreClient::Connect(store_server_->options().socket_path, read_only);
  ASSERT_TRUE(client.ok());
  auto dataset = dataset::DatasetReader::Open(std::move(client).value(), "images");
  ASSERT_TRUE(dataset.ok()) << dataset.status().ToString();
  ASSERT_GT((*dataset)->size(), 0u);
  for (size_t i = 0; i < (*dataset)->size(); ++i) {
    const Reply from_store = Send(port, http::verb::post, "/v2/models/a/infer",
                                  StoreRequest((*dataset)->info(i).id.ToHex()).dump());
    ASSERT_EQ(from_store.status, 200) << from_store.body;
    auto sample = (*dataset)->Get(i);
    ASSERT_TRUE(sample.ok());
    const std::span<const uint8_t> bytes = sample->bytes();
    nlohmann::json header = {{"inputs",
                              {{{"name", "images"},
                                {"datatype", "FP32"},
                                {"shape", {1, 3, 320, 320}},
                                {"parameters", {{"binary_data_size", bytes.size()}}}}}},
                             {"parameters", {{"binary_data_output", true}}}};
    std::string body = header.dump();
    const size_t header_length = body.size();
    body.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    const Reply inline_reply =
        Send(port, http::verb::post, "/v2/models/a/infer", body,
             {{"Inference-Header-Content-Length", std::to_string(header_length)}});
    ASSERT_EQ(inline_reply.status, 200) << inline_reply.body;
    EXPECT_EQ(BinaryOutput(from_store), BinaryOutput(inline_reply)) << (*dataset)->info(i).name;
  }
}

TEST_F(StoreInputTest, BadReferencesAreCleanErrors) {
  const uint16_t port = StartHttp(reader_.get());
  const store::ObjectId small = Put("small", std::vector<uint8_t>(100, 1));
  const auto status_of = [&](const nlohmann::json& request) {
    return Send(port, http::verb::post, "/v2/models/a/infer", request.dump());
  };
  const Reply missing = status_of(StoreRequest(store::ObjectId::FromName("nope").ToHex()));
  EXPECT_EQ(missing.status, 404) << missing.body;
  EXPECT_EQ(status_of(StoreRequest("xyz")).status, 400);
  EXPECT_EQ(status_of(StoreRequest(std::string(40, 'g'))).status, 400);
  const Reply wrong_size = status_of(StoreRequest(small.ToHex()));
  EXPECT_EQ(wrong_size.status, 400);
  EXPECT_NE(wrong_size.body.find("100 bytes"), std::string::npos) << wrong_size.body;
  nlohmann::json both = StoreRequest(small.ToHex());
  both["inputs"][0]["data"] = {1, 2, 3};
  EXPECT_EQ(status_of(both).status, 400);
  both = StoreRequest(small.ToHex());
  both["inputs"][0]["parameters"]["zerodet_store_object"] = 12;
  EXPECT_EQ(status_of(both).status, 400);
}

TEST_F(StoreInputTest, AServerWithoutAStoreRefusesStoreInputs) {
  const uint16_t port = StartHttp(nullptr);
  const Reply refused = Send(port, http::verb::post, "/v2/models/a/infer",
                             StoreRequest(store::ObjectId::FromName("x").ToHex()).dump());
  EXPECT_EQ(refused.status, 400);
  EXPECT_NE(refused.body.find("--store"), std::string::npos) << refused.body;
}

}  // namespace
}  // namespace zerodet::server

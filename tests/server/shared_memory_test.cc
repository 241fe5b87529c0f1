// The system shared-memory extension: the registry on real POSIX shared-memory objects (hostile
// keys and names, ranges outside the object, an object shrunk after registration, a region
// unregistered while a request holds it), and over HTTP on a real model (../shared/models):
// register, status, infer with the input and the output in shared memory equal to the binary
// tensor path, unregister, the token, and the extension off by default.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "http_client.h"
#include "models_test_util.h"
#include "test_support.h"
#include "zerodet/server/http_server.h"
#include "zerodet/server/inference_service.h"
#include "zerodet/server/shared_memory_registry.h"

namespace zerodet::server {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using zerodet::server::testing::Reply;
using zerodet::server::testing::Send;
using zerodet::testing::AddVersion;
using zerodet::testing::SharedModel;
using zerodet::testing::TempDir;

// A POSIX shared-memory object made for a test, unlinked at the end.
class ShmObject {
 public:
  ShmObject(std::string suffix, size_t size)
      : name_("/zerodet-shm-test-" + std::to_string(::getpid()) + "-" + std::move(suffix)),
        size_(size) {
    const int fd = ::shm_open(name_.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    EXPECT_GE(fd, 0) << name_ << ": " << std::strerror(errno);
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    void* mapped = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    EXPECT_NE(mapped, MAP_FAILED);
    data_ = static_cast<uint8_t*>(mapped);
  }
  ~ShmObject() {
    ::munmap(data_, size_);
    ::shm_unlink(name_.c_str());
  }
  const std::string& name() const { return name_; }
  uint8_t* data() { return data_; }
  void Truncate(size_t size) {
    const int fd = ::shm_open(name_.c_str(), O_RDWR, 0);
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    ::close(fd);
  }

 private:
  std::string name_;
  size_t size_;
  uint8_t* data_ = nullptr;
};

TEST(SharedMemoryRegistryTest, RefusesHostileKeysNamesAndRanges) {
  ShmObject object("hostile", 4096);
  SharedMemoryRegistry registry;
  for (const std::string& key :
       std::vector<std::string>{"", "/", "..", "/..", "/dev/shm/x", "a/b", "../../etc/passwd",
                                "/x\n", std::string(300, 'a')}) {
    EXPECT_EQ(registry.Register("r", key, 0, 16).code(), StatusCode::kInvalidArgument) << key;
  }
  EXPECT_EQ(registry.Register("r", "/zerodet-no-such-object-xyz", 0, 16).code(),
            StatusCode::kNotFound);
  for (const std::string& name :
       {std::string(), std::string(200, 'n'), std::string("a b"), std::string("x\n")}) {
    EXPECT_EQ(registry.Register(name, object.name(), 0, 16).code(), StatusCode::kInvalidArgument)
        << name;
  }
  // Ranges outside the object's real size, overflowing ones, and an empty one.
  EXPECT_EQ(registry.Register("r", object.name(), 0, 4097).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.Register("r", object.name(), 4000, 100).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.Register("r", object.name(), UINT64_MAX, 2).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.Register("r", object.name(), 0, 0).code(), StatusCode::kInvalidArgument);
  // The key may be given with or without the leading '/'.
  ASSERT_TRUE(registry.Register("r", object.name().substr(1), 100, 1000).ok());
  EXPECT_EQ(registry.Register("r", object.name(), 0, 16).code(), StatusCode::kAlreadyExists);
  auto regions = registry.Regions(std::nullopt);
  ASSERT_TRUE(regions.ok());
  ASSERT_EQ(regions->size(), 1u);
  EXPECT_EQ((*regions)[0].offset, 100u);
  EXPECT_EQ((*regions)[0].byte_size, 1000u);
  EXPECT_EQ(registry.Regions("nope").status().code(), StatusCode::kNotFound);

  // Leases within the region only; the offset is the region's.
  object.data()[100] = 42;
  auto lease = registry.Lease("r", 0, 1000);
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->bytes()[0], 42);
  EXPECT_EQ(registry.Lease("r", 1, 1000).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.Lease("r", UINT64_MAX, 2).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.Lease("nope", 0, 1).status().code(), StatusCode::kNotFound);
}

TEST(SharedMemoryRegistryTest, AShrunkObjectIsRefusedAndAnUnregisteredRegionOutlivesItsLease) {
  ShmObject object("lifetime", 3 * 4096);
  SharedMemoryRegistry registry;
  ASSERT_TRUE(registry.Register("r", object.name(), 4096, 4096).ok());
  auto lease = registry.Lease("r", 0, 4096);
  ASSERT_TRUE(lease.ok());
  // Unregistered while a request holds it: the name is gone, the mapping is not.
  ASSERT_TRUE(registry.Unregister("r").ok());
  EXPECT_EQ(registry.Unregister("r").code(), StatusCode::kNotFound);
  EXPECT_EQ(registry.Lease("r", 0, 1).status().code(), StatusCode::kNotFound);
  std::memset(lease->bytes().data(), 7, lease->bytes().size());  // would fault if unmapped
  EXPECT_EQ(object.data()[4096 + 4095], 7);
  *lease = SharedMemoryLease();  // the last reference: unmapped now

  // A client that shrinks its object below the region: the next request is refused.
  ASSERT_TRUE(registry.Register("r", object.name(), 4096, 4096).ok());
  object.Truncate(4096);
  EXPECT_EQ(registry.Lease("r", 0, 16).status().code(), StatusCode::kInvalidArgument);
  registry.UnregisterAll();
  EXPECT_TRUE(registry.Regions(std::nullopt)->empty());
}

constexpr size_t kInputElements = size_t{3} * 320 * 320;

class SharedMemoryHttpTest : public ::testing::Test {
 protected:
  void Start(bool allow_client_shm, std::string token = {}) {
    AddVersion(repo_.path(), "a", 1, SharedModel("yolo11n-320.onnx"));
    ManagerOptions manager_options;
    manager_options.repository = repo_.path();
    manager_options.watch = false;
    auto manager = ModelManager::Create(manager_options);
    ASSERT_TRUE(manager.ok()) << manager.status().ToString();
    manager_ = std::move(manager).value();
    InferenceService::Options options;
    options.allow_client_shm = allow_client_shm;
    service_ = std::make_unique<InferenceService>(*manager_, options);
    HttpServerOptions http;
    http.port = 0;
    http.token = std::move(token);
    auto server = HttpServer::Start(*service_, http);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  Reply Post(const std::string& target, const nlohmann::json& body,
             const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    return Send(server_->port(), http::verb::post, target, body.is_null() ? "" : body.dump(),
                headers);
  }

  TempDir repo_{"server-shm"};
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(SharedMemoryHttpTest, InferWithInputAndOutputInSharedMemoryEqualsBinaryInfer) {
  Start(/*allow_client_shm=*/true, "secret");
  const std::vector<std::pair<std::string, std::string>> auth = {
      {"Authorization", "Bearer secret"}};
  std::vector<float> input(kInputElements);
  std::mt19937 random(3);
  std::uniform_real_distribution<float> value(0, 1);
  for (float& v : input) v = value(random);
  const size_t input_bytes = input.size() * sizeof(float);

  // The reference: the same tensor as binary data.
  const nlohmann::json header = {{"inputs",
                                  {{{"name", "images"},
                                    {"datatype", "FP32"},
                                    {"shape", {1, 3, 320, 320}},
                                    {"parameters", {{"binary_data_size", input_bytes}}}}}},
                                 {"parameters", {{"binary_data_output", true}}}};
  std::string body = header.dump();
  const size_t header_length = body.size();
  body.append(reinterpret_cast<const char*>(input.data()), input_bytes);
  const Reply binary = Send(server_->port(), http::verb::post, "/v2/models/a/infer", body,
                            {{"Inference-Header-Content-Length", std::to_string(header_length)}});
  ASSERT_EQ(binary.status, 200) << binary.body;
  const size_t json_length = std::stoul(std::string(binary.raw["Inference-Header-Content-Length"]));
  const std::string expected = binary.body.substr(json_length);
  ASSERT_GT(expected.size(), 0u);

  ShmObject object("http", input_bytes + expected.size());
  std::memcpy(object.data(), input.data(), input_bytes);
  const nlohmann::json in = {{"key", object.name()}, {"offset", 0}, {"byte_size", input_bytes}};
  EXPECT_EQ(Post("/v2/systemsharedmemory/region/in/register", in).status, 401);
  ASSERT_EQ(Post("/v2/systemsharedmemory/region/in/register", in, auth).status, 200);
  const nlohmann::json out = {
      {"key", object.name()}, {"offset", input_bytes}, {"byte_size", expected.size()}};
  ASSERT_EQ(Post("/v2/systemsharedmemory/region/out/register", out, auth).status, 200);
  EXPECT_EQ(Post("/v2/systemsharedmemory/region/out/register", out, auth).status, 400);
  EXPECT_EQ(Post("/v2/systemsharedmemory/region/bad/register",
                 {{"key", "/dev/shm/../x"}, {"byte_size", 4}}, auth)
                .status,
            400);
  EXPECT_EQ(
      Post("/v2/systemsharedmemory/region/bad/register", {{"key", object.name()}}, auth).status,
      400);

  const Reply status = Send(server_->port(), http::verb::get, "/v2/systemsharedmemory/status");
  ASSERT_EQ(status.status, 200);
  ASSERT_EQ(status.Json().size(), 2u) << status.body;
  EXPECT_EQ(status.Json()[0]["name"], "in");
  EXPECT_EQ(status.Json()[1]["offset"], input_bytes);
  EXPECT_EQ(Send(server_->port(), http::verb::get, "/v2/systemsharedmemory/region/out/status")
                .Json()[0]["byte_size"],
            expected.size());
  EXPECT_EQ(Send(server_->port(), http::verb::get, "/v2/systemsharedmemory/region/x/status").status,
            404);
  const Reply metadata = Send(server_->port(), http::verb::get, "/v2");
  EXPECT_NE(metadata.body.find("system_shared_memory"), std::string::npos);

  nlohmann::json request = {
      {"inputs",
       {{{"name", "images"},
         {"datatype", "FP32"},
         {"shape", {1, 3, 320, 320}},
         {"parameters",
          {{"shared_memory_region", "in"}, {"shared_memory_byte_size", input_bytes}}}}}},
      {"outputs",
       {{{"name", "output0"},
         {"parameters",
          {{"shared_memory_region", "out"}, {"shared_memory_byte_size", expected.size()}}}}}}};
  const Reply shm = Post("/v2/models/a/infer", request);
  ASSERT_EQ(shm.status, 200) << shm.body;
  const nlohmann::json answer = shm.Json();
  EXPECT_EQ(answer["outputs"][0]["parameters"]["shared_memory_region"], "out");
  EXPECT_EQ(answer["outputs"][0]["parameters"]["shared_memory_byte_size"], expected.size());
  EXPECT_FALSE(answer["outputs"][0].contains("data"));
  EXPECT_EQ(std::memcmp(object.data() + input_bytes, expected.data(), expected.size()), 0)
      << "the output in shared memory differs from the binary output";

  // Hostile references: beyond the region, no size, data and a region at once, an output range
  // too small, an output the model does not have.
  const auto with = [&](auto change) {
    nlohmann::json changed = request;
    change(changed);
    return Post("/v2/models/a/infer", changed);
  };
  EXPECT_EQ(with([&](auto& r) { r["inputs"][0]["parameters"]["shared_memory_offset"] = 4; }).status,
            400);
  EXPECT_EQ(
      with([](auto& r) { r["inputs"][0]["parameters"].erase("shared_memory_byte_size"); }).status,
      400);
  EXPECT_EQ(with([](auto& r) { r["inputs"][0]["data"] = {1, 2, 3}; }).status, 400);
  EXPECT_EQ(
      with([](auto& r) { r["outputs"][0]["parameters"]["shared_memory_byte_size"] = 16; }).status,
      400);
  EXPECT_EQ(with([](auto& r) { r["outputs"][0]["name"] = "nope"; }).status, 400);

  // Unregistered: requests naming it are 404; unregister all empties the table.
  ASSERT_EQ(Post("/v2/systemsharedmemory/region/in/unregister", nullptr, auth).status, 200);
  EXPECT_EQ(Post("/v2/systemsharedmemory/region/in/unregister", nullptr, auth).status, 404);
  EXPECT_EQ(Post("/v2/models/a/infer", request).status, 404);
  EXPECT_EQ(Post("/v2/systemsharedmemory/unregister", nullptr).status, 401);
  ASSERT_EQ(Post("/v2/systemsharedmemory/unregister", nullptr, auth).status, 200);
  EXPECT_EQ(Send(server_->port(), http::verb::get, "/v2/systemsharedmemory/status").Json().size(),
            0u);
}

TEST_F(SharedMemoryHttpTest, OffUnlessAllowed) {
  Start(/*allow_client_shm=*/false);
  ShmObject object("off", 4096);
  const Reply refused =
      Post("/v2/systemsharedmemory/region/r/register", {{"key", object.name()}, {"byte_size", 16}});
  EXPECT_EQ(refused.status, 403);
  EXPECT_NE(refused.body.find("--allow-client-shm"), std::string::npos) << refused.body;
  EXPECT_EQ(Send(server_->port(), http::verb::get, "/v2/systemsharedmemory/status").status, 403);
  const Reply metadata = Send(server_->port(), http::verb::get, "/v2");
  EXPECT_EQ(metadata.body.find("system_shared_memory"), std::string::npos);
  const nlohmann::json request = {
      {"inputs",
       {{{"name", "images"},
         {"datatype", "FP32"},
         {"shape", {1, 3, 320, 320}},
         {"parameters", {{"shared_memory_region", "r"}, {"shared_memory_byte_size", 16}}}}}}};
  EXPECT_EQ(Post("/v2/models/a/infer", request).status, 403);
}

}  // namespace
}  // namespace zerodet::server

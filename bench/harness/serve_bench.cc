#include "serve_bench.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstring>
#include <fstream>
#include <thread>

#include "latency_summary.h"
#include "zerodet/core/clock.h"
#include "zerodet/core/file.h"
#include "zerodet/models/model_manager.h"
#include "zerodet/server/http_server.h"
#include "zerodet/server/inference_service.h"
#include "zerodet/store/client.h"
#include "zerodet/store/server.h"

namespace zerodet::bench {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace fs = std::filesystem;
using tcp = net::ip::tcp;

// One keep-alive connection; Post returns the status (0 on a transport error).
class Client {
 public:
  explicit Client(uint16_t port) : stream_(ioc_) {
    beast::error_code ec;
    stream_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  }

  int Post(const std::string& target, const std::string& body,
           const std::string& header_length = {}) {
    http::request<http::string_body> request(http::verb::post, target, 11);
    request.set(http::field::host, "127.0.0.1");
    if (!header_length.empty()) request.set("Inference-Header-Content-Length", header_length);
    request.body() = body;
    request.prepare_payload();
    beast::error_code ec;
    http::write(stream_, request, ec);
    if (ec) return 0;
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(uint64_t{1} << 30);
    http::read(stream_, buffer, parser, ec);
    return ec ? 0 : static_cast<int>(parser.get().result_int());
  }

 private:
  net::io_context ioc_;
  beast::tcp_stream stream_;
};

// Runs `body` `n` times and returns one duration (ns) per run; an error stops it.
Result<std::vector<int64_t>> Time(int n, const std::function<Status()>& body) {
  std::vector<int64_t> ns;
  for (int i = 0; i < n; ++i) {
    const int64_t start = MonotonicNowNs();
    ZD_RETURN_IF_ERROR(body());
    ns.push_back(MonotonicNowNs() - start);
  }
  return ns;
}

// A POSIX shared-memory object the benchmark writes its tensor into, unlinked at the end.
class ShmObject {
 public:
  static Result<std::unique_ptr<ShmObject>> Create(const std::string& name, size_t size) {
    const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) return ErrnoError("shm_open " + name, errno);
    auto object = std::unique_ptr<ShmObject>(new ShmObject(name, size));
    const bool sized = ::ftruncate(fd, static_cast<off_t>(size)) == 0;
    void* mapped =
        sized ? ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    ::close(fd);
    if (mapped == MAP_FAILED) return IoError("cannot size or map shared memory " + name);
    object->data_ = static_cast<uint8_t*>(mapped);
    return object;
  }
  ~ShmObject() {
    if (data_ != nullptr) ::munmap(data_, size_);
    ::shm_unlink(name_.c_str());
  }
  uint8_t* data() { return data_; }

 private:
  ShmObject(std::string name, size_t size) : name_(std::move(name)), size_(size) {}
  std::string name_;
  size_t size_;
  uint8_t* data_ = nullptr;
};

Status Expect200(int status, const char* what) {
  if (status == 200) return Status::Ok();
  return InternalError(std::string(what) + ": HTTP status " + std::to_string(status));
}

// Images per second through /v1/detect?model=`model` at concurrency 1, 4 and 16 (keep-alive
// clients, each posting `jpeg_body` in turn).
Result<nlohmann::ordered_json> DetectRates(uint16_t port, const std::string& model,
                                           const std::string& jpeg_body, int requests) {
  nlohmann::ordered_json rates;
  for (const int concurrency : {1, 4, 16}) {
    std::atomic<int> failures{0};
    const int per_client = std::max(1, requests / concurrency);
    const int64_t start = MonotonicNowNs();
    std::vector<std::thread> clients;
    for (int c = 0; c < concurrency; ++c) {
      clients.emplace_back([&] {
        Client own(port);
        for (int i = 0; i < per_client; ++i) {
          if (own.Post("/v1/detect?model=" + model, jpeg_body) != 200) failures += 1;
        }
      });
    }
    for (std::thread& t : clients) t.join();
    if (failures > 0) return InternalError("/v1/detect requests failed in the benchmark");
    const double seconds = static_cast<double>(MonotonicNowNs() - start) / 1e9;
    rates["concurrency_" + std::to_string(concurrency)] =
        static_cast<double>(per_client * concurrency) / seconds;
  }
  return rates;
}

}  // namespace

Result<nlohmann::ordered_json> MeasureServe(const ServeBenchOptions& options) {
  const fs::path shared(ZERODET_SHARED_DIR);
  const fs::path model = options.model.empty() ? shared / "models" / "yolov8n.onnx" : options.model;
  const fs::path image = options.image.empty() ? shared / "images" / "dog.jpg" : options.image;
  ZD_ASSIGN_OR_RETURN(const std::vector<uint8_t> jpeg, ReadFileBytes(image));

  // A repository of one model, in a temporary directory removed at the end.
  std::error_code ec;
  const fs::path repo =
      fs::temp_directory_path() / ("zerodet-bench-serve-" + std::to_string(::getpid()));
  fs::create_directories(repo / "m" / "1", ec);
  fs::copy_file(model, repo / "m" / "1" / "model.onnx", fs::copy_options::overwrite_existing, ec);
  if (ec) {
    return IoError("cannot copy " + model.string() + " into the benchmark's repository " +
                   repo.string() + ": " + ec.message());
  }
  fs::last_write_time(repo / "m" / "1" / "model.onnx",
                      fs::file_time_type::clock::now() - std::chrono::hours(1), ec);
  if (!options.batched_model.empty()) {
    fs::create_directories(repo / "b" / "1", ec);
    fs::copy_file(options.batched_model, repo / "b" / "1" / "model.onnx",
                  fs::copy_options::overwrite_existing, ec);
    if (ec) {
      return IoError("cannot copy " + options.batched_model.string() +
                     " into the benchmark's repository: " + ec.message());
    }
    fs::last_write_time(repo / "b" / "1" / "model.onnx",
                        fs::file_time_type::clock::now() - std::chrono::hours(1), ec);
    std::ofstream(repo / "b" / "config.yaml")
        << "max_batch: 16\ndynamic_batching: {max_queue_delay_us: " << options.batch_delay_us
        << "}\n";
  }
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } cleanup{repo};

  // A store on a socket in the temporary directory, holding the tensor as one object.
  store::StoreOptions store_options;
  store_options.socket_path = (repo / "store.sock").string();
  store_options.capacity = uint64_t{256} << 20;
  ZD_ASSIGN_OR_RETURN(std::unique_ptr<store::StoreServer> store_server,
                      store::StoreServer::Create(store_options));
  store_server->Start();
  struct StopStore {
    store::StoreServer* server;
    ~StopStore() { server->Stop(); }
  } stop_store{store_server.get()};
  ZD_ASSIGN_OR_RETURN(std::unique_ptr<store::StoreClient> store_client,
                      store::StoreClient::Connect(store_options.socket_path));

  ManagerOptions manager_options;
  manager_options.repository = repo;
  manager_options.watch = false;
  manager_options.thread_pool.intra_op_threads = options.threads;
  ZD_ASSIGN_OR_RETURN(std::unique_ptr<ModelManager> manager, ModelManager::Create(manager_options));
  server::InferenceService::Options service_options;
  service_options.allow_client_shm = true;
  service_options.store = store_client.get();
  server::InferenceService service(*manager, service_options);
  server::HttpServerOptions http_options;
  http_options.port = 0;
  // As many request threads as the most concurrent clients: a batch can only hold requests that
  // reached the service.
  http_options.request_threads = 16;
  ZD_ASSIGN_OR_RETURN(std::unique_ptr<server::HttpServer> http_server,
                      server::HttpServer::Start(service, http_options));
  const uint16_t port = http_server->port();

  // The model's input, as a preprocessing client would send it.
  ZD_ASSIGN_OR_RETURN(ModelHandle handle, manager->Acquire("m"));
  const TensorInfo input_info = handle->backend().info().inputs.at(0);
  std::vector<int64_t> shape = input_info.shape;
  for (int64_t& d : shape) d = d < 0 ? 1 : d;
  const size_t elements = static_cast<size_t>(*CheckedElementCount(shape));
  std::vector<float> tensor(elements, 0.5f);
  const ConstTensorView view(tensor.data(), DType::kFloat32, shape);
  Backend& backend = handle->backend();
  ZD_ASSIGN_OR_RETURN(std::vector<int64_t> run_ns, Time(options.requests, [&]() -> Status {
                        return backend.Run(std::span<const ConstTensorView>(&view, 1)).status();
                      }));
  ZD_ASSIGN_OR_RETURN(std::vector<TensorView> outputs,
                      backend.Run(std::span<const ConstTensorView>(&view, 1)));
  const std::string output_name = handle->backend().info().outputs.at(0).name;
  const size_t output_bytes = outputs.at(0).size_bytes();
  handle.Release();

  nlohmann::json json_request;
  json_request["inputs"] = {
      {{"name", input_info.name}, {"datatype", "FP32"}, {"shape", shape}, {"data", tensor}}};
  const std::string json_body = json_request.dump();
  const std::string header =
      "{\"inputs\":[{\"name\":\"" + input_info.name +
      "\",\"datatype\":\"FP32\",\"shape\":" + nlohmann::json(shape).dump() +
      ",\"parameters\":{\"binary_data_size\":" + std::to_string(elements * 4) +
      "}}],\"parameters\":{\"binary_data_output\":true}}";
  std::string binary_body = header;
  binary_body.append(reinterpret_cast<const char*>(tensor.data()), elements * 4);

  Client client(port);
  ZD_ASSIGN_OR_RETURN(std::vector<int64_t> json_ns, Time(options.requests, [&] {
                        return Expect200(client.Post("/v2/models/m/infer", json_body),
                                         "JSON infer");
                      }));
  ZD_ASSIGN_OR_RETURN(std::vector<int64_t> binary_ns, Time(options.requests, [&] {
                        return Expect200(client.Post("/v2/models/m/infer", binary_body,
                                                     std::to_string(header.size())),
                                         "binary infer");
                      }));

  // The same tensor through a registered shared-memory region, the output into another.
  const size_t input_bytes = elements * 4;
  // Not "zerodet-bench-...": the ring benchmark's test counts those as its own leftovers.
  const std::string key = "/zerodet-serve-bench-" + std::to_string(::getpid());
  ZD_ASSIGN_OR_RETURN(std::unique_ptr<ShmObject> shm,
                      ShmObject::Create(key, input_bytes + output_bytes));
  std::memcpy(shm->data(), tensor.data(), input_bytes);
  ZD_RETURN_IF_ERROR(
      Expect200(client.Post("/v2/systemsharedmemory/region/in/register",
                            nlohmann::json{{"key", key}, {"byte_size", input_bytes}}.dump()),
                "shared-memory registration"));
  ZD_RETURN_IF_ERROR(Expect200(
      client.Post("/v2/systemsharedmemory/region/out/register",
                  nlohmann::json{{"key", key}, {"offset", input_bytes}, {"byte_size", output_bytes}}
                      .dump()),
      "shared-memory registration"));
  nlohmann::json shm_request;
  shm_request["inputs"] = {
      {{"name", input_info.name},
       {"datatype", "FP32"},
       {"shape", shape},
       {"parameters", {{"shared_memory_region", "in"}, {"shared_memory_byte_size", input_bytes}}}}};
  shm_request["outputs"] = {
      {{"name", output_name},
       {"parameters",
        {{"shared_memory_region", "out"}, {"shared_memory_byte_size", output_bytes}}}}};
  const std::string shm_body = shm_request.dump();
  ZD_ASSIGN_OR_RETURN(std::vector<int64_t> shm_ns, Time(options.requests, [&] {
                        return Expect200(client.Post("/v2/models/m/infer", shm_body),
                                         "shared-memory infer");
                      }));

  // The same tensor as an object of the store.
  const store::ObjectId object_id = store::ObjectId::FromName("zerodet-bench-serve-tensor");
  ZD_ASSIGN_OR_RETURN(store::ObjectBuffer object, store_client->Create(object_id, input_bytes));
  std::memcpy(object.data().data(), tensor.data(), input_bytes);
  ZD_RETURN_IF_ERROR(store_client->Seal(std::move(object)));
  nlohmann::json store_request;
  store_request["inputs"] = {{{"name", input_info.name},
                              {"datatype", "FP32"},
                              {"shape", shape},
                              {"parameters", {{"zerodet_store_object", object_id.ToHex()}}}}};
  store_request["parameters"] = {{"binary_data_output", true}};
  const std::string store_body = store_request.dump();
  ZD_ASSIGN_OR_RETURN(std::vector<int64_t> store_ns, Time(options.requests, [&] {
                        return Expect200(client.Post("/v2/models/m/infer", store_body),
                                         "store-object infer");
                      }));

  // /v1/detect against the detector in process, on the same bytes.
  const std::string jpeg_body(jpeg.begin(), jpeg.end());
  ZD_ASSIGN_OR_RETURN(ModelHandle detector, manager->Acquire("m"));
  ZD_ASSIGN_OR_RETURN(std::vector<int64_t> local_ns, Time(options.requests, [&]() -> Status {
                        return detector->DetectEncoded(jpeg, "image").status();
                      }));
  detector.Release();
  ZD_ASSIGN_OR_RETURN(const nlohmann::ordered_json detect_rates,
                      DetectRates(port, "m", jpeg_body, options.requests));
  nlohmann::ordered_json batched_rates;
  if (!options.batched_model.empty()) {
    ZD_ASSIGN_OR_RETURN(batched_rates, DetectRates(port, "b", jpeg_body, options.requests));
  }
  http_server->Shutdown(std::chrono::seconds(5));

  const LatencySummary run = SummarizeNs(run_ns);
  const LatencySummary json_summary = SummarizeNs(json_ns);
  const LatencySummary binary_summary = SummarizeNs(binary_ns);
  const LatencySummary shm_summary = SummarizeNs(shm_ns);
  const LatencySummary store_summary = SummarizeNs(store_ns);
  const LatencySummary local = SummarizeNs(local_ns);
  nlohmann::ordered_json out;
  out["model"] = model.filename().string();
  out["input_shape"] = shape;
  out["requests"] = options.requests;
  out["direct_run"] = ToJson(run);
  out["infer_json"] = ToJson(json_summary);
  out["infer_binary"] = ToJson(binary_summary);
  out["infer_shared_memory"] = ToJson(shm_summary);
  out["infer_store_object"] = ToJson(store_summary);
  out["overhead_p50_us"] = {{"json", json_summary.p50_us - run.p50_us},
                            {"binary", binary_summary.p50_us - run.p50_us},
                            {"shared_memory", shm_summary.p50_us - run.p50_us},
                            {"store_object", store_summary.p50_us - run.p50_us}};
  out["detect_in_process_images_per_s"] = local.mean_us > 0 ? 1e6 / local.mean_us : 0;
  out["detect_http_images_per_s"] = detect_rates;
  if (!options.batched_model.empty()) {
    out["batched_model"] = options.batched_model.filename().string();
    out["detect_http_batched_images_per_s"] = batched_rates;
  }
  return out;
}

}  // namespace zerodet::bench

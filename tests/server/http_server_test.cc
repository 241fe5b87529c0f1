// The HTTP front end of `zerodet serve` on loopback, against a repository of real models
// (../shared/models), with a Boost.Beast client: every KServe v2 endpoint, infer in JSON and in
// binary equal to running the model directly, /v1/detect equal to the detector, errors and
// limits (bodies, headers, slow clients, tokens), unload under load, draining, and the
// `zerodet serve` process on SIGTERM.
#include "zerodet/server/http_server.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "http_client.h"
#include "test_support.h"
#include "zerodet/codec/decode.h"
#include "zerodet/core/file.h"
#include "zerodet/infer/backend.h"
#include "zerodet/infer/detector.h"

namespace zerodet::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace fs = std::filesystem;
using tcp = net::ip::tcp;
using zerodet::server::testing::Reply;
using zerodet::server::testing::Send;
using zerodet::testing::SharedImage;
using zerodet::testing::SharedModel;
using zerodet::testing::TempDir;

const char* kModelFile = "yolo11n-320.onnx";

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"a", "b"}) {
      const fs::path dir = repo_.path() / name / "1";
      fs::create_directories(dir);
      fs::copy_file(SharedModel(kModelFile), dir / "model.onnx");
      fs::last_write_time(dir / "model.onnx",
                          fs::file_time_type::clock::now() - std::chrono::hours(1));
    }
    ManagerOptions manager_options;
    manager_options.repository = repo_.path();
    manager_options.watch = false;
    auto manager = ModelManager::Create(manager_options);
    ASSERT_TRUE(manager.ok()) << manager.status().ToString();
    manager_ = std::move(manager).value();
    service_ = std::make_unique<InferenceService>(*manager_, InferenceService::Options{});
  }

  uint16_t StartServer(HttpServerOptions options = {}) {
    options.port = 0;
    auto server = HttpServer::Start(*service_, options);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    if (!server.ok()) return 0;
    server_ = std::move(server).value();
    return server_->port();
  }

  TempDir repo_{"server-http"};
  std::unique_ptr<ModelManager> manager_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<HttpServer> server_;
};

std::vector<float> RandomInput(size_t n) {
  std::mt19937 random(7);
  std::uniform_real_distribution<float> value(0, 1);
  std::vector<float> input(n);
  for (float& v : input) v = value(random);
  return input;
}

TEST_F(HttpServerTest, HealthMetadataAndReadiness) {
  const uint16_t port = StartServer();
  EXPECT_EQ(Send(port, http::verb::get, "/v2/health/live").status, 200);
  EXPECT_EQ(Send(port, http::verb::get, "/v2/health/ready").status, 200);
  const Reply server = Send(port, http::verb::get, "/v2");
  EXPECT_EQ(server.Json()["name"], "zerodet");
  EXPECT_NE(server.body.find("model_repository"), std::string::npos);

  // Not loaded yet: not ready, and the index says why.
  EXPECT_EQ(Send(port, http::verb::get, "/v2/models/a/ready").status, 400);
  const Reply index = Send(port, http::verb::post, "/v2/repository/index");
  ASSERT_EQ(index.status, 200) << index.body;
  EXPECT_EQ(index.Json()[0]["name"], "a");
  EXPECT_EQ(index.Json()[0]["state"], "UNAVAILABLE");
  // Metadata loads it (on demand) and describes the ONNX model's tensors.
  const Reply metadata = Send(port, http::verb::get, "/v2/models/a/versions/1");
  ASSERT_EQ(metadata.status, 200) << metadata.body;
  EXPECT_EQ(metadata.Json()["inputs"][0]["datatype"], "FP32");
  EXPECT_EQ(metadata.Json()["inputs"][0]["shape"], nlohmann::json::parse("[1,3,320,320]"));
  EXPECT_EQ(metadata.Json()["versions"], nlohmann::json::parse(R"(["1"])"));
  EXPECT_EQ(Send(port, http::verb::get, "/v2/models/a/ready").status, 200);
  EXPECT_EQ(Send(port, http::verb::get, "/v2/models/a/versions/1/ready").status, 200);
  EXPECT_EQ(Send(port, http::verb::post, "/v2/repository/index").Json()[0]["state"], "READY");

  EXPECT_EQ(Send(port, http::verb::get, "/v2/models/nope").status, 404);
  EXPECT_EQ(Send(port, http::verb::get, "/v2/models/a/versions/9").status, 404);
  EXPECT_EQ(Send(port, http::verb::get, "/v2/models/a/versions/x").status, 400);
  EXPECT_EQ(Send(port, http::verb::get, "/v3").status, 404);
  EXPECT_EQ(Send(port, http::verb::post, "/v2/health/live").status, 405);
  const Reply missing = Send(port, http::verb::get, "/v2/models/nope");
  EXPECT_NE(missing.Json()["error"].get<std::string>().find("nope"), std::string::npos);

  // The web console (tests/server/console drives it in Chromium).
  const Reply console = Send(port, http::verb::get, "/");
  EXPECT_EQ(console.status, 200);
  EXPECT_NE(console.body.find("<title>zerodet console</title>"), std::string::npos);
  EXPECT_EQ(Send(port, http::verb::get, "/console").body, console.body);
  EXPECT_EQ(Send(port, http::verb::post, "/").status, 405);
}

// A self-signed certificate for localhost / 127.0.0.1 made with the openssl tool.
bool MakeCertificate(const fs::path& dir, const std::string& stem) {
  const auto made = ::zerodet::testing::RunProcess(
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
       (dir / (stem + "-key.pem")).string(), "-out", (dir / (stem + ".pem")).string(), "-days", "1",
       "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"});
  return made.exit_code == 0;
}

TEST_F(HttpServerTest, HttpsWithACertificateAndNothingForPlainHttp) {
  if (!MakeCertificate(repo_.path(), "cert") || !MakeCertificate(repo_.path(), "other")) {
    GTEST_SKIP() << "openssl could not make a certificate";
  }
  const std::string cert = (repo_.path() / "cert.pem").string();
  HttpServerOptions options;
  options.tls_cert = cert;
  options.tls_key = (repo_.path() / "cert-key.pem").string();
  const uint16_t port = StartServer(options);
  ASSERT_NE(port, 0);

  // A client that trusts only this certificate and checks it names localhost; two requests on
  // one connection (keep-alive over TLS), the second a detection.
  net::io_context ioc;
  net::ssl::context context(net::ssl::context::tls_client);
  context.load_verify_file(cert);
  context.set_verify_mode(net::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, context);
  stream.set_verify_callback(net::ssl::host_name_verification("localhost"));
  ASSERT_TRUE(SSL_set_tlsext_host_name(stream.native_handle(), "localhost"));
  beast::get_lowest_layer(stream).connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  stream.handshake(net::ssl::stream_base::client);
  beast::flat_buffer buffer;
  http::request<http::string_body> ready{http::verb::get, "/v2/health/ready", 11};
  ready.set(http::field::host, "localhost");
  http::write(stream, ready);
  http::response<http::string_body> reply;
  http::read(stream, buffer, reply);
  EXPECT_EQ(reply.result_int(), 200);
  auto jpeg = ReadFileBytes(SharedImage("dog.jpg"));
  ASSERT_TRUE(jpeg.ok());
  http::request<http::string_body> detect{http::verb::post, "/v1/detect?model=a", 11};
  detect.set(http::field::host, "localhost");
  detect.body().assign(jpeg->begin(), jpeg->end());
  detect.prepare_payload();
  http::write(stream, detect);
  http::response<http::string_body> detected;
  http::read(stream, buffer, detected);
  EXPECT_EQ(detected.result_int(), 200) << detected.body();
  EXPECT_NE(detected.body().find("\"dog\""), std::string::npos) << detected.body();
  beast::error_code ignored;
  stream.shutdown(ignored);

  // Plain HTTP on the TLS port gets no HTTP answer; the server still serves TLS afterwards.
  EXPECT_EQ(Send(port, http::verb::get, "/v2/health/ready").status, 0);
  beast::ssl_stream<beast::tcp_stream> again(ioc, context);
  again.set_verify_callback(net::ssl::host_name_verification("localhost"));
  beast::get_lowest_layer(again).connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  again.handshake(net::ssl::stream_base::client);

  // Files that are missing or do not belong together are refused at start, naming the file.
  server_.reset();
  HttpServerOptions mismatched = options;
  mismatched.tls_key = (repo_.path() / "other-key.pem").string();
  auto refused = HttpServer::Start(*service_, mismatched);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("other-key.pem"), std::string::npos)
      << refused.status().message();
  HttpServerOptions missing = options;
  missing.tls_cert = "/nonexistent/cert.pem";
  refused = HttpServer::Start(*service_, missing);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  HttpServerOptions half = options;
  half.tls_key.clear();
  EXPECT_EQ(HttpServer::Start(*service_, half).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(HttpServerTest, InferInJsonAndBinaryEqualsTheModelRunDirectly) {
  const uint16_t port = StartServer();
  const std::vector<float> input = RandomInput(3 * 320 * 320);
  auto backend = CreateOnnxBackend(SharedModel(kModelFile));
  ASSERT_TRUE(backend.ok());
  const ConstTensorView view(input.data(), DType::kFloat32, {1, 3, 320, 320});
  auto direct = (*backend)->Run(std::span<const ConstTensorView>(&view, 1));
  ASSERT_TRUE(direct.ok());
  const float* expected = (*direct)[0].f32();
  const size_t count = (*direct)[0].num_elements();

  nlohmann::json request;
  request["id"] = "q1";
  request["inputs"] = {
      {{"name", "images"}, {"datatype", "FP32"}, {"shape", {1, 3, 320, 320}}, {"data", input}}};
  const Reply json = Send(port, http::verb::post, "/v2/models/a/infer", request.dump());
  ASSERT_EQ(json.status, 200) << json.body.substr(0, 300);
  const auto answer = json.Json();
  EXPECT_EQ(answer["id"], "q1");
  EXPECT_EQ(answer["model_version"], "1");
  EXPECT_EQ(answer["outputs"][0]["shape"], nlohmann::json::parse("[1,84,2100]"));
  const auto& data = answer["outputs"][0]["data"];
  ASSERT_EQ(data.size(), count);
  for (size_t i = 0; i < count; i += 97) {
    ASSERT_EQ(data[i].get<float>(), expected[i]) << i;
  }

  // Binary in and out (the binary tensor data extension).
  const std::string header =
      R"({"inputs":[{"name":"images","datatype":"FP32","shape":[1,3,320,320],"parameters":{"binary_data_size":)" +
      std::to_string(input.size() * 4) +
      R"(}}],"outputs":[{"name":"output0","parameters":{"binary_data":true}}]})";
  std::string body = header;
  body.append(reinterpret_cast<const char*>(input.data()), input.size() * 4);
  const Reply binary = Send(port, http::verb::post, "/v2/models/a/infer", body,
                            {{"Inference-Header-Content-Length", std::to_string(header.size())},
                             {"Content-Type", "application/octet-stream"}});
  ASSERT_EQ(binary.status, 200) << binary.body.substr(0, 300);
  const size_t json_length = std::stoul(std::string(binary.raw["Inference-Header-Content-Length"]));
  const auto binary_header = nlohmann::json::parse(binary.body.substr(0, json_length));
  EXPECT_EQ(binary_header["outputs"][0]["parameters"]["binary_data_size"], count * 4);
  ASSERT_EQ(binary.body.size(), json_length + count * 4);
  EXPECT_EQ(std::memcmp(binary.body.data() + json_length, expected, count * 4), 0)
      << "binary output differs from the direct Run";

  // Wrong tensors are named in a 400.
  for (
      const std::string& bad : {
          std::string(
              R"({"inputs":[{"name":"images","datatype":"FP32","shape":[1,3,2,2],"data":[1,2,3,4,5,6,7,8,9,10,11,12]}]})"),
          std::string(R"({"inputs":[{"name":"pixels","datatype":"FP32","shape":[1],"data":[1]}]})"),
          std::string(
              R"({"inputs":[{"name":"images","datatype":"INT64","shape":[1,3,320,320],"parameters":{"binary_data_size":0}}]})"),
          std::string("{not json"),
      }) {
    const Reply reply = Send(port, http::verb::post, "/v2/models/a/infer", bad);
    EXPECT_EQ(reply.status, 400) << bad.substr(0, 80) << " -> " << reply.body;
    EXPECT_TRUE(reply.Json().contains("error")) << reply.body;
  }
  // A truncated binary payload.
  const Reply truncated =
      Send(port, http::verb::post, "/v2/models/a/infer", body.substr(0, body.size() - 100),
           {{"Inference-Header-Content-Length", std::to_string(header.size())}});
  EXPECT_EQ(truncated.status, 400) << truncated.body;
  EXPECT_EQ(Send(port, http::verb::post, "/v2/models/nope/infer", request.dump()).status, 404);
}

TEST_F(HttpServerTest, DetectAnswersWhatTheDetectorFinds) {
  const uint16_t port = StartServer();
  auto detector = Detector::Create(SharedModel(kModelFile));
  ASSERT_TRUE(detector.ok());
  for (const char* image : {"dog.jpg", "bus.jpg"}) {
    auto bytes = ReadFileBytes(SharedImage(image));
    ASSERT_TRUE(bytes.ok());
    auto expected = (*detector)->DetectFile(SharedImage(image));
    ASSERT_TRUE(expected.ok());
    const Reply reply =
        Send(port, http::verb::post, "/v1/detect?model=a:1",
             std::string(bytes->begin(), bytes->end()), {{"Content-Type", "image/jpeg"}});
    ASSERT_EQ(reply.status, 200) << reply.body;
    const auto json = reply.Json();
    ASSERT_EQ(json["detections"].size(), expected->detections.size()) << image;
    for (size_t i = 0; i < expected->detections.size(); ++i) {
      EXPECT_EQ(json["detections"][i]["class_id"], expected->detections[i].class_id);
      EXPECT_NEAR(json["detections"][i]["box"][0].get<double>(), expected->detections[i].box.x1,
                  0.01);
    }
    // Thresholds per request, and the next request gets the defaults again.
    const Reply strict = Send(port, http::verb::post, "/v1/detect?model=a&conf=0.8",
                              std::string(bytes->begin(), bytes->end()));
    EXPECT_LT(strict.Json()["detections"].size(), expected->detections.size());
    const Reply again = Send(port, http::verb::post, "/v1/detect?model=a",
                             std::string(bytes->begin(), bytes->end()));
    EXPECT_EQ(again.Json()["detections"].size(), expected->detections.size());
  }
  auto bytes = ReadFileBytes(SharedImage("dog.jpg"));
  const Reply annotated = Send(port, http::verb::post, "/v1/detect?model=a&annotate=1",
                               std::string(bytes->begin(), bytes->end()));
  ASSERT_EQ(annotated.status, 200);
  EXPECT_EQ(annotated.raw[http::field::content_type], "image/jpeg");
  auto decoded =
      DecodeImage(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(annotated.body.data()),
                                           annotated.body.size()),
                  "annotated");
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->source_width, 768);

  EXPECT_EQ(Send(port, http::verb::post, "/v1/detect?model=a", "not an image").status, 400);
  EXPECT_EQ(Send(port, http::verb::post, "/v1/detect", "x").status, 400);
  EXPECT_EQ(Send(port, http::verb::post, "/v1/detect?model=a&conf=2", "x").status, 400);
  EXPECT_EQ(Send(port, http::verb::post, "/v1/detect?model=a&color=red", "x").status, 400);
  EXPECT_EQ(
      Send(port, http::verb::post, "/v1/detect?model=zz", std::string(bytes->begin(), bytes->end()))
          .status,
      404);
  EXPECT_EQ(Send(port, http::verb::get, "/v1/detect?model=a").status, 405);
}

TEST_F(HttpServerTest, LimitsAndSlowClients) {
  HttpServerOptions options;
  options.max_body_bytes = 1 << 20;
  options.max_header_bytes = 4096;
  options.request_read_timeout = std::chrono::milliseconds(300);
  const uint16_t port = StartServer(options);
  {
    // The declared length is refused before any of the body is sent.
    net::io_context ioc;
    tcp::socket socket(ioc);
    socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    net::write(socket, net::buffer(std::string("POST /v2/models/a/infer HTTP/1.1\r\nHost: x\r\n"
                                               "Content-Length: 2097152\r\n\r\n")));
    std::string answer(512, '\0');
    beast::error_code ec;
    const size_t n = socket.read_some(net::buffer(answer), ec);
    EXPECT_EQ(answer.substr(0, std::min<size_t>(n, 12)), "HTTP/1.1 413") << answer;
  }
  EXPECT_EQ(Send(port, http::verb::get, "/v2", "", {{"X-Padding", std::string(8000, 'p')}}).status,
            431);

  // Keep-alive: several requests on one connection.
  {
    net::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    for (int i = 0; i < 3; ++i) {
      http::request<http::string_body> request(http::verb::get, "/v2/health/live", 11);
      http::write(stream, request);
      beast::flat_buffer buffer;
      http::response<http::string_body> response;
      http::read(stream, buffer, response);
      EXPECT_EQ(response.result_int(), 200u);
    }
  }
  // A client that sends half a request and stops is closed when the read timeout passes.
  {
    net::io_context ioc;
    tcp::socket socket(ioc);
    socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    const std::string partial = "GET /v2 HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    net::write(socket, net::buffer(partial));
    char byte;
    beast::error_code ec;
    const auto started = std::chrono::steady_clock::now();
    socket.read_some(net::buffer(&byte, 1), ec);  // blocks until the server closes
    EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset) << ec.message();
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20));
  }
  // Garbage instead of HTTP.
  {
    net::io_context ioc;
    tcp::socket socket(ioc);
    socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    net::write(socket, net::buffer(std::string("\x16\x03\x01 not http at all\r\n\r\n")));
    std::string answer(512, '\0');
    beast::error_code ec;
    const size_t n = socket.read_some(net::buffer(answer), ec);
    EXPECT_EQ(answer.substr(0, std::min<size_t>(n, 12)), "HTTP/1.1 400");
  }
  // Still serving.
  EXPECT_EQ(Send(port, http::verb::get, "/v2/health/ready").status, 200);
}

TEST_F(HttpServerTest, ControlEndpointsNeedTheToken) {
  HttpServerOptions options;
  options.token = "s3cret";
  const uint16_t port = StartServer(options);
  EXPECT_EQ(Send(port, http::verb::post, "/v2/repository/models/a/load").status, 401);
  EXPECT_EQ(Send(port, http::verb::post, "/v2/repository/models/a/load", "",
                 {{"Authorization", "Bearer wrong!"}})
                .status,
            401);
  EXPECT_EQ(Send(port, http::verb::post, "/v2/repository/models/a/load", "",
                 {{"Authorization", "Bearer s3cret"}})
                .status,
            200);
  EXPECT_EQ(Send(port, http::verb::get, "/v2/models/a/ready").status, 200);
  EXPECT_EQ(Send(port, http::verb::post, "/v2/repository/models/a/unload", "",
                 {{"Authorization", "Bearer s3cret"}})
                .status,
            200);
  EXPECT_EQ(Send(port, http::verb::get, "/v2/models/a/ready").status, 400);
  EXPECT_EQ(Send(port, http::verb::post, "/v2/repository/models/zz/load", "",
                 {{"Authorization", "Bearer s3cret"}})
                .status,
            404);
  // Reads need no token.
  EXPECT_EQ(Send(port, http::verb::post, "/v2/repository/index").status, 200);
}

TEST_F(HttpServerTest, UnloadUnderLoadFailsNoRequestAndShutdownDrains) {
  const uint16_t port = StartServer();
  auto bytes = ReadFileBytes(SharedImage("dog.jpg"));
  ASSERT_TRUE(bytes.ok());
  const std::string image(bytes->begin(), bytes->end());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&, t] {
      while (!stop) {
        const Reply reply = Send(port, http::verb::post,
                                 t % 2 ? "/v1/detect?model=a" : "/v1/detect?model=b", image);
        (reply.status == 200 ? ok : failed) += 1;
      }
    });
  }
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    EXPECT_TRUE(manager_->Unload("a").ok());
  }
  // Served through the unloads and reloads, however slow the loads are (sanitizer builds).
  EXPECT_TRUE(zerodet::testing::WaitFor([&] { return ok.load() > 5; }, std::chrono::seconds(120)));
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(ok.load(), 5);

  // A request in flight when the shutdown starts is answered: one for an unloaded model, seen
  // waiting for its load (the metrics' queue gauge) when the shutdown begins.
  ASSERT_TRUE(manager_->Unload("a").ok());
  Reply late;
  std::thread request([&] { late = Send(port, http::verb::post, "/v1/detect?model=a", image); });
  EXPECT_TRUE(zerodet::testing::WaitFor([&] {
    return service_->metrics().Render().find("zerodet_queued_requests{endpoint=\"detect\"} 1") !=
           std::string::npos;
  }));
  // An idle keep-alive connection is closed by the shutdown, not left hanging.
  net::io_context ioc;
  beast::tcp_stream idle(ioc);
  idle.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  EXPECT_EQ(server_->Shutdown(std::chrono::seconds(30)), 0);
  request.join();
  EXPECT_EQ(late.status, 200) << late.body;
  char byte = 0;
  beast::error_code ec;
  idle.socket().read_some(net::buffer(&byte, 1), ec);
  EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset) << ec.message();
}

TEST(ServeCommandTest, ServesUntilSigtermThenExitsZero) {
  const TempDir dir("serve-cli");
  const fs::path version = dir.path() / "repo" / "a" / "1";
  fs::create_directories(version);
  fs::copy_file(SharedModel(kModelFile), version / "model.onnx");
  fs::last_write_time(version / "model.onnx",
                      fs::file_time_type::clock::now() - std::chrono::hours(1));
  zerodet::testing::ChildProcess serve(
      {zerodet::testing::ZerodetBinary().string(), "serve", "--repo",
       (dir.path() / "repo").string(), "--http", "127.0.0.1:0"},
      (dir.path() / "log").string());
  ASSERT_TRUE(serve.ok());
  ASSERT_TRUE(zerodet::testing::WaitFor([&] {
    return serve.Log().find("http_port") != std::string::npos;
  })) << serve.Log();
  const auto line =
      nlohmann::json::parse(serve.Log().substr(serve.Log().find('{')), nullptr, false);
  const uint16_t port = line["http_port"];
  EXPECT_GT(line["grpc_port"].get<int>(), 0);
  auto bytes = ReadFileBytes(SharedImage("dog.jpg"));
  ASSERT_TRUE(bytes.ok());
  const Reply reply =
      Send(port, http::verb::post, "/v1/detect?model=a", std::string(bytes->begin(), bytes->end()));
  EXPECT_EQ(reply.status, 200) << reply.body;
  ASSERT_TRUE(serve.Signal(SIGTERM));
  EXPECT_EQ(serve.Wait(), 0) << serve.Log();

  // Bad flags are one line and exit 2 (usage) or 1.
  const auto bad = zerodet::testing::RunZerodet(
      {"serve", "--repo", (dir.path() / "repo").string(), "--http", "nonsense"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--http"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace zerodet::server

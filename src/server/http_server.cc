#include "zerodet/server/http_server.h"

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <mutex>
#include <optional>
#include <thread>

#include "beast_request.h"
#include "http_routes.h"
#include "kserve_http.h"
#include "zerodet/core/log_rate_limiter.h"

namespace zerodet::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// What Shutdown needs of a connection, whichever stream it runs on.
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  // Closes the connection from the server's side, on the session's strand.
  virtual void CloseSoon() = 0;
};

}  // namespace

struct HttpServer::Impl {
  Impl(InferenceService& s, const HttpServerOptions& o)
      : service(s), options(o), acceptor(ioc), accept_backoff(ioc) {}

  // Reads options.tls_cert and tls_key into `tls`. Errors: kInvalidArgument naming the file.
  Status LoadTls();
  void Accept();
  void OnAccept(beast::error_code ec, tcp::socket socket);
  // Remembers an open connection, so Shutdown can close the ones still open.
  void Track(const std::shared_ptr<SessionBase>& session);
  // Closes every open connection (on its own strand); returns at once.
  void CloseSessions();

  InferenceService& service;
  const HttpServerOptions options;
  detail::RouteOptions routes;
  // Declared before the io_context: sessions destroyed with it still count themselves out.
  std::atomic<bool> draining{false};
  std::atomic<bool> stopped{false};
  std::atomic<int> in_flight{0};
  std::atomic<uint32_t> connections{0};
  LogRateLimiter accept_log{std::chrono::seconds(10)};
  net::io_context ioc;
  // Keeps the I/O threads running while no operation is pending (every request of the moment
  // on the request pool, the acceptor closed by Shutdown): their replies still need them.
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  tcp::acceptor acceptor;
  net::steady_timer accept_backoff;
  std::vector<std::thread> io_threads;
  // After the io_context: destroyed (and joined) first, so no request handler outlives it.
  std::optional<net::thread_pool> requests;
  bool shut_down = false;
  std::mutex sessions_mutex;
  std::vector<std::weak_ptr<SessionBase>> sessions;  // open connections (expired ones pruned)
  std::optional<net::ssl::context> tls;              // set: every connection speaks TLS
};

namespace {

constexpr bool IsTlsStream(const beast::tcp_stream*) {
  return false;
}
constexpr bool IsTlsStream(const TlsStream*) {
  return true;
}

// One connection: reads requests one at a time (HTTP/1.1 keep-alive), hands each to the
// request pool, writes its response, and reads the next. Stream is beast::tcp_stream, or
// TlsStream when the server has a certificate (the handshake comes first, within the request
// read timeout).
template <typename Stream>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = IsTlsStream(static_cast<const Stream*>(nullptr));

 public:
  template <typename... TlsContext>
  Session(tcp::socket socket, HttpServer::Impl& server, TlsContext&... tls)
      : stream_(std::move(socket), tls...), server_(server) {
    server_.connections.fetch_add(1);
  }
  ~Session() override { server_.connections.fetch_sub(1); }

  void Start() {
    server_.Track(this->shared_from_this());
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (kTls) {
        self->Lowest().expires_after(self->server_.options.request_read_timeout);
        self->stream_.async_handshake(net::ssl::stream_base::server, [self](beast::error_code ec) {
          // Not TLS, a bad handshake, or too slow: nothing to say.
          if (ec) return self->Close();
          self->Read();
        });
      } else {
        self->Read();
      }
    });
  }

  void CloseSoon() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] { self->Close(); });
  }

 private:
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void Read() {
    parser_.emplace();
    parser_->header_limit(server_.options.max_header_bytes);
    parser_->body_limit(server_.options.max_body_bytes);
    // Covers the whole request: an idle keep-alive connection and a client that sends a byte
    // at a time are both closed when it passes.
    Lowest().expires_after(server_.options.request_read_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnRead, this->shared_from_this()));
  }

  void OnRead(beast::error_code ec, size_t) {
    if (ec == http::error::body_limit) {
      return Reply(Plain(413, "the request body is larger than " +
                                  std::to_string(server_.options.max_body_bytes) + " bytes"),
                   false, 11);
    }
    if (ec == http::error::header_limit) {
      return Reply(Plain(431, "the request headers are larger than " +
                                  std::to_string(server_.options.max_header_bytes) + " bytes"),
                   false, 11);
    }
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted ||
        ec == net::error::eof || ec == net::ssl::error::stream_truncated) {
      return Close();
    }
    if (ec) return Reply(Plain(400, "malformed HTTP request: " + ec.message()), false, 11);
    request_ = parser_->release();
    ++served_;
    const bool keep_alive = request_.keep_alive() &&
                            served_ < server_.options.max_requests_per_connection &&
                            !server_.draining.load();
    if (server_.draining.load()) {
      return Reply(Plain(503, "the server is shutting down"), false, request_.version());
    }
    server_.in_flight.fetch_add(1);
    counted_ = true;
    net::post(*server_.requests,
              [self = this->shared_from_this(), keep_alive] { self->Handle(keep_alive); });
  }

  // On a request thread.
  void Handle(bool keep_alive) {
    detail::HttpResponse response;
    if (server_.stopped.load()) {
      response = Plain(503, "the server is shutting down");
    } else {
      try {
        response = detail::HandleHttp(detail::FromBeast(request_), server_.service, server_.routes);
      } catch (const std::bad_alloc&) {
        response = Plain(503, "out of memory");
      } catch (const std::exception& e) {
        response = Plain(500, std::string("internal error: ") + e.what());
      }
    }
    net::post(stream_.get_executor(), [self = this->shared_from_this(),
                                       response = std::move(response), keep_alive]() mutable {
      self->Reply(std::move(response), keep_alive, self->request_.version());
    });
  }

  static detail::HttpResponse Plain(int status, std::string message) {
    detail::HttpResponse response;
    response.status = status;
    response.body = detail::ErrorBody(message);
    return response;
  }

  void Reply(detail::HttpResponse response, bool keep_alive, unsigned version) {
    response_ = {};
    response_.version(version);
    server_.service.metrics().CountHttpResponse(response.status);
    response_.result(static_cast<unsigned>(response.status));
    response_.set(http::field::server, "zerodet");
    response_.set(http::field::content_type, response.content_type);
    for (auto& [name, value] : response.headers) response_.set(name, value);
    response_.body() = std::move(response.body);
    response_.keep_alive(keep_alive);
    response_.prepare_payload();
    Lowest().expires_after(server_.options.request_read_timeout);
    http::async_write(stream_, response_,
                      [self = this->shared_from_this(), keep_alive](beast::error_code ec, size_t) {
                        if (self->counted_) {
                          self->counted_ = false;
                          self->server_.in_flight.fetch_sub(1);
                        }
                        if (ec) return self->Close();
                        if (!keep_alive) return self->Linger();
                        self->Read();
                      });
  }

  // Ends the connection after a response that closes it. The client may still be sending (a
  // body refused for its size): closing with its bytes unread would reset the connection and
  // could destroy the response before the client reads it, so the rest is read and dropped
  // (briefly, and at most 1 MiB) after our side is shut down.
  // Over TLS the close_notify alert plays that part: sent, then the peer's awaited (briefly).
  void Linger() {
    if constexpr (kTls) {
      Lowest().expires_after(std::chrono::seconds(2));
      stream_.async_shutdown(
          [self = this->shared_from_this()](beast::error_code) { self->Close(); });
    } else {
      beast::error_code ec;
      Lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
      if (ec) return Close();
      Lowest().expires_after(std::chrono::seconds(2));
      DiscardSome();
    }
  }

  void DiscardSome() {
    if (discarded_ > (1u << 20)) return Close();
    Lowest().async_read_some(net::buffer(discard_),
                             [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                               if (ec) return self->Close();  // EOF, timeout or reset: done
                               self->discarded_ += n;
                               self->DiscardSome();
                             });
  }

  void Close() {
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    Lowest().close();
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  HttpServer::Impl& server_;
  uint32_t served_ = 0;
  bool counted_ = false;
  std::array<char, 4096> discard_{};
  size_t discarded_ = 0;  // a request of this session counts in in_flight
};

}  // namespace

void HttpServer::Impl::Track(const std::shared_ptr<SessionBase>& session) {
  const std::lock_guard lock(sessions_mutex);
  std::erase_if(sessions, [](const std::weak_ptr<SessionBase>& s) { return s.expired(); });
  sessions.push_back(session);
}

void HttpServer::Impl::CloseSessions() {
  std::vector<std::shared_ptr<SessionBase>> open;
  {
    const std::lock_guard lock(sessions_mutex);
    for (const std::weak_ptr<SessionBase>& weak : sessions) {
      if (auto session = weak.lock()) open.push_back(std::move(session));
    }
    sessions.clear();
  }
  for (const auto& session : open) session->CloseSoon();
}

Status HttpServer::Impl::LoadTls() {
  tls.emplace(net::ssl::context::tls_server);
  beast::error_code ec;
  // TLS 1.2 and newer only; no renegotiation-era protocols.
  tls->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                       net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                       net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use,
                   ec);
  if (!ec) tls->use_certificate_chain_file(options.tls_cert, ec);
  if (ec) {
    return InvalidArgumentError("TLS certificate " + options.tls_cert +
                                " cannot be used: " + ec.message());
  }
  tls->use_private_key_file(options.tls_key, net::ssl::context::pem, ec);
  if (ec) {
    return InvalidArgumentError(
        "TLS private key " + options.tls_key +
        " cannot be used (or does not match the certificate): " + ec.message());
  }
  return Status::Ok();
}

void HttpServer::Impl::Accept() {
  acceptor.async_accept(net::make_strand(ioc), beast::bind_front_handler(&Impl::OnAccept, this));
}

void HttpServer::Impl::OnAccept(beast::error_code ec, tcp::socket socket) {
  if (!acceptor.is_open()) return;  // shutting down
  if (ec) {
    // Out of descriptors (EMFILE) and the like: back off instead of spinning on accept.
    uint64_t suppressed = 0;
    if (accept_log.Admit(&suppressed)) {
      spdlog::warn("serve: accept failed: {}; retrying ({} messages suppressed)", ec.message(),
                   suppressed);
    }
    accept_backoff.expires_after(std::chrono::milliseconds(100));
    accept_backoff.async_wait([this](beast::error_code) {
      if (acceptor.is_open()) Accept();
    });
    return;
  }
  if (connections.load() >= options.max_connections) {
    beast::error_code ignored;
    socket.close(ignored);  // over the limit: refused at once
  } else if (tls) {
    std::make_shared<Session<TlsStream>>(std::move(socket), *this, *tls)->Start();
  } else {
    std::make_shared<Session<beast::tcp_stream>>(std::move(socket), *this)->Start();
  }
  Accept();
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(InferenceService& service,
                                                      const HttpServerOptions& options) {
  if (options.io_threads < 1 || options.io_threads > 64) {
    return InvalidArgumentError("HTTP I/O threads must be within 1..64");
  }
  if (options.request_threads < 1 || options.request_threads > 256) {
    return InvalidArgumentError("HTTP request threads must be within 1..256");
  }
  if (options.max_connections < 1 || options.max_body_bytes < 1 ||
      options.max_header_bytes < 1024) {
    return InvalidArgumentError("HTTP limits must be positive (headers at least 1 KiB)");
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return InvalidArgumentError("HTTP TLS needs both a certificate and a private key");
  }
  auto impl = std::make_shared<Impl>(service, options);
  if (!options.tls_cert.empty()) ZD_RETURN_IF_ERROR(impl->LoadTls());
  impl->routes.token = options.token;
  impl->routes.request_timeout = options.request_timeout;
  impl->routes.draining = &impl->draining;
  beast::error_code ec;
  const net::ip::address address = net::ip::make_address(options.address, ec);
  if (ec) {
    return InvalidArgumentError("HTTP address '" + options.address + "' is not an IP address");
  }
  const tcp::endpoint endpoint(address, options.port);
  const std::string where = options.address + ":" + std::to_string(options.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return UnavailableError("cannot listen for HTTP on " + where + ": " + ec.message());
  impl->requests.emplace(static_cast<size_t>(options.request_threads));
  impl->work.emplace(impl->ioc.get_executor());
  impl->Accept();
  try {
    for (int i = 0; i < options.io_threads; ++i) {
      impl->io_threads.emplace_back([raw = impl.get()] { raw->ioc.run(); });
    }
  } catch (const std::system_error& e) {
    auto server = std::unique_ptr<HttpServer>(new HttpServer(impl));
    server->Shutdown(std::chrono::milliseconds(0));
    return ResourceExhaustedError(std::string("cannot start HTTP threads: ") + e.what());
  }
  spdlog::info("serve: HTTP{} on {}:{}", impl->tls ? "S" : "", options.address,
               impl->acceptor.local_endpoint().port());
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  Shutdown(std::chrono::milliseconds(0));
}

uint16_t HttpServer::port() const {
  beast::error_code ec;
  const tcp::endpoint endpoint = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

int HttpServer::Shutdown(std::chrono::milliseconds grace) {
  Impl& impl = *impl_;
  if (impl.shut_down) return 0;
  impl.shut_down = true;
  impl.draining = true;
  net::post(impl.ioc, [&impl] {
    beast::error_code ec;
    impl.acceptor.close(ec);
    impl.accept_backoff.cancel();
  });
  const Deadline deadline = Deadline::After(grace);
  while (impl.in_flight.load() > 0 && !deadline.expired()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const int left = impl.in_flight.load();
  impl.stopped = true;
  // Connections still open (idle keep-alive, a request not read yet, one past the grace) are
  // closed, so no client waits on a server that has gone; the I/O threads run the closes.
  impl.CloseSessions();
  const Deadline closing = Deadline::After(std::chrono::seconds(1));
  while (impl.connections.load() > 0 && !closing.expired()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  impl.work.reset();
  impl.ioc.stop();
  for (std::thread& t : impl.io_threads) t.join();
  impl.io_threads.clear();
  // Requests still queued answer "shutting down" to nobody; running ones finish their Run.
  if (impl.requests) impl.requests->join();
  return left;
}

}  // namespace zerodet::server

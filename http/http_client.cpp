#include "http/http_client.hpp"

#include "util/run_loop.hpp"

#include <caf/error.hpp>
#include <caf/sec.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>

#include <optional>
#include <thread>

namespace wsc {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

caf::error bad_url(const std::string& text, const char* why) {
  return caf::make_error(caf::sec::invalid_argument,
                         "webhook-url '" + text + "': " + why);
}

/// One POST: resolve, connect, (TLS handshake), write, read, done. A timer
/// bounds the whole exchange; whatever finishes first calls `finish`.
template<class Stream>
class post_op : public std::enable_shared_from_this<post_op<Stream>> {
public:
  template<class... Ts>
  post_op(asio::io_context& ioc, http_url url, std::string body,
          const http_client::headers& hdrs, http_client::callback done,
          Ts&&... stream_args)
      : stream_(std::forward<Ts>(stream_args)...), resolver_(ioc),
        deadline_(ioc), url_(std::move(url)), done_(std::move(done)) {
    req_.method(http::verb::post);
    req_.target(url_.target);
    req_.version(11);
    auto default_port = url_.tls ? "443" : "80";
    req_.set(http::field::host, url_.port == default_port
                                    ? url_.host
                                    : url_.host + ":" + url_.port);
    req_.set(http::field::user_agent, "wscluster");
    req_.set(http::field::content_type, "application/json");
    req_.set(http::field::connection, "close");
    for (auto& [name, value] : hdrs)
      req_.set(name, value);
    req_.body() = std::move(body);
    req_.prepare_payload();
    parser_.body_limit(64 * 1024);
  }

  void start(std::chrono::milliseconds timeout) {
    auto self = this->shared_from_this();
    deadline_.expires_after(timeout);
    deadline_.async_wait([self](beast::error_code ec) {
      if (!ec)
        self->finish(http_result{false, 0, "timeout"});
    });
    auto host = url_.host;
    if (host.size() > 2 && host.front() == '[')
      host = host.substr(1, host.size() - 2);
    resolver_.async_resolve(
        host, url_.port,
        [self](beast::error_code ec, tcp::resolver::results_type results) {
          if (ec)
            return self->fail("resolve", ec);
          beast::get_lowest_layer(self->stream_)
              .async_connect(
                  results, [self](beast::error_code ec, const tcp::endpoint&) {
                    if (ec)
                      return self->fail("connect", ec);
                    self->handshake();
                  });
        });
  }

private:
  void handshake();

  void write() {
    auto self = this->shared_from_this();
    http::async_write(stream_, req_, [self](beast::error_code ec, std::size_t) {
      if (ec)
        return self->fail("write", ec);
      self->read();
    });
  }

  void read() {
    auto self = this->shared_from_this();
    http::async_read(stream_, buffer_, parser_,
                     [self](beast::error_code ec, std::size_t) {
                       if (ec)
                         return self->fail("read", ec);
                       auto status = self->parser_.get().result_int();
                       http_result r;
                       r.status = status;
                       r.ok = status >= 200 && status < 300;
                       if (!r.ok)
                         r.error = "HTTP " + std::to_string(status);
                       self->finish(std::move(r));
                     });
  }

  void fail(const char* what, const beast::error_code& ec) {
    finish(http_result{false, 0, std::string{what} + ": " + ec.message()});
  }

  void finish(http_result r) {
    if (!done_)
      return;
    auto done = std::move(done_);
    done_ = nullptr;
    deadline_.cancel();
    resolver_.cancel();
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(
        tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).close();
    done(std::move(r));
  }

  Stream stream_;
  tcp::resolver resolver_;
  asio::steady_timer deadline_;
  http_url url_;
  http::request<http::string_body> req_;
  http::response_parser<http::string_body> parser_;
  /// Bounded: Beast keeps a chunked answer's trailer fields whole, bounded
  /// by nothing else, and throws for one of 64 KiB (as in the HTTP server:
  /// net/http_session.cpp).
  beast::flat_buffer buffer_{32 * 1024};
  http_client::callback done_;
};

template<>
void post_op<beast::tcp_stream>::handshake() {
  write();
}

template<>
void post_op<beast::ssl_stream<beast::tcp_stream>>::handshake() {
  auto host = url_.host;
  if (host.size() > 2 && host.front() == '[')
    host = host.substr(1, host.size() - 2);
  // SNI, and the certificate must name this host (or IP address).
  if (!SSL_set_tlsext_host_name(stream_.native_handle(), host.c_str()))
    return finish(http_result{false, 0, "TLS: cannot set SNI"});
  stream_.set_verify_mode(ssl::verify_peer);
  stream_.set_verify_callback(ssl::host_name_verification(host));
  auto self = shared_from_this();
  stream_.async_handshake(ssl::stream_base::client,
                          [self](beast::error_code ec) {
                            if (ec)
                              return self->fail("TLS handshake", ec);
                            self->write();
                          });
}

class beast_http_client : public http_client {
public:
  beast_http_client()
      : tls_(ssl::context::tls_client), work_(ioc_.get_executor()) {}

  caf::error init(const std::string& ca_file) {
    beast::error_code ec;
    tls_.set_default_verify_paths(ec);
    if (ec)
      return caf::make_error(caf::sec::invalid_argument,
                             "cannot load the system CA store: " +
                                 ec.message());
    if (!ca_file.empty()) {
      tls_.load_verify_file(ca_file, ec);
      if (ec)
        return caf::make_error(caf::sec::invalid_argument,
                               "webhook-ca '" + ca_file + "': " + ec.message());
    }
    tls_.set_verify_mode(ssl::verify_peer);
    thread_ = std::thread{[this] {
      run_loop(ioc_, "wsc.http");
    }};
    return caf::none;
  }

  ~beast_http_client() override { stop(); }

  void post(const http_url& url, headers hdrs, std::string body,
            std::chrono::milliseconds timeout, callback done) override {
    asio::post(ioc_, [this, url, hdrs = std::move(hdrs), body = std::move(body),
                      timeout, done = std::move(done)]() mutable {
      if (url.tls) {
        using op = post_op<beast::ssl_stream<beast::tcp_stream>>;
        std::make_shared<op>(ioc_, url, std::move(body), hdrs, std::move(done),
                             asio::make_strand(ioc_), tls_)
            ->start(timeout);
      } else {
        using op = post_op<beast::tcp_stream>;
        std::make_shared<op>(ioc_, url, std::move(body), hdrs, std::move(done),
                             asio::make_strand(ioc_))
            ->start(timeout);
      }
    });
  }

  void stop() override {
    if (!thread_.joinable())
      return;
    work_.reset();
    ioc_.stop();
    thread_.join();
  }

private:
  asio::io_context ioc_;
  ssl::context tls_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

} // namespace

caf::expected<http_url> parse_http_url(const std::string& text) {
  http_url result;
  std::string rest;
  if (text.rfind("https://", 0) == 0) {
    result.tls = true;
    rest = text.substr(8);
  } else if (text.rfind("http://", 0) == 0) {
    rest = text.substr(7);
  } else {
    return bad_url(text, "expected http:// or https://");
  }
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  result.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (authority.find('@') != std::string::npos)
    return bad_url(text, "user info is not supported");
  auto colon = authority.rfind(':');
  auto bracket = authority.rfind(']');
  if (colon != std::string::npos &&
      (bracket == std::string::npos || colon > bracket)) {
    result.host = authority.substr(0, colon);
    result.port = authority.substr(colon + 1);
  } else {
    result.host = authority;
    result.port = result.tls ? "443" : "80";
  }
  if (result.host.empty())
    return bad_url(text, "no host");
  if (result.port.empty() || result.port.size() > 5 ||
      result.port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(result.port) == 0 || std::stoul(result.port) > 65535)
    return bad_url(text, "bad port");
  for (char c : result.target + result.host)
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f)
      return bad_url(text, "spaces or control characters");
  return result;
}

http_client::~http_client() {
  // nop
}

caf::expected<std::shared_ptr<http_client>>
http_client::make(const std::string& ca_file) {
  auto client = std::make_shared<beast_http_client>();
  if (auto err = client->init(ca_file))
    return err;
  return std::shared_ptr<http_client>{std::move(client)};
}

} // namespace wsc

#pragma once

// -- Outgoing HTTP(S) POSTs (webhooks) ----------------------------------------
//
// One thread with its own io_context runs every request: callers never
// block, and no actor scheduler thread ever waits for a slow backend. https
// verifies the peer's certificate against the system CA store (plus an
// optional CA file) and its host name, and sends SNI. Beast stays inside
// http_client.cpp (slow to compile): this header is plain C++.

#include <caf/expected.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace wsc {

/// The parts of an `http://` or `https://` URL a POST needs.
struct http_url {
  bool tls = false;
  std::string host;
  std::string port;
  /// Path and query, `/` when the URL has none.
  std::string target;
};

/// Parses `http[s]://host[:port][/path]` (IPv6 hosts in brackets).
caf::expected<http_url> parse_http_url(const std::string& text);

/// What became of one POST.
struct http_result {
  /// The server answered 2xx.
  bool ok = false;
  /// The HTTP status, 0 if none came (connect, TLS or timeout error).
  unsigned status = 0;
  /// Why it failed (empty when ok).
  std::string error;
};

/// Sends POST requests from a thread of its own.
class http_client {
public:
  using headers = std::vector<std::pair<std::string, std::string>>;
  /// Runs on the client's thread: keep it short (e.g. a caf::anon_send).
  using callback = std::function<void(http_result)>;

  /// Starts the client's thread; `ca_file` (PEM, may be empty) is trusted
  /// besides the system store.
  static caf::expected<std::shared_ptr<http_client>>
  make(const std::string& ca_file);

  virtual ~http_client();

  /// POSTs `body` to `url`; `done` gets the result once, within about
  /// `timeout` (resolve, connect, TLS, write and read together).
  virtual void post(const http_url& url, headers hdrs, std::string body,
                    std::chrono::milliseconds timeout, callback done) = 0;

  /// Stops the thread; pending requests are abandoned (their callbacks may
  /// not run). Called by the destructor too.
  virtual void stop() = 0;
};

} // namespace wsc

#pragma once

// -- A blocking hiredis connection, owned by the Redis STATE_STORE ------------
//
// hiredis handles live in unique_ptrs with deleters; hiredis' error flags
// (REDIS_ERR_*) and error replies map onto wsc::ec. Errors of a context are
// sticky: once `broken()`, every call fails until a new connection replaces
// this one.

#include "config/options.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsc {

/// Frees a hiredis context.
struct redis_context_deleter {
  void operator()(redisContext* x) const noexcept { redisFree(x); }
};

/// Frees a hiredis reply (with its elements).
struct redis_reply_deleter {
  void operator()(redisReply* x) const noexcept { freeReplyObject(x); }
};

using redis_context_ptr = std::unique_ptr<redisContext, redis_context_deleter>;
using redis_reply_ptr = std::unique_ptr<redisReply, redis_reply_deleter>;

/// Maps an error reply of Redis onto our errors: replies that mean "not now"
/// (LOADING, BUSY, MASTERDOWN, READONLY, NOAUTH, OOM...) become
/// `ec::unavailable`, every other one `ec::internal`. The text is Redis'.
caf::error redis_reply_error(const redisReply& x);

/// Whether `x` is the error reply `NOSCRIPT` (EVALSHA of an unknown script).
bool is_noscript(const redisReply& x);

/// `WAIT <replicas> <timeout>`: Redis answers once that many replicas
/// acknowledged every write sent before on the same connection, or at the
/// timeout with how many did. It has no key: it must follow the writes it
/// confirms on their connection (on a Redis Cluster, their master's).
struct redis_wait {
  redis_wait(int64_t replicas, std::chrono::milliseconds timeout)
      : replicas(std::to_string(replicas)),
        timeout(std::to_string(timeout.count())) {
    // nop
  }

  std::vector<std::string_view> argv() const {
    return {"WAIT", replicas, timeout};
  }

  std::string replicas;
  std::string timeout;
};

/// The replicas a WAIT reply counts; none for anything but an integer >= 0
/// (e.g. the error WAIT gets from a replica): nothing confirmed.
std::optional<int64_t> parse_wait_reply(const redisReply& x);

/// The I/O deadline of a connection whose requests time out after
/// `request_timeout`: that, within [100 ms, 2 s].
std::chrono::milliseconds
redis_io_timeout(std::chrono::milliseconds request_timeout);

/// Blocks SIGPIPE in the calling thread: hiredis writes with write(2), and a
/// write to a closed socket must give EPIPE, not kill the process (main
/// ignores SIGPIPE too; this covers other hosts).
void block_sigpipe_in_this_thread();

/// One blocking connection to Redis with connect and I/O timeouts.
class redis_connection {
public:
  using duration = std::chrono::milliseconds;

  redis_connection() = default;

  /// Connects to `url` (waiting at most `connect_timeout`), authenticates,
  /// selects the db and checks that PING answers. Afterwards each read or
  /// write waits at most `io_timeout`. The error's text is one line without
  /// the URL, e.g. "Connection refused" (the caller names the server).
  static caf::expected<redis_connection>
  open(const redis_url& url, duration connect_timeout, duration io_timeout);

  /// The hiredis context (null if none): redis_pipeline drives it without
  /// blocking.
  redisContext* native() const noexcept { return ctx_.get(); }

  /// Whether a context exists and has no (sticky) error.
  bool ok() const noexcept { return ctx_ != nullptr && ctx_->err == 0; }

  /// Appends a command to the output buffer; nothing is sent before the
  /// next `read`. Arguments travel as binary-safe argv, never interpolated.
  void append(const std::vector<std::string_view>& argv);

  /// Sends what is buffered and reads the next reply. An error reply is a
  /// reply, not an error: errors here mean the connection is broken.
  caf::expected<redis_reply_ptr> read();

  /// Waits at most `wait` for the next reply without sending anything (for a
  /// connection in subscribe mode). No reply in time is not an error: the
  /// result is then a null pointer and the connection stays usable.
  caf::expected<redis_reply_ptr> wait_reply(duration wait);

  /// Appends one command and reads its reply.
  caf::expected<redis_reply_ptr>
  command(const std::vector<std::string_view>& argv);

  /// Loads a Lua script and returns its SHA1.
  caf::expected<std::string> load_script(const std::string& source);

  /// The error of a broken connection (`ec::unavailable` for I/O errors,
  /// EOF and failed connects, `ec::internal` for protocol errors and OOM).
  caf::error error() const;

private:
  explicit redis_connection(redis_context_ptr ctx) : ctx_(std::move(ctx)) {
    // nop
  }

  redis_context_ptr ctx_;
  duration io_timeout_{0};
  /// Reused argument buffers of `append`.
  std::vector<const char*> argv_;
  std::vector<size_t> argv_len_;
};

} // namespace wsc

#include "adapters/redis_connection.hpp"

#include "protocol/error.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace wsc {

namespace {

timeval to_timeval(std::chrono::milliseconds x) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(x.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((x.count() % 1000) * 1000);
  return tv;
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

std::string_view reply_text(const redisReply& x) {
  if (x.str == nullptr)
    return {};
  return {x.str, x.len};
}

/// The text of a hiredis context error, made readable: a read that timed
/// out says "Resource temporarily unavailable" (EAGAIN).
std::string context_error_text(const redisContext& ctx,
                               std::chrono::milliseconds io_timeout) {
  std::string text = ctx.errstr;
  if (ctx.err == REDIS_ERR_IO &&
      (text == std::strerror(EAGAIN) || text == std::strerror(EWOULDBLOCK)))
    return "no answer within " + std::to_string(io_timeout.count()) + "ms";
  if (ctx.err == REDIS_ERR_EOF)
    return "connection closed by the server";
  if (text.empty())
    return "connection error " + std::to_string(ctx.err);
  return text;
}

} // namespace

caf::error redis_reply_error(const redisReply& x) {
  auto text = reply_text(x);
  for (auto prefix : {"LOADING", "BUSY", "MASTERDOWN", "READONLY", "NOAUTH",
                      "OOM", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS"})
    if (starts_with(text, prefix))
      return make_error(ec::unavailable, "Redis: " + std::string{text});
  return make_error(ec::internal, "Redis: " + std::string{text});
}

bool is_noscript(const redisReply& x) {
  return x.type == REDIS_REPLY_ERROR && starts_with(reply_text(x), "NOSCRIPT");
}

std::optional<int64_t> parse_wait_reply(const redisReply& x) {
  if (x.type != REDIS_REPLY_INTEGER || x.integer < 0)
    return std::nullopt;
  return static_cast<int64_t>(x.integer);
}

std::chrono::milliseconds
redis_io_timeout(std::chrono::milliseconds request_timeout) {
  using std::chrono::milliseconds;
  return std::clamp(request_timeout, milliseconds{100}, milliseconds{2000});
}

void block_sigpipe_in_this_thread() {
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
}

caf::expected<redis_connection> redis_connection::open(const redis_url& url,
                                                       duration connect_timeout,
                                                       duration io_timeout) {
  redis_context_ptr ctx{redisConnectWithTimeout(url.host.c_str(), url.port,
                                                to_timeval(connect_timeout))};
  if (ctx == nullptr)
    return make_error(ec::internal, "cannot allocate a hiredis context");
  if (ctx->err != 0)
    return make_error(ec::unavailable,
                      context_error_text(*ctx, connect_timeout));
  redis_connection result{std::move(ctx)};
  // The handshake waits no longer than a connect.
  result.io_timeout_ = connect_timeout;
  if (redisSetTimeout(result.ctx_.get(), to_timeval(connect_timeout)) !=
      REDIS_OK)
    return result.error();
  // Finds a peer that vanished without a FIN on an idle connection.
  redisEnableKeepAlive(result.ctx_.get());
  auto run = [&](const std::vector<std::string_view>& argv,
                 std::string_view what) -> caf::error {
    auto reply = result.command(argv);
    if (!reply)
      return std::move(reply.error());
    if ((*reply)->type == REDIS_REPLY_ERROR)
      return make_error(ec::unavailable, std::string{what} + " failed: " +
                                             std::string{reply_text(**reply)});
    return caf::none;
  };
  if (!url.password.empty())
    if (auto err = run({"AUTH", url.password}, "AUTH"))
      return err;
  if (url.db != 0)
    if (auto err = run({"SELECT", std::to_string(url.db)}, "SELECT"))
      return err;
  if (auto err = run({"PING"}, "PING"))
    return err;
  result.io_timeout_ = io_timeout;
  if (redisSetTimeout(result.ctx_.get(), to_timeval(io_timeout)) != REDIS_OK)
    return result.error();
  return result;
}

void redis_connection::append(const std::vector<std::string_view>& argv) {
  if (ctx_ == nullptr)
    return;
  argv_.clear();
  argv_len_.clear();
  for (auto& x : argv) {
    argv_.push_back(x.data());
    argv_len_.push_back(x.size());
  }
  redisAppendCommandArgv(ctx_.get(), static_cast<int>(argv_.size()),
                         argv_.data(), argv_len_.data());
}

caf::expected<redis_reply_ptr> redis_connection::read() {
  if (!ok())
    return error();
  void* reply = nullptr;
  if (redisGetReply(ctx_.get(), &reply) != REDIS_OK || reply == nullptr) {
    if (reply != nullptr)
      freeReplyObject(reply);
    return error();
  }
  return redis_reply_ptr{static_cast<redisReply*>(reply)};
}

caf::expected<redis_reply_ptr> redis_connection::wait_reply(duration wait) {
  if (!ok())
    return error();
  void* reply = nullptr;
  // A reply may already sit in the reader's buffer from an earlier read.
  if (redisGetReplyFromReader(ctx_.get(), &reply) != REDIS_OK)
    return error();
  if (reply == nullptr) {
    pollfd readable{ctx_->fd, POLLIN, 0};
    auto n = ::poll(&readable, 1, static_cast<int>(wait.count()));
    if (n < 0 && errno != EINTR)
      return make_error(ec::unavailable, std::strerror(errno));
    if (n <= 0)
      return redis_reply_ptr{};
    if (redisBufferRead(ctx_.get()) != REDIS_OK ||
        redisGetReplyFromReader(ctx_.get(), &reply) != REDIS_OK) {
      if (reply != nullptr)
        freeReplyObject(reply);
      return error();
    }
  }
  return redis_reply_ptr{static_cast<redisReply*>(reply)};
}

caf::expected<redis_reply_ptr>
redis_connection::command(const std::vector<std::string_view>& argv) {
  append(argv);
  return read();
}

caf::expected<std::string>
redis_connection::load_script(const std::string& source) {
  auto reply = command({"SCRIPT", "LOAD", source});
  if (!reply)
    return std::move(reply.error());
  auto& x = **reply;
  if (x.type == REDIS_REPLY_ERROR)
    return make_error(ec::internal,
                      "SCRIPT LOAD failed: " + std::string{reply_text(x)});
  if (x.type != REDIS_REPLY_STRING)
    return make_error(ec::internal, "SCRIPT LOAD: unexpected reply");
  return std::string{reply_text(x)};
}

caf::error redis_connection::error() const {
  if (ctx_ == nullptr)
    return make_error(ec::unavailable, "not connected");
  if (ctx_->err == 0)
    return make_error(ec::internal, "no hiredis error set");
  auto text = context_error_text(*ctx_, io_timeout_);
  switch (ctx_->err) {
  case REDIS_ERR_PROTOCOL:
  case REDIS_ERR_OOM:
    return make_error(ec::internal, std::move(text));
  default: // REDIS_ERR_IO, REDIS_ERR_EOF, REDIS_ERR_OTHER (e.g. DNS)
    return make_error(ec::unavailable, std::move(text));
  }
}

} // namespace wsc

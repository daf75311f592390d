#include "adapters/redis_pipeline.hpp"

#include "loop/loop_coordinator.hpp"
#include "protocol/error.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fcntl.h>
#include <hiredis/hiredis.h>

#include <deque>
#include <string>

namespace wsc {

namespace asio = boost::asio;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

class pipeline_impl final : public redis_pipeline,
                            public std::enable_shared_from_this<pipeline_impl> {
public:
  pipeline_impl(asio::io_context& ioc, redis_connection conn,
                milliseconds io_timeout, fail_handler on_fail)
      : socket_(ioc), timer_(ioc), conn_(std::move(conn)),
        io_timeout_(io_timeout), on_fail_(std::move(on_fail)) {
    auto ctx = conn_.native();
    if (ctx == nullptr || !conn_.ok()) {
      error_ = make_error(ec::unavailable, "no connection to Redis");
      return;
    }
    // hiredis treats EAGAIN as "try later" only without REDIS_BLOCK.
    auto flags = ::fcntl(ctx->fd, F_GETFL);
    if (flags < 0 || ::fcntl(ctx->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
      error_ = make_error(ec::unavailable, "cannot make the Redis socket "
                                           "non-blocking");
      return;
    }
    ctx->flags &= ~REDIS_BLOCK;
    boost::system::error_code ec;
    socket_.assign(ctx->fd, ec);
    if (ec)
      error_ = make_error(ec::unavailable, ec.message());
  }

  ~pipeline_impl() override {
    // hiredis closes the descriptor (redisFree), not Asio.
    if (socket_.is_open())
      socket_.release();
  }

  bool send(const std::vector<std::vector<std::string_view>>& commands,
            handler done) override {
    if (!ok())
      return false;
    for (auto& argv : commands)
      conn_.append(argv);
    pending_.push_back(request{commands.size(),
                               {},
                               std::move(done),
                               steady_clock::now() + io_timeout_});
    write();
    if (ok()) {
      wait_readable();
      watch_time();
    }
    return true;
  }

  /// Watches the socket from now on (a close while idle is an error).
  void start() { wait_readable(); }

  bool ok() const override { return !error_; }

  const caf::error& error() const override { return error_; }

  void close() override {
    fail(make_error(ec::unavailable, "connection to Redis closed"));
  }

private:
  struct request {
    size_t expected;
    replies got;
    handler done;
    steady_clock::time_point deadline;
  };

  /// Writes what hiredis buffered; waits for the socket when it is full.
  void write() {
    if (writing_ || !ok())
      return;
    int done = 0;
    if (redisBufferWrite(conn_.native(), &done) != REDIS_OK)
      return fail(conn_.error());
    if (done)
      return;
    when_ready(asio::posix::stream_descriptor::wait_write,
               &pipeline_impl::writing_, &pipeline_impl::write);
  }

  void wait_readable() {
    if (reading_ || !ok())
      return;
    when_ready(asio::posix::stream_descriptor::wait_read,
               &pipeline_impl::reading_, &pipeline_impl::read);
  }

  /// Waits until the socket is ready for `what`, then runs `next`; `busy`
  /// is set meanwhile.
  void when_ready(asio::posix::stream_descriptor::wait_type what,
                  bool pipeline_impl::*busy, void (pipeline_impl::*next)()) {
    this->*busy = true;
    socket_.async_wait(what, [self = shared_from_this(), busy,
                              next](const boost::system::error_code& ec) {
      loop_coordinator::handler_scope scope;
      (*self).*busy = false;
      if (ec == asio::error::operation_aborted)
        return;
      if (ec)
        return self->fail(make_error(ec::unavailable, ec.message()));
      ((*self).*next)();
    });
  }

  /// Reads what arrived and hands complete requests their replies.
  void read() {
    if (!ok())
      return;
    if (redisBufferRead(conn_.native()) != REDIS_OK)
      return fail(conn_.error());
    for (;;) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(conn_.native(), &raw) != REDIS_OK)
        return fail(conn_.error());
      if (raw == nullptr)
        break;
      redis_reply_ptr reply{static_cast<redisReply*>(raw)};
      if (pending_.empty())
        return fail(make_error(ec::internal, "Redis sent a reply nobody "
                                             "asked for"));
      auto& front = pending_.front();
      front.got.emplace_back(std::move(reply));
      if (front.got.size() < front.expected)
        continue;
      auto req = std::move(front);
      pending_.pop_front();
      // May send more (a next stage) or close us.
      req.done(std::move(req.got));
      if (!ok())
        return;
    }
    wait_readable();
  }

  /// While requests are pending, wakes at the oldest one's deadline (one
  /// timer for all: set when none is pending, not re-armed per request).
  void watch_time() {
    if (watching_ || pending_.empty() || !ok())
      return;
    watching_ = true;
    timer_.expires_at(pending_.front().deadline);
    timer_.async_wait(
        [self = shared_from_this()](const boost::system::error_code& ec) {
          self->watching_ = false;
          if (ec == asio::error::operation_aborted || !self->ok() ||
              self->pending_.empty())
            return;
          if (steady_clock::now() >= self->pending_.front().deadline)
            return self->fail(make_error(
                ec::unavailable, "Redis did not answer within " +
                                     std::to_string(self->io_timeout_.count()) +
                                     "ms"));
          self->watch_time();
        });
  }

  /// Breaks the connection: every pending request gets its replies so far
  /// and `why` for the rest.
  void fail(caf::error why) {
    if (error_)
      return;
    error_ = std::move(why);
    boost::system::error_code ignored;
    socket_.cancel(ignored);
    timer_.cancel();
    if (socket_.is_open())
      socket_.release();
    conn_ = redis_connection{};
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& req : pending) {
      while (req.got.size() < req.expected)
        req.got.emplace_back(error_);
      req.done(std::move(req.got));
    }
    if (auto on_fail = std::move(on_fail_))
      on_fail(error_);
  }

  asio::posix::stream_descriptor socket_;
  asio::steady_timer timer_;
  redis_connection conn_;
  milliseconds io_timeout_;
  fail_handler on_fail_;
  std::deque<request> pending_;
  caf::error error_;
  bool writing_ = false;
  bool reading_ = false;
  bool watching_ = false;
};

} // namespace

redis_pipeline::~redis_pipeline() {
  // nop
}

std::shared_ptr<redis_pipeline> redis_pipeline::make(asio::io_context& ioc,
                                                     redis_connection conn,
                                                     milliseconds io_timeout,
                                                     fail_handler on_fail) {
  auto result = std::make_shared<pipeline_impl>(ioc, std::move(conn),
                                                io_timeout, std::move(on_fail));
  result->start();
  return result;
}

} // namespace wsc

#pragma once

// A pipelined connection to one Redis that never blocks: commands go out
// with non-blocking writes, replies come back when an Asio event loop sees
// the socket readable. The STORE uses it with scheduler-policy=loop, where a
// blocking read would stall every connection of the loop.
//
// Built on an established redis_connection (connected, authenticated, db
// selected: the blocking handshake happens elsewhere, off the loop); the
// socket is switched to non-blocking mode and read with hiredis' own reader
// (redisBufferRead, redisGetReplyFromReader), so replies are the same
// redisReply trees the blocking connection returns. Every call and every
// handler runs on the thread of the io_context given at creation.

#include "adapters/redis_connection.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace wsc {

class redis_pipeline {
public:
  /// One reply per command, in order; an error where the connection broke
  /// before the reply came (the commands before it ran).
  using replies = std::vector<caf::expected<redis_reply_ptr>>;

  using handler = std::function<void(replies)>;

  /// Called once when the connection breaks (after the pending requests got
  /// their errors), also while idle: the socket is watched all the time, so
  /// a server that closes it is noticed before the next request.
  using fail_handler = std::function<void(const caf::error&)>;

  /// Takes over `conn`; a request without its replies after `io_timeout`
  /// breaks the connection.
  static std::shared_ptr<redis_pipeline>
  make(boost::asio::io_context& ioc, redis_connection conn,
       std::chrono::milliseconds io_timeout, fail_handler on_fail);

  virtual ~redis_pipeline();

  /// Sends `commands` after those in flight; `done` gets their replies. False
  /// (and `done` is dropped) if the connection is broken.
  virtual bool send(const std::vector<std::vector<std::string_view>>& commands,
                    handler done) = 0;

  /// Whether the connection works.
  virtual bool ok() const = 0;

  /// Why the connection broke (none while it works).
  virtual const caf::error& error() const = 0;

  /// Closes the connection; pending requests get an error.
  virtual void close() = 0;
};

} // namespace wsc

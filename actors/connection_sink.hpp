#pragma once

#include "protocol/messages.hpp"

#include <chrono>
#include <cstdint>
#include <string>

namespace wsc {

/// The socket side of a connection, implemented by the WebSocket session.
/// Every call may come from any thread: they only hand work to the socket's
/// own executor.
class connection_sink {
public:
  virtual ~connection_sink() = default;

  /// Queues a text frame. Past `send-queue-limit` queued `counted` frames
  /// or `send-queue-bytes` queued bytes the connection is closed with 1008
  /// instead. Uncounted frames (welcome, the pages of a replay, which the
  /// REGISTRY writes only while `queued_bytes()` leaves room) never close it.
  virtual void write(frame_ptr frame, bool counted) = 0;

  /// The client's address as the handshake middlewares left it (empty:
  /// none known).
  virtual const std::string& client_address() const {
    static const std::string none;
    return none;
  }

  /// Bytes of every frame queued and not yet written.
  virtual uint64_t queued_bytes() const { return 0; }

  /// Closes the WebSocket with a close code, after the frames already queued.
  virtual void close(uint16_t code, std::string reason) = 0;

  /// Closes the WebSocket as `close` does once `after` has passed (a token's
  /// expiry); a later call replaces the deadline. The deadline lives with
  /// the socket and goes with it: a connection that ends earlier leaves
  /// nothing scheduled behind (CAF 0.17 cannot cancel a delayed message, and
  /// one would keep the ended CONNECTION's memory until it fired).
  virtual void close_after(std::chrono::milliseconds after, uint16_t code,
                           std::string reason) = 0;

  /// The CONNECTION actor answered one of the frames read from the socket
  /// (ack, reply or error). The session reads ahead at most a few frames
  /// that are not answered yet: an overloaded node slows its senders down
  /// through TCP instead of queueing without bound.
  virtual void frame_answered() {
    // nop: sinks that do not read ahead (tests) need no signal
  }
};

} // namespace wsc

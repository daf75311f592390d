#pragma once

#include "actors/actors.hpp"
#include "actors/node_context.hpp"
#include "middleware/middleware.hpp"

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace wsc {

/// A token bucket: `rate` frames per second, bursts of twice that. Persistent
/// excess (more than `rate` refused frames within one second) asks for the
/// connection to be closed.
class rate_limiter {
public:
  using clock = std::chrono::steady_clock;

  enum class verdict { pass, refuse, close };

  explicit rate_limiter(uint64_t rate, clock::time_point now = clock::now());

  verdict take(clock::time_point now = clock::now());

private:
  double rate_;
  double tokens_;
  clock::time_point refilled_;
  clock::time_point window_start_;
  uint64_t refused_in_window_ = 0;
};

/// The state of a CONNECTION actor.
struct connection_state {
  static inline const char* name = "connection";

  node_context_ptr node;
  std::weak_ptr<connection_sink> sink;
  open_context opening;
  /// The uid is bound and `welcome` was written.
  bool open = false;
  /// Frames read before the connection was open, handled once it is.
  std::vector<std::string> early_frames;
  std::optional<rate_limiter> limiter;
  /// Counts the token expiry timers armed (at open, then per `refresh`):
  /// only the latest one closes the connection with 4003.
  uint64_t expiry_generation = 0;

  connection_actor::stateful_pointer<connection_state> self = nullptr;

  /// Writes an encoded frame to the socket.
  void write(std::string frame);

  /// Asks the socket to close.
  void close(uint16_t code, std::string reason);

  /// Closes the connection with 4003 at `exp_s` (seconds since the epoch, a
  /// token's `exp`) instead of any expiry armed before.
  void arm_expiry(int64_t exp_s);

  /// Handles one client frame: limits, RECV_MESSAGE, parsing, dispatch.
  /// Tells the sink once the frame is answered.
  void handle(std::string text);

  /// Starts handling a frame; false if it was answered already, true if an
  /// asynchronous answer will call `answered` later.
  bool dispatch(std::string text);

  /// With `group-join=token`, whether a `join` frame names a group of the
  /// connection's token (its JWT `groups` claim).
  bool may_join(const nlohmann::json& frame) const;

  /// One frame got its answer (see connection_sink::frame_answered).
  void answered();

  /// Sends an error frame.
  void fail(const std::string& id, ec code, const std::string& message);
};

/// Spawn arguments: the session's sink and the identity from the handshake.
connection_actor::behavior_type
connection(connection_actor::stateful_pointer<connection_state> self,
           node_context_ptr node, std::weak_ptr<connection_sink> sink,
           open_context opening);

} // namespace wsc

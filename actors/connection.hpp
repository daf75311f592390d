#pragma once

#include "actors/actors.hpp"
#include "actors/behaviour_table.hpp"
#include "actors/builtins.hpp"
#include "actors/connection_sink.hpp"
#include "actors/event_bus.hpp"
#include "actors/metrics.hpp"
#include "middleware/middleware.hpp"
#include "protocol/codec.hpp"
#include "protocol/frames.hpp"

#include <nlohmann/json_fwd.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace wsc {

/// A token bucket: `rate` frames per second, bursts of twice that. Persistent
/// excess (more than `rate` refused frames within one second) asks for the
/// connection to be closed. A rate of 0 limits nothing.
class rate_limiter {
public:
  using clock = std::chrono::steady_clock;

  enum class verdict { pass, refuse, close };

  explicit rate_limiter(uint64_t rate, clock::time_point now = clock::now());

  /// Whether there is a limit at all (else `take` need not be asked).
  bool limits() const { return rate_ > 0; }

  verdict take(clock::time_point now = clock::now());

  /// Takes `frames` more frames' worth from the bucket for a frame that
  /// passed `take` and costs more than one (a query of many uids); the
  /// bucket may go into debt, which the next frames pay, of at most a
  /// second's frames.
  void charge(double frames) { tokens_ = std::max(tokens_ - frames, -rate_); }

private:
  double rate_;
  double tokens_;
  clock::time_point refilled_;
  clock::time_point window_start_;
  uint64_t refused_in_window_ = 0;
};

/// A socket side that applies a frame codec (the WebSocket session). Frames
/// given to `write` are pushes it encodes itself (`encode_push`); the
/// CONNECTION encodes its answers (`encode_answer`, it alone knows the
/// frame they answer) and hands them over with `write_encoded`.
class codec_sink : public connection_sink {
public:
  /// The codec of the connection; null for the json codec (the identity:
  /// nothing is decoded or encoded).
  virtual const frame_codec_ptr& codec() const = 0;

  /// Queues a frame encoded already, like `write` otherwise.
  virtual void write_encoded(frame_ptr frame, bool counted) = 0;
};

/// Marks a binary frame's payload on its way from the session to a
/// CONNECTION whose codec is not the identity (the actor's `frame` message
/// carries text only). Text frames are valid UTF-8 and never start with
/// this byte.
constexpr char binary_frame_mark = '\xFF';

/// What answering a frame needs: its `id` as JSON text (empty without one)
/// and what the codec kept of it (frame_codec::decode).
struct request_info {
  std::string id;
  std::string context;
};

/// Decodes a client frame with a codec and checks the result as
/// frames::parse_client checks a JSON frame: an object with a string `type`
/// and, if any, a string or number `id`. Writes `id` (JSON text) and the
/// codec's context to `req` as soon as they are known. Binary frames are
/// refused unless the codec reads them. Errors: `bad_json`, `bad_frame`.
caf::expected<frames::client_frame> decode_client(const frame_codec& codec,
                                                  std::string_view payload,
                                                  bool binary,
                                                  request_info& req);

/// What every CONNECTION of a node shares: its settings, the actors it
/// talks to, the behaviour table. Built once by the node, after the actors
/// it names; each CONNECTION holds one pointer to it (idle connections stay
/// small).
struct connection_env {
  std::chrono::milliseconds request_timeout{5000};
  /// `rate-limit`: frames per second and connection (0: none).
  uint64_t rate_limit = 100;
  /// The built-in behaviours run inline (see `builtins`), with these
  /// settings; `group_join` applies to every `join`.
  builtins_config builtins_cfg;
  registry_actor registry;
  event_bus_actor events;
  subscribed_events_ptr subscribed_events;
  std::shared_ptr<behaviour_table> behaviours;
  /// The BUILTINS behaviour as first spawned: while the table still maps a
  /// type to it, connections run the built-in code themselves.
  behaviour_actor builtins;
  std::shared_ptr<node_metrics> metrics;
  open_chain open;
};

using connection_env_ptr = std::shared_ptr<const connection_env>;

/// What a CONNECTION needs only while it opens: the open chain's context and
/// the frames read meanwhile. Behind a pointer, so that an open connection
/// does not carry it (every idle connection is a CONNECTION actor).
struct opening_state {
  open_context context;
  /// Frames read before the connection was open, handled once it is.
  std::vector<std::string> early_frames;
};

/// The state of a CONNECTION actor. Kept small: with it the actor fits
/// 1,280 bytes, a size class of both glibc's malloc and jemalloc (the next
/// one of jemalloc is 1,536).
struct connection_state {
  static inline const char* name = "connection";

  connection_env_ptr env;
  std::weak_ptr<connection_sink> sink;
  /// The sink's codec, null for json (the identity). Set only when the sink
  /// is a codec_sink; held here, so that frames still in the mailbox when
  /// the socket is gone are decoded and handled like json ones.
  frame_codec_ptr codec;
  /// Who this is; the open chain may have changed the handshake's.
  conn_ref who;
  /// The client's address as the store budgets count it (`address_key`),
  /// taken at the start: frames still in the mailbox when the socket is
  /// gone are charged to it too. Behind a pointer: a std::string here
  /// would take the actor past its size class (see above).
  std::unique_ptr<const std::string> address;
  /// While opening; once open, kept only with `group-join=token` (the
  /// token's groups decide which groups it may join).
  std::unique_ptr<opening_state> opening;
  rate_limiter limiter{0};
  /// The uid is bound and `welcome` was written.
  bool open = false;

  connection_actor::stateful_pointer<connection_state> self = nullptr;

  /// Writes a frame the client did not ask for (json codec form).
  void write(std::string frame);

  /// Writes the answer to the frame `req` (json codec form).
  void write_answer(std::string frame, const request_info& req);

  /// Asks the socket to close.
  void close(uint16_t code, std::string reason);

  /// Has the socket close the connection with 4003 at `exp_s` (seconds
  /// since the epoch, a token's `exp`) instead of any expiry armed before.
  void arm_expiry(int64_t exp_s);

  /// Handles one client frame: limits, RECV_MESSAGE, parsing, dispatch.
  /// Tells the sink once the frame is answered.
  void handle(std::string text);

  /// Starts handling a frame; false if it was answered already, true if an
  /// asynchronous answer will call `answered` later.
  bool dispatch(std::string text);

  /// Takes the frame's share of the rate limit; false (answered or closed)
  /// when there is none left.
  bool admit();

  /// Reports RECV_MESSAGE and decodes a frame read from the socket (a
  /// binary one is marked: binary_frame_mark); writes what the answer
  /// needs to `req`.
  caf::expected<frames::client_frame> decode(std::string text,
                                             request_info& req);

  /// Hands a frame to a behaviour of the application and writes its answer.
  void ask(const behaviour_actor& handler, frame_context ctx,
           frames::client_frame frame, request_info req);

  /// Whether `err`, the answer of `handler` for `type`, means that the
  /// behaviour itself failed rather than answered an error.
  bool behaviour_failed(const caf::error& err, const std::string& type,
                        const behaviour_actor& handler) const;

  /// With `group-join=token`, whether a `join` frame names a group of the
  /// connection's token (its JWT `groups` claim).
  bool may_join(const nlohmann::json& frame) const;

  /// One frame got its answer (see connection_sink::frame_answered).
  void answered();

  /// Sends an error frame answering `req` (`{}`: no frame).
  void fail(const request_info& req, ec code, const std::string& message);
};

/// Spawn arguments: what the node's connections share, the session's sink
/// and the identity from the handshake.
connection_actor::behavior_type
connection(connection_actor::stateful_pointer<connection_state> self,
           connection_env_ptr env, std::weak_ptr<connection_sink> sink,
           open_context opening);

} // namespace wsc

#pragma once

#include "actors/actors.hpp"
#include "actors/connection.hpp"
#include "actors/node_context.hpp"
#include "net/beast.hpp"
#include "protocol/codec.hpp"

#include <caf/fwd.hpp>

#include <array>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace wsc::net {

/// One WebSocket connection's socket. All socket work runs on the socket's
/// executor (a strand, or the io_context itself when one thread runs it: see
/// listener::do_accept); `write` and `close` may be called from any thread and
/// only post to it. At most one `async_write` is in flight; the frame it
/// writes stays at the front of the queue until it completes.
///
/// An idle connection is mostly this object and Beast's stream: the pending
/// read holds no heap buffer (the first bytes of a message land in `first_`),
/// and what only a closing connection needs is allocated when it begins.
///
/// With a frame codec other than json, the session encodes the frames the
/// REGISTRY and the CONNECTION push (`write`) on its executor, and marks binary
/// frames for the CONNECTION, which decodes and answers (`codec_sink`).
///
/// A session owns, from its construction to its destruction, one slot of
/// the node's `open_connections` and one of its `quota` (for `uid` from
/// `address`): both are given back exactly once, by the destructor.
class websocket_session
    : public codec_sink,
      public std::enable_shared_from_this<websocket_session> {
public:
  /// Makes a session. Its memory goes as soon as it ends, even while weak
  /// pointers to it remain (the CONNECTION's, the REGISTRY's, session_list):
  /// make_shared would keep the whole object until the last one is gone.
  static std::shared_ptr<websocket_session>
  make(tcp::socket&& socket, caf::actor_system& sys, node_context_ptr node,
       std::string uid, std::string address);

  ~websocket_session() override;

  /// Accepts the upgrade request, then spawns the CONNECTION actor.
  void run(http::request<http::string_body> req, open_context opening);

  void write(frame_ptr frame, bool counted) override;

  uint64_t queued_bytes() const override;

  void close(uint16_t code, std::string reason) override;

  void frame_answered() override;

  const frame_codec_ptr& codec() const override;

  void write_encoded(frame_ptr frame, bool counted) override;

private:
  websocket_session(tcp::socket&& socket, caf::actor_system& sys,
                    node_context_ptr node, std::string uid,
                    std::string address);

  void on_accept(beast::error_code ec, open_context opening);
  /// Reads the first bytes of the next message into `first_`.
  void do_read();
  void on_read(beast::error_code ec, std::size_t bytes);
  /// Reads more of the current message, straight into `message_` after
  /// its first `filled` bytes (the rest of it is room for the read).
  void read_rest(size_t filled);
  void on_read_rest(size_t filled, beast::error_code ec, std::size_t bytes);
  /// Hands the whole message in `message_` to the actor, then reads on.
  void on_message();
  void enqueue(frame_ptr frame, bool counted);
  void do_write();
  void on_write(beast::error_code ec, std::size_t bytes);
  /// Drops the frame just written from the queue.
  void pop_written();
  void begin_close(uint16_t code, std::string reason, bool drop_queue);
  void do_close();
  void notify_closed();
  /// The socket is done (read or write failed, closing handshake over, or
  /// the close deadline shut it): tells the actor and drops `paused_self_`,
  /// so that the session ends once its pending handlers have run.
  void finish();
  /// The CONNECTION actor ended (on the executor). If it did not end because
  /// the socket closed (it threw, or was killed), the socket is closed with
  /// 1011: nobody would answer its frames, and a paused session would live
  /// forever.
  void on_actor_down(std::string reason);
  /// Drops the queued frames from `queue_[from]` on, with their bytes.
  void drop_queued(size_t from);

  /// Reads the next frame unless `max_unanswered` frames wait for their
  /// answer; then the read resumes from frame_answered.
  void read_or_pause();
  /// Reads again after a pause (on the executor).
  void resume_read();

  /// A plain socket: the WebSocket timeouts are Beast's own. No
  /// permessage-deflate: it is never negotiated (docs/security.md T13).
  websocket::stream<tcp::socket, false> ws_;
  caf::actor_system& sys_;
  node_context_ptr node_;
  /// The quota slot this session holds (released by the destructor).
  std::string uid_;
  std::string address_;
  connection_actor actor_;
  /// The node's frame codec; null for json (the identity).
  frame_codec_ptr codec_;
  /// Frames waiting for the socket; `counted` ones count against
  /// send-queue-limit and send-queue-bytes (see connection_sink::write).
  struct queued_frame {
    frame_ptr frame;
    bool counted;
  };
  /// `queue_[head_]` is the oldest; a vector rather than a deque because an
  /// empty std::deque already holds ~600 bytes, on every idle connection.
  std::vector<queued_frame> queue_;
  size_t head_ = 0;
  /// Counted frames queued and their bytes, the frame being written
  /// included until its on_write.
  size_t counted_ = 0;
  uint64_t counted_bytes_ = 0;
  /// Bytes of all queued frames, counted or not (read by queued_bytes from
  /// any thread; written on the executor only).
  std::atomic<uint64_t> queued_bytes_{0};
  /// Frames handed to the actor and not answered yet (any thread).
  std::atomic<uint32_t> unanswered_{0};
  /// No read is pending because of `unanswered_` (any thread).
  std::atomic<bool> read_paused_{false};
  /// While paused no pending operation holds the session: this does.
  std::shared_ptr<websocket_session> paused_self_;
  /// The message being read (text, or for a codec binary frames behind
  /// `binary_frame_mark`); empty between messages.
  std::string message_;
  /// What only a closing connection needs (see begin_close).
  struct close_state {
    explicit close_state(const asio::any_io_executor& ex) : deadline(ex) {}
    websocket::close_reason reason;
    /// Shuts the socket of a peer that does not finish closing in time.
    asio::steady_timer deadline;
  };
  /// Set once closing began: then no frame is queued any more.
  std::unique_ptr<close_state> closing_;
  bool writing_ = false;
  bool close_sent_ = false;
  bool closed_notified_ = false;
  /// The first bytes of every message: an idle read holds no heap buffer,
  /// and a short message needs no other.
  std::array<char, 256> first_;
};

} // namespace wsc::net

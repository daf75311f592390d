#pragma once

#include "actors/actors.hpp"
#include "actors/connection.hpp"
#include "net/beast.hpp"
#include "net/server.hpp"
#include "net/timer_wheel.hpp"
#include "protocol/codec.hpp"
#include "protocol/ws_frame.hpp"

#include <caf/fwd.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wsc::net {

/// One WebSocket connection's socket. Beast answers the upgrade; from then
/// on the session frames the data itself (protocol/ws_frame.hpp): it reads
/// when the socket is readable, straight from a buffer of its thread, and
/// writes the frames queued in one turn of its event loop with one `writev`.
/// All socket work runs on the socket's executor (a strand, or the
/// io_context itself when one thread runs it: see listener::do_accept);
/// `write` and `close` may be called from any thread and only post to it.
///
/// An idle connection is this object, its socket and its pending readiness
/// wait: no read buffer, no write buffer, no timer (its keep-alive and close
/// deadlines are entries of its loop's timer_wheel).
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
      private ws::frame_events,
      private timer_wheel::entry,
      public std::enable_shared_from_this<websocket_session> {
public:
  /// Makes a session. Its memory goes as soon as it ends, even while weak
  /// pointers to it remain (the CONNECTION's, the REGISTRY's, session_list):
  /// make_shared would keep the whole object until the last one is gone.
  static std::shared_ptr<websocket_session>
  make(tcp::socket&& socket, std::shared_ptr<const server_setup> setup,
       std::string uid, std::string address);

  ~websocket_session() override;

  /// Accepts the upgrade request, then spawns the CONNECTION actor in `sys`.
  void run(caf::actor_system& sys, http::request<http::string_body> req,
           open_context opening);

  void write(frame_ptr frame, bool counted) override;

  uint64_t queued_bytes() const override;
  const std::string& client_address() const override { return address_; }

  void close(uint16_t code, std::string reason) override;

  void close_after(std::chrono::milliseconds after, uint16_t code,
                   std::string reason) override;

  void frame_answered() override;

  const frame_codec_ptr& codec() const override;

  void write_encoded(frame_ptr frame, bool counted) override;

private:
  websocket_session(tcp::socket&& socket,
                    std::shared_ptr<const server_setup> setup, std::string uid,
                    std::string address);

  void on_accept(beast::error_code ec, caf::actor_system& sys,
                 open_context opening);

  // -- reading ----------------------------------------------------------------

  /// Waits until the socket is readable, then reads.
  void wait_readable();
  void on_readable(beast::error_code ec);
  /// Reads what the socket holds and feeds it to the reader, until the
  /// socket is empty, the reader pauses or the connection ends.
  void read_available();
  /// Feeds bytes to the reader; false when reading must stop for now
  /// (paused: the rest is kept in `unread_`; closed; failed).
  bool consume(const char* data, size_t size);
  bool on_message(bool binary, std::string& payload) override;
  bool admit_frame(ws::opcode op, uint64_t size) override;
  void on_ping(std::string_view payload) override;
  void on_close(uint16_t code, std::string_view reason) override;
  /// Echoes the peer's close kept by on_close (the frames before it are
  /// answered, or waiting for them took too long).
  void close_deferred();
  /// The reader stopped at a message because `max_unanswered` frames wait
  /// for their answer; frame_answered resumes.
  void pause();
  void resume_read();

  // -- writing ----------------------------------------------------------------

  /// Whether the calling thread runs this socket's event loop (an actor
  /// pinned there, or a socket handler): then it may touch the session.
  bool on_socket_thread() const;
  /// Runs `fn` on the socket's executor: at once on its own loop's thread,
  /// else posted.
  template<class F>
  void on_socket(F&& fn);

  /// Queues a data frame (see connection_sink::write for `counted`).
  void enqueue(frame_ptr frame, bool counted);
  void push(ws::opcode op, frame_ptr payload, bool counted);
  /// Writes the queue at the end of this turn of the loop (frames queued
  /// until then leave together).
  void schedule_flush();
  void flush();
  /// Lists the next frames of the queue for one write (their headers
  /// encoded into `headers`, room for `frames_per_write`); returns their
  /// bytes, `frames` their number.
  size_t gather(uint8_t* headers, std::vector<asio::const_buffer>& buffers,
                size_t& frames) const;
  void on_write(beast::error_code ec);
  /// Drops the `frames` oldest frames: written.
  void pop_written(size_t frames);
  /// Drops the queued frames from `queue_[from]` on, with their bytes.
  void drop_queued(size_t from);

  // -- closing ----------------------------------------------------------------

  /// Queues a close frame after the queued frames (or instead of them); the
  /// socket is shut when the peer answered or after a grace period.
  void begin_close(uint16_t code, std::string_view reason, bool drop_queue);
  /// The reader failed the connection (RFC 6455 7.1.7): close frame with
  /// `code`, then the socket is shut.
  void fail(uint16_t code, const char* reason);
  /// Both close frames are through (or ours after a failure): shuts our
  /// side and reads until the peer's end (RFC 6455 7.1.1).
  void teardown();
  void notify_closed();
  /// The socket is done (read or write failed, closing handshake over, or
  /// a deadline): tells the actor and drops `paused_self_`, so that the
  /// session ends once its pending handlers have run.
  void finish();
  /// The CONNECTION actor ended (on the executor). If it did not end because
  /// the socket closed (it threw, or was killed), the socket is closed with
  /// 1011: nobody would answer its frames, and a paused session would live
  /// forever.
  void on_actor_down(std::string reason);

  // -- the timer --------------------------------------------------------------

  /// Keep-alive while open: a ping after half the idle timeout without
  /// input, the socket shut after the whole. While closing: the deadline.
  /// On the loop's timer_wheel (no timer of its own).
  void arm_timer(std::chrono::steady_clock::duration after);
  void cancel_timer();
  timer_wheel& wheel() const;
  std::shared_ptr<void> hold() override;
  void expired(uint32_t generation) override;
  void on_timer();

  /// A close at a deadline (close_after): a second entry of the wheel,
  /// made on first use (only connections with an expiring token have one).
  class scheduled_close;

  tcp::socket socket_;
  std::shared_ptr<const server_setup> setup_;
  /// The quota slot this session holds (released by the destructor).
  std::string uid_;
  std::string address_;
  connection_actor actor_;
  /// The node's frame codec; null for json (the identity).
  frame_codec_ptr codec_;
  ws::frame_reader reader_;
  /// `rate-limit` for the frames the CONNECTION does not see (admit_frame):
  /// a bucket of the same size, of the session's own.
  rate_limiter frame_limiter_;
  std::unique_ptr<scheduled_close> scheduled_close_;
  /// What the reader was not given yet when it paused (null otherwise).
  std::unique_ptr<std::string> unread_;
  /// The execution context of the socket (compared with the caller's loop).
  const asio::execution_context* socket_context_;
  /// Frames waiting for the socket; `counted` ones count against
  /// send-queue-limit and send-queue-bytes (see connection_sink::write).
  struct queued_frame {
    frame_ptr payload;
    ws::opcode op;
    bool counted;
  };
  /// `queue_[head_]` is the oldest; a vector rather than a deque because an
  /// empty std::deque already holds ~600 bytes, on every idle connection.
  std::vector<queued_frame> queue_;
  /// The buffers of an asynchronous write and its frames' headers: they
  /// must live until it completes (null while no such write is under way).
  struct pending_write;
  std::unique_ptr<pending_write> pending_write_;
  uint32_t head_ = 0;
  /// Frames of the asynchronous write in flight (from `head_` on).
  uint32_t writing_frames_ = 0;
  /// Pongs among the queued frames (bounded: see on_ping).
  uint32_t queued_pongs_ = 0;
  /// Where in `queue_` the newest queued pong is (`no_pong`: none), so that
  /// a ping past the bound finds it at once (on_ping: unless being written).
  static constexpr uint32_t no_pong = UINT32_MAX;
  uint32_t newest_pong_ = no_pong;
  /// Counted frames queued and their bytes, the frames being written
  /// included until they are.
  uint32_t counted_ = 0;
  uint64_t counted_bytes_ = 0;
  /// Bytes of all queued frames, counted or not (read by queued_bytes from
  /// any thread; written on the executor only).
  std::atomic<uint64_t> queued_bytes_{0};
  /// While paused no pending operation holds the session: this does.
  std::shared_ptr<websocket_session> paused_self_;
  /// Frames handed to the actor and not answered yet (any thread).
  std::atomic<uint32_t> unanswered_{0};
  /// No read is pending because of `unanswered_` (any thread).
  std::atomic<bool> read_paused_{false};
  /// The code of the peer's close, echoed once the frames before it are
  /// answered (0: none pending; set on the executor, read by
  /// frame_answered on any thread: the store comes before on_close reads
  /// `unanswered_`, the load after frame_answered lowers it, so one of the
  /// two sees the other and the close is never left waiting).
  std::atomic<uint16_t> deferred_close_{0};
  /// Data frames are text, or binary for a codec that writes binary.
  ws::opcode data_op_ = ws::opcode::text;
  bool flush_scheduled_ = false;
  /// Our close frame is queued: no data frame is queued any more.
  bool closing_ = false;
  bool close_sent_ = false;
  /// The peer's close frame arrived, or we failed the connection: no need
  /// to wait for one.
  bool peer_closed_ = false;
  /// The peer's close frame arrived (not a failure of ours).
  bool close_received_ = false;
  bool shut_down_ = false;
  bool closed_notified_ = false;
  /// A whole frame arrived since the timer last looked, and whether the
  /// keep-alive ping is out.
  bool input_seen_ = false;
  bool ping_sent_ = false;
};

} // namespace wsc::net

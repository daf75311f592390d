#pragma once

#include "actors/actors.hpp"
#include "actors/node_context.hpp"
#include "net/beast.hpp"

#include <caf/fwd.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace wsc::net {

/// One WebSocket connection's socket. All socket work runs on the
/// connection's strand; `write` and `close` may be called from any thread and
/// only post to it. At most one `async_write` is in flight; the frame it
/// writes stays at the front of the queue until it completes.
class websocket_session
    : public connection_sink,
      public std::enable_shared_from_this<websocket_session> {
public:
  websocket_session(tcp::socket&& socket, caf::actor_system& sys,
                    node_context_ptr node);

  ~websocket_session() override;

  /// Accepts the upgrade request, then spawns the CONNECTION actor.
  void run(http::request<http::string_body> req, open_context opening);

  void write(frame_ptr frame, bool counted) override;

  void close(uint16_t code, std::string reason) override;

  void frame_answered() override;

private:
  void on_accept(beast::error_code ec, open_context opening);
  void do_read();
  void on_read(beast::error_code ec, std::size_t bytes);
  void enqueue(frame_ptr frame, bool counted);
  void do_write();
  void on_write(beast::error_code ec, std::size_t bytes);
  /// Drops the frame just written from the queue.
  void pop_written();
  void begin_close(uint16_t code, std::string reason, bool drop_queue);
  void do_close();
  void notify_closed();

  /// Reads the next frame unless `max_unanswered` frames wait for their
  /// answer; then the read resumes from frame_answered.
  void read_or_pause();
  /// Reads again after a pause (on the strand).
  void resume_read();

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buffer_;
  caf::actor_system& sys_;
  node_context_ptr node_;
  connection_actor actor_;
  /// Frames waiting for the socket; `counted` ones count against
  /// send-queue-limit (see connection_sink::write).
  struct queued_frame {
    frame_ptr frame;
    bool counted;
  };
  /// `queue_[head_]` is the oldest; a vector rather than a deque because an
  /// empty std::deque already holds ~600 bytes, on every idle connection.
  std::vector<queued_frame> queue_;
  size_t head_ = 0;
  size_t counted_ = 0;
  /// Frames handed to the actor and not answered yet (any thread).
  std::atomic<uint32_t> unanswered_{0};
  /// No read is pending because of `unanswered_` (any thread).
  std::atomic<bool> read_paused_{false};
  /// While paused no pending operation holds the session: this does.
  std::shared_ptr<websocket_session> paused_self_;
  bool writing_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool closed_notified_ = false;
  websocket::close_reason close_reason_;
  asio::steady_timer close_deadline_;
};

} // namespace wsc::net

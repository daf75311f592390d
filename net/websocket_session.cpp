#include "net/websocket_session.hpp"

#include "actors/connection.hpp"
#include "actors/node.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

namespace wsc::net {

namespace {

/// The most one read past `first_` asks for (its buffer grows the message).
constexpr size_t max_read_bytes = 64 * 1024;

/// Queue slots kept by an idle connection; more are released once it drains.
constexpr size_t idle_queue_capacity = 16;

/// Frames a connection reads ahead of their answers. Enough to keep a
/// pipelining client busy; small enough that an overloaded node holds a
/// bounded backlog and TCP slows the senders down.
constexpr uint32_t max_unanswered = 16;

/// How long a closing connection may take to flush its queue and finish the
/// closing handshake before its socket is shut.
constexpr auto close_grace = std::chrono::seconds(3);

} // namespace

std::shared_ptr<websocket_session>
websocket_session::make(tcp::socket&& socket, caf::actor_system& sys,
                        node_context_ptr node, std::string uid,
                        std::string address) {
  // Not make_shared: see the declaration.
  return std::shared_ptr<websocket_session>(
      new websocket_session(std::move(socket), sys, std::move(node),
                            std::move(uid), std::move(address)));
}

websocket_session::websocket_session(tcp::socket&& socket,
                                     caf::actor_system& sys,
                                     node_context_ptr node, std::string uid,
                                     std::string address)
    : ws_(std::move(socket)), sys_(sys), node_(std::move(node)),
      uid_(std::move(uid)), address_(std::move(address)), codec_(node_->codec) {
  if (codec_ && codec_->identity())
    codec_ = nullptr;
}

websocket_session::~websocket_session() {
  notify_closed();
  --node_->open_connections;
  node_->quota.release(uid_, address_);
}

void websocket_session::run(http::request<http::string_body> req,
                            open_context opening) {
  // The HTTP phase's deadline ended with its tcp_stream: from here the
  // WebSocket timeouts (Beast's own) are the only ones.
  auto& opts = node_->opts;
  websocket::stream_base::timeout timeouts;
  timeouts.handshake_timeout = opts.handshake_timeout;
  timeouts.idle_timeout = opts.idle_timeout;
  timeouts.keep_alive_pings = true; // a ping at half the idle timeout
  ws_.set_option(timeouts);
  ws_.set_option(
      websocket::stream_base::decorator([](websocket::response_type& res) {
        res.set(http::field::server, "wscluster");
      }));
  ws_.read_message_max(opts.max_message_bytes);
  ws_.auto_fragment(false);
  ws_.text(!codec_ || !codec_->writes_binary());
  ws_.async_accept(req,
                   [self = shared_from_this(), opening = std::move(opening)](
                       beast::error_code ec) mutable {
                     self->on_accept(ec, std::move(opening));
                   });
}

void websocket_session::on_accept(beast::error_code ec, open_context opening) {
  if (ec)
    return;
  ++node_->metrics.handshakes_accepted;
  actor_ = sys_.spawn(connection, node_, weak_from_this(), std::move(opening));
  // The actor normally ends after `closed`; if it ends otherwise, the
  // session must learn of it (runs at once if it is already gone).
  actor_->attach_functor([weak = weak_from_this()](const caf::error& reason) {
    if (auto self = weak.lock())
      asio::post(self->ws_.get_executor(),
                 [self, reason = caf::to_string(reason)]() mutable {
                   self->on_actor_down(std::move(reason));
                 });
  });
  do_read();
}

void websocket_session::do_read() {
  ws_.async_read_some(asio::buffer(first_),
                      beast::bind_front_handler(&websocket_session::on_read,
                                                shared_from_this()));
}

void websocket_session::on_read(beast::error_code ec, std::size_t bytes) {
  if (ec) {
    finish();
    return;
  }
  if (closed_notified_)
    return; // read before the end was known; nobody will answer it
  // The first bytes of a message. The CONNECTION decodes binary frames for
  // a codec; it learns one was binary from the mark.
  if (codec_ && ws_.got_binary())
    message_ += binary_frame_mark;
  message_.append(first_.data(), bytes);
  if (ws_.is_message_done())
    on_message();
  else
    read_rest(message_.size());
}

void websocket_session::read_rest(size_t filled) {
  // Beast's hint is the rest of the current frame (read_message_max bounds
  // it): a large message takes a few reads, not hundreds of `first_`s. The
  // string only grows (zero-filled once), so a peer that trickles a large
  // frame byte by byte does not cost a fill per byte.
  auto want = std::min(ws_.read_size_hint(first_.size()), max_read_bytes);
  if (message_.size() < filled + want)
    message_.resize(filled + want);
  ws_.async_read_some(
      asio::buffer(message_.data() + filled, want),
      beast::bind_front_handler(&websocket_session::on_read_rest,
                                shared_from_this(), filled));
}

void websocket_session::on_read_rest(size_t filled, beast::error_code ec,
                                     std::size_t bytes) {
  if (ec) {
    finish();
    return;
  }
  if (closed_notified_) {
    std::string{}.swap(message_);
    return;
  }
  filled += bytes;
  if (ws_.is_message_done()) {
    message_.resize(filled);
    on_message();
  } else {
    read_rest(filled);
  }
}

void websocket_session::on_message() {
  unanswered_.fetch_add(1);
  caf::anon_send(actor_, atom::frame_v, std::move(message_));
  // Moved from: empty, and its buffer went with the message.
  message_.clear();
  read_or_pause();
}

void websocket_session::read_or_pause() {
  if (closed_notified_)
    return;
  if (unanswered_.load() < max_unanswered)
    return do_read();
  // No operation is pending now to keep this session alive.
  paused_self_ = shared_from_this();
  read_paused_ = true;
  // An answer that came between the check and the flag saw no pause.
  if (unanswered_.load() < max_unanswered && read_paused_.exchange(false))
    resume_read();
}

void websocket_session::resume_read() {
  auto keep = std::move(paused_self_);
  if (!closed_notified_)
    do_read();
}

void websocket_session::frame_answered() {
  if (unanswered_.fetch_sub(1) - 1 < max_unanswered && read_paused_.load() &&
      read_paused_.exchange(false))
    asio::post(ws_.get_executor(),
               [self = shared_from_this()] { self->resume_read(); });
}

void websocket_session::write(frame_ptr frame, bool counted) {
  if (!codec_)
    return write_encoded(std::move(frame), counted);
  asio::post(ws_.get_executor(), [self = shared_from_this(),
                                  frame = std::move(frame), counted]() mutable {
    if (self->closing_ || self->closed_notified_)
      return;
    // On the socket's executor, so that the REGISTRY does not pay for the
    // encoding. A codec that throws must not take the I/O thread down with it.
    try {
      frame = std::make_shared<const std::string>(
          self->codec_->encode_push(*frame));
    } catch (const std::exception& e) {
      log::error("frame codec failed to encode a frame for uid {}: {}",
                 self->uid_, e.what());
      self->begin_close(1011, "internal error", true);
      return;
    }
    self->enqueue(std::move(frame), counted);
  });
}

void websocket_session::write_encoded(frame_ptr frame, bool counted) {
  asio::post(ws_.get_executor(),
             [self = shared_from_this(), frame = std::move(frame),
              counted]() mutable { self->enqueue(std::move(frame), counted); });
}

const frame_codec_ptr& websocket_session::codec() const {
  return codec_;
}

uint64_t websocket_session::queued_bytes() const {
  return queued_bytes_.load(std::memory_order_relaxed);
}

void websocket_session::close(uint16_t code, std::string reason) {
  asio::post(ws_.get_executor(), [self = shared_from_this(), code,
                                  reason = std::move(reason)]() mutable {
    self->begin_close(code, std::move(reason), false);
  });
}

void websocket_session::enqueue(frame_ptr frame, bool counted) {
  if (closing_ || closed_notified_)
    return;
  uint64_t bytes = frame->size();
  if (counted) {
    // Past send-queue-limit frames or send-queue-bytes bytes the reader is
    // too slow. A frame larger than the whole byte budget still goes when
    // no other counted frame waits, so that a small budget cannot lock out
    // a reader that keeps up.
    auto& opts = node_->opts;
    if (counted_ >= opts.send_queue_limit ||
        (counted_ > 0 && counted_bytes_ + bytes > opts.send_queue_bytes)) {
      ++node_->metrics.queue_overflows;
      begin_close(1008, "send queue overflow: reading too slowly", true);
      return;
    }
    ++counted_;
    counted_bytes_ += bytes;
  }
  queued_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  queue_.push_back(queued_frame{std::move(frame), counted});
  if (!writing_)
    do_write();
}

void websocket_session::do_write() {
  writing_ = true;
  ws_.async_write(asio::buffer(*queue_[head_].frame),
                  beast::bind_front_handler(&websocket_session::on_write,
                                            shared_from_this()));
}

void websocket_session::on_write(beast::error_code ec, std::size_t) {
  writing_ = false;
  // Only now may the written buffer go: Beast wrote from it until here.
  pop_written();
  if (ec) {
    drop_queued(head_);
    finish();
    return;
  }
  ++node_->metrics.frames_out;
  if (head_ < queue_.size())
    do_write();
  else if (closing_)
    do_close();
}

void websocket_session::pop_written() {
  auto& front = queue_[head_++];
  uint64_t bytes = front.frame->size();
  queued_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
  if (front.counted) {
    --counted_;
    counted_bytes_ -= bytes;
  }
  front.frame.reset();
  if (head_ == queue_.size()) {
    queue_.clear();
    head_ = 0;
    if (queue_.capacity() > idle_queue_capacity)
      queue_.shrink_to_fit();
  } else if (head_ >= idle_queue_capacity && 2 * head_ >= queue_.size()) {
    // Never drained under steady load: drop the written prefix now and then.
    queue_.erase(queue_.begin(), queue_.begin() + head_);
    head_ = 0;
  }
}

void websocket_session::begin_close(uint16_t code, std::string reason,
                                    bool drop_queue) {
  if (closing_)
    return;
  closing_ = std::make_unique<close_state>(ws_.get_executor());
  closing_->reason =
      websocket::close_reason(static_cast<websocket::close_code>(code), reason);
  // Keep the frame being written: Beast still reads from it.
  if (drop_queue)
    drop_queued(writing_ ? head_ + 1 : head_);
  // A reader that never reads would keep the last write and the closing
  // handshake pending forever: shut the socket after a grace period.
  closing_->deadline.expires_after(drop_queue ? std::chrono::seconds(1)
                                              : close_grace);
  closing_->deadline.async_wait(
      [self = shared_from_this()](beast::error_code ec) {
        // Also ends a session that waits for nothing (e.g. paused, its
        // socket already shut by the idle timeout).
        if (!ec)
          self->finish();
      });
  if (!writing_)
    do_close();
}

void websocket_session::do_close() {
  if (close_sent_ || !ws_.is_open())
    return;
  close_sent_ = true;
  ws_.async_close(closing_->reason, [self = shared_from_this()](
                                        beast::error_code) { self->finish(); });
}

void websocket_session::drop_queued(size_t from) {
  for (auto i = from; i < queue_.size(); ++i) {
    uint64_t bytes = queue_[i].frame->size();
    queued_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    if (queue_[i].counted) {
      --counted_;
      counted_bytes_ -= bytes;
    }
  }
  queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(from),
               queue_.end());
  if (head_ >= queue_.size()) {
    queue_.clear();
    head_ = 0;
    if (queue_.capacity() > idle_queue_capacity)
      queue_.shrink_to_fit();
  }
}

void websocket_session::finish() {
  if (closing_)
    closing_->deadline.cancel();
  // Aborts whatever still waits on the socket; its handler ends here too.
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).close(ignored);
  // A paused reader will not see the end of the socket.
  paused_self_.reset();
  notify_closed();
}

void websocket_session::on_actor_down(std::string reason) {
  if (closed_notified_) {
    // The usual end: the actor quit because the socket closed.
    paused_self_.reset();
    return;
  }
  // It threw or was killed: nobody answers the frames read, nobody is left
  // to tell. Close with 1011; the close deadline bounds the rest.
  log::warn("connection actor of uid {} ended while its socket was open: {}",
            uid_, reason);
  closed_notified_ = true;
  begin_close(1011, "internal error", true);
}

void websocket_session::notify_closed() {
  if (closed_notified_ || !actor_)
    return;
  closed_notified_ = true;
  caf::anon_send(actor_, atom::closed_v);
}

} // namespace wsc::net

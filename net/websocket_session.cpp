#include "net/websocket_session.hpp"

#include "actors/connection.hpp"
#include "loop/loop_coordinator.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <boost/asio/bind_allocator.hpp>

#include <algorithm>
#include <array>

namespace wsc::net {

namespace {

/// What one read takes from the socket, into a buffer of the thread: up to
/// `read_chunk` while a large frame is under way, else `small_read`, so that
/// a reader paused after a run of small messages keeps at most that much
/// (`unread_`) for later.
constexpr size_t read_chunk = 64 * 1024;
constexpr size_t small_read = 4 * 1024;

/// Pongs queued and not written yet. RFC 6455 5.5.3 lets a server answer
/// only the latest of pings it has not answered: past this many, the last
/// queued pong takes the newest payload instead of queueing another, so a
/// ping flood from a client that does not read costs bounded memory.
constexpr size_t max_queued_pongs = 32;

/// Reads per readiness before other sockets of the loop get their turn.
constexpr int reads_per_turn = 16;

/// Frames of one `writev` (Asio passes at most 64 buffers per system call:
/// a header and a payload per frame) and the bytes it gathers.
constexpr size_t frames_per_write = 32;
constexpr size_t max_header = 10;
constexpr size_t bytes_per_write = 256 * 1024;

/// Queue slots kept by an idle connection; more are released once it drains.
constexpr size_t idle_queue_capacity = 16;

/// Frames a connection reads ahead of their answers. Enough to keep a
/// pipelining client busy; small enough that an overloaded node holds a
/// bounded backlog and TCP slows the senders down.
constexpr uint32_t max_unanswered = 16;

/// How long a closing connection may take to flush its queue and finish the
/// closing handshake before its socket is shut.
constexpr auto close_grace = std::chrono::seconds(3);

/// The same when the queue was dropped (a failure, an overflow).
constexpr auto close_grace_dropped = std::chrono::seconds(1);

using handshake_stream = websocket::stream<tcp::socket&, false>;

/// Allocates the operation of a readiness wait at its own size, from a free
/// list of the thread. Asio's default (recycling) allocator hands an
/// operation whatever block the last one freed on the thread: a session's
/// first wait, the one an idle connection keeps, would sit in the block of
/// the HTTP read or the upgrade's write before it (230-510 bytes for ~150).
/// Blocks of one size only, so steady traffic allocates nothing either.
template<class T>
class wait_allocator {
public:
  using value_type = T;

  wait_allocator() = default;

  template<class U>
  wait_allocator(const wait_allocator<U>&) noexcept {
    // nop
  }

  T* allocate(size_t n) {
    auto& blocks = free_blocks();
    if (n == 1 && !blocks.list.empty()) {
      auto* ptr = blocks.list.back();
      blocks.list.pop_back();
      return static_cast<T*>(ptr);
    }
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }

  void deallocate(T* ptr, size_t n) {
    auto& blocks = free_blocks();
    if (n == 1 && blocks.list.size() < max_free)
      blocks.list.push_back(ptr);
    else
      ::operator delete(ptr);
  }

  template<class U>
  bool operator==(const wait_allocator<U>&) const noexcept {
    return true;
  }

  template<class U>
  bool operator!=(const wait_allocator<U>&) const noexcept {
    return false;
  }

private:
  static constexpr size_t max_free = 64;

  struct free_list {
    std::vector<void*> list;
    ~free_list() {
      for (auto* ptr : list)
        ::operator delete(ptr);
    }
  };

  static free_list& free_blocks() {
    thread_local free_list blocks;
    return blocks;
  }
};

/// Where reads land: one buffer per thread, so an idle connection holds none.
char* read_buffer() {
  thread_local std::array<char, read_chunk> buffer;
  return buffer.data();
}

} // namespace

struct websocket_session::pending_write {
  std::vector<asio::const_buffer> buffers;
  std::array<uint8_t, frames_per_write * max_header> headers;
};

std::shared_ptr<websocket_session>
websocket_session::make(tcp::socket&& socket, node_context_ptr node,
                        std::string uid, std::string address) {
  // Not make_shared: see the declaration.
  return std::shared_ptr<websocket_session>(new websocket_session(
      std::move(socket), std::move(node), std::move(uid), std::move(address)));
}

websocket_session::websocket_session(tcp::socket&& socket,
                                     node_context_ptr node, std::string uid,
                                     std::string address)
    : socket_(std::move(socket)), node_(std::move(node)), uid_(std::move(uid)),
      address_(std::move(address)),
      codec_(node_->codec && !node_->codec->identity() ? node_->codec
                                                       : nullptr),
      // The CONNECTION decodes binary frames for a codec; it learns one was
      // binary from the mark.
      reader_(node_->opts.max_message_bytes,
              codec_ ? std::string_view{&binary_frame_mark, 1}
                     : std::string_view{}),
      socket_context_(
          &asio::query(socket_.get_executor(), asio::execution::context)) {
  if (codec_ && codec_->writes_binary())
    data_op_ = ws::opcode::binary;
}

class websocket_session::scheduled_close final : public timer_wheel::entry {
public:
  using clock = std::chrono::steady_clock;

  explicit scheduled_close(websocket_session& owner) : owner_(owner) {
    // nop
  }

  clock::time_point deadline;
  uint16_t code = 0;
  std::string reason;

  /// Arms the wheel for the deadline, a day at a time at most (its ticks
  /// are 32 bits of 100 ms; a token may be valid for years).
  void arm() {
    constexpr auto longest = std::chrono::hours(24);
    auto left = deadline - clock::now();
    owner_.wheel().arm(
        *this, std::clamp<clock::duration>(left, clock::duration{1}, longest));
  }

  void cancel() {
    if (generation() != 0)
      owner_.wheel().cancel(*this);
  }

private:
  std::shared_ptr<void> hold() override {
    return owner_.weak_from_this().lock();
  }

  void expired(uint32_t generation) override {
    // Alive while this runs (hold); onto the socket's executor as the
    // session's own entry.
    asio::dispatch(owner_.socket_.get_executor(),
                   [self = owner_.shared_from_this(), generation] {
                     auto& sc = *self->scheduled_close_;
                     if (generation != sc.generation() || self->closing_ ||
                         self->shut_down_)
                       return;
                     if (clock::now() < sc.deadline)
                       return sc.arm(); // a step of a long wait
                     self->begin_close(sc.code, sc.reason, false);
                   });
  }

  websocket_session& owner_;
};

websocket_session::~websocket_session() {
  // Out of the wheel before the memory goes (it may still be in after an
  // abort: the io_context destroying its handlers).
  cancel_timer();
  if (scheduled_close_)
    scheduled_close_->cancel();
  notify_closed();
  --node_->open_connections;
  node_->quota.release(uid_, address_);
}

void websocket_session::run(caf::actor_system& sys,
                            http::request<http::string_body> req,
                            open_context opening) {
  // Beast answers the upgrade on a stream that borrows the socket; the HTTP
  // phase's deadline ended with its tcp_stream, this one is the handshake's.
  auto stream = std::make_unique<handshake_stream>(socket_);
  websocket::stream_base::timeout timeouts;
  timeouts.handshake_timeout = node_->opts.handshake_timeout;
  timeouts.idle_timeout = websocket::stream_base::none();
  timeouts.keep_alive_pings = false;
  stream->set_option(timeouts);
  stream->set_option(
      websocket::stream_base::decorator([](websocket::response_type& res) {
        res.set(http::field::server, "wscluster");
      }));
  auto& ref = *stream;
  ref.async_accept(
      req, [self = shared_from_this(), stream = std::move(stream), &sys,
            opening = std::move(opening)](beast::error_code ec) mutable {
        // The stream goes after its operation has returned, not inside it.
        asio::post(self->socket_.get_executor(),
                   [stream = std::move(stream)] { (void)stream; });
        self->on_accept(ec, sys, std::move(opening));
      });
}

void websocket_session::on_accept(beast::error_code ec, caf::actor_system& sys,
                                  open_context opening) {
  if (ec)
    return;
  socket_.non_blocking(true, ec);
  if (ec)
    return;
  ++node_->metrics.handshakes_accepted;
  actor_ = sys.spawn(connection, node_, weak_from_this(), std::move(opening));
  // The actor normally ends after `closed`; if it ends otherwise, the
  // session must learn of it (runs at once if it is already gone).
  actor_->attach_functor([weak = weak_from_this()](const caf::error& reason) {
    if (auto self = weak.lock())
      asio::post(self->socket_.get_executor(),
                 [self, reason = caf::to_string(reason)]() mutable {
                   self->on_actor_down(std::move(reason));
                 });
  });
  arm_timer(node_->opts.idle_timeout / 2);
  read_available();
}

// -- reading ------------------------------------------------------------------

void websocket_session::wait_readable() {
  // Not a read: an idle connection holds no buffer. Asio re-arms the
  // socket's edge-triggered epoll entry for a wait (EPOLL_CTL_MOD), so
  // input that came in since the last read is seen, on any thread.
  socket_.async_wait(
      tcp::socket::wait_read,
      asio::bind_allocator(wait_allocator<void>{},
                           [self = shared_from_this()](beast::error_code ec) {
                             self->on_readable(ec);
                           }));
}

void websocket_session::on_readable(beast::error_code ec) {
  if (ec)
    return finish();
  read_available();
}

void websocket_session::read_available() {
  auto* buffer = read_buffer();
  for (int round = 0; round < reads_per_turn; ++round) {
    auto want = static_cast<size_t>(std::clamp<uint64_t>(
        reader_.frame_remaining() + small_read, small_read, read_chunk));
    beast::error_code ec;
    auto bytes = socket_.read_some(asio::buffer(buffer, want), ec);
    if (ec == asio::error::would_block)
      return wait_readable();
    if (ec)
      return finish(); // the peer's end, or a reset
    if (reader_.closed()) {
      // Closing: what follows the close frame is discarded until the end.
      continue;
    }
    if (!consume(buffer, bytes))
      return;
    if (bytes < want)
      return wait_readable();
  }
  // Still more: let the other sockets of this loop have their turn first.
  asio::post(socket_.get_executor(),
             [self = shared_from_this()] { self->read_available(); });
}

bool websocket_session::consume(const char* data, size_t size) {
  auto frames_before = reader_.frames_read();
  auto result = reader_.feed(data, size, *this);
  // Only whole frames count as activity: a client that trickles bytes of a
  // frame it never ends is idle (and holds up to a message's bytes).
  if (reader_.frames_read() != frames_before)
    input_seen_ = true;
  if (result.fail_code != 0)
    fail(result.fail_code, result.fail_reason);
  if (reader_.closed()) {
    // A close frame or a failure: the rest is read and dropped until the
    // peer's end (or the close deadline).
    return true;
  }
  if (result.consumed < size) {
    // Paused at a message: keep the rest for resume_read.
    unread_ = std::make_unique<std::string>(data + result.consumed,
                                            size - result.consumed);
    pause();
    return false;
  }
  if (unanswered_.load() >= max_unanswered) {
    pause();
    return false;
  }
  return true;
}

bool websocket_session::on_message(bool, std::string& payload) {
  if (closing_ || closed_notified_)
    return true; // after our close frame data is discarded (RFC 6455 5.5.1)
  unanswered_.fetch_add(1);
  caf::anon_send(actor_, atom::frame_v, std::move(payload));
  return unanswered_.load() < max_unanswered;
}

void websocket_session::on_ping(std::string_view payload) {
  if (closing_)
    return;
  auto pong = std::make_shared<const std::string>(payload);
  if (queued_pongs_ < max_queued_pongs)
    return push(ws::opcode::pong, std::move(pong), false);
  // The newest queued pong not being written answers this ping instead.
  for (auto i = queue_.size(); i-- > head_ + writing_frames_;) {
    auto& entry = queue_[i];
    if (entry.op != ws::opcode::pong)
      continue;
    queued_bytes_.fetch_add(pong->size(), std::memory_order_relaxed);
    queued_bytes_.fetch_sub(entry.payload->size(), std::memory_order_relaxed);
    entry.payload = std::move(pong);
    return;
  }
  // Every queued pong is being written: this one may wait its turn.
  push(ws::opcode::pong, std::move(pong), false);
}

void websocket_session::on_close(uint16_t code, std::string_view) {
  peer_closed_ = true;
  close_received_ = true;
  if (closing_) {
    // The answer to our close: done once ours is out.
    if (close_sent_)
      teardown();
    return;
  }
  // Echo the peer's code (1000 for a close without one), after the frame
  // being written if any: what is still queued is not wanted any more.
  begin_close(code == ws::close_code::no_status ? ws::close_code::normal : code,
              {}, true);
}

void websocket_session::pause() {
  // No operation is pending now to keep this session alive.
  paused_self_ = shared_from_this();
  read_paused_ = true;
  // An answer that came between the check and the flag saw no pause.
  if (unanswered_.load() < max_unanswered && read_paused_.exchange(false))
    resume_read();
}

void websocket_session::resume_read() {
  auto keep = std::move(paused_self_);
  if (closed_notified_ || shut_down_)
    return;
  if (unread_) {
    // Consumed from here: a new pause keeps its own rest.
    auto rest = std::move(unread_);
    if (!consume(rest->data(), rest->size()))
      return;
  }
  // The readiness event may have come and gone while paused: read first.
  read_available();
}

void websocket_session::frame_answered() {
  if (unanswered_.fetch_sub(1) - 1 < max_unanswered && read_paused_.load() &&
      read_paused_.exchange(false))
    asio::post(socket_.get_executor(),
               [self = shared_from_this()] { self->resume_read(); });
}

// -- writing ------------------------------------------------------------------

bool websocket_session::on_socket_thread() const {
  auto* loop = loop_coordinator::current_context();
  return loop != nullptr && loop == socket_context_;
}

template<class F>
void websocket_session::on_socket(F&& fn) {
  if (on_socket_thread())
    fn(); // an actor of the socket's own loop: no post, no extra pass
  else
    asio::post(socket_.get_executor(), std::forward<F>(fn));
}

void websocket_session::write(frame_ptr frame, bool counted) {
  if (!codec_)
    return write_encoded(std::move(frame), counted);
  on_socket(
      [self = shared_from_this(), frame = std::move(frame), counted]() mutable {
        if (self->closing_ || self->closed_notified_)
          return;
        // On the socket's executor, so that the REGISTRY does not pay for the
        // encoding. A codec that throws must not take the I/O thread down with
        // it.
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
  on_socket([self = shared_from_this(), frame = std::move(frame),
             counted]() mutable { self->enqueue(std::move(frame), counted); });
}

const frame_codec_ptr& websocket_session::codec() const {
  return codec_;
}

uint64_t websocket_session::queued_bytes() const {
  return queued_bytes_.load(std::memory_order_relaxed);
}

void websocket_session::close(uint16_t code, std::string reason) {
  asio::post(socket_.get_executor(), [self = shared_from_this(), code,
                                      reason = std::move(reason)]() mutable {
    self->begin_close(code, reason, false);
  });
}

void websocket_session::close_after(std::chrono::milliseconds after,
                                    uint16_t code, std::string reason) {
  on_socket([self = shared_from_this(),
             deadline = std::chrono::steady_clock::now() + after, code,
             reason = std::move(reason)]() mutable {
    if (self->closing_ || self->shut_down_)
      return;
    if (!self->scheduled_close_)
      self->scheduled_close_ = std::make_unique<scheduled_close>(*self);
    auto& sc = *self->scheduled_close_;
    sc.deadline = deadline;
    sc.code = code;
    sc.reason = std::move(reason);
    sc.arm();
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
  }
  push(data_op_, std::move(frame), counted);
}

void websocket_session::push(ws::opcode op, frame_ptr payload, bool counted) {
  uint64_t bytes = payload->size();
  if (counted) {
    ++counted_;
    counted_bytes_ += bytes;
  }
  queued_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  if (op == ws::opcode::pong)
    ++queued_pongs_;
  queue_.push_back(queued_frame{std::move(payload), op, counted});
  schedule_flush();
}

void websocket_session::schedule_flush() {
  if (writing_frames_ > 0 || flush_scheduled_)
    return;
  flush_scheduled_ = true;
  // Frames queued by the actors of this loop turn leave together after
  // their turn; otherwise after the handlers queued so far.
  auto flush = [self = shared_from_this()] {
    self->flush();
  };
  if (!on_socket_thread() || !loop_coordinator::after_actors(flush))
    asio::post(socket_.get_executor(), std::move(flush));
}

size_t websocket_session::gather(uint8_t* headers,
                                 std::vector<asio::const_buffer>& buffers,
                                 size_t& frames) const {
  buffers.clear();
  frames = 0;
  size_t bytes = 0;
  for (auto i = head_; i < queue_.size() && frames < frames_per_write &&
                       bytes < bytes_per_write;
       ++i, ++frames) {
    auto& entry = queue_[i];
    auto& header = *reinterpret_cast<uint8_t(*)[max_header]>(
        headers + frames * max_header);
    auto size = entry.payload->size();
    auto header_size = ws::encode_header(entry.op, size, header);
    buffers.emplace_back(header, header_size);
    if (size > 0)
      buffers.emplace_back(entry.payload->data(), size);
    bytes += header_size + size;
  }
  return bytes;
}

void websocket_session::flush() {
  flush_scheduled_ = false;
  // A write that completes at once needs its headers and buffer list only
  // during the call: they are the thread's.
  thread_local uint8_t headers[frames_per_write * max_header];
  thread_local std::vector<asio::const_buffer> buffers;
  while (writing_frames_ == 0 && head_ < queue_.size() && !shut_down_) {
    size_t frames = 0;
    auto bytes = gather(headers, buffers, frames);
    // Most writes fit the socket's buffer: no asynchronous operation, no
    // handler to run later.
    beast::error_code ec;
    auto written = socket_.write_some(buffers, ec);
    if (ec && ec != asio::error::would_block) {
      drop_queued(head_);
      return finish();
    }
    if (ec)
      written = 0;
    if (written == bytes) {
      pop_written(frames);
      continue;
    }
    // The rest when the socket takes it: then the headers and buffers are
    // the session's until the write completes (frames queued meanwhile may
    // move the queue's entries, not what is written).
    if (!pending_write_)
      pending_write_ = std::make_unique<pending_write>();
    auto& pending = *pending_write_;
    gather(pending.headers.data(), pending.buffers, frames);
    size_t skip = 0;
    while (written >= pending.buffers[skip].size())
      written -= pending.buffers[skip++].size();
    pending.buffers.erase(pending.buffers.begin(),
                          pending.buffers.begin() +
                              static_cast<std::ptrdiff_t>(skip));
    pending.buffers.front() += written;
    writing_frames_ = static_cast<uint32_t>(frames);
    asio::async_write(
        socket_, pending.buffers,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->on_write(ec);
        });
    return;
  }
  // Idle again: no write buffers stay with the connection.
  if (writing_frames_ == 0)
    pending_write_.reset();
}

void websocket_session::on_write(beast::error_code ec) {
  auto frames = writing_frames_;
  writing_frames_ = 0;
  if (ec) {
    drop_queued(head_);
    return finish();
  }
  pop_written(frames);
  flush();
}

void websocket_session::pop_written(size_t frames) {
  for (size_t k = 0; k < frames; ++k) {
    auto& front = queue_[head_++];
    uint64_t bytes = front.payload->size();
    queued_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    if (front.counted) {
      --counted_;
      counted_bytes_ -= bytes;
    }
    if (front.op == data_op_)
      ++node_->metrics.frames_out;
    else if (front.op == ws::opcode::pong)
      --queued_pongs_;
    front.payload.reset();
    if (front.op == ws::opcode::close) {
      close_sent_ = true;
      if (peer_closed_)
        teardown();
    }
  }
  if (head_ == queue_.size()) {
    queue_.clear();
    head_ = 0;
    if (queue_.capacity() > idle_queue_capacity)
      queue_.shrink_to_fit();
  } else if (head_ >= idle_queue_capacity && 2 * head_ >= queue_.size()) {
    // Never drained under steady load: drop the written prefix now and then.
    queue_.erase(queue_.begin(),
                 queue_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

void websocket_session::drop_queued(size_t from) {
  for (auto i = from; i < queue_.size(); ++i) {
    uint64_t bytes = queue_[i].payload->size();
    queued_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    if (queue_[i].op == ws::opcode::pong)
      --queued_pongs_;
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

// -- closing ------------------------------------------------------------------

void websocket_session::begin_close(uint16_t code, std::string_view reason,
                                    bool drop_queue) {
  if (closing_ || shut_down_)
    return;
  closing_ = true;
  // Keep the frames being written: the socket still reads from them.
  if (drop_queue)
    drop_queued(head_ + writing_frames_);
  push(ws::opcode::close,
       std::make_shared<const std::string>(ws::close_payload(code, reason)),
       false);
  // A reader that never reads would keep the last write and the closing
  // handshake pending forever: shut the socket after a grace period.
  arm_timer(drop_queue ? close_grace_dropped : close_grace);
  // A paused reader reads on (data frames are dropped now) to see the
  // peer's answer.
  if (read_paused_.exchange(false))
    asio::post(socket_.get_executor(),
               [self = shared_from_this()] { self->resume_read(); });
}

void websocket_session::fail(uint16_t code, const char* reason) {
  peer_closed_ = true; // no close frame is awaited after a failure
  if (closing_) {
    if (close_sent_)
      teardown();
    return;
  }
  begin_close(code, reason, true);
}

void websocket_session::teardown() {
  if (shut_down_)
    return;
  shut_down_ = true;
  beast::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  // Both close frames are through: the peer sends nothing more, and the
  // server closes the TCP connection first (RFC 6455 7.1.1).
  if (close_received_)
    return finish();
  // We failed the connection: the peer may still be sending. Reading on
  // until its end lets it read our close frame (closing with unread input
  // would reset the connection instead); the close deadline bounds it.
  notify_closed();
}

void websocket_session::finish() {
  cancel_timer();
  if (scheduled_close_)
    scheduled_close_->cancel();
  // Aborts whatever still waits on the socket; its handler ends here too.
  beast::error_code ignored;
  socket_.close(ignored);
  shut_down_ = true;
  // A paused reader will not see the end of the socket.
  paused_self_.reset();
  unread_.reset();
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
  // A paused session reads no more: the deadline ends it.
  paused_self_.reset();
}

void websocket_session::notify_closed() {
  if (closed_notified_ || !actor_)
    return;
  closed_notified_ = true;
  caf::anon_send(actor_, atom::closed_v);
}

// -- the timer ----------------------------------------------------------------

timer_wheel& websocket_session::wheel() const {
  return timer_wheel::of(
      const_cast<asio::execution_context&>(*socket_context_));
}

void websocket_session::arm_timer(std::chrono::steady_clock::duration after) {
  if (after.count() <= 0)
    return cancel_timer(); // no idle timeout configured
  wheel().arm(*this, after);
}

void websocket_session::cancel_timer() {
  // Never armed: no wheel to look up (the io_context may be going).
  if (generation() != 0)
    wheel().cancel(*this);
}

std::shared_ptr<void> websocket_session::hold() {
  return weak_from_this().lock();
}

void websocket_session::expired(uint32_t generation) {
  // On the wheel's loop: at once where that is the socket's thread, else
  // onto its strand (scheduler-policy=sharing with several io-threads).
  asio::dispatch(socket_.get_executor(),
                 [self = shared_from_this(), generation] {
                   // Armed again or cancelled since: not due any more.
                   if (generation == self->generation())
                     self->on_timer();
                 });
}

void websocket_session::on_timer() {
  if (closing_ || shut_down_)
    return finish(); // the close deadline
  if (input_seen_) {
    input_seen_ = false;
    ping_sent_ = false;
  } else if (!ping_sent_) {
    ping_sent_ = true;
    push(ws::opcode::ping, std::make_shared<const std::string>(), false);
  } else {
    return finish(); // silent through a ping and a whole idle timeout
  }
  arm_timer(node_->opts.idle_timeout / 2);
}

} // namespace wsc::net

#include "actors/connection.hpp"
#include "loop/loop_coordinator.hpp"
#include "net/websocket_session_detail.hpp"
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

/// Reads per readiness before other sockets of the loop get their turn.
constexpr int reads_per_turn = 16;

/// Frames a connection reads ahead of their answers. Enough to keep a
/// pipelining client busy; small enough that an overloaded node holds a
/// bounded backlog and TCP slows the senders down.
constexpr uint32_t max_unanswered = 16;

/// Fragments carrying at least this much do not count against `rate-limit`
/// (admit_frame): max-message-bytes bounds how many a message has, and the
/// CONNECTION counts the message. A flood of frames is one of small frames.
constexpr uint64_t uncounted_fragment = 1024;

/// How long the peer's close waits for the answers to the frames before it
/// (a store's answer takes milliseconds; one that takes longer is not
/// waited for: the close goes without it).
constexpr auto close_grace_answers = std::chrono::seconds(2);

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

std::shared_ptr<websocket_session>
websocket_session::make(tcp::socket&& socket,
                        std::shared_ptr<const server_setup> setup,
                        std::string uid, std::string address) {
  // Not make_shared: see the declaration.
  return std::shared_ptr<websocket_session>(new websocket_session(
      std::move(socket), std::move(setup), std::move(uid), std::move(address)));
}

websocket_session::websocket_session(tcp::socket&& socket,
                                     std::shared_ptr<const server_setup> setup,
                                     std::string uid, std::string address)
    : socket_(std::move(socket)), setup_(std::move(setup)),
      uid_(std::move(uid)), address_(std::move(address)),
      codec_(setup_->codec && !setup_->codec->identity() ? setup_->codec
                                                         : nullptr),
      // The CONNECTION decodes binary frames for a codec; it learns one was
      // binary from the mark.
      reader_(setup_->opts.max_message_bytes,
              codec_ ? std::string_view{&binary_frame_mark, 1}
                     : std::string_view{}),
      frame_limiter_(setup_->opts.rate_limit),
      socket_context_(
          &asio::query(socket_.get_executor(), asio::execution::context)) {
  if (codec_ && codec_->writes_binary())
    data_op_ = ws::opcode::binary;
}

void websocket_session::run(caf::actor_system& sys,
                            http::request<http::string_body> req,
                            open_context opening) {
  // Beast answers the upgrade on a stream that borrows the socket; the HTTP
  // phase's deadline ended with its tcp_stream, this one is the handshake's.
  auto stream = std::make_unique<handshake_stream>(socket_);
  websocket::stream_base::timeout timeouts;
  timeouts.handshake_timeout = setup_->opts.handshake_timeout;
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
        loop_coordinator::handler_scope scope;
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
  ++setup_->metrics->handshakes_accepted;
  actor_ = sys.spawn(connection, setup_->connections, weak_from_this(),
                     std::move(opening));
  // The actor normally ends after `closed`; if it ends otherwise, the
  // session must learn of it (runs at once if it is already gone).
  actor_->attach_functor([weak = weak_from_this()](const caf::error& reason) {
    if (auto self = weak.lock())
      asio::post(self->socket_.get_executor(),
                 [self, reason = caf::to_string(reason)]() mutable {
                   self->on_actor_down(std::move(reason));
                 });
  });
  arm_timer(setup_->opts.idle_timeout / 2);
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
                             loop_coordinator::handler_scope scope;
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
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    loop_coordinator::handler_scope scope;
    self->read_available();
  });
}

bool websocket_session::consume(const char* data, size_t size) {
  auto completed_before = reader_.completed();
  auto result = reader_.feed(data, size, *this);
  // Only whole messages (and control frames between them) count as
  // activity: a client that trickles bytes of a frame it never ends, or
  // pings while a fragmented message never ends, is idle (and holds up to
  // a message's bytes).
  if (reader_.completed() != completed_before)
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

bool websocket_session::admit_frame(ws::opcode op, uint64_t size) {
  // Pings, pongs and small fragments cost the I/O thread as much as
  // messages do and keep a connection active: they count too. A peer that
  // answers our keep-alive pings sends one pong per half idle timeout.
  if (!frame_limiter_.limits() ||
      (op == ws::opcode::continuation && size >= uncounted_fragment))
    return true;
  // Past the burst the frame still goes (a fragment cannot be dropped);
  // persistent excess closes, as the CONNECTION's limit does.
  if (frame_limiter_.take() != rate_limiter::verdict::close)
    return true;
  setup_->metrics->count_error(ec::rate_limited);
  return false;
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
  // RFC 6455 5.5.1 lets an endpoint send what it has before it answers a
  // close: the answers owed to the frames before it (a send's ack after it
  // was stored: without it a client resends, and without an idem key that
  // is a duplicate, probe helper-58) and what is queued go first, then our
  // echo of the peer's code (1000 for a close without one). The answers
  // are waited for at most close_grace_answers.
  deferred_close_.store(
      code == ws::close_code::no_status ? ws::close_code::normal : code);
  if (unanswered_.load() > 0) {
    arm_timer(close_grace_answers);
    return; // frame_answered closes after the last answer
  }
  // Posted, not at once: an actor on another thread may have counted its
  // answer with the answer's write still posted (posts run in order).
  asio::post(socket_.get_executor(),
             [self = shared_from_this()] { self->close_deferred(); });
}

void websocket_session::close_deferred() {
  if (auto code = deferred_close_.exchange(0); code != 0)
    begin_close(code, {}, false); // after what is queued
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
  auto left = unanswered_.fetch_sub(1) - 1;
  if (left == 0 && deferred_close_.load() != 0)
    // After the answer's write (the same executor, in order).
    on_socket([self = shared_from_this()] { self->close_deferred(); });
  if (left < max_unanswered && read_paused_.load() &&
      read_paused_.exchange(false))
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      loop_coordinator::handler_scope scope;
      self->resume_read();
    });
}

} // namespace wsc::net

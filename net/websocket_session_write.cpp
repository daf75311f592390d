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

using namespace session_limits;

/// Pongs queued and not written yet. RFC 6455 5.5.3 lets a server answer
/// only the latest of pings it has not answered: past this many, the last
/// queued pong takes the newest payload instead of queueing another, so a
/// ping flood from a client that does not read costs bounded memory.
constexpr size_t max_queued_pongs = 32;

/// Queue slots kept by an idle connection; more are released once it drains.
constexpr size_t idle_queue_capacity = 16;

} // namespace

void websocket_session::on_ping(std::string_view payload) {
  if (closing_)
    return;
  auto pong = std::make_shared<const std::string>(payload);
  // Past the bound, the newest queued pong not being written answers this
  // ping instead.
  if (queued_pongs_ >= max_queued_pongs && newest_pong_ != no_pong &&
      newest_pong_ >= head_ + writing_frames_) {
    auto& entry = queue_[newest_pong_];
    queued_bytes_.fetch_add(pong->size(), std::memory_order_relaxed);
    queued_bytes_.fetch_sub(entry.payload->size(), std::memory_order_relaxed);
    entry.payload = std::move(pong);
    return;
  }
  // Below the bound, or every queued pong is being written: this one may
  // wait its turn.
  push(ws::opcode::pong, std::move(pong), false);
}

// -- writing ------------------------------------------------------------------

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

void websocket_session::enqueue(frame_ptr frame, bool counted) {
  if (closing_ || closed_notified_)
    return;
  uint64_t bytes = frame->size();
  if (counted) {
    // Past send-queue-limit frames or send-queue-bytes bytes the reader is
    // too slow. A frame larger than the whole byte budget still goes when
    // no other counted frame waits, so that a small budget cannot lock out
    // a reader that keeps up.
    auto& opts = setup_->opts;
    if (counted_ >= opts.send_queue_limit ||
        (counted_ > 0 && counted_bytes_ + bytes > opts.send_queue_bytes)) {
      ++setup_->metrics->queue_overflows;
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
  if (op == ws::opcode::pong) {
    ++queued_pongs_;
    newest_pong_ = static_cast<uint32_t>(queue_.size());
  }
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
      ++setup_->metrics->frames_out;
    else if (front.op == ws::opcode::pong && --queued_pongs_ == 0)
      newest_pong_ = no_pong;
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
    if (newest_pong_ != no_pong)
      newest_pong_ -= head_;
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
  // What stays is being written (or goes with a failed socket): no queued
  // pong takes a newer payload any more.
  if (newest_pong_ != no_pong && newest_pong_ >= from)
    newest_pong_ = no_pong;
  if (head_ >= queue_.size()) {
    queue_.clear();
    head_ = 0;
    if (queue_.capacity() > idle_queue_capacity)
      queue_.shrink_to_fit();
  }
}

} // namespace wsc::net

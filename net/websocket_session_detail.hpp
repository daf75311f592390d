#pragma once

// The parts of websocket_session that its sources share (the session is
// split by concern: websocket_session.cpp opens and reads,
// websocket_session_write.cpp queues and writes, websocket_session_close.cpp
// closes and keeps the deadlines).

#include "loop/loop_coordinator.hpp"
#include "net/websocket_session.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace wsc::net {

namespace session_limits {

/// Frames of one `writev` (Asio passes at most 64 buffers per system call:
/// a header and a payload per frame) and the bytes it gathers.
constexpr size_t frames_per_write = 32;
constexpr size_t max_header = 10;
constexpr size_t bytes_per_write = 256 * 1024;

} // namespace session_limits

struct websocket_session::pending_write {
  std::vector<asio::const_buffer> buffers;
  std::array<uint8_t,
             session_limits::frames_per_write * session_limits::max_header>
      headers;
};

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

inline bool websocket_session::on_socket_thread() const {
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

} // namespace wsc::net

#pragma once

#include "net/beast.hpp"

#include <boost/asio/io_context.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

namespace wsc::net {

/// The deadlines of every WebSocket session of one event loop (an
/// io_context): keep-alive pings, idle timeouts and close deadlines on one
/// timer per loop instead of one per session, so that an idle connection
/// holds no timer object and no pending wait operation.
///
/// A hashed wheel of `bucket_count` intrusive lists, `resolution` apart: a
/// deadline fires up to one resolution late, never early. The loop's timer
/// waits only for the next bucket that holds an entry (nothing while the
/// wheel is empty). Arming and cancelling are O(1) under a mutex
/// (uncontended but for `scheduler-policy=sharing` with several
/// `io-threads`, where several threads run one io_context): an entry's
/// deadline moves only when it fires or its session begins to close, never
/// per message.
///
/// An Asio service: `of(context)` finds or makes the wheel of an io_context.
/// It lives as long as the io_context, which outlives its sessions (their
/// sockets need it too).
class timer_wheel : public asio::execution_context::service {
public:
  using clock = std::chrono::steady_clock;

  static constexpr auto resolution = std::chrono::milliseconds(100);
  static constexpr size_t bucket_count = 512;

  /// What a wheel schedules (a session derives from it). Its hook belongs to
  /// the wheel; `generation` changes on every arm and cancel, so that an
  /// expiry handled after a newer arm can tell it is stale.
  class entry {
  public:
    entry() = default;
    entry(const entry&) = delete;
    entry& operator=(const entry&) = delete;

    /// Changed by every arm and cancel (on the entry's executor only).
    uint32_t generation() const { return generation_; }

  protected:
    ~entry() = default;

    /// Under the wheel's lock, when the entry is due: a reference that keeps
    /// it alive until `expired` has run, or null if it is being destroyed.
    virtual std::shared_ptr<void> hold() = 0;

    /// The entry's deadline came (outside the wheel's lock, on a thread
    /// that runs the wheel's io_context). `generation` is the one of the arm
    /// that came due.
    virtual void expired(uint32_t generation) = 0;

  private:
    friend class timer_wheel;
    /// Where the pointer to this entry is (the bucket's head or the previous
    /// entry's `next_`); null while not in the wheel.
    entry** pprev_ = nullptr;
    entry* next_ = nullptr;
    /// The tick it fires at.
    uint32_t due_ = 0;
    uint32_t generation_ = 0;
  };

  using key_type = timer_wheel;
  static asio::execution_context::id id;

  explicit timer_wheel(asio::io_context& context);

  /// The wheel of `context` (made on first use).
  static timer_wheel& of(asio::execution_context& context);

  /// Schedules `e` to expire `after` from now, instead of any earlier arm.
  void arm(entry& e, clock::duration after);

  /// Takes `e` out of the wheel, if it is in.
  void cancel(entry& e);

  /// Entries in the wheel (for tests).
  size_t size() const;

private:
  void shutdown() override;

  uint32_t tick_at(clock::time_point t) const;
  /// The first tick after `tick` whose bucket holds an entry (the wheel is
  /// not empty).
  uint32_t next_busy(uint32_t tick) const;
  void link(entry& e);
  void unlink(entry& e);
  /// Makes the timer fire at `tick` unless it fires sooner already.
  void schedule(uint32_t tick);
  void on_timer();

  mutable std::mutex mtx_;
  clock::time_point epoch_;
  /// Ticks up to this one are done: new entries go after it.
  uint32_t done_ = 0;
  size_t size_ = 0;
  std::array<entry*, bucket_count> buckets_{};
  /// One bit per bucket that holds an entry.
  std::array<uint64_t, bucket_count / 64> busy_{};
  std::optional<asio::steady_timer> timer_;
  /// The tick the timer waits for, while it waits.
  std::optional<uint32_t> scheduled_;
  bool stopped_ = false;
};

} // namespace wsc::net

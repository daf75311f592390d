#include "net/timer_wheel.hpp"

#include <algorithm>
#include <vector>

namespace wsc::net {

asio::execution_context::id timer_wheel::id;

namespace {

/// An entry that came due, held alive until it has been told.
struct due_entry {
  std::shared_ptr<void> hold;
  timer_wheel::entry* what;
  uint32_t generation;
};

} // namespace

timer_wheel::timer_wheel(asio::io_context& context)
    : service(context), epoch_(clock::now()) {
  timer_.emplace(context);
}

timer_wheel& timer_wheel::of(asio::execution_context& context) {
  // Every socket of a session runs on an io_context (listener::do_accept).
  return asio::use_service<timer_wheel>(
      static_cast<asio::io_context&>(context));
}

void timer_wheel::arm(entry& e, clock::duration after) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (e.pprev_ != nullptr)
    unlink(e);
  ++e.generation_;
  // Rounded up: never early. After the ticks done: those buckets are past.
  auto due = tick_at(clock::now() + after + resolution - clock::duration{1});
  e.due_ = std::max(due, done_ + 1);
  link(e);
  schedule(e.due_);
}

void timer_wheel::cancel(entry& e) {
  std::lock_guard<std::mutex> guard{mtx_};
  ++e.generation_;
  if (e.pprev_ != nullptr)
    unlink(e);
}

size_t timer_wheel::size() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return size_;
}

void timer_wheel::shutdown() {
  // The io_context is going: its handlers (ours among them) are destroyed,
  // not run. Sessions may still cancel while theirs go.
  std::lock_guard<std::mutex> guard{mtx_};
  stopped_ = true;
  scheduled_.reset();
  timer_.reset();
}

uint32_t timer_wheel::tick_at(clock::time_point t) const {
  // 2^32 ticks of 100 ms: 13 years of uptime.
  return static_cast<uint32_t>((t - epoch_) / resolution);
}

uint32_t timer_wheel::next_busy(uint32_t tick) const {
  auto start = static_cast<size_t>(tick + 1) % bucket_count;
  for (size_t k = 0; k < bucket_count;) {
    auto bucket = (start + k) % bucket_count;
    auto bit = bucket % 64;
    if (auto bits = busy_[bucket / 64] >> bit; bits != 0)
      return tick + 1 + static_cast<uint32_t>(k + __builtin_ctzll(bits));
    k += 64 - bit;
  }
  return tick + 1; // not reached: the wheel is not empty
}

void timer_wheel::link(entry& e) {
  auto bucket = e.due_ % bucket_count;
  auto& head = buckets_[bucket];
  e.next_ = head;
  if (head != nullptr)
    head->pprev_ = &e.next_;
  head = &e;
  e.pprev_ = &head;
  busy_[bucket / 64] |= uint64_t{1} << (bucket % 64);
  ++size_;
}

void timer_wheel::unlink(entry& e) {
  *e.pprev_ = e.next_;
  if (e.next_ != nullptr)
    e.next_->pprev_ = e.pprev_;
  e.pprev_ = nullptr;
  e.next_ = nullptr;
  auto bucket = e.due_ % bucket_count;
  if (buckets_[bucket] == nullptr)
    busy_[bucket / 64] &= ~(uint64_t{1} << (bucket % 64));
  --size_;
}

void timer_wheel::schedule(uint32_t tick) {
  if (stopped_ || (scheduled_ && *scheduled_ <= tick))
    return;
  scheduled_ = tick;
  // Cancels the wait for a later tick, if any (its handler does nothing).
  timer_->expires_at(epoch_ + tick * resolution);
  timer_->async_wait([this](beast::error_code ec) {
    if (ec != asio::error::operation_aborted)
      on_timer();
  });
}

void timer_wheel::on_timer() {
  std::vector<due_entry> due;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopped_)
      return;
    // A handler that completed before a re-arm may run late: every run
    // does what is due by now and waits for the next.
    scheduled_.reset();
    auto now = tick_at(clock::now());
    while (size_ > 0) {
      auto tick = next_busy(done_);
      if (tick > now)
        break;
      done_ = tick;
      // Entries of later rounds share the bucket and stay.
      for (auto* e = buckets_[tick % bucket_count]; e != nullptr;) {
        auto* next = e->next_;
        if (e->due_ <= tick) {
          unlink(*e);
          // Null: its destructor is under way (and finds it unlinked).
          if (auto hold = e->hold())
            due.push_back(due_entry{std::move(hold), e, e->generation_});
        }
        e = next;
      }
    }
    done_ = std::max(done_, now);
    if (size_ > 0)
      schedule(next_busy(done_));
  }
  // Outside the lock: they arm again.
  for (auto& d : due)
    d.what->expired(d.generation);
}

} // namespace wsc::net

#include "loop/loop_coordinator.hpp"

#include "util/log.hpp"
#include "util/run_loop.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/detail/set_thread_name.hpp>
#include <caf/execution_unit.hpp>
#include <caf/resumable.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <string>

namespace wsc {

namespace asio = boost::asio;

namespace {

/// The loop the calling thread runs (null on every other thread).
thread_local loop_coordinator::event_loop* this_loop = nullptr;

} // namespace

// -- one event loop
// -------------------------------------------------------------

/// Runs its io_context on its thread, and the actors scheduled on it in
/// batches (`drain`) between the socket handlers. `local_`,
/// `drain_posted_` and `handler_depth_` belong to the loop's thread; `remote_`
/// is where other threads leave work.
class loop_coordinator::event_loop : public caf::execution_unit {
public:
  event_loop(caf::actor_system& sys, loop_coordinator* owner, size_t index,
             size_t throughput)
      : caf::execution_unit(&sys), owner_(owner), index_(index),
        throughput_(throughput) {
    // Concurrency hint 1: a post from the loop's own thread goes to a
    // thread-private queue (no lock, no wake-up); other threads still may
    // post.
    ioc_.emplace(1);
    work_.emplace(ioc_->get_executor());
  }

  loop_coordinator* owner() const { return owner_; }

  asio::io_context& context() { return *ioc_; }

  /// Called by an actor running on this loop for an actor it woke (or
  /// spawned), or by a handler of the loop: runs in the drain under way,
  /// at the end of the handler (handler_scope), or in a posted drain.
  void exec_later(caf::resumable* job) override {
    if (this_loop != this)
      return external(job); // (not expected: CAF calls it on its own unit)
    local_.push_back(job);
    schedule_drain();
  }

  /// From any other thread: one post per batch, so a burst of messages from
  /// the STORE or the clock costs the loop one wake-up.
  void external(caf::resumable* job) {
    std::unique_lock<std::mutex> guard{mtx_};
    if (closed_) {
      guard.unlock();
      abstract_coordinator::cleanup_and_release(job);
      return;
    }
    remote_.push_back(job);
    if (remote_posted_)
      return;
    remote_posted_ = true;
    // Under the lock: discard() cannot destroy the io_context meanwhile.
    asio::post(*ioc_, [this] { take_remote(); });
  }

  void start() {
    thread_ = std::thread{[this] {
      auto name = "wsc.loop." + std::to_string(index_);
      caf::detail::set_thread_name(name.c_str());
      system().thread_started();
      this_loop = this;
      run_loop(*ioc_, name.c_str());
      this_loop = nullptr;
      system().thread_terminates();
    }};
  }

  /// Ends the loop's thread; the jobs still queued are left for discard().
  void stop() {
    work_.reset();
    ioc_->stop();
    if (thread_.joinable())
      thread_.join();
  }

  /// After stop(): releases the queued actors (as CAF's coordinator does
  /// with what is left in its queues), then destroys the io_context with the
  /// handlers nobody will run (sockets still open close here).
  void discard() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      closed_ = true;
    }
    take_remote_jobs();
    while (!local_.empty()) {
      auto job = local_.front();
      local_.pop_front();
      abstract_coordinator::cleanup_and_release(job);
    }
    work_.reset();
    ioc_.reset();
  }

  /// A handler_scope begins.
  void enter_handler() { ++handler_depth_; }

  /// A handler_scope ends: the outermost one runs what its handler woke
  /// (posted instead while an exception unwinds it).
  void leave_handler(bool unwinding) {
    if (--handler_depth_ > 0 || draining_ || local_.empty())
      return;
    if (unwinding)
      return post_drain();
    drain();
  }

private:
  void schedule_drain() {
    // A running drain or handler takes the job when it ends.
    if (draining_ || handler_depth_ > 0)
      return;
    post_drain();
  }

  /// One posted drain at a time, whatever asks for it meanwhile.
  void post_drain() {
    if (drain_posted_)
      return;
    drain_posted_ = true;
    asio::post(*ioc_, [this] {
      drain_posted_ = false;
      if (!local_.empty())
        drain();
    });
  }

  /// Runs the actors queued so far, and those they wake meanwhile for up
  /// to `drain_rounds` rounds; past that, or once an actor had more
  /// messages than one turn takes, the rest runs in a posted drain, after
  /// the socket handlers that became ready in between. Then what the
  /// actors left for after their turn (after_actors).
  void drain() {
    {
      // Cleared however the rounds end (run_loop goes on after a throw).
      struct draining_scope {
        bool& flag;
        ~draining_scope() { flag = false; }
      } scope{draining_};
      draining_ = true;
      bool busy = false;
      for (int round = 0; round < drain_rounds && !busy && !local_.empty();
           ++round) {
        for (auto n = local_.size(); n > 0 && !local_.empty(); --n) {
          auto job = local_.front();
          local_.pop_front();
          busy |= resume(job);
        }
      }
    }
    if (!local_.empty())
      post_drain();
    if (after_actors_.empty())
      return;
    std::vector<std::function<void()>> due;
    due.swap(after_actors_);
    for (auto& fn : due) {
      // Each its own: one that throws must not keep the others' writes.
      try {
        fn();
      } catch (const std::exception& e) {
        log::error("loop: a write after the actors threw: {}", e.what());
      }
    }
  }

public:
  bool after_actors(std::function<void()>& fn) {
    if (!draining_)
      return false;
    after_actors_.push_back(std::move(fn));
    return true;
  }

private:
  void take_remote() {
    take_remote_jobs();
    if (!local_.empty())
      drain();
  }

  void take_remote_jobs() {
    std::lock_guard<std::mutex> guard{mtx_};
    local_.insert(local_.end(), remote_.begin(), remote_.end());
    remote_.clear();
    remote_posted_ = false;
  }

  /// One turn of one actor, its result handled like CAF's worker does
  /// (caf/scheduler/worker.hpp, worker::run). True if it has more messages
  /// than the turn took.
  bool resume(caf::resumable* job) {
    switch (job->resume(this, throughput_)) {
    case caf::resumable::resume_later:
      // Keeps its reference; the drain under way runs or posts it.
      local_.push_back(job);
      return true;
    case caf::resumable::done:
    case caf::resumable::awaiting_message:
      // Enqueued again (with a new reference) by the next message.
      intrusive_ptr_release(job);
      return false;
    case caf::resumable::shutdown_execution_unit:
      return false; // never returned: stop() ends the loop
    }
    return false;
  }

  loop_coordinator* owner_;
  size_t index_;
  size_t throughput_;
  std::optional<asio::io_context> ioc_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
      work_;
  std::thread thread_;
  std::deque<caf::resumable*> local_;
  /// A drain is posted and has not run yet.
  bool drain_posted_ = false;
  /// Actors of this loop are running (inside drain).
  bool draining_ = false;
  /// handler_scopes open on this loop's thread.
  int handler_depth_ = 0;
  std::vector<std::function<void()>> after_actors_;
  std::mutex mtx_;
  std::vector<caf::resumable*> remote_;
  bool remote_posted_ = false;
  /// Set by discard(): nothing runs here any more.
  bool closed_ = false;
};

// -- the coordinator
// --------------------------------------------------------------

loop_coordinator::loop_coordinator(caf::actor_system& sys, size_t loops)
    : super(sys), requested_loops_(std::max<size_t>(loops, 1)) {
  // nop
}

loop_coordinator::~loop_coordinator() {
  // nop (stop() ended the threads)
}

void loop_coordinator::install(caf::actor_system_config& cfg, size_t loops) {
  cfg.module_factories.push_back(
      [loops](caf::actor_system& sys) -> caf::actor_system::module* {
        return new loop_coordinator(sys, loops);
      });
}

loop_coordinator* loop_coordinator::of(caf::actor_system& sys) {
  return dynamic_cast<loop_coordinator*>(&sys.scheduler());
}

size_t loop_coordinator::num_loops() const {
  return loops_.size();
}

asio::io_context& loop_coordinator::context(size_t index) {
  return loops_.at(index)->context();
}

caf::execution_unit* loop_coordinator::unit(size_t index) {
  return loops_.at(index).get();
}

loop_coordinator::event_loop* loop_coordinator::current() {
  return this_loop;
}

asio::io_context* loop_coordinator::current_context() {
  return this_loop != nullptr ? &this_loop->context() : nullptr;
}

bool loop_coordinator::after_actors(std::function<void()> fn) {
  return this_loop != nullptr && this_loop->after_actors(fn);
}

loop_coordinator::handler_scope::handler_scope() noexcept
    : loop_(this_loop), exceptions_(std::uncaught_exceptions()) {
  if (loop_ != nullptr)
    loop_->enter_handler();
}

loop_coordinator::handler_scope::~handler_scope() {
  if (loop_ != nullptr)
    loop_->leave_handler(std::uncaught_exceptions() > exceptions_);
}

void loop_coordinator::enqueue(caf::resumable* ptr) {
  if (stopped_) {
    // The loops are gone (e.g. a session's destructor when the io_context
    // is destroyed sent to an actor): nobody will run it.
    cleanup_and_release(ptr);
    return;
  }
  if (auto loop = this_loop; loop != nullptr && loop->owner() == this) {
    loop->exec_later(ptr);
    return;
  }
  auto index = next_worker_.fetch_add(1, std::memory_order_relaxed);
  loops_[index % loops_.size()]->external(ptr);
}

loop_clock& loop_coordinator::clock() noexcept {
  return clock_;
}

void loop_coordinator::init(caf::actor_system_config& cfg) {
  super::init(cfg);
  num_workers_ = requested_loops_;
  max_throughput_ = std::min(max_throughput_, loop_max_throughput);
}

void loop_coordinator::start() {
  for (size_t i = 0; i < num_workers_; ++i)
    loops_.emplace_back(
        std::make_unique<event_loop>(system(), this, i, max_throughput_));
  for (auto& loop : loops_)
    loop->start();
  // Timeouts and delayed messages, on a thread of their own as in CAF's
  // coordinator (caf/scheduler/coordinator.hpp, coordinator::start).
  clock_thread_ = std::thread{[this] {
    caf::detail::set_thread_name("caf.clock");
    system().thread_started();
    clock_.run_dispatch_loop();
    system().thread_terminates();
  }};
  // The printer (detached).
  super::start();
}

void loop_coordinator::stop() {
  // The actor system's destructor calls this after all actors it waits for
  // ended and after the middleman stopped. The printer first, while the
  // loops still run (a scoped_actor waits for it on this thread).
  stop_actors();
  for (auto& loop : loops_)
    loop->stop();
  stopped_ = true;
  for (auto& loop : loops_)
    loop->discard();
  clock_.cancel_dispatch_loop();
  if (clock_thread_.joinable())
    clock_thread_.join();
}

} // namespace wsc

#include "loop/loop_multiplexer.hpp"

#include "loop/loop_coordinator.hpp"
#include "util/log.hpp"

#include <caf/actor_system.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <thread>

namespace wsc {

namespace asio = boost::asio;
using caf::io::network::default_multiplexer;
using caf::io::network::native_socket;

namespace {

// default_multiplexer keeps its epoll descriptor private. Names in an
// explicit instantiation are exempt from access checks ([temp.spec]/6), so
// this instantiation hands out a pointer to that member and nothing else.
struct epoll_fd_tag {
  using type = native_socket default_multiplexer::*;
  friend type member_of(epoll_fd_tag);
};

template<class Tag, typename Tag::type Member>
struct expose_member {
  friend typename Tag::type member_of(Tag) { return Member; }
};

template struct expose_member<epoll_fd_tag, &default_multiplexer::epollfd_>;

} // namespace

// -- the loop side
// --------------------------------------------------------------

/// Lives on loop 0: waits for the epoll descriptor (a dup of the
/// multiplexer's, closed here) and runs passes. Shared with the handlers it
/// posts, so a handler that runs after the detach finds it still alive.
class loop_multiplexer::driver : public std::enable_shared_from_this<driver> {
public:
  driver(loop_multiplexer& mpx, asio::io_context& ioc, int epoll_fd)
      : mpx_(mpx), ioc_(ioc), epoll_(ioc, epoll_fd), tick_(ioc) {
    // nop
  }

  /// On the loop: makes this thread the multiplexer's and runs a first
  /// pass (the pipe may hold what others sent before).
  void attach(std::thread::id middleman_thread) {
    middleman_thread_ = middleman_thread;
    // Other threads read thread_id() meanwhile; either value sends them
    // through the pipe, so the moment of the switch does not matter.
    mpx_.thread_id(std::this_thread::get_id());
    mpx_.driver_ = this;
    log::debug("BASP runs on event loop 0");
    wait();
    tick();
    pass();
  }

  /// On the loop: a pass runs soon (once, however often asked).
  void schedule() {
    if (pass_posted_ || detached_)
      return;
    pass_posted_ = true;
    asio::post(ioc_, [self = shared_from_this()] {
      loop_coordinator::handler_scope scope;
      self->pass_posted_ = false;
      self->pass();
    });
  }

  /// On the middleman's thread: until the loop detached.
  void await_detach() {
    std::unique_lock<std::mutex> guard{mtx_};
    cv_.wait(guard, [this] { return done_; });
  }

private:
  void wait() {
    epoll_.async_wait(
        asio::posix::descriptor_base::wait_read,
        [self = shared_from_this()](boost::system::error_code ec) {
          if (ec && ec != asio::error::operation_aborted)
            log::error("BASP on event loop 0: cannot wait for the "
                       "multiplexer ({}); peers stall",
                       ec.message());
          if (ec || self->detached_)
            return;
          loop_coordinator::handler_scope scope;
          self->pass();
          if (!self->detached_)
            self->wait();
        });
  }

  /// The multiplexer's once-a-second work (on_tick), while attached.
  void tick() {
    tick_.expires_after(std::chrono::seconds{1});
    tick_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->detached_)
        return;
      self->mpx_.on_tick();
      self->tick();
    });
  }

  /// One round of CAF's own loop, without blocking: queued work, then the
  /// sockets epoll reports ready. While that finds anything, another pass
  /// follows (after the loop's other handlers), so ready descriptors never
  /// wait for an edge that will not come.
  void pass() {
    if (detached_)
      return;
    auto busy = mpx_.poll_once(false);
    if (mpx_.num_socket_handlers() == 0)
      return detach();
    if (busy)
      schedule();
  }

  /// The middleman stopped (the pipe and every socket are gone): hands the
  /// multiplexer back to the middleman's thread, which returns from run().
  void detach() {
    detached_ = true;
    mpx_.driver_ = nullptr;
    mpx_.thread_id(middleman_thread_);
    boost::system::error_code ignored;
    epoll_.close(ignored);
    tick_.cancel();
    {
      std::lock_guard<std::mutex> guard{mtx_};
      done_ = true;
    }
    cv_.notify_all();
  }

  loop_multiplexer& mpx_;
  asio::io_context& ioc_;
  asio::posix::stream_descriptor epoll_;
  asio::steady_timer tick_;
  std::thread::id middleman_thread_;
  bool pass_posted_ = false;
  bool detached_ = false;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool done_ = false;
};

// -- the multiplexer
// ------------------------------------------------------------

loop_multiplexer::loop_multiplexer(caf::actor_system* sys) : super(sys) {
  // nop
}

loop_multiplexer::~loop_multiplexer() {
  // nop
}

void loop_multiplexer::exec_later(caf::resumable* ptr) {
  super::exec_later(ptr);
  // On the loop (the multiplexer's thread while attached) CAF queued it
  // without the pipe: a pass must run it.
  if (auto d = driver_.load();
      d != nullptr && std::this_thread::get_id() == thread_id())
    d->schedule();
}

void loop_multiplexer::run() {
  auto loops = loop_coordinator::of(system());
  auto epoll_fd = loops ? ::dup(this->*member_of(epoll_fd_tag{})) : -1;
  if (epoll_fd < 0)
    return run_with_ticks();
  auto d = std::make_shared<driver>(*this, loops->context(0), epoll_fd);
  asio::post(loops->context(0),
             [d, tid = std::this_thread::get_id()] { d->attach(tid); });
  d->await_detach();
}

void loop_multiplexer::run_with_ticks() {
  // CAF's own loop has no timers: a thread hands it on_tick once a second
  // (through the pipe, as any other thread's work).
  std::mutex mtx;
  std::condition_variable cv;
  bool stop = false;
  std::thread ticker{[&] {
    std::unique_lock<std::mutex> guard{mtx};
    while (!cv.wait_for(guard, std::chrono::seconds{1}, [&] { return stop; }))
      dispatch([this] { on_tick(); });
  }};
  super::run();
  {
    std::lock_guard<std::mutex> guard{mtx};
    stop = true;
  }
  cv.notify_all();
  ticker.join();
}

} // namespace wsc

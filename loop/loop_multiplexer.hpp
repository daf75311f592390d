#pragma once

// CAF's network backend (BASP between nodes) on event loop 0 of the
// loop_coordinator, with `scheduler-policy=loop`.
//
// CAF's middleman runs `multiplexer::run()` on a thread of its own
// (`caf.multiplexer`): an epoll loop over the BASP sockets plus a pipe
// through which other threads hand it work. Every remote send then wakes
// that thread, and every message from a peer wakes the actor's thread. Here
// `run()` hands the multiplexer to loop 0 instead and sleeps until the
// middleman stops it: the loop waits for the multiplexer's epoll descriptor
// to become readable (an epoll descriptor is itself pollable) and then runs
// `poll_once(false)`, which does what one round of CAF's own loop does.
// Work handed over on the loop's thread (an actor on the loop sending to a
// peer) is queued without the pipe and run in a pass posted to the loop.
//
// Checked against CAF 0.17.6 (libcaf_io/src/io/network/
// default_multiplexer.cpp, middleman.cpp): `run()` is called once, on the
// middleman's thread, after the scheduler started; `exec_later` queues
// without the pipe when called on `thread_id()`; `run()` returns when no
// socket handler is left (the pipe counts as one until the middleman's
// stop closes it).
//
// Without a loop_coordinator (any other scheduler policy) this is CAF's
// default_multiplexer, unchanged.

#include <caf/io/network/default_multiplexer.hpp>

#include <atomic>
#include <memory>

namespace wsc {

class loop_multiplexer : public caf::io::network::default_multiplexer {
public:
  using super = caf::io::network::default_multiplexer;

  explicit loop_multiplexer(caf::actor_system* sys);

  ~loop_multiplexer() override;

  void exec_later(caf::resumable* ptr) override;

  void run() override;

  /// Whether the multiplexer runs on a loop right now (for tests).
  bool on_loop() const noexcept { return driver_.load() != nullptr; }

protected:
  /// Called once a second on the multiplexer's thread.
  virtual void on_tick() {
    // nop
  }

private:
  /// CAF's own loop (no loop_coordinator), with on_tick.
  void run_with_ticks();

  /// The loop side: the wait for the epoll descriptor and the passes.
  class driver;

  /// Set while attached to the loop; only dereferenced on the loop's thread.
  std::atomic<driver*> driver_{nullptr};
};

} // namespace wsc

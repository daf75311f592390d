#pragma once

// The actor scheduler of `scheduler-policy=loop`: CAF's cooperative actors
// run on the same event loops (one boost::asio::io_context and one thread
// each) that own the sockets, instead of on a pool of their own.
//
// CAF 0.17.6 builds its default coordinator only if no module registered as
// the scheduler (actor_system.cpp, actor_system::actor_system), so this one
// is added to `actor_system_config::module_factories` (see install()). A
// message sent by an actor wakes the receiver on the sender's loop
// (execution_unit::exec_later, scheduled_actor::enqueue): on one thread that
// is a queue push, not a futex wake-up. A message from a thread that is not
// an actor (e.g. a socket handler's anon_send) lands on the loop of the
// calling thread if it is one, else on the next loop in turn.
//
// What still has threads of its own: detached actors (the RELAY, the STORE
// of a Redis Cluster; the STORE of one Redis is pinned to loop 0), the
// clock (timeouts and delayed sends, as in CAF's coordinator, with fewer
// wake-ups: loop_clock) and CAF's printer; the middleman's multiplexer runs
// on loop 0 (loop_multiplexer). Nothing that runs on a
// loop may block: no scoped_actor, no blocking receive, no synchronous I/O.

#include "loop/loop_clock.hpp"

#include <caf/fwd.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace wsc {

class loop_coordinator : public caf::scheduler::abstract_coordinator {
public:
  /// One event loop: its io_context, its thread and the execution unit that
  /// runs actors there (defined in the .cpp).
  class event_loop;

  using super = caf::scheduler::abstract_coordinator;

  loop_coordinator(caf::actor_system& sys, size_t loops);

  ~loop_coordinator() override;

  /// Makes `cfg` use this scheduler with `loops` event loops.
  static void install(caf::actor_system_config& cfg, size_t loops);

  /// The loop coordinator of `sys`, or null if `sys` runs another scheduler.
  static loop_coordinator* of(caf::actor_system& sys);

  /// Number of event loops (the `io-threads` option).
  size_t num_loops() const;

  /// The io_context of loop `index`; it runs until the actor system stops,
  /// so sockets on it must be closed before then.
  boost::asio::io_context& context(size_t index);

  /// The execution unit of loop `index`: an actor handed to it runs there
  /// (see loop_pinned).
  caf::execution_unit* unit(size_t index);

  /// The loop the calling thread runs, or null if it runs none.
  static event_loop* current();

  /// The io_context of the loop the calling thread runs, or null.
  static boost::asio::io_context* current_context();

  /// Runs `fn` on the calling thread's loop once the actors of the batch it
  /// runs now have had their turn, before any other handler of the loop:
  /// what those actors write to sockets leaves in one pass (and without a
  /// post per frame). False, running nothing, if the calling thread is not
  /// running a loop's actors.
  static bool after_actors(std::function<void()> fn);

  /// Marks a handler of a loop (a socket's, a timer's) for its lifetime:
  /// the actors it wakes run when it ends, before the loop looks for I/O
  /// again, instead of in a posted turn (each posted turn costs the loop
  /// one more epoll_wait before it runs). Scopes nest; the outermost one
  /// runs them. Does nothing on a thread that runs no loop.
  class handler_scope {
  public:
    handler_scope() noexcept;
    ~handler_scope();
    handler_scope(const handler_scope&) = delete;
    handler_scope& operator=(const handler_scope&) = delete;

  private:
    event_loop* loop_;
    /// Exceptions in flight when the scope began (it may live in a
    /// destructor that runs while another unwinds).
    int exceptions_;
  };

  // -- abstract_coordinator -------------------------------------------------

  void enqueue(caf::resumable* ptr) override;

  loop_clock& clock() noexcept override;

  void init(caf::actor_system_config& cfg) override;

  void start() override;

  void stop() override;

  /// Upper bound of messages one actor handles per turn on a loop (CAF's
  /// `scheduler.max-throughput` is unbounded by default; on a loop a busy
  /// actor would then keep the sockets waiting).
  static constexpr size_t loop_max_throughput = 256;

  /// Rounds of one drain of a loop's actors: a message from one actor to
  /// another of the same loop is handled in the same drain, up to this many
  /// hops, without the epoll_wait of a turn of its own; then I/O has its
  /// turn.
  static constexpr int drain_rounds = 4;

private:
  std::vector<std::unique_ptr<event_loop>> loops_;
  loop_clock clock_;
  std::thread clock_thread_;
  size_t requested_loops_;
  /// Set by stop(): later enqueues are released at once.
  std::atomic<bool> stopped_{false};
};

} // namespace wsc

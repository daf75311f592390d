#define CAF_SUITE loop_coordinator

// The loop scheduler with real threads: each test builds its own actor
// system (the other suites use CAF's test coordinator). Every wait is
// bounded; a hang in the actor system's destructor fails by CTest's timeout.

#include "loop/loop_coordinator.hpp"

#include "loop/loop_pinned.hpp"
#include "util/run_loop.hpp"

#include <caf/all.hpp>
#include <caf/test/unit_test.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace wsc;

namespace {

constexpr auto wait_limit = std::chrono::seconds(10);

struct loop_config : caf::actor_system_config {
  explicit loop_config(size_t loops) {
    loop_coordinator::install(*this, loops);
  }
};

/// Where the handlers of the actors under test ran.
struct trace {
  std::mutex mtx;
  std::vector<std::thread::id> threads;
  size_t off_loop = 0;

  void record() {
    std::lock_guard<std::mutex> guard{mtx};
    threads.push_back(std::this_thread::get_id());
    if (loop_coordinator::current() == nullptr)
      ++off_loop;
  }
};

using trace_ptr = std::shared_ptr<trace>;

using start_atom = caf::atom_constant<caf::atom("lcstart")>;

/// Answers every number with the same number.
caf::behavior pong(caf::event_based_actor* self, trace_ptr log) {
  return {
      [=](int n) {
        log->record();
        self->send(caf::actor_cast<caf::actor>(self->current_sender()), n);
      },
  };
}

/// Plays `rounds` rounds with `buddy`, then tells `done` how many it saw.
caf::behavior ping(caf::event_based_actor* self, caf::actor buddy,
                   trace_ptr log) {
  auto rounds = std::make_shared<int>(0);
  auto done = std::make_shared<caf::actor>();
  return {
      [=](start_atom, int n, caf::actor& reply_to) {
        *rounds = n;
        *done = std::move(reply_to);
        self->send(buddy, 1);
      },
      [=](int n) {
        log->record();
        if (n < *rounds)
          self->send(buddy, n + 1);
        else
          self->send(*done, n);
      },
  };
}

} // namespace

CAF_TEST(the installed module is the scheduler) {
  loop_config cfg{2};
  caf::actor_system sys{cfg};
  auto loops = loop_coordinator::of(sys);
  CAF_REQUIRE(loops != nullptr);
  CAF_CHECK_EQUAL(loops->num_loops(), 2u);
  CAF_CHECK_EQUAL(loops->max_throughput(),
                  loop_coordinator::loop_max_throughput);
  CAF_CHECK(loop_coordinator::current() == nullptr);
}

CAF_TEST(without it CAF builds its own coordinator) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 1);
  caf::actor_system sys{cfg};
  CAF_CHECK(loop_coordinator::of(sys) == nullptr);
}

CAF_TEST(actors woken by an actor run on the loop of the sender) {
  loop_config cfg{2};
  caf::actor_system sys{cfg};
  auto log = std::make_shared<trace>();
  auto b = sys.spawn(pong, log);
  auto a = sys.spawn(ping, b, log);
  caf::scoped_actor self{sys};
  self->send(a, start_atom::value, 1000, caf::actor{self});
  int seen = 0;
  self->receive([&](int n) { seen = n; },
                caf::after(wait_limit) >> [] { CAF_FAIL("no answer"); });
  CAF_CHECK_EQUAL(seen, 1000);
  std::lock_guard<std::mutex> guard{log->mtx};
  CAF_CHECK_EQUAL(log->threads.size(), 2000u);
  CAF_CHECK_EQUAL(log->off_loop, 0u);
  // The start message picked a loop; every wake-up after it was a send
  // between the two actors, so both stayed on that loop's thread.
  for (auto& id : log->threads)
    CAF_CHECK(id == log->threads.front());
}

CAF_TEST(a send from a loop thread wakes the actor on that loop) {
  loop_config cfg{2};
  caf::actor_system sys{cfg};
  auto loops = loop_coordinator::of(sys);
  CAF_REQUIRE(loops != nullptr);
  auto log = std::make_shared<trace>();
  caf::scoped_actor self{sys};
  auto echo = sys.spawn(pong, log);
  for (size_t i = 0; i < loops->num_loops(); ++i) {
    // A socket handler's anon_send, as in net/websocket_session.cpp.
    auto poster = std::make_shared<std::thread::id>();
    boost::asio::post(loops->context(i), [poster, echo, &self] {
      *poster = std::this_thread::get_id();
      caf::send_as(caf::actor{self}, echo, static_cast<int>(7));
    });
    self->receive([](int n) { CAF_CHECK_EQUAL(n, 7); },
                  caf::after(wait_limit) >> [] { CAF_FAIL("no answer"); });
    {
      std::lock_guard<std::mutex> guard{log->mtx};
      CAF_REQUIRE_EQUAL(log->threads.size(), i + 1);
      CAF_CHECK(log->threads.back() == *poster);
    }
    // The answer may arrive before echo's turn on this loop ends; a send
    // meanwhile would find echo still running here and leave it here (1 run
    // in ~10 failed so). A task posted now runs after that turn.
    auto turn_over = std::make_shared<std::promise<void>>();
    boost::asio::post(loops->context(i),
                      [turn_over] { turn_over->set_value(); });
    CAF_REQUIRE(turn_over->get_future().wait_for(wait_limit) ==
                std::future_status::ready);
  }
  CAF_CHECK_EQUAL(log->off_loop, 0u);
}

CAF_TEST(messages from a detached actor reach a loop actor) {
  loop_config cfg{1};
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto counter = sys.spawn([](caf::event_based_actor* ctr) -> caf::behavior {
    auto count = std::make_shared<int>(0);
    return {
        [=](int) {
          if (loop_coordinator::current() != nullptr)
            ++*count;
        },
        [=](start_atom, caf::actor& reply_to) { ctr->send(reply_to, *count); },
    };
  });
  // A detached (blocking) actor has its own thread, like the Redis STORE.
  auto sender = sys.spawn<caf::detached>(
      [counter](caf::blocking_actor* blk, caf::actor reply_to) {
        for (int i = 0; i < 500; ++i)
          blk->send(counter, i);
        blk->send(counter, start_atom::value, reply_to);
      },
      caf::actor{self});
  int seen = 0;
  self->receive([&](int n) { seen = n; },
                caf::after(wait_limit) >> [] { CAF_FAIL("no answer"); });
  CAF_CHECK_EQUAL(seen, 500);
}

/// A pong whose every wake-up goes to one loop.
class pinned_pong : public loop_pinned<caf::event_based_actor> {
public:
  pinned_pong(caf::actor_config& cfg, caf::execution_unit* home, trace_ptr log)
      : loop_pinned(cfg, home), log_(std::move(log)) {
    // nop
  }

  caf::behavior make_behavior() override { return pong(this, log_); }

private:
  trace_ptr log_;
};

CAF_TEST(a pinned actor runs on its loop whoever wakes it) {
  loop_config cfg{2};
  caf::actor_system sys{cfg};
  auto loops = loop_coordinator::of(sys);
  CAF_REQUIRE(loops != nullptr);
  auto home_log = std::make_shared<trace>();
  auto home = std::make_shared<std::thread::id>();
  boost::asio::post(loops->context(1),
                    [home] { *home = std::this_thread::get_id(); });
  auto pinned = sys.spawn<pinned_pong>(loops->unit(1), home_log);
  auto log = std::make_shared<trace>();
  // An actor on loop 0 plays with it (unpinned, it would follow the sender
  // to loop 0), and so do a socket handler on loop 0 and this thread.
  auto a = sys.spawn(ping, pinned, log);
  caf::scoped_actor self{sys};
  boost::asio::post(loops->context(0), [a, &self] {
    caf::anon_send(a, start_atom::value, 200, caf::actor{self});
  });
  self->receive([](int n) { CAF_CHECK_EQUAL(n, 200); },
                caf::after(wait_limit) >> [] { CAF_FAIL("no answer"); });
  self->send(pinned, 7);
  self->receive([](int n) { CAF_CHECK_EQUAL(n, 7); },
                caf::after(wait_limit) >> [] { CAF_FAIL("no answer"); });
  std::lock_guard<std::mutex> guard{home_log->mtx};
  CAF_CHECK_EQUAL(home_log->threads.size(), 201u);
  CAF_CHECK_EQUAL(home_log->off_loop, 0u);
  for (auto& id : home_log->threads)
    CAF_CHECK(id == *home);
}

namespace {

/// Runs `fn` in a handler of loop 0 and waits until it ran.
template<class F>
void run_on_loop(loop_coordinator& loops, F fn) {
  auto ran = std::make_shared<std::promise<void>>();
  boost::asio::post(loops.context(0), [fn, ran]() mutable {
    fn();
    ran->set_value();
  });
  CAF_REQUIRE(ran->get_future().wait_for(wait_limit) ==
              std::future_status::ready);
}

size_t records(trace& log) {
  std::lock_guard<std::mutex> guard{log.mtx};
  return log.threads.size();
}

/// One loop, and `a` playing ping against `b`, both recording into `log`.
struct ping_pong_on_one_loop {
  loop_config cfg{1};
  caf::actor_system sys{cfg};
  loop_coordinator* loops = loop_coordinator::of(sys);
  trace_ptr log = std::make_shared<trace>();
  caf::actor b = sys.spawn(pong, log);
  caf::actor a = sys.spawn(ping, b, log);
  caf::scoped_actor self{sys};

  ping_pong_on_one_loop() { CAF_REQUIRE(loops != nullptr); }

  /// Starts a game of `rounds` rounds from the calling thread.
  void start(int rounds) {
    caf::anon_send(a, start_atom::value, rounds, caf::actor{self});
  }

  void expect_end(int rounds) {
    self->receive([rounds](int n) { CAF_CHECK_EQUAL(n, rounds); },
                  caf::after(wait_limit) >> [] { CAF_FAIL("no answer"); });
  }
};

} // namespace

CAF_TEST(actors a handler woke run when its scope ends a few hops deep) {
  ping_pong_on_one_loop game;
  size_t during = 0;
  size_t after = 0;
  run_on_loop(*game.loops, [&] {
    {
      loop_coordinator::handler_scope scope;
      game.start(1000);
      during = records(*game.log);
    }
    // Still inside the handler: the drain ran as the scope ended. Its
    // rounds: a's start, then b, a, b (each hop one record).
    after = records(*game.log);
  });
  CAF_CHECK_EQUAL(during, 0u);
  CAF_CHECK_EQUAL(after,
                  static_cast<size_t>(loop_coordinator::drain_rounds - 1));
  // The rest of the game goes on in posted drains.
  game.expect_end(1000);
}

CAF_TEST(a drain ends its rounds once an actor has more than a turn) {
  loop_config cfg{1};
  caf::actor_system sys{cfg};
  auto loops = loop_coordinator::of(sys);
  CAF_REQUIRE(loops != nullptr);
  auto log = std::make_shared<trace>();
  auto counter = sys.spawn([log]() -> caf::behavior {
    return {[log](int) {
      log->record();
    }};
  });
  constexpr size_t sent = 3 * loop_coordinator::loop_max_throughput;
  size_t after = 0;
  run_on_loop(*loops, [&] {
    {
      loop_coordinator::handler_scope scope;
      for (size_t i = 0; i < sent; ++i)
        caf::anon_send(counter, 1);
    }
    // One turn's worth, then the sockets of the loop have their turn.
    after = records(*log);
  });
  CAF_CHECK_EQUAL(after, loop_coordinator::loop_max_throughput);
  auto deadline = std::chrono::steady_clock::now() + wait_limit;
  while (records(*log) < sent && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CAF_CHECK_EQUAL(records(*log), sent);
}

CAF_TEST(a long chain of hops leaves the other handlers their turns) {
  ping_pong_on_one_loop game;
  // A socket handler that is ready again and again (it reposts itself),
  // while 2,000 hops are under way; it notes how far they got each time.
  std::vector<size_t> seen;
  auto done = std::make_shared<std::promise<void>>();
  std::function<void(int)> busy_socket = [&](int left) {
    loop_coordinator::handler_scope scope;
    seen.push_back(records(*game.log));
    if (left == 0)
      return done->set_value();
    boost::asio::post(game.loops->context(0),
                      [&busy_socket, left] { busy_socket(left - 1); });
  };
  run_on_loop(*game.loops, [&] {
    game.start(1000);
    boost::asio::post(game.loops->context(0), [&] { busy_socket(50); });
  });
  CAF_REQUIRE(done->get_future().wait_for(wait_limit) ==
              std::future_status::ready);
  game.expect_end(1000);
  // Between two of its turns: the drain at the end of its own scope and
  // at most one posted drain, `drain_rounds` hops each.
  size_t widest = 0;
  for (size_t i = 1; i < seen.size(); ++i)
    widest = std::max(widest, seen[i] - seen[i - 1]);
  CAF_CHECK_GREATER(seen.back(), 0u);
  CAF_CHECK_LESS_OR_EQUAL(
      widest, 2 * static_cast<size_t>(loop_coordinator::drain_rounds));
}

CAF_TEST(timeouts and delayed messages fire) {
  loop_config cfg{1};
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto silent = sys.spawn([]() -> caf::behavior {
    return {[](int) -> caf::result<int> {
      return caf::delegated<int>{};
    }};
  });
  auto timer =
      sys.spawn([silent](caf::event_based_actor* tmr) -> caf::behavior {
        return {
            [=](start_atom, caf::actor& reply_to) {
              tmr->delayed_send(tmr, std::chrono::milliseconds(20), reply_to,
                                1);
            },
            [=](caf::actor& reply_to, int) {
              // A request nobody answers ends with its timeout (CAF's clock).
              tmr->request(silent, std::chrono::milliseconds(20), 1)
                  .then([=](int) { tmr->send(reply_to, -1); },
                        [=](caf::error& err) {
                          tmr->send(reply_to,
                                    err == caf::sec::request_timeout ? 2 : -2);
                        });
            },
        };
      });
  self->send(timer, start_atom::value, caf::actor{self});
  int seen = 0;
  self->receive([&](int n) { seen = n; },
                caf::after(wait_limit) >> [] { CAF_FAIL("no answer"); });
  CAF_CHECK_EQUAL(seen, 2);
}

CAF_TEST(answered requests wake the clock once per batch) {
  loop_config cfg{1};
  caf::actor_system sys{cfg};
  auto echo = sys.spawn([]() -> caf::behavior {
    return {[](int n) {
      return n;
    }};
  });
  // 200 requests, each answered at once. CAF's own clock wakes twice per
  // request: to set its timeout, and when the (never cancelled) timeout
  // fires. Here setting wakes it at most for the first, and the timeouts
  // of the burst fire on one grid tick.
  auto client = sys.spawn([echo](caf::event_based_actor* c) -> caf::behavior {
    return {
        [=](start_atom, caf::actor& reply_to) {
          auto left = std::make_shared<int>(200);
          for (int i = 0; i < 200; ++i)
            c->request(echo, std::chrono::milliseconds(400), i).then([=](int) {
              if (--*left == 0)
                c->send(reply_to, 200);
            });
        },
    };
  });
  caf::scoped_actor self{sys};
  auto& clock = loop_coordinator::of(sys)->clock();
  auto before = clock.wake_ups();
  self->send(client, start_atom::value, caf::actor{self});
  int seen = 0;
  self->receive([&](int n) { seen = n; },
                caf::after(wait_limit) >> [] { CAF_FAIL("no answer"); });
  CAF_CHECK_EQUAL(seen, 200);
  // Past every deadline (400 ms + at most 50 ms late).
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  CAF_CHECK_LESS_OR_EQUAL(clock.wake_ups() - before, 4u);
}

CAF_TEST(an earlier deadline wakes the clock) {
  loop_config cfg{1};
  caf::actor_system sys{cfg};
  auto silent = sys.spawn([]() -> caf::behavior {
    return {[](int) -> caf::result<int> {
      return caf::delegated<int>{};
    }};
  });
  // A request that waits 30 s is outstanding; one of 20 ms still ends in
  // time: the clock sleeping until the first is woken for the second.
  auto client = sys.spawn([silent](caf::event_based_actor* c) -> caf::behavior {
    return {
        [=](start_atom, caf::actor& reply_to) {
          c->request(silent, std::chrono::seconds(30), 1)
              .then([](int) {}, [](caf::error&) {});
          c->request(silent, std::chrono::milliseconds(20), 2)
              .then([=](int) { c->send(reply_to, -1); },
                    [=](caf::error& err) {
                      c->send(reply_to,
                              err == caf::sec::request_timeout ? 2 : -2);
                    });
        },
    };
  });
  caf::scoped_actor self{sys};
  auto started = std::chrono::steady_clock::now();
  self->send(client, start_atom::value, caf::actor{self});
  int seen = 0;
  self->receive([&](int n) { seen = n; },
                caf::after(wait_limit) >> [] { CAF_FAIL("no answer"); });
  CAF_CHECK_EQUAL(seen, 2);
  CAF_CHECK_LESS(std::chrono::steady_clock::now() - started,
                 std::chrono::seconds(5));
  caf::anon_send_exit(client, caf::exit_reason::kill);
  caf::anon_send_exit(silent, caf::exit_reason::kill);
}

CAF_TEST(a handler that throws leaves its loop running) {
  // Without run_loop's catch the exception leaves run() and ends the thread
  // (in a loop's thread: std::terminate, the whole node).
  boost::asio::io_context ioc;
  int ran = 0;
  boost::asio::post(ioc, [] { throw std::length_error{"field too large"}; });
  boost::asio::post(ioc, [&] { ++ran; });
  boost::asio::post(ioc, [] { throw 42; });
  boost::asio::post(ioc, [&] { ++ran; });
  run_loop(ioc, "test");
  CAF_CHECK_EQUAL(ran, 2);
}

#define CAF_SUITE timer_wheel

// The WebSocket sessions' deadlines on one wheel per io_context, with a real
// clock: deadlines fire once, never early, in order; cancelled, re-armed and
// destroyed entries do not fire (or fire at their latest arm).

#include "net/timer_wheel.hpp"

#include <caf/test/unit_test.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <vector>

using namespace wsc::net;
using namespace std::chrono_literals;

namespace {

using clock_type = timer_wheel::clock;

struct log_entry {
  int who;
  uint32_t generation;
  clock_type::time_point at;
};

class probe : public timer_wheel::entry,
              public std::enable_shared_from_this<probe> {
public:
  probe(int who, timer_wheel& wheel, std::vector<log_entry>& log)
      : who_(who), wheel_(wheel), log_(log) {
    // nop
  }

  ~probe() { wheel_.cancel(*this); }

  void arm(clock_type::duration after) {
    armed_at = clock_type::now();
    wanted = after;
    wheel_.arm(*this, after);
  }

  void cancel() { wheel_.cancel(*this); }

  clock_type::time_point armed_at;
  clock_type::duration wanted{};

protected:
  std::shared_ptr<void> hold() override { return weak_from_this().lock(); }

  void expired(uint32_t generation) override {
    log_.push_back(log_entry{who_, generation, clock_type::now()});
  }

private:
  int who_;
  timer_wheel& wheel_;
  std::vector<log_entry>& log_;
};

struct fixture {
  boost::asio::io_context ioc;
  timer_wheel& wheel = timer_wheel::of(ioc);
  std::vector<log_entry> log;

  std::shared_ptr<probe> make(int who) {
    return std::make_shared<probe>(who, wheel, log);
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(timer_wheel_tests, fixture)

CAF_TEST(deadlines fire once each in order and never early) {
  auto a = make(1);
  auto b = make(2);
  auto c = make(3);
  a->arm(350ms);
  b->arm(50ms);
  c->arm(200ms);
  CAF_CHECK_EQUAL(wheel.size(), 3u);
  ioc.run_for(800ms);
  CAF_REQUIRE_EQUAL(log.size(), 3u);
  CAF_CHECK_EQUAL(log[0].who, 2);
  CAF_CHECK_EQUAL(log[1].who, 3);
  CAF_CHECK_EQUAL(log[2].who, 1);
  for (auto& fired : log) {
    auto& p = fired.who == 1 ? *a : fired.who == 2 ? *b : *c;
    CAF_CHECK_EQUAL(fired.generation, p.generation());
    CAF_CHECK(fired.at - p.armed_at >= p.wanted);
    // One resolution late at most, plus slack for a busy machine.
    CAF_CHECK(fired.at - p.armed_at <
              p.wanted + timer_wheel::resolution + 150ms);
  }
  CAF_CHECK_EQUAL(wheel.size(), 0u);
}

CAF_TEST(cancelled and destroyed entries do not fire) {
  auto a = make(1);
  auto b = make(2);
  auto c = make(3);
  a->arm(100ms);
  b->arm(100ms);
  c->arm(150ms);
  a->cancel();
  b.reset(); // its destructor takes it out
  ioc.run_for(500ms);
  CAF_REQUIRE_EQUAL(log.size(), 1u);
  CAF_CHECK_EQUAL(log[0].who, 3);
  CAF_CHECK_EQUAL(wheel.size(), 0u);
}

CAF_TEST(a later arm replaces the earlier one) {
  auto a = make(1);
  auto b = make(2);
  a->arm(100ms);
  auto first = a->generation();
  a->arm(400ms); // later: the timer still wakes at 100 ms, for nothing
  b->arm(300ms);
  b->arm(50ms); // sooner: the timer waits less
  CAF_CHECK_NOT_EQUAL(first, a->generation());
  ioc.run_for(700ms);
  CAF_REQUIRE_EQUAL(log.size(), 2u);
  CAF_CHECK_EQUAL(log[0].who, 2);
  CAF_CHECK(log[0].at - b->armed_at < 50ms + timer_wheel::resolution + 150ms);
  CAF_CHECK_EQUAL(log[1].who, 1);
  CAF_CHECK_EQUAL(log[1].generation, a->generation());
  CAF_CHECK(log[1].at - a->armed_at >= 400ms);
}

CAF_TEST(an entry may arm again when it expires) {
  // As the sessions' keep-alive does; the wheel empties in between.
  auto a = make(1);
  a->arm(100ms);
  ioc.run_for(300ms);
  CAF_REQUIRE_EQUAL(log.size(), 1u);
  a->arm(100ms);
  ioc.restart();
  ioc.run_for(300ms);
  CAF_REQUIRE_EQUAL(log.size(), 2u);
  CAF_CHECK_EQUAL(log[1].generation, a->generation());
}

CAF_TEST(many entries across the buckets) {
  std::vector<std::shared_ptr<probe>> probes;
  for (int i = 0; i < 1000; ++i) {
    probes.push_back(make(i));
    probes.back()->arm(std::chrono::milliseconds(i % 7 * 50));
  }
  for (int i = 0; i < 1000; i += 3)
    probes[static_cast<size_t>(i)]->cancel();
  ioc.run_for(800ms);
  CAF_CHECK_EQUAL(log.size(), 666u);
  CAF_CHECK_EQUAL(wheel.size(), 0u);
  for (auto& fired : log)
    CAF_CHECK_NOT_EQUAL(fired.who % 3, 0);
}

CAF_TEST_FIXTURE_SCOPE_END()

#define CAF_SUITE supervisor

#include "actors/supervisor.hpp"

#include "fixture.hpp"

#include <caf/test/dsl.hpp>

#include <memory>

using namespace wsc;

namespace {

behaviour_actor::behavior_type dummy() {
  return {
      [](atom::frame, frame_context&, json_ptr&) { return json_ptr{}; },
  };
}

struct fixture : test::node_fixture {
  /// Counts the behaviours the factory made.
  std::shared_ptr<int> made = std::make_shared<int>(0);

  behaviour_factory factory() {
    return [made = made](caf::actor_system& sys) {
      ++*made;
      return behaviour_actor{sys.spawn(dummy)};
    };
  }

  supervisor_actor watch(behaviour_actor hdl, behaviour_factory f) {
    auto sup = track(sys.spawn(supervisor, behaviours, health, std::move(hdl),
                               std::move(f)));
    run();
    return sup;
  }

  uint32_t restarts(const supervisor_actor& sup) {
    return deref<supervisor_actor::stateful_base<supervisor_state>>(sup)
        .state.restarts;
  }

  void kill(const behaviour_actor& hdl) {
    caf::anon_send_exit(hdl, caf::exit_reason::kill);
    sched.run(); // unlike run(), fires no timeouts (the back-off)
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(supervisor_tests, fixture)

CAF_TEST(a failed behaviour is replaced for every type it had) {
  auto first = sys.spawn(dummy);
  auto other = track(sys.spawn(dummy));
  behaviours->add("bot.*", first);
  behaviours->add("bot.admin", first);
  behaviours->add("echo", other);
  auto sup = watch(first, factory());
  kill(first);
  auto second = behaviours->find("bot.ask");
  CAF_REQUIRE(second);
  CAF_CHECK(second != first);
  CAF_CHECK(behaviours->find("bot.admin") == second);
  CAF_CHECK(behaviours->find("echo") == other);
  CAF_CHECK_EQUAL(*made, 1);
  CAF_CHECK_EQUAL(restarts(sup), 1u);
  // The replacement is watched in turn.
  kill(second);
  auto third = behaviours->find("bot.ask");
  CAF_CHECK(third && third != second);
  CAF_CHECK_EQUAL(restarts(sup), 2u);
  // Stopping the SUPERVISOR stops the behaviour it watches.
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  run();
  auto ptr = caf::actor_cast<caf::abstract_actor*>(third);
  CAF_CHECK(ptr->getf(caf::abstract_actor::is_terminated_flag));
}

CAF_TEST(without a factory the registrations go) {
  auto hdl = sys.spawn(dummy);
  behaviours->add("doomed.*", hdl);
  watch(hdl, {});
  kill(hdl);
  CAF_CHECK(!behaviours->find("doomed.x"));
}

CAF_TEST(a draining node replaces nothing) {
  auto hdl = sys.spawn(dummy);
  behaviours->add("bot.*", hdl);
  watch(hdl, factory());
  health->draining = true;
  kill(hdl);
  CAF_CHECK_EQUAL(*made, 0);
  CAF_CHECK(behaviours->find("bot.x") == hdl);
}

CAF_TEST(repeated failures back off) {
  auto hdl = sys.spawn(dummy);
  behaviours->add("bot.*", hdl);
  auto sup = watch(hdl, factory());
  for (size_t i = 0; i < supervisor_state::burst; ++i)
    kill(behaviours->find("bot.x"));
  CAF_CHECK_EQUAL(restarts(sup), supervisor_state::burst);
  auto dead = behaviours->find("bot.x");
  kill(dead);
  // Still the dead handle: clients get `internal` meanwhile.
  CAF_CHECK(behaviours->find("bot.x") == dead);
  CAF_CHECK_EQUAL(restarts(sup), supervisor_state::burst);
  sched.advance_time(supervisor_state::backoff);
  sched.run();
  CAF_CHECK(behaviours->find("bot.x") != dead);
  CAF_CHECK_EQUAL(restarts(sup), supervisor_state::burst + 1);
}

CAF_TEST_FIXTURE_SCOPE_END()

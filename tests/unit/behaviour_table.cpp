#define CAF_SUITE behaviour_table

#include "actors/behaviour_table.hpp"

#include "fixture.hpp"

#include <caf/test/dsl.hpp>

using namespace wsc;

namespace {

behaviour_actor::behavior_type dummy() {
  return {
      [](atom::frame, frame_context&, json_ptr&) { return json_ptr{}; },
  };
}

struct fixture : test::node_fixture {
  behaviour_actor a = track(sys.spawn(dummy));
  behaviour_actor b = track(sys.spawn(dummy));
  behaviour_actor c = track(sys.spawn(dummy));
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(behaviour_table_tests, fixture)

CAF_TEST(exact types win over prefixes and longer prefixes win) {
  behaviour_table table;
  table.add("bot.*", a);
  table.add("bot.admin.*", b);
  table.add("bot.ask", c);
  CAF_CHECK(table.find("bot.ask") == c);
  CAF_CHECK(table.find("bot.tell") == a);
  CAF_CHECK(table.find("bot.admin.kick") == b);
  CAF_CHECK(!table.find("bots"));
  CAF_CHECK(!table.find("send"));
  CAF_CHECK(table.remove("bot.ask"));
  CAF_CHECK(table.find("bot.ask") == a);
  table.remove_all(a);
  CAF_CHECK(!table.find("bot.tell"));
  CAF_CHECK(table.find("bot.admin.x") == b);
}

CAF_TEST_FIXTURE_SCOPE_END()

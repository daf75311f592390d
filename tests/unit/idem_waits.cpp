#define CAF_SUITE idem_waits

// Repeats of an idem wait for the first delivery of this node with it
// (flow/idem_waits), a bounded number of them.

#include "flow/idem_waits.hpp"

#include <caf/test/unit_test.hpp>

#include <string>
#include <vector>

using namespace wsc;

CAF_TEST(repeats wait for the first and go on once it is answered) {
  idem_waits waits;
  std::vector<std::string> ran;
  auto note = [&](std::string what) {
    return [&ran, what](idem_waits::outcome how) {
      if (how == idem_waits::outcome::recorded)
        ran.push_back(what);
    };
  };
  auto key = idem_waits::key("alice", "k");
  CAF_CHECK(waits.enter(key) == idem_waits::verdict::first);
  for (auto name : {"r1", "r2"}) {
    CAF_CHECK(waits.enter(key) == idem_waits::verdict::waits);
    waits.wait(key, note(name));
  }
  // Another idem, or the same idem of another sender, does not wait.
  CAF_CHECK(waits.enter(idem_waits::key("alice", "k2")) ==
            idem_waits::verdict::first);
  CAF_CHECK(waits.enter(idem_waits::key("bob", "k")) ==
            idem_waits::verdict::first);
  CAF_CHECK(ran.empty());
  auto resume = waits.done(key);
  CAF_REQUIRE_EQUAL(resume.size(), 2u);
  // The key is free before they run: a later repeat is a first again.
  CAF_CHECK(waits.enter(key) == idem_waits::verdict::first);
  for (auto& fn : resume)
    fn(idem_waits::outcome::recorded);
  CAF_CHECK_EQUAL(ran, (std::vector<std::string>{"r1", "r2"}));
  CAF_CHECK(waits.done("nothing").empty());
  CAF_CHECK_EQUAL(waits.size(), 3u); // key, alice's k2, bob's k
}

CAF_TEST(at most max_waiting repeats wait per idem) {
  idem_waits waits;
  auto key = idem_waits::key("alice", "k");
  CAF_CHECK(waits.enter(key) == idem_waits::verdict::first);
  for (size_t i = 0; i < idem_waits::max_waiting; ++i) {
    CAF_CHECK(waits.enter(key) == idem_waits::verdict::waits);
    waits.wait(key, [](idem_waits::outcome) {});
  }
  CAF_CHECK(waits.enter(key) == idem_waits::verdict::refused);
  CAF_CHECK_EQUAL(waits.done(key).size(), idem_waits::max_waiting);
  CAF_CHECK_EQUAL(waits.size(), 0u);
}

CAF_TEST(keys of senders and idems that share a joined form differ) {
  CAF_CHECK_NOT_EQUAL(idem_waits::key("a:b", "c"), idem_waits::key("a", "b:c"));
}

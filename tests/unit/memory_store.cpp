#define CAF_SUITE memory_store

// The memory STATE_STORE (adapters/memory_store) remembers a sender's
// `idem` within the idempotency window, and forgets it after.

#include "adapters/memory_store.hpp"

#include "protocol/error.hpp"
#include "protocol/frames.hpp"

#include <caf/test/unit_test.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace wsc;

namespace {

delivery make(std::string from, std::string idem, std::string msg_id) {
  auto d = frames::make_delivery(delivery_kind::message, std::move(from),
                                 "\"x\"", true);
  d.uids = {"bob"};
  d.idem = std::move(idem);
  d.msg_id = std::move(msg_id);
  return d;
}

} // namespace

CAF_TEST(the memory store dedupes per sender within the window) {
  memory_store_state st;
  st.cfg.idempotency_window_ms = 60'000;
  auto first = st.append(make("alice", "k", "m1"), {"bob"});
  CAF_REQUIRE(first);
  CAF_CHECK(first->duplicate_of.empty());
  CAF_CHECK_EQUAL(first->offline_seqs, std::vector<uint64_t>{1});
  // The same sender and idem: the first msg_id, nothing stored or routed.
  auto again = st.append(make("alice", "k", "m2"), {"bob"});
  CAF_REQUIRE(again);
  CAF_CHECK_EQUAL(again->duplicate_of, "m1");
  CAF_CHECK(again->offline.empty() && again->nodes.empty());
  CAF_CHECK_EQUAL(st.inboxes.at("bob").messages.size(), 1u);
  // Another sender (the API's is empty), another idem, and keys that would
  // collide without the length prefix are new messages.
  for (auto [from, idem] :
       {std::pair{"carol", "k"}, std::pair{"", "k"}, std::pair{"alice", "k2"},
        std::pair{"a:b", "c"}, std::pair{"a", "b:c"}}) {
    auto other =
        st.append(make(from, idem, std::string{"n-"} + from + idem), {"bob"});
    CAF_REQUIRE(other);
    CAF_CHECK(other->duplicate_of.empty());
  }
  CAF_CHECK_EQUAL(st.inboxes.at("bob").messages.size(), 6u);
  // Without idem nothing is remembered.
  CAF_CHECK(st.append(make("alice", "", "m3"), {"bob"})->duplicate_of.empty());
  CAF_CHECK(st.append(make("alice", "", "m4"), {"bob"})->duplicate_of.empty());
}

CAF_TEST(the memory store forgets an idem after the window) {
  memory_store_state st;
  st.cfg.idempotency_window_ms = 1;
  CAF_CHECK(st.append(make("alice", "k", "m1"), {"bob"})->duplicate_of.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CAF_CHECK(st.append(make("alice", "k", "m2"), {"bob"})->duplicate_of.empty());
  CAF_CHECK_EQUAL(st.idems.size(), 1u);
  st.cfg.idempotency_window_ms = 0; // off
  CAF_CHECK(st.append(make("alice", "k", "m3"), {"bob"})->duplicate_of.empty());
}

CAF_TEST(the memory store holds at most max - stored - bytes in all inboxes) {
  memory_store_state st;
  st.cfg.max_stored_bytes = 64 * 1024;
  st.cfg.idempotency_window_ms = 60'000;
  auto to_new_uid = [&](int i, std::string idem) {
    auto d = frames::make_delivery(delivery_kind::message, "alice",
                                   '"' + std::string(1000, 'x') + '"', true);
    d.idem = std::move(idem);
    d.msg_id = "m" + std::to_string(i);
    return st.append(d, {"u" + std::to_string(i)});
  };
  // Every new uid brings an inbox of its own (probe helper-51: 1.5 GB in
  // 6 s, each uid within its own budgets).
  int stored = 0;
  caf::error refused;
  for (; stored < 1000; ++stored) {
    auto result = to_new_uid(stored, "k" + std::to_string(stored));
    if (!result) {
      refused = std::move(result.error());
      break;
    }
  }
  CAF_CHECK_GREATER(stored, 30);
  CAF_CHECK_LESS(stored, 64);
  CAF_CHECK_EQUAL(to_ec(refused), ec::unavailable);
  CAF_CHECK_LESS_OR_EQUAL(st.stored_bytes, st.cfg.max_stored_bytes);
  // The refused send's idem was not kept: with room, its retry is stored.
  st.cfg.max_stored_bytes = 0;
  auto retry = to_new_uid(stored, "k" + std::to_string(stored));
  CAF_REQUIRE(retry);
  CAF_CHECK(retry->duplicate_of.empty());
  // Expired inboxes give their bytes back, to the last one.
  st.cfg.inbox_max_age_ms = 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  st.sweep(frames::now_ms(), 10'000);
  CAF_CHECK(st.inboxes.empty());
  CAF_CHECK_EQUAL(st.stored_bytes, 0u);
}

CAF_TEST(trimmed and restarted inboxes give their bytes back) {
  memory_store_state st;
  st.cfg.inbox_max_messages = 3;
  auto send = [&](std::string data) {
    auto d = frames::make_delivery(delivery_kind::message, "alice",
                                   '"' + data + '"', true);
    d.msg_id = "m";
    CAF_REQUIRE(st.append(d, {"bob"}));
  };
  send("first");
  auto one = st.stored_bytes;
  for (int i = 0; i < 10; ++i)
    send("later");
  // The inbox and the three it keeps (all copies of one size).
  auto copy = one - memory_store_state::inbox_cost("bob");
  CAF_CHECK_EQUAL(st.stored_bytes,
                  memory_store_state::inbox_cost("bob") + 3 * copy);
}

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
  // Expired inboxes give their bytes back but for their last seqs, which
  // go after seq_hint_keep_ms: to the last byte.
  st.cfg.inbox_max_age_ms = 1;
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  st.sweep(frames::now_ms(), 10'000);
  CAF_CHECK(st.inboxes.empty());
  CAF_CHECK_EQUAL(st.ended.size(), static_cast<size_t>(stored) + 1);
  uint64_t hints = 0;
  for (auto& [uid, life] : st.ended)
    hints += memory_store_state::ended_cost(uid);
  CAF_CHECK_EQUAL(st.stored_bytes, hints);
  CAF_CHECK_EQUAL(st.ended_bytes, hints);
  st.cfg.seq_hint_keep_ms = 0;
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  st.sweep(frames::now_ms(), 10'000);
  CAF_CHECK(st.ended.empty() && st.ended_expiry.empty());
  CAF_CHECK_EQUAL(st.stored_bytes, 0u);
  CAF_CHECK_EQUAL(st.ended_bytes, 0u);
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

namespace {

delivery small_message() {
  auto d =
      frames::make_delivery(delivery_kind::message, "alice", "\"x\"", true);
  d.msg_id = "m";
  return d;
}

/// Stores one durable message for `uid` and answers its seq.
uint64_t store_one(memory_store_state& st, const std::string& uid) {
  auto routes = st.append(small_message(), {uid});
  CAF_REQUIRE(routes);
  CAF_REQUIRE_EQUAL(routes->offline_seqs.size(), 1u);
  return routes->offline_seqs.front();
}

void wait_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

} // namespace

CAF_TEST(a new life of an inbox continues after the earlier one) {
  memory_store_state st;
  st.cfg.inbox_max_age_ms = 20;
  for (uint64_t seq = 1; seq <= 7; ++seq)
    CAF_CHECK_EQUAL(store_one(st, "bob"), seq);
  CAF_CHECK(!st.read("bob", "d", 5));
  // Expired and swept: its last seq is kept, for a small cost.
  wait_ms(40);
  st.sweep(frames::now_ms(), 10);
  CAF_CHECK(st.inboxes.empty());
  CAF_CHECK_EQUAL(st.ended.at("bob").last_seq, 7u);
  CAF_CHECK_EQUAL(st.stored_bytes, memory_store_state::ended_cost("bob"));
  // The new life's first copy starts an inbox (the sender is charged for
  // it), the next ones do not.
  auto reborn = st.append(small_message(), {"bob"});
  CAF_REQUIRE(reborn);
  CAF_CHECK_EQUAL(reborn->offline_seqs, std::vector<uint64_t>{8});
  CAF_CHECK_EQUAL(reborn->new_inboxes, 1u);
  auto next = st.append(small_message(), {"bob"});
  CAF_REQUIRE(next);
  CAF_CHECK_EQUAL(next->new_inboxes, 0u);
  for (uint64_t seq = 10; seq <= 14; ++seq)
    CAF_CHECK_EQUAL(store_one(st, "bob"), seq);
  CAF_CHECK(st.ended.empty() && st.ended_expiry.empty());
  // A position of the earlier life lies before the new one's oldest seq:
  // too_old, never a replay that skips 8..12 (F1). The last seq of the
  // earlier life is exact: 7 misses nothing.
  auto old = st.replay("bob", "x", 5, 100);
  CAF_CHECK(old.too_old);
  CAF_CHECK_EQUAL(old.messages.size(), 7u);
  CAF_CHECK(!st.replay("bob", "x", 7, 100).too_old);
  // The page names the life's first seq: a connection still at 5 has missed
  // nothing of this life (only of the earlier one, which is gone).
  CAF_CHECK_EQUAL(old.oldest, 8u);
  CAF_CHECK_EQUAL(old.born, 8u);
  CAF_CHECK(only_new_life_ahead(old));
  // The device's cursor of the earlier life went with it: it hides none of
  // the new life's messages.
  auto device = st.replay("bob", "d", -1, 100);
  CAF_CHECK_EQUAL(device.cursor, 0u);
  CAF_CHECK_EQUAL(device.messages.size(), 7u);
  CAF_CHECK_EQUAL(device.messages.front().seq, 8u);
  // Expired but not swept: the same.
  wait_ms(40);
  CAF_CHECK_EQUAL(store_one(st, "bob"), 15u);
  CAF_CHECK(st.replay("bob", "x", 12, 100).too_old);
}

CAF_TEST(an inbox kept alive by reads continues its seqs) {
  memory_store_state st;
  st.cfg.inbox_max_age_ms = 30;
  CAF_CHECK_EQUAL(store_one(st, "bob"), 1u);
  CAF_CHECK_EQUAL(store_one(st, "bob"), 2u);
  // Reads keep the inbox, but its messages age out: the next message
  // starts a new life (cursors reset) after seq 2.
  for (int i = 0; i < 4; ++i) {
    wait_ms(10);
    CAF_CHECK(!st.read("bob", "d", 1));
  }
  CAF_CHECK_EQUAL(store_one(st, "bob"), 3u);
  CAF_CHECK(st.inboxes.at("bob").cursors.empty());
}

CAF_TEST(ended lives are forgotten after the hint margin or for room) {
  memory_store_state st;
  st.cfg.inbox_max_age_ms = 1;
  st.cfg.seq_hint_keep_ms = 20;
  CAF_CHECK_EQUAL(store_one(st, "bob"), 1u);
  CAF_CHECK_EQUAL(store_one(st, "bob"), 2u);
  wait_ms(40);
  // Past inbox-max-age + seq_hint_keep_ms: the next life starts at 1.
  CAF_CHECK_EQUAL(store_one(st, "bob"), 1u);
  CAF_CHECK(st.ended.empty());
  // A full store forgets the oldest ended lives before refusing a message.
  st.cfg.seq_hint_keep_ms = 60'000;
  for (auto uid : {"u1", "u2", "u3"})
    store_one(st, uid);
  wait_ms(5);
  st.sweep(frames::now_ms(), 10);
  CAF_REQUIRE_EQUAL(st.ended.size(), 4u);
  // Room for u9's inbox and message once one ended life (bob's, the
  // oldest) is forgotten.
  st.cfg.max_stored_bytes = st.stored_bytes +
                            memory_store_state::inbox_cost("u9") +
                            memory_store_state::message_cost(small_message()) -
                            memory_store_state::ended_cost("bob");
  CAF_CHECK_EQUAL(store_one(st, "u9"), 1u);
  CAF_CHECK_EQUAL(st.stored_bytes, st.cfg.max_stored_bytes);
  CAF_CHECK_EQUAL(st.ended.size(), 3u);
  CAF_CHECK_EQUAL(st.ended_expiry.size(), 3u);
  CAF_CHECK_EQUAL(st.ended.count("bob"), 0u);
  CAF_CHECK_EQUAL(st.ended_bytes, 3 * memory_store_state::ended_cost("u1"));
  // A message that would not fit even without every ended life is refused
  // without forgetting any (review helper-55, L1).
  st.cfg.max_stored_bytes =
      st.stored_bytes - st.ended_bytes + memory_store_state::inbox_cost("u8") +
      memory_store_state::message_cost(small_message()) - 1;
  auto refused = st.append(small_message(), {"u8"});
  CAF_REQUIRE(!refused);
  CAF_CHECK_EQUAL(to_ec(refused.error()), ec::unavailable);
  CAF_CHECK_EQUAL(st.ended.size(), 3u);
  // One byte more: it fits once all three go.
  st.cfg.max_stored_bytes += 1;
  CAF_CHECK_EQUAL(store_one(st, "u8"), 1u);
  CAF_CHECK(st.ended.empty() && st.ended_bytes == 0);
  CAF_CHECK_EQUAL(st.stored_bytes, st.cfg.max_stored_bytes);
}

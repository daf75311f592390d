#define CAF_SUITE store_budgets

// The token buckets that bound what each uid stores per second
// (`stored-bytes-rate`) and over inbox-max-age (`stored-bytes-kept`).

#include "flow/store_budgets.hpp"

#include <caf/test/unit_test.hpp>

#include <string>
#include <unordered_set>

using namespace wsc;
using namespace std::chrono_literals;

namespace {

constexpr double rate = 1000;  // bytes per second
constexpr double burst = 4000; // bytes

} // namespace

CAF_TEST(a new uid starts with a full bucket and the API always may) {
  store_budgets budgets{rate, burst};
  auto t0 = store_budgets::clock::now();
  CAF_CHECK(budgets.may_store("", t0));
  CAF_CHECK_EQUAL(budgets.size(), 0u);
  CAF_CHECK(budgets.may_store("ann", t0));
  CAF_CHECK_EQUAL(budgets.size(), 1u);
}

CAF_TEST(a uid in debt may store again once refilled) {
  store_budgets budgets{rate, burst};
  auto t0 = store_budgets::clock::now();
  CAF_REQUIRE(budgets.may_store("ann", t0));
  // 2 receivers of 1936 bytes (+64 each): exactly the burst, not in debt.
  budgets.charge("ann", 2, 1936);
  CAF_CHECK(!budgets.may_store("ann", t0)); // empty is not > 0
  budgets.charge("ann", 1, 936);            // 1000 bytes of debt
  CAF_CHECK(!budgets.may_store("ann", t0 + 1s));
  CAF_CHECK(budgets.may_store("ann", t0 + 1s + 1ms));
  // Others are not charged for ann.
  CAF_CHECK(budgets.may_store("bob", t0));
}

CAF_TEST(a bucket refills up to the burst only) {
  store_budgets budgets{rate, burst};
  auto t0 = store_budgets::clock::now();
  budgets.may_store("ann", t0);
  CAF_CHECK(budgets.may_store("ann", t0 + 1h));
  budgets.charge("ann", 1, 3936); // the burst
  CAF_CHECK(!budgets.may_store("ann", t0 + 1h));
}

CAF_TEST(starting an inbox costs what the store preallocates for it) {
  store_budgets budgets{rate, burst};
  auto t0 = store_budgets::clock::now();
  CAF_REQUIRE(budgets.may_store("ann", t0));
  // One 1-byte copy into a new inbox: 65 bytes plus the new inbox, which
  // alone is more than the burst of 4000 bytes (debt: 465 bytes).
  budgets.charge("ann", 1, 1, 1);
  CAF_CHECK(!budgets.may_store("ann", t0));
  CAF_CHECK(!budgets.may_store("ann", t0 + 465ms));
  CAF_CHECK(budgets.may_store("ann", t0 + 470ms));
}

CAF_TEST(charging a uid without a bucket does nothing) {
  store_budgets budgets{rate, burst};
  budgets.charge("ann", 100, 1000);
  CAF_CHECK_EQUAL(budgets.size(), 0u);
  CAF_CHECK(budgets.may_store("ann", store_budgets::clock::now()));
}

CAF_TEST(pruning keeps debts and spent buckets and connected uids) {
  store_budgets budgets{rate, burst};
  auto t0 = store_budgets::clock::now();
  std::unordered_set<std::string> connected{"on"};
  auto is_connected = [&](const std::string& uid) {
    return connected.count(uid) > 0;
  };
  budgets.may_store("on", t0);
  budgets.may_store("debtor", t0);
  budgets.may_store("spender", t0);
  budgets.charge("on", 10, 4000);
  budgets.charge("debtor", 10, 4000);
  budgets.charge("spender", 1, 3000 - 64); // 1000 bytes left
  for (int i = 0; i < 1023; ++i)
    budgets.may_store("u" + std::to_string(i), t0);
  // 1026 buckets, 1 uid connected: under 2 * 1 + 1024, nothing dropped.
  budgets.prune(connected.size(), is_connected, t0);
  CAF_CHECK_EQUAL(budgets.size(), 1026u);
  budgets.may_store("one more", t0);
  budgets.prune(connected.size(), is_connected, t0 + 1s);
  CAF_CHECK_EQUAL(budgets.size(), 3u);
  // The debtor's debt survived the sweep: reconnecting does not reset it.
  CAF_CHECK(!budgets.may_store("debtor", t0 + 1s));
  CAF_CHECK(!budgets.may_store("on", t0 + 1s));
  // Neither does a spent burst: 2000 bytes after 1 s, not 4000.
  budgets.charge("spender", 1, 2000 - 64);
  CAF_CHECK(!budgets.may_store("spender", t0 + 1s));
  // Refilled to the full burst, a bucket is as good as none: dropped.
  for (int i = 0; i < 1100; ++i)
    budgets.may_store("v" + std::to_string(i), t0 + 1s);
  budgets.prune(connected.size(), is_connected, t0 + 60s);
  CAF_CHECK_EQUAL(budgets.size(), 1u);
}

CAF_TEST(what waits for the store is reserved and given back) {
  store_budgets budgets{rate, burst};
  auto t0 = store_budgets::clock::now();
  CAF_REQUIRE(budgets.may_store("ann", t0));
  // Two receivers of 936 bytes, each maybe a new inbox: 2 x (1000 + 4400)
  // reserved, so the next message waits for the answer.
  budgets.reserve("ann", 2, 936);
  CAF_CHECK(!budgets.may_store("ann", t0));
  // Stored: the reservation comes back, the real cost is charged (no new
  // inbox): 2000 of the 4000 bytes are left.
  budgets.release("ann", 2, 936);
  budgets.charge("ann", 2, 936);
  CAF_CHECK(budgets.may_store("ann", t0));
  budgets.charge("ann", 1, 1936);
  CAF_CHECK(!budgets.may_store("ann", t0));
  // What is given back never fills a bucket beyond its burst.
  budgets.release("ann", 100, 1000);
  budgets.charge("ann", 1, burst - 64);
  CAF_CHECK(!budgets.may_store("ann", t0));
}

CAF_TEST(publishes waiting for the store are bounded in number) {
  store_budgets budgets{1e9, 1e12};
  auto t0 = store_budgets::clock::now();
  for (uint32_t i = 0; i < store_budgets::max_publishes_in_flight; ++i) {
    CAF_REQUIRE(budgets.may_store("ann", t0, true));
    budgets.reserve("ann", 1, 10, true);
  }
  CAF_CHECK(!budgets.may_store("ann", t0, true));
  // Sends are bounded by their reservation only.
  CAF_CHECK(budgets.may_store("ann", t0));
  budgets.release("ann", 1, 10, true);
  CAF_CHECK(budgets.may_store("ann", t0, true));
}

CAF_TEST(the record of an idem is charged too) {
  store_budgets budgets{rate, burst};
  auto t0 = store_budgets::clock::now();
  CAF_REQUIRE(budgets.may_store("ann", t0));
  // 1 x (36 + 64) + (200 + 40) = 340 bytes, ten times: 3,400 of 4,000.
  for (int i = 0; i < 10; ++i)
    budgets.charge("ann", 1, 36, 0, 40);
  CAF_CHECK(budgets.may_store("ann", t0));
  budgets.charge("ann", 1, 36, 0, 40);
  budgets.charge("ann", 1, 36, 0, 40);
  CAF_CHECK(!budgets.may_store("ann", t0));
}

CAF_TEST(pruning keeps a bucket while its messages wait for the store) {
  store_budgets budgets{rate, burst};
  auto t0 = store_budgets::clock::now();
  budgets.may_store("waiting", t0);
  budgets.reserve("waiting", 1, 10);
  for (int i = 0; i < 1100; ++i)
    budgets.may_store("u" + std::to_string(i), t0);
  // Refilled to the burst long ago, not connected, but a send waits: kept,
  // so that its settlement is charged.
  budgets.prune(
      0, [](const std::string&) { return false; }, t0 + 1h);
  CAF_CHECK_EQUAL(budgets.size(), 1u);
  budgets.release("waiting", 1, 10);
  budgets.prune(
      0, [](const std::string&) { return false; }, t0 + 2h);
  CAF_CHECK_EQUAL(budgets.size(), 1u); // under 1024 buckets: no sweep
}

CAF_TEST(what a uid keeps stored is bounded over the long window) {
  // A per-second bucket too large to matter; 4000 bytes kept, refilled at
  // 10 bytes per second.
  store_budgets budgets{{1e9, 1e9}, {10, 4000}};
  auto t0 = store_budgets::clock::now();
  using verdict = store_budgets::verdict;
  CAF_REQUIRE(budgets.check("ann", t0) == verdict::may);
  budgets.charge("ann", 2, 1936); // 4000: all of it
  CAF_CHECK(budgets.check("ann", t0) == verdict::too_much_kept);
  CAF_CHECK(budgets.check("ann", t0 + 1s) == verdict::may);
  budgets.charge("ann", 1, 936); // 1000 bytes, 990 of them debt
  CAF_CHECK(budgets.check("ann", t0 + 100s) == verdict::too_much_kept);
  CAF_CHECK(budgets.check("ann", t0 + 101s) == verdict::may); // 10 left
  // Reservations count against it too, and are given back.
  budgets.reserve("ann", 1, 36); // 100 + 4400 for an inbox it may start
  CAF_CHECK(budgets.check("ann", t0 + 101s) == verdict::too_much_kept);
  budgets.release("ann", 1, 36);
  CAF_CHECK(budgets.check("ann", t0 + 101s) == verdict::may);
  CAF_CHECK(budgets.check("bob", t0) == verdict::may);
}

CAF_TEST(the per second bucket speaks first and no kept bound means none) {
  using verdict = store_budgets::verdict;
  auto t0 = store_budgets::clock::now();
  store_budgets both{{rate, burst}, {1, 1000}};
  CAF_REQUIRE(both.check("ann", t0) == verdict::may);
  both.charge("ann", 1, 5000);
  CAF_CHECK(both.check("ann", t0) == verdict::too_fast);
  CAF_CHECK(both.check("ann", t0 + 2s) == verdict::too_much_kept);
  // Without a kept bound, a day's worth of bursts all pass.
  store_budgets rate_only{rate, burst};
  for (int i = 0; i < 24; ++i) {
    auto t = t0 + std::chrono::hours{i};
    CAF_REQUIRE(rate_only.check("ann", t) == verdict::may);
    rate_only.charge("ann", 1, burst - 64);
  }
  CAF_CHECK(rate_only.check("ann", t0 + 24h) == verdict::may);
}

CAF_TEST(pruning keeps a uid that stored much within the long window) {
  // Per second: 1000 B/s, burst 4000; kept: 100,000 refilled at 1 B/s.
  store_budgets budgets{{rate, burst}, {1, 100'000}};
  auto t0 = store_budgets::clock::now();
  budgets.may_store("heavy", t0);
  budgets.may_store("light", t0);
  budgets.charge("heavy", 1, 10'000 - 64); // more than a burst kept
  budgets.charge("light", 1, 3000 - 64);   // less than a burst
  for (int i = 0; i < 1100; ++i)
    budgets.may_store("u" + std::to_string(i), t0);
  // An hour later both per-second buckets are full again; heavy's kept
  // bucket still misses more than a burst (10,000 - 3,600): it stays, so
  // reconnecting does not give it back what it stored.
  budgets.prune(
      0, [](const std::string&) { return false; }, t0 + 1h);
  CAF_CHECK_EQUAL(budgets.size(), 1u);
  budgets.charge("heavy", 1, 95'000 - 64); // 93,600 were left
  // 100 s later the per-second bucket is full again; the kept one is not.
  CAF_CHECK(budgets.check("heavy", t0 + 1h + 100s) ==
            store_budgets::verdict::too_much_kept);
}

CAF_TEST(a sweep gives back little of a kept bucket smaller than a burst) {
  // Kept: 3,000 bytes, refilled at 0.01 B/s; per second: 4,000.
  store_budgets budgets{{rate, burst}, {0.01, 3000}};
  auto t0 = store_budgets::clock::now();
  budgets.may_store("ann", t0);
  budgets.charge("ann", 1, 2000 - 64); // 1,000 kept bytes left
  for (int i = 0; i < 1100; ++i)
    budgets.may_store("u" + std::to_string(i), t0);
  // 10 s later ann's per-second bucket is full; its kept one misses ~2,000
  // bytes, more than a sweep forgives (3,000 / 64): it stays.
  budgets.prune(
      0, [](const std::string&) { return false; }, t0 + 10s);
  CAF_CHECK_EQUAL(budgets.size(), 1u);
  budgets.charge("ann", 1, 1100 - 64);
  CAF_CHECK(budgets.check("ann", t0 + 20s) ==
            store_budgets::verdict::too_much_kept);
}

CAF_TEST(sweeps run at most once a second) {
  store_budgets budgets{rate, burst};
  auto t0 = store_budgets::clock::now();
  auto nobody = [](const std::string&) {
    return false;
  };
  for (int i = 0; i < 1100; ++i)
    budgets.may_store("u" + std::to_string(i), t0);
  budgets.prune(0, nobody, t0);
  CAF_CHECK_EQUAL(budgets.size(), 0u);
  for (int i = 0; i < 1100; ++i)
    budgets.may_store("v" + std::to_string(i), t0);
  budgets.prune(0, nobody, t0 + 500ms);
  CAF_CHECK_EQUAL(budgets.size(), 1100u);
  budgets.prune(0, nobody, t0 + 1s);
  CAF_CHECK_EQUAL(budgets.size(), 0u);
}

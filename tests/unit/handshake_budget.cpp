#define CAF_SUITE handshake_budget

// The token bucket per client address that bounds how fast it may start
// WebSocket handshakes (`handshake-rate-per-address`).

#include "flow/handshake_budget.hpp"

#include <caf/test/unit_test.hpp>

#include <string>

using namespace wsc;
using namespace std::chrono_literals;

namespace {

using clock_type = handshake_budget::clock;

/// How many handshakes `address` gets admitted at `now`, trying up to `n`.
int admitted(handshake_budget& budget, const std::string& address,
             clock_type::time_point now, int n) {
  int count = 0;
  for (int i = 0; i < n; ++i)
    count += budget.admit(address, now) ? 1 : 0;
  return count;
}

} // namespace

CAF_TEST(an address gets ten seconds of its rate at once then its rate) {
  handshake_budget budget{5};
  auto t0 = clock_type::now();
  CAF_CHECK_EQUAL(admitted(budget, "10.0.0.1", t0, 80), 50);
  CAF_CHECK_EQUAL(admitted(budget, "10.0.0.1", t0 + 1s, 80), 5);
  CAF_CHECK_EQUAL(admitted(budget, "10.0.0.1", t0 + 1200ms, 80), 1);
  // Another address has its own bucket.
  CAF_CHECK_EQUAL(admitted(budget, "10.0.0.2", t0 + 1200ms, 80), 50);
}

CAF_TEST(a bucket refills to its burst and no further) {
  handshake_budget budget{5};
  auto t0 = clock_type::now();
  CAF_REQUIRE_EQUAL(admitted(budget, "10.0.0.1", t0, 80), 50);
  CAF_CHECK_EQUAL(admitted(budget, "10.0.0.1", t0 + 1h, 80), 50);
}

CAF_TEST(a rate of zero admits everything and tracks nothing) {
  handshake_budget budget{0};
  auto t0 = clock_type::now();
  CAF_CHECK_EQUAL(admitted(budget, "10.0.0.1", t0, 10'000), 10'000);
  CAF_CHECK_EQUAL(budget.size(), 0u);
}

CAF_TEST(full buckets are dropped by the sweeps of later admits) {
  handshake_budget budget{5};
  auto t0 = clock_type::now();
  for (int i = 0; i < 100; ++i)
    CAF_REQUIRE(budget.admit("10.0.1." + std::to_string(i), t0));
  CAF_REQUIRE_EQUAL(admitted(budget, "10.0.0.1", t0, 80), 50);
  CAF_CHECK_EQUAL(budget.size(), 101u);
  // A second later the 100 (one token short) are full again; each admit
  // looks through a few slots of the table, so a thousand go round it
  // several times. The emptied one is not full and keeps its debt of
  // tokens: no fresh burst.
  CAF_CHECK_EQUAL(admitted(budget, "10.0.0.1", t0 + 1s, 1000), 5);
  CAF_CHECK_EQUAL(budget.size(), 1u);
}

CAF_TEST(IPv6 addresses count per 64 bit prefix) {
  CAF_CHECK_EQUAL(address_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  CAF_CHECK_EQUAL(address_key("2001:db8:1:2:bbbb:cc::7"), "2001:db8:1:2::/64");
  CAF_CHECK_EQUAL(address_key("::ffff:10.1.2.3"), "10.1.2.3");
  CAF_CHECK_EQUAL(address_key("::ffff:0:10.1.2.4"), "10.1.2.4");
  CAF_CHECK_EQUAL(address_key("64:ff9b::10.1.2.5"), "10.1.2.5");
  CAF_CHECK_EQUAL(address_key("127.0.0.1"), "127.0.0.1");
  CAF_CHECK_EQUAL(address_key(""), "");
  CAF_CHECK_EQUAL(address_key("not:an:address"), "not:an:address");
  handshake_budget budget{1};
  auto t0 = clock_type::now();
  CAF_CHECK_EQUAL(admitted(budget, "2001:db8::1", t0, 8), 8);
  CAF_CHECK_EQUAL(admitted(budget, "2001:db8::ffff:2", t0, 8), 2);
  CAF_CHECK_EQUAL(admitted(budget, "2001:db8:0:1::1", t0, 20), 10);
}

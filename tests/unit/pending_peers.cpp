#define CAF_SUITE pending_peers

// Cluster connections without a handshake: per address, in all, by age.

#include "net/pending_peers.hpp"

#include <caf/test/unit_test.hpp>

#include <algorithm>
#include <array>

using namespace wsc;
using namespace std::chrono_literals;

namespace {

using net::pending_peers;

std::array<int, 16> conns; // their addresses are the keys

pending_peers::key conn(size_t i) {
  return &conns.at(i);
}

pending_peers::limits small_limits() {
  pending_peers::limits result;
  result.per_address = 2;
  result.total = 4;
  result.deadline = 10s;
  return result;
}

bool same(const std::vector<pending_peers::key>& xs,
          std::vector<pending_peers::key> ys) {
  return xs == ys;
}

} // namespace

CAF_TEST(
    a newcomer beyond its address 's share displaces that address' s oldest) {
  pending_peers pending{small_limits()};
  auto t0 = pending_peers::clock::now();
  CAF_CHECK(pending.add(conn(0), "10.0.0.1", t0).empty());
  CAF_CHECK(pending.add(conn(1), "10.0.0.2", t0).empty());
  CAF_CHECK(pending.add(conn(2), "10.0.0.1", t0).empty());
  auto displaced = pending.add(conn(3), "10.0.0.1", t0);
  CAF_CHECK(same(displaced, {conn(0)}));
  CAF_CHECK_EQUAL(pending.size(), 3u);
  // One IPv6 /64 is one address.
  CAF_CHECK(pending.add(conn(4), "2001:db8::1", t0).empty());
  displaced = pending.add(conn(5), "2001:db8::2", t0);
  CAF_CHECK(same(displaced, {conn(1)})); // over the total: the oldest of all
  displaced = pending.add(conn(6), "2001:db8::3", t0);
  CAF_CHECK(same(displaced, {conn(4)}));
  CAF_CHECK_EQUAL(pending.size(), 4u);
}

CAF_TEST(a connection that introduced itself no longer counts) {
  pending_peers pending{small_limits()};
  auto t0 = pending_peers::clock::now();
  pending.add(conn(0), "10.0.0.1", t0);
  pending.add(conn(1), "10.0.0.1", t0);
  pending.remove(conn(0));
  pending.remove(conn(0)); // twice: harmless
  CAF_CHECK(pending.add(conn(2), "10.0.0.1", t0).empty());
  CAF_CHECK_EQUAL(pending.size(), 2u);
  // Adding a counted connection again changes nothing.
  CAF_CHECK(pending.add(conn(2), "10.0.0.1", t0).empty());
  CAF_CHECK_EQUAL(pending.size(), 2u);
}

CAF_TEST(connections older than the deadline expire oldest first) {
  pending_peers pending{small_limits()};
  auto t0 = pending_peers::clock::now();
  pending.add(conn(0), "10.0.0.1", t0);
  pending.add(conn(1), "10.0.0.2", t0 + 5s);
  pending.add(conn(2), "10.0.0.3", t0 + 9s);
  CAF_CHECK(pending.expired(t0 + 9s).empty());
  auto expired = pending.expired(t0 + 15s);
  CAF_CHECK(same(expired, {conn(0), conn(1)}));
  CAF_CHECK_EQUAL(pending.size(), 1u);
  // Their address shares are free again.
  pending.add(conn(3), "10.0.0.1", t0 + 15s);
  CAF_CHECK(pending.add(conn(4), "10.0.0.1", t0 + 15s).empty());
}

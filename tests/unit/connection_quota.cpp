#define CAF_SUITE connection_quota

// Open connections per uid and per client address, and sockets per client
// address that are no WebSocket yet.

#include "net/connection_quota.hpp"

#include <caf/test/unit_test.hpp>

using namespace wsc;

CAF_TEST(the addresses of one IPv6 64 bit prefix share one quota) {
  connection_quota quota;
  CAF_CHECK(quota.acquire_socket("2001:db8::1", 2));
  CAF_CHECK(quota.acquire_socket("2001:db8::2", 2));
  CAF_CHECK(!quota.acquire_socket("2001:db8::3", 2));
  CAF_CHECK(quota.acquire_socket("2001:db8:0:1::3", 2));
  CAF_CHECK(quota.acquire("ann", "2001:db8::a", 0, 2));
  CAF_CHECK(quota.acquire("bob", "2001:db8::b", 0, 2));
  CAF_CHECK(!quota.acquire("cid", "2001:db8::c", 0, 2));
  // Given back under the same key, whichever address of the /64.
  quota.release("ann", "2001:db8::a");
  CAF_CHECK(quota.acquire("cid", "2001:db8::c", 0, 2));
  quota.release_socket("2001:db8::1");
  CAF_CHECK(quota.acquire_socket("2001:db8::4", 2));
}

CAF_TEST(an IPv4 client counts alike over IPv4 and as an IPv4 mapped address) {
  connection_quota quota;
  CAF_CHECK(quota.acquire("ann", "10.0.0.1", 0, 1));
  CAF_CHECK(!quota.acquire("bob", "::ffff:10.0.0.1", 0, 1));
  CAF_CHECK(quota.acquire("bob", "10.0.0.2", 0, 1));
}

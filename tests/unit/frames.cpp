#define CAF_SUITE frames

// What protocol/frames checks of input from outside this process: the
// deliveries a peer or the relay decodes, the stored messages, and the
// fan-out budget of one send.

#include "protocol/frames.hpp"

#include "protocol/error.hpp"

#include <caf/test/unit_test.hpp>

#include <cstdint>
#include <string>

using namespace wsc;

CAF_TEST(deliveries from outside are checked before use) {
  auto d = frames::make_delivery(delivery_kind::message, "alice", "{}");
  d.uids = {"bob"};
  CAF_CHECK(!frames::check(d));
  auto bad_kind = d;
  bad_kind.kind = static_cast<delivery_kind>(99);
  CAF_CHECK_EQUAL(to_ec(frames::check(bad_kind)), ec::bad_frame);
  // The encoder of an out-of-range kind yields nothing (no UB).
  CAF_CHECK(frames::encode(bad_kind, "bob", 7).empty());
  auto bad_uid = d;
  bad_uid.uids = {"\xff"};
  CAF_CHECK(frames::check(bad_uid));
  auto bad_data = d;
  bad_data.data = "\"\xc3\x28\"";
  CAF_CHECK(frames::check(bad_data));
  // The payload is copied into frames as it is: it must be one JSON value,
  // nested no deeper than a client's.
  for (auto not_json : {"", "{", "{}}", "1 2", "\"a\",\"b\"", "{\"a\":1}]"}) {
    bad_data.data = not_json;
    CAF_CHECK_EQUAL(to_ec(frames::check(bad_data)), ec::bad_frame);
  }
  bad_data.data = std::string(frames::max_json_depth + 1, '[') +
                  std::string(frames::max_json_depth + 1, ']');
  CAF_CHECK(frames::check(bad_data));
  for (auto json : {"1", "\"text\"", "[1,{\"a\":null}]", " {} "}) {
    bad_data.data = json;
    CAF_CHECK(!frames::check(bad_data));
  }
  auto extra_seqs = d;
  extra_seqs.seqs = {1, 2};
  CAF_CHECK(frames::check(extra_seqs));
  auto group_without_name = d;
  group_without_name.kind = delivery_kind::group;
  CAF_CHECK(frames::check(group_without_name));
  auto close = frames::make_delivery(delivery_kind::disconnect, {}, {});
  close.ts = 4001;
  close.uids = {"bob"};
  CAF_CHECK(!frames::check(close));
  close.ts = 70000;
  CAF_CHECK(frames::check(close));
  stored_message msg;
  msg.kind = static_cast<delivery_kind>(7);
  CAF_CHECK(frames::check(msg));
  msg.kind = delivery_kind::message;
  msg.data = "1";
  CAF_CHECK(!frames::check(msg));
}

CAF_TEST(fan - out budget counts receivers times payload) {
  CAF_CHECK(!frames::check_fanout(10, 1000, 1 << 20));
  CAF_CHECK_EQUAL(to_ec(frames::check_fanout(1000, 2000, 1 << 20)),
                  ec::too_large);
  CAF_CHECK(!frames::check_fanout(0, 1 << 30, 1024));
  // No overflow with absurd numbers.
  CAF_CHECK(frames::check_fanout(SIZE_MAX, SIZE_MAX - 1, 1 << 20));
}

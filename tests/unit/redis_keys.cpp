#define CAF_SUITE redis_keys

// Key names of layout 4 and the split of a batch per hash slot: every key
// of one uid (group, node) shares a slot, names of different uids never
// collide, and a split keeps every key with its slot.

#include "adapters/redis_keys.hpp"

#include "config/options.hpp"

#include <caf/test/unit_test.hpp>

#include <set>
#include <string>
#include <vector>

using namespace wsc;
using namespace wsc::redis_keys;

namespace {

const char* uid_parts[] = {"b", "g", "in", "cur"};

} // namespace

CAF_TEST(key builders write layout 4) {
  CAF_CHECK_EQUAL(uid_key("P", "alice", "b"), "P:{u:alice}:b");
  CAF_CHECK_EQUAL(group_key("P", "crew"), "P:{g:crew}:m");
  CAF_CHECK_EQUAL(node_key("P", "n1", "lease:7"), "P:{n:n1}:lease:7");
  CAF_CHECK_EQUAL(idem_key("P", "alice", "o-1"), "P:5:{u:alice}:idem:o-1");
  CAF_CHECK_EQUAL(idem_key("P", "", "o-1"), "P:0:{u:}:idem:o-1");
}

CAF_TEST(every key of a uid shares its slot) {
  for (std::string uid : {"alice", "a}b", "{x}", "a:b", "", "}", "{"}) {
    auto slot = key_slot(uid_key("P", uid, "b"));
    for (auto part : uid_parts)
      CAF_CHECK_EQUAL(key_slot(uid_key("P", uid, part)), slot);
    // The key base the append scripts extend (and route by).
    CAF_CHECK_EQUAL(key_slot(uid_key("P", uid, "")), slot);
    CAF_CHECK_EQUAL(key_slot(idem_key("P", uid, "i")), slot);
    CAF_CHECK_EQUAL(key_slot(idem_key("P", uid, "i}{")), slot);
  }
  CAF_CHECK_EQUAL(key_slot(node_key("P", "n1", "h")),
                  key_slot(node_key("P", "n1", "nb")));
  CAF_CHECK_EQUAL(key_slot(node_key("P", "n1", "ni")),
                  key_slot(node_key("P", "n1", "lease:123")));
}

CAF_TEST(names of different uids never collide) {
  // Uids built from the separators of the names themselves.
  std::vector<std::string> uids{"a",     "a}",       "a}:b", "a}:seq",
                                "a}:in", "b}:seq}",  "}:b",  "a:b",
                                "5",     "a}:idem:x"};
  std::set<std::string> names;
  size_t n = 0;
  for (auto& uid : uids) {
    for (auto part : uid_parts) {
      names.insert(uid_key("P", uid, part));
      ++n;
    }
    for (auto& idem : uids) {
      names.insert(idem_key("P", uid, idem));
      ++n;
    }
    names.insert(group_key("P", uid));
    ++n;
  }
  CAF_CHECK_EQUAL(names.size(), n);
}

CAF_TEST(a single Redis gets one group cut into parts) {
  std::vector<std::string_view> keys{"a", "b", "c", "d", "e"};
  auto all = split_by_slot(keys, false);
  CAF_REQUIRE_EQUAL(all.size(), 1u);
  CAF_CHECK_EQUAL(all[0], (std::vector<size_t>{0, 1, 2, 3, 4}));
  auto parts = split_by_slot(keys, false, 2);
  CAF_REQUIRE_EQUAL(parts.size(), 3u);
  CAF_CHECK_EQUAL(parts[2], (std::vector<size_t>{4}));
  CAF_CHECK(split_by_slot({}, false).empty());
}

CAF_TEST(a cluster gets one group per slot in first seen order) {
  std::vector<std::string> store;
  for (int i = 0; i < 200; ++i)
    store.push_back(uid_key("P", "u" + std::to_string(i % 50), "b"));
  std::vector<std::string_view> keys(store.begin(), store.end());
  auto groups = split_by_slot(keys, true);
  std::set<uint16_t> seen;
  size_t total = 0;
  for (auto& g : groups) {
    auto slot = key_slot(keys[g.front()]);
    CAF_CHECK(seen.insert(slot).second);
    for (auto i : g)
      CAF_CHECK_EQUAL(key_slot(keys[i]), slot);
    for (size_t k = 1; k < g.size(); ++k)
      CAF_CHECK_LESS(g[k - 1], g[k]);
    total += g.size();
  }
  CAF_CHECK_EQUAL(total, keys.size());
  CAF_CHECK_EQUAL(key_slot(keys[groups.front().front()]), key_slot(keys[0]));
  for (auto& part : split_by_slot(keys, true, 3))
    CAF_CHECK_LESS_OR_EQUAL(part.size(), 3u);
}

CAF_TEST(the redis option takes cluster urls) {
  auto url = parse_redis_url("cluster://:pw@10.0.0.1:7000,10.0.0.2:7001");
  CAF_REQUIRE(url);
  CAF_CHECK(url->is_cluster());
  CAF_CHECK_EQUAL(url->host, "10.0.0.1");
  CAF_CHECK_EQUAL(url->port, 7000u);
  CAF_CHECK_EQUAL(url->password, "pw");
  CAF_CHECK_EQUAL(url->redacted(),
                  "cluster://:***@10.0.0.1:7000,10.0.0.2:7001");
  CAF_CHECK(!parse_redis_url("cluster://10.0.0.1:7000,"));
  CAF_CHECK(!parse_redis_url("cluster://"));
  auto single = parse_redis_url("redis://127.0.0.1:6379");
  CAF_REQUIRE(single);
  CAF_CHECK(!single->is_cluster());
}

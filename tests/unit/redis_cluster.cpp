#define CAF_SUITE redis_cluster

// The self-contained Redis Cluster routing: CRC16 and hash tags, MOVED/ASK
// parsing, CLUSTER SLOTS parsing. Replies are real hiredis reply trees, read
// by hiredis' own parser from RESP text built here.

#include "adapters/redis_cluster.hpp"

#include "protocol/error.hpp"

#include <caf/test/unit_test.hpp>

#include <initializer_list>
#include <set>
#include <string>
#include <vector>

using namespace wsc;

namespace {

// -- RESP text
// ------------------------------------------------------------------

std::string num(long long x) {
  return ":" + std::to_string(x) + "\r\n";
}

std::string str(const std::string& x) {
  return "$" + std::to_string(x.size()) + "\r\n" + x + "\r\n";
}

std::string arr(std::initializer_list<std::string> xs) {
  std::string result = "*" + std::to_string(xs.size()) + "\r\n";
  for (auto& x : xs)
    result += x;
  return result;
}

/// [host, port, id]: a node entry of CLUSTER SLOTS.
std::string node(const std::string& host, long long port) {
  return arr({str(host), num(port), str("0123456789abcdef")});
}

/// The reply tree hiredis builds from `resp`.
redis_reply_ptr parse_resp(const std::string& resp) {
  auto reader = redisReaderCreate();
  redisReaderFeed(reader, resp.data(), resp.size());
  void* reply = nullptr;
  auto rc = redisReaderGetReply(reader, &reply);
  redisReaderFree(reader);
  if (rc != REDIS_OK || reply == nullptr)
    CAF_FAIL("bad RESP in the test: " << resp);
  return redis_reply_ptr{static_cast<redisReply*>(reply)};
}

caf::expected<redis_slot_map> slots(const std::string& resp) {
  return parse_cluster_slots(*parse_resp(resp), "10.0.0.9");
}

} // namespace

// -- slots
// ----------------------------------------------------------------------

CAF_TEST(crc16 matches the test vector of the specification) {
  CAF_CHECK_EQUAL(crc16_xmodem("123456789"), 0x31C3);
  CAF_CHECK_EQUAL(crc16_xmodem(""), 0);
  CAF_CHECK_EQUAL(key_slot("123456789"), 12739);
  // Values Redis' CLUSTER KEYSLOT gives.
  CAF_CHECK_EQUAL(key_slot("foo"), 12182);
  CAF_CHECK_EQUAL(key_slot("bar"), 5061);
  CAF_CHECK_EQUAL(key_slot(""), 0);
}

CAF_TEST(hash tags follow the first non empty tag rule) {
  CAF_CHECK_EQUAL(key_slot("{user1000}.following"),
                  key_slot("{user1000}.followers"));
  CAF_CHECK_EQUAL(key_slot("{user1000}.following"), key_slot("user1000"));
  // An empty first tag: the whole key.
  CAF_CHECK_EQUAL(key_slot("foo{}{bar}"), crc16_xmodem("foo{}{bar}") % 16384);
  CAF_CHECK_NOT_EQUAL(key_slot("foo{}{bar}"), key_slot("bar"));
  // From the first '{' to the first '}' after it.
  CAF_CHECK_EQUAL(key_slot("foo{{bar}}zap"), key_slot("{bar"));
  CAF_CHECK_EQUAL(key_slot("foo{{bar}}zap"), crc16_xmodem("{bar") % 16384);
  CAF_CHECK_EQUAL(key_slot("foo{bar}{zap}"), key_slot("bar"));
  // No closing brace, or a closing brace first: the whole key.
  CAF_CHECK_EQUAL(key_slot("foo{bar"), crc16_xmodem("foo{bar") % 16384);
  CAF_CHECK_EQUAL(key_slot("}bar{"), crc16_xmodem("}bar{") % 16384);
  CAF_CHECK_EQUAL(key_slot("a}{b}"), key_slot("b"));
  // Binary keys.
  std::string binary{"\0{\xff}", 4};
  CAF_CHECK_EQUAL(key_slot(binary), key_slot(std::string{"\xff"}));
}

CAF_TEST(slots spread over the whole range) {
  std::set<uint16_t> seen;
  for (int i = 0; i < 200000 && seen.size() < redis_slot_count; ++i)
    seen.insert(key_slot("k" + std::to_string(i)));
  CAF_CHECK_EQUAL(seen.size(), redis_slot_count);
  CAF_CHECK_LESS(*seen.rbegin(), redis_slot_count);
}

// -- endpoints and redirects
// ----------------------------------------------------

CAF_TEST(endpoints take the port after the last colon) {
  auto ep = parse_redis_endpoint("127.0.0.1:7000");
  CAF_REQUIRE(ep);
  CAF_CHECK_EQUAL(ep->host, "127.0.0.1");
  CAF_CHECK_EQUAL(ep->port, 7000);
  ep = parse_redis_endpoint("::1:7001");
  CAF_REQUIRE(ep);
  CAF_CHECK_EQUAL(ep->host, "::1");
  CAF_CHECK_EQUAL(ep->port, 7001);
  CAF_CHECK_EQUAL(ep->to_string(), "[::1]:7001");
  ep = parse_redis_endpoint("[fe80::1]:7002");
  CAF_REQUIRE(ep);
  CAF_CHECK_EQUAL(ep->host, "fe80::1");
  CAF_CHECK_EQUAL(ep->port, 7002);
  ep = parse_redis_endpoint("redis-0.example:6379");
  CAF_REQUIRE(ep);
  CAF_CHECK_EQUAL(ep->to_string(), "redis-0.example:6379");
  std::vector<std::string> accepted;
  for (auto bad : {"", ":", "host", "host:", "host:0", "host:65536",
                   "host:123456", "host:-1", "host:7x", ":7000", "[::1:7000",
                   "[::1]7000", "a b:7000", "a\n:7000", "a/b:7000"})
    if (parse_redis_endpoint(bad))
      accepted.emplace_back(bad);
  CAF_CHECK_EQUAL(accepted, std::vector<std::string>{});
  CAF_CHECK(parse_redis_endpoint(":7000", true));
  CAF_CHECK(!parse_redis_endpoint(std::string(300, 'h') + ":1"));
}

CAF_TEST(MOVED and ASK redirects parse) {
  auto r = parse_redirect("MOVED 3999 127.0.0.1:6381");
  CAF_REQUIRE(r);
  CAF_CHECK(!r->ask);
  CAF_CHECK_EQUAL(r->slot, 3999);
  CAF_CHECK_EQUAL(r->to.to_string(), "127.0.0.1:6381");
  r = parse_redirect("ASK 16383 ::1:7005");
  CAF_REQUIRE(r);
  CAF_CHECK(r->ask);
  CAF_CHECK_EQUAL(r->slot, 16383);
  CAF_CHECK_EQUAL(r->to.host, "::1");
  CAF_CHECK_EQUAL(r->to.port, 7005);
  r = parse_redirect("MOVED 0 [2001:db8::2]:7000");
  CAF_REQUIRE(r);
  CAF_CHECK_EQUAL(r->to.host, "2001:db8::2");
  // Redis leaves the host out with cluster-preferred-endpoint-type
  // unknown-endpoint: the same host as the node that answered.
  r = parse_redirect("MOVED 12 :7000");
  CAF_REQUIRE(r);
  CAF_CHECK(r->to.host.empty());
  CAF_CHECK_EQUAL(r->to.port, 7000);
}

CAF_TEST(hostile redirects are no redirects) {
  std::vector<std::string> accepted;
  for (auto bad : {"",
                   "MOVED",
                   "MOVED ",
                   "MOVED 1",
                   "MOVED 1 ",
                   "MOVED 16384 h:1",
                   "MOVED -1 h:1",
                   "MOVED 99999999999999999999 h:1",
                   "MOVED 1 h",
                   "MOVED 1 h:",
                   "MOVED 1 h:0",
                   "MOVED 1 h:70000",
                   "MOVED 1 h:1 extra",
                   "MOVED  1 h:1",
                   "moved 1 h:1",
                   "ASKING 1 h:1",
                   "ASK x h:1",
                   "ERR unknown command",
                   "NOSCRIPT No matching script",
                   "MOVED 1 h\0:1",
                   "MOVED 1 [::1:7000",
                   "ASK 1 \x01:7000"})
    if (parse_redirect(bad))
      accepted.emplace_back(bad);
  CAF_CHECK_EQUAL(accepted, std::vector<std::string>{});
  std::string nul{"MOVED 1 a\0b:7000", 16};
  CAF_CHECK(!parse_redirect(nul));
}

CAF_TEST(cluster urls list seeds) {
  auto cfg = parse_redis_cluster_url("cluster://:s3cret@10.0.0.1:7000,"
                                     "10.0.0.2:7001,[::1]:7002");
  CAF_REQUIRE(cfg);
  CAF_CHECK_EQUAL(cfg->password, "s3cret");
  CAF_REQUIRE_EQUAL(cfg->seeds.size(), 3u);
  CAF_CHECK_EQUAL(cfg->seeds[1].to_string(), "10.0.0.2:7001");
  CAF_CHECK_EQUAL(cfg->seeds[2].host, "::1");
  CAF_CHECK(parse_redis_cluster_url("cluster://h:1")->password.empty());
  std::vector<std::string> accepted;
  for (auto bad : {"redis://h:1", "cluster://", "cluster://h", "cluster://h:1,",
                   "cluster://h:1,,h:2", "cluster://:pw@"})
    if (parse_redis_cluster_url(bad))
      accepted.emplace_back(bad);
  CAF_CHECK_EQUAL(accepted, std::vector<std::string>{});
}

// -- CLUSTER SLOTS
// ---------------------------------------------------------------

CAF_TEST(a well formed CLUSTER SLOTS reply gives the slot map) {
  // Out of order, as Redis may send it; the 7.0 node entry may carry a
  // fourth element (a map of metadata, here an empty array).
  auto resp = arr(
      {arr({num(5461), num(10922), node("127.0.0.1", 7001),
            node("127.0.0.1", 7004)}),
       arr({num(0), num(5460), node("127.0.0.1", 7000), node("127.0.0.1", 7003),
            arr({str("?"), num(7009), str("id")})}),
       arr({num(10923), num(16383),
            arr({str(""), num(7002), str("id"), arr({})}),
            node("::1", 7005)})});
  auto map = slots(resp);
  CAF_REQUIRE(map);
  CAF_REQUIRE_EQUAL(map->size(), 3u);
  CAF_CHECK_EQUAL((*map)[0].first, 0);
  CAF_CHECK_EQUAL((*map)[0].last, 5460);
  CAF_CHECK_EQUAL((*map)[0].master.to_string(), "127.0.0.1:7000");
  // The replica of unknown address is left out.
  CAF_REQUIRE_EQUAL((*map)[0].replicas.size(), 1u);
  CAF_CHECK_EQUAL((*map)[0].replicas[0].to_string(), "127.0.0.1:7003");
  CAF_CHECK_EQUAL((*map)[1].master.port, 7001);
  // An empty host: the node that answered.
  CAF_CHECK_EQUAL((*map)[2].master.to_string(), "10.0.0.9:7002");
  CAF_CHECK_EQUAL((*map)[2].replicas[0].to_string(), "[::1]:7005");
}

CAF_TEST(an empty CLUSTER SLOTS reply is an empty map) {
  auto map = slots(arr({}));
  CAF_REQUIRE(map);
  CAF_CHECK(map->empty());
  // A master of unknown address: its range has no owner.
  map = slots(arr({arr({num(0), num(10), node("?", 7000)})}));
  CAF_REQUIRE(map);
  CAF_CHECK(map->empty());
}

CAF_TEST(malformed CLUSTER SLOTS replies are errors) {
  auto ok_node = node("127.0.0.1", 7000);
  std::vector<std::string> accepted;
  for (auto& resp : std::vector<std::string>{
           num(1),
           str("slots"),
           "-ERR This instance has cluster support disabled\r\n",
           "$-1\r\n",
           arr({num(1)}),
           arr({arr({})}),
           arr({arr({num(0), num(10)})}),
           arr({arr({str("0"), num(10), ok_node})}),
           arr({arr({num(0), str("10"), ok_node})}),
           arr({arr({num(-1), num(10), ok_node})}),
           arr({arr({num(10), num(9), ok_node})}),
           arr({arr({num(0), num(16384), ok_node})}),
           arr({arr({num(0), num(10), num(7000)})}),
           arr({arr({num(0), num(10), arr({str("127.0.0.1")})})}),
           arr({arr({num(0), num(10), arr({num(1), num(7000)})})}),
           arr({arr({num(0), num(10), arr({str("127.0.0.1"), str("7000")})})}),
           arr({arr({num(0), num(10), arr({str("127.0.0.1"), num(0)})})}),
           arr({arr({num(0), num(10), arr({str("127.0.0.1"), num(70000)})})}),
           arr({arr({num(0), num(10), arr({str("127.0.0.1"), num(-7000)})})}),
           arr({arr({num(0), num(10), arr({str("bad host"), num(7000)})})}),
           arr({arr({num(0), num(10), arr({str("[::1]"), num(7000)})})}),
           arr({arr({num(0), num(10), ok_node, num(3)})}),
           arr({arr({num(0), num(10), ok_node}),
                arr({num(10), num(20), ok_node})}),
       })
    if (slots(resp))
      accepted.emplace_back(resp);
  CAF_CHECK_EQUAL(accepted, std::vector<std::string>{});
}

CAF_TEST(a nil element in a hand built reply is an error) {
  // hiredis never builds one, but nothing may crash if it did.
  redisReply nil_element{};
  nil_element.type = REDIS_REPLY_INTEGER;
  redisReply* three[3] = {&nil_element, &nil_element, nullptr};
  redisReply range{};
  range.type = REDIS_REPLY_ARRAY;
  range.elements = 3;
  range.element = three;
  redisReply* ranges[1] = {&range};
  redisReply top{};
  top.type = REDIS_REPLY_ARRAY;
  top.elements = 1;
  top.element = ranges;
  CAF_CHECK(!parse_cluster_slots(top, "h"));
  top.element = nullptr;
  CAF_CHECK(!parse_cluster_slots(top, "h"));
  ranges[0] = nullptr;
  top.element = ranges;
  CAF_CHECK(!parse_cluster_slots(top, "h"));
}

CAF_TEST(opening a cluster without a reachable seed fails as unavailable) {
  redis_cluster_config cfg;
  CAF_CHECK(!redis_cluster::open(cfg));
  // Port 1 on loopback: refused at once.
  cfg.seeds.push_back(redis_endpoint{"127.0.0.1", 1});
  cfg.connect_timeout = std::chrono::milliseconds{200};
  auto cluster = redis_cluster::open(cfg);
  CAF_REQUIRE(!cluster);
  CAF_CHECK_EQUAL(to_ec(cluster.error()), ec::unavailable);
}

// -- failover and durable-replicas
// ---------------------------------------------

namespace {

redis_slot_range range(uint16_t first, uint16_t last, uint16_t master,
                       std::vector<uint16_t> replicas) {
  redis_slot_range result{first, last, redis_endpoint{"h", master}, {}};
  for (auto port : replicas)
    result.replicas.push_back(redis_endpoint{"h", port});
  return result;
}

} // namespace

CAF_TEST(a replica taking over the slots of its master is a promotion) {
  redis_slot_map before{range(0, 8191, 7000, {7003}),
                        range(8192, 16383, 7001, {7004})};
  CAF_CHECK(!promoted_replica(before, before));
  CAF_CHECK(!promoted_replica({}, before)); // the first map
  // 7003 took over 7000's slots; the dead master is no replica yet.
  redis_slot_map after{range(0, 8191, 7003, {}),
                       range(8192, 16383, 7001, {7004})};
  CAF_CHECK(promoted_replica(before, after));
  // Also when only part of the old range is in a new range of the map.
  redis_slot_map split{range(0, 100, 7000, {7003}),
                       range(101, 8191, 7003, {7000}),
                       range(8192, 16383, 7001, {7004})};
  CAF_CHECK(promoted_replica(before, split));
}

CAF_TEST(slots moving between masters are no promotion) {
  redis_slot_map before{range(0, 8191, 7000, {7003}),
                        range(8192, 16383, 7001, {7004})};
  // A resharding: 7001 takes slots 8000-8191 from 7000 (not its replica).
  redis_slot_map after{range(0, 7999, 7000, {7003}),
                       range(8000, 16383, 7001, {7004})};
  CAF_CHECK(!promoted_replica(before, after));
  // Replicas changing (the old master back as a replica) are none either.
  redis_slot_map more{range(0, 8191, 7000, {7003, 7005}),
                      range(8192, 16383, 7001, {})};
  CAF_CHECK(!promoted_replica(before, more));
}

CAF_TEST(WAIT replies count replicas or confirm nothing) {
  CAF_CHECK_EQUAL(parse_wait_reply(*parse_resp(num(0))), 0);
  CAF_CHECK_EQUAL(parse_wait_reply(*parse_resp(num(2))), 2);
  // A replica refuses WAIT; anything odd confirms no replica.
  CAF_CHECK(!parse_wait_reply(
      *parse_resp("-ERR WAIT cannot be used with replica instances.\r\n")));
  CAF_CHECK(!parse_wait_reply(*parse_resp(num(-1))));
  CAF_CHECK(!parse_wait_reply(*parse_resp(str("1"))));
  CAF_CHECK(!parse_wait_reply(*parse_resp("$-1\r\n")));
  redis_wait wait{1, std::chrono::milliseconds{250}};
  auto argv = wait.argv(); // views into `wait`
  CAF_REQUIRE_EQUAL(argv.size(), 3u);
  CAF_CHECK_EQUAL(argv[0], "WAIT");
  CAF_CHECK_EQUAL(argv[1], "1");
  CAF_CHECK_EQUAL(argv[2], "250");
}

#define CAF_SUITE operations

// protocol/operations: the fields of send, publish and broadcast, read the
// same way for client frames and the HTTP API.

#include "protocol/operations.hpp"

#include "protocol/error.hpp"

#include <caf/test/unit_test.hpp>

#include <nlohmann/json.hpp>

using namespace wsc;
using json = nlohmann::json;

namespace {

const ops::origin client{"alice", "n1.1.7", ops::frame_max_uids, 65536,
                         "127.0.0.9"};
const ops::origin api{{}, {}, ops::api_max_uids, ops::api_max_data_bytes, {}};

json uids(size_t n) {
  auto list = json::array();
  for (size_t i = 0; i < n; ++i)
    list.push_back("u" + std::to_string(i));
  return list;
}

ec code_of(const caf::expected<delivery>& d) {
  return d ? ec::none : to_ec(d.error());
}

} // namespace

CAF_TEST(read_idem accepts 1 to 64 bytes of UTF - 8 only) {
  std::string idem;
  CAF_CHECK(!ops::read_idem(json{{"type", "send"}}, idem));
  CAF_CHECK(idem.empty());
  CAF_CHECK(!ops::read_idem(json{{"idem", "k-1"}}, idem));
  CAF_CHECK_EQUAL(idem, "k-1");
  CAF_CHECK(!ops::read_idem(json{{"idem", std::string(64, 'a')}}, idem));
  for (auto bad : {json(""), json(std::string(65, 'a')), json(7), json(nullptr),
                   json::array({"a"}), json(std::string{"\xc3\x28"}),
                   json(std::string{"\xff"})}) {
    std::string out;
    auto err = ops::read_idem(json{{"idem", bad}}, out);
    CAF_CHECK_EQUAL(to_ec(err), ec::bad_frame);
    CAF_CHECK(out.empty());
  }
}

CAF_TEST(data is bounded as the node writes it out not as it came) {
  // Found by a probe review: `1e14` (4 bytes) is written out as
  // `100000000000000.0` (17): a 64 KiB frame became a 235 KB message.
  ops::origin small{"alice", "n1.1.7", ops::frame_max_uids, 300, {}};
  std::string text = "[1e14";
  for (int i = 1; i < 40; ++i)
    text += ",1e14";
  text += "]"; // 201 bytes in, 18 x 40 + 1 = 721 out
  CAF_REQUIRE_EQUAL(text.size(), 201u);
  auto frame = json{{"to", "bob"}, {"group", "g"}};
  frame["data"] = json::parse(text);
  for (auto* op : {"send", "publish", "broadcast"}) {
    CAF_MESSAGE(op);
    auto run = [&](const ops::origin& from) {
      if (op == std::string{"send"})
        return ops::send(frame, from, true, 1 << 20);
      if (op == std::string{"publish"})
        return ops::publish(frame, from, true);
      return ops::broadcast(frame, from);
    };
    auto refused = run(small);
    CAF_CHECK_EQUAL(code_of(refused), ec::too_large);
    // What the node writes fits: accepted.
    frame["data"] = std::string(290, 'x'); // 292 bytes written
    CAF_CHECK(run(small));
    frame["data"] = json::parse(text);
    CAF_CHECK(run(client));
  }
}

CAF_TEST(a send names its receivers once and within the origin limit) {
  auto d = ops::send(json{{"to", {"bob", "carl", "bob"}}, {"data", {1, 2}}},
                     client, true, 1 << 20);
  CAF_REQUIRE(d);
  CAF_CHECK_EQUAL(d->uids, (std::vector<std::string>{"bob", "carl"}));
  CAF_CHECK_EQUAL(d->from, "alice");
  CAF_CHECK_EQUAL(d->data, "[1,2]");
  CAF_CHECK(d->durable);
  // A client may name 1000 uids, the API 10000.
  auto many = json{{"to", uids(1001)}, {"data", 1}};
  CAF_CHECK_EQUAL(code_of(ops::send(many, client, false, 1u << 30)),
                  ec::bad_frame);
  CAF_CHECK_EQUAL(code_of(ops::send(many, api, false, 1u << 30)), ec::none);
  many["to"] = uids(10001);
  CAF_CHECK_EQUAL(code_of(ops::send(many, api, false, 1u << 30)),
                  ec::bad_frame);
}

CAF_TEST(a send needs exactly one of to and to_conn and fits the fanout) {
  auto both = json{{"to", "bob"}, {"to_conn", "n2.1.3"}, {"data", 1}};
  CAF_CHECK_EQUAL(code_of(ops::send(both, client, false, 1 << 20)),
                  ec::bad_frame);
  auto neither = json{{"data", 1}};
  CAF_CHECK_EQUAL(code_of(ops::send(neither, client, false, 1 << 20)),
                  ec::bad_frame);
  auto one_conn = json{{"to_conn", "n2.1.3"}, {"data", 1}};
  auto d = ops::send(one_conn, client, false, 1 << 20);
  CAF_REQUIRE(d);
  CAF_CHECK_EQUAL(d->to_conn, "n2.1.3");
  CAF_CHECK_EQUAL(code_of(ops::send(json{{"to_conn", "no-node"}, {"data", 1}},
                                    client, false, 1 << 20)),
                  ec::bad_frame);
  // 3 receivers x (1000 + 64) bytes > 2000.
  auto big = json{{"to", {"a", "b", "c"}}, {"data", std::string(998, 'x')}};
  CAF_CHECK_EQUAL(code_of(ops::send(big, client, false, 2000)), ec::too_large);
  CAF_CHECK_EQUAL(code_of(ops::send(big, client, false, 4000)), ec::none);
}

CAF_TEST(except_self needs a connection and except is bounded) {
  auto own = json{{"group", "g"}, {"data", 1}, {"except_self", true}};
  auto d = ops::publish(own, client, false);
  CAF_REQUIRE(d);
  CAF_CHECK_EQUAL(d->except, (std::vector<std::string>{"n1.1.7"}));
  CAF_CHECK_EQUAL(code_of(ops::publish(own, api, false)), ec::bad_frame);
  auto except = json::array();
  for (int i = 0; i < 257; ++i)
    except.push_back("n1.1." + std::to_string(i));
  CAF_CHECK_EQUAL(
      code_of(ops::broadcast(json{{"data", 1}, {"except", except}}, client)),
      ec::bad_frame);
  except.erase(except.begin());
  CAF_CHECK_EQUAL(
      code_of(ops::broadcast(json{{"data", 1}, {"except", except}}, client)),
      ec::none);
}

CAF_TEST(publish and broadcast take no to_conn and publish needs a group) {
  auto to_conn = json{{"group", "g"}, {"data", 1}, {"to_conn", "n1.1.2"}};
  CAF_CHECK_EQUAL(code_of(ops::publish(to_conn, client, true)), ec::bad_frame);
  CAF_CHECK_EQUAL(code_of(ops::broadcast(to_conn, client)), ec::bad_frame);
  CAF_CHECK_EQUAL(code_of(ops::publish(json{{"data", 1}}, api, true)),
                  ec::bad_frame);
  CAF_CHECK_EQUAL(
      code_of(ops::publish(json{{"group", "a b"}, {"data", 1}}, api, true)),
      ec::bad_frame);
  auto d = ops::publish(json{{"group", "g"}, {"data", "hi"}, {"idem", "k"}},
                        api, true);
  CAF_REQUIRE(d);
  CAF_CHECK_EQUAL(d->group, "g");
  CAF_CHECK_EQUAL(d->idem, "k");
  CAF_CHECK(d->from.empty());
  CAF_CHECK_EQUAL(d->kind, delivery_kind::group);
}

CAF_TEST(what a client sends carries its address and the API none) {
  // The sender's node charges the per-address store budget by it.
  auto frame = json{{"to", "bob"}, {"group", "g"}, {"data", 1}};
  for (auto* from : {&client, &api}) {
    auto sent = ops::send(frame, *from, true, 1 << 20);
    auto published = ops::publish(frame, *from, true);
    auto broadcast = ops::broadcast(frame, *from);
    CAF_REQUIRE(sent && published && broadcast);
    CAF_CHECK_EQUAL(sent->sender_address, from->address);
    CAF_CHECK_EQUAL(published->sender_address, from->address);
    CAF_CHECK_EQUAL(broadcast->sender_address, from->address);
  }
  CAF_CHECK_EQUAL(client.address, "127.0.0.9");
}

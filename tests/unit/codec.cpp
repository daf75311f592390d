#define CAF_SUITE codec

// Frame codecs (protocol/codec.hpp): the swoft form in both directions, the
// limits on hostile input, the registry, and a CONNECTION that answers
// through a codec (CONNECTION -> BUILTINS -> REGISTRY -> memory STATE_STORE,
// with a recording sink that applies the codec as the WebSocket session
// does).

#include "protocol/codec.hpp"

#include "actors/builtins.hpp"
#include "actors/connection.hpp"
#include "actors/event_bus.hpp"
#include "actors/registry.hpp"
#include "adapters/memory_store.hpp"
#include "fixture.hpp"

#include <caf/test/dsl.hpp>

#include <nlohmann/json.hpp>

using namespace wsc;
using json = nlohmann::json;

namespace {

/// Decodes with the swoft codec; the error's code on failure.
struct swoft_result {
  json frame;
  ec code = ec::none;
  std::string context;
};

swoft_result swoft_decode(std::string_view text) {
  swoft_codec codec;
  swoft_result result;
  auto frame = codec.decode(text, false, result.context);
  if (frame)
    result.frame = std::move(*frame);
  else
    result.code = to_ec(frame.error());
  return result;
}

/// Like the WebSocket session: encodes pushes with its codec, records
/// what the CONNECTION encoded itself as it is.
class codec_recording_sink : public codec_sink {
public:
  explicit codec_recording_sink(frame_codec_ptr codec)
      : codec_(std::move(codec)) {
    // nop
  }

  void write(frame_ptr frame, bool) override {
    frames.push_back(codec_->encode_push(*frame));
  }

  void write_encoded(frame_ptr frame, bool) override {
    frames.push_back(*frame);
  }

  void close(uint16_t, std::string) override {
    // nop
  }

  void close_after(std::chrono::milliseconds, uint16_t, std::string) override {
    // nop: these tests open no connection with a token
  }

  const frame_codec_ptr& codec() const override { return codec_; }

  std::vector<json> take() {
    std::vector<json> result;
    for (auto& text : frames)
      result.push_back(json::parse(text));
    frames.clear();
    return result;
  }

  std::vector<std::string> frames;

private:
  frame_codec_ptr codec_;
};

/// A text-only codec: binary frames are refused before it sees them.
class text_only_codec : public swoft_codec {
public:
  bool reads_binary() const override { return false; }
};

struct fixture : test::builtins_fixture {
  struct client {
    connection_actor handle;
    std::shared_ptr<codec_recording_sink> sink;
  };

  client open(const std::string& uid, frame_codec_ptr codec) {
    auto sink = std::make_shared<codec_recording_sink>(std::move(codec));
    auto hdl = spawn_connection(uid, sink);
    run();
    return {hdl, sink};
  }

  void say(const client& c, std::string text) {
    caf::anon_send(c.handle, atom::frame_v, std::move(text));
    run();
  }
};

} // namespace

// -- swoft decode
// ---------------------------------------------------------------

CAF_TEST(swoft cmd and data become the frame; ext.id is the id) {
  auto r = swoft_decode(R"({"cmd":"send","data":{"to":"bob","data":"hi"},)"
                        R"("ext":{"id":7,"trace":"t1"}})");
  CAF_REQUIRE_EQUAL(r.code, ec::none);
  CAF_CHECK_EQUAL(
      r.frame,
      (json{{"type", "send"}, {"to", "bob"}, {"data", "hi"}, {"id", 7}}));
  CAF_CHECK_EQUAL(r.context, "\"send\"\n{\"id\":7,\"trace\":\"t1\"}");
  // cmd wins over a type in data; a data that is no object is a field.
  r = swoft_decode(R"({"cmd":"chat.say","data":{"type":"x","a":1}})");
  CAF_CHECK_EQUAL(r.frame, (json{{"type", "chat.say"}, {"a", 1}}));
  r = swoft_decode(R"({"cmd":"chat.say","data":"hello"})");
  CAF_CHECK_EQUAL(r.frame, (json{{"type", "chat.say"}, {"data", "hello"}}));
  r = swoft_decode(R"({"cmd":"ping","data":null,"ext":[]})");
  CAF_CHECK_EQUAL(r.frame, (json{{"type", "ping"}}));
  CAF_CHECK_EQUAL(r.context, "\"ping\"\n[]");
  r = swoft_decode(R"({"cmd":"ping"})");
  CAF_CHECK_EQUAL(r.frame, (json{{"type", "ping"}}));
  CAF_CHECK_EQUAL(r.context, "\"ping\"\n{}");
}

CAF_TEST(swoft refuses malformed frames with bad_json or bad_frame) {
  CAF_CHECK_EQUAL(swoft_decode("{nope").code, ec::bad_json);
  CAF_CHECK_EQUAL(swoft_decode(std::string(100, '[')).code, ec::bad_json);
  CAF_CHECK_EQUAL(swoft_decode("[1]").code, ec::bad_frame);
  for (auto text : {R"({"data":{}})", R"({"cmd":7})", R"({"cmd":""})",
                    R"({"cmd":"a b"})", R"({"cmd":"x\u0001"})"}) {
    auto r = swoft_decode(text);
    CAF_CHECK_EQUAL(r.code, ec::bad_frame);
    // Nothing of an unusable cmd is echoed back.
    CAF_CHECK_EQUAL(r.context, "");
  }
  auto long_cmd = json{{"cmd", std::string(129, 'c')}}.dump();
  CAF_CHECK_EQUAL(swoft_decode(long_cmd).code, ec::bad_frame);
  // Once cmd is known, errors are answered in the same form.
  auto r = swoft_decode(R"({"cmd":"send","ext":"x"})");
  CAF_CHECK_EQUAL(r.code, ec::bad_frame);
  CAF_CHECK_EQUAL(r.context, "\"send\"\n{}");
  r = swoft_decode(R"({"cmd":"send","ext":{"id":[1]}})");
  CAF_CHECK_EQUAL(r.code, ec::bad_frame);
  auto big_ext =
      json{{"cmd", "send"},
           {"ext", {{"pad", std::string(swoft_codec::max_ext_bytes, 'x')}}}};
  r = swoft_decode(big_ext.dump());
  CAF_CHECK_EQUAL(r.code, ec::bad_frame);
  // A too large ext is not echoed back.
  CAF_CHECK_EQUAL(r.context, "\"send\"\n{}");
}

// -- swoft encode
// ---------------------------------------------------------------

CAF_TEST(swoft answers carry the cmd and ext of the request) {
  swoft_codec codec;
  std::string context;
  CAF_REQUIRE(
      codec.decode(R"({"cmd":"send","ext":{"id":"a\"b"}})", false, context));
  auto out = json::parse(
      codec.encode_answer(R"({"type":"ack","id":"a\"b"})", context));
  CAF_CHECK_EQUAL(out, (json{{"cmd", "send"},
                             {"data", {{"type", "ack"}, {"id", "a\"b"}}},
                             {"ext", {{"id", "a\"b"}}}}));
  // Without a context (the frame never decoded): a push.
  out = json::parse(codec.encode_answer(
      R"({"type":"error","code":"bad_json","message":"m"})", ""));
  CAF_CHECK_EQUAL(out["cmd"], "error");
  CAF_CHECK_EQUAL(out["ext"], json::object());
}

CAF_TEST(swoft pushes carry the frame type as cmd and the frame as data) {
  swoft_codec codec;
  auto frame = R"({"type":"message","from":"a","to":"b","data":1,"ts":2})";
  auto out = json::parse(codec.encode_push(frame));
  CAF_CHECK_EQUAL(out["cmd"], "message");
  CAF_CHECK_EQUAL(out["data"], json::parse(frame));
  CAF_CHECK_EQUAL(out["ext"], json::object());
  // Not in the node's own layout: parsed for the type.
  out = json::parse(codec.encode_push(R"({"data":1,"type":"bot.tell"})"));
  CAF_CHECK_EQUAL(out["cmd"], "bot.tell");
  out = json::parse(codec.encode_push(R"({"type":"a\"b"})"));
  CAF_CHECK_EQUAL(out["cmd"], "a\"b");
  out = json::parse(codec.encode_push(R"({"x":1})"));
  CAF_CHECK(out["cmd"].is_null());
}

CAF_TEST(frame_type_of reads the type) {
  CAF_CHECK_EQUAL(frame_type_of(R"({"type":"welcome","uid":"u"})"), "welcome");
  CAF_CHECK_EQUAL(frame_type_of(R"({"id":1,"type":"pong"})"), "pong");
  CAF_CHECK_EQUAL(frame_type_of(R"({"type":1})"), "");
  CAF_CHECK_EQUAL(frame_type_of("not json"), "");
  CAF_CHECK_EQUAL(frame_type_of(std::string(1000, '[')), "");
}

// -- registry -----------------------------------------------------------------

CAF_TEST(the registry makes codecs by name) {
  codec_registry codecs;
  CAF_CHECK_EQUAL(codecs.names(), (std::vector<std::string>{"json", "swoft"}));
  options opts;
  auto json_one = codecs.make(opts);
  CAF_REQUIRE(json_one);
  CAF_CHECK((*json_one)->identity());
  opts.frame_codec = "swoft";
  auto swoft_one = codecs.make(opts);
  CAF_REQUIRE(swoft_one);
  CAF_CHECK(!(*swoft_one)->identity());
  opts.frame_codec = "msgpack";
  auto unknown = codecs.make(opts);
  CAF_REQUIRE(!unknown);
  CAF_CHECK_EQUAL(error_message(unknown.error()),
                  "unknown frame-codec \"msgpack\" (known: json, swoft)");
  codecs.add("msgpack",
             [](const options&) { return std::make_shared<swoft_codec>(); });
  CAF_CHECK(codecs.make(opts));
}

CAF_TEST(decode_client checks what every frame needs) {
  swoft_codec swoft;
  request_info req;
  auto frame =
      decode_client(swoft, R"({"cmd":"ping","ext":{"id":"q"}})", false, req);
  CAF_REQUIRE(frame);
  CAF_CHECK_EQUAL(frame->type, "ping");
  CAF_CHECK_EQUAL(req.id, "\"q\"");
  // An id of the data (no ext.id) must be a string or a number too.
  req = {};
  frame =
      decode_client(swoft, R"({"cmd":"ping","data":{"id":{}}})", false, req);
  CAF_CHECK_EQUAL(to_ec(frame.error()), ec::bad_frame);
  CAF_CHECK_EQUAL(req.context, "\"ping\"\n{}");
  // Binary frames only reach codecs that read them.
  text_only_codec text_only;
  req = {};
  frame = decode_client(text_only, R"({"cmd":"ping"})", true, req);
  CAF_CHECK_EQUAL(to_ec(frame.error()), ec::bad_frame);
  CAF_CHECK(decode_client(swoft, R"({"cmd":"ping"})", true, req));
}

// -- a CONNECTION with a codec ------------------------------------------------

CAF_TEST_FIXTURE_SCOPE(codec_connection_tests, fixture)

CAF_TEST(a swoft client chats with a json client) {
  auto codec = std::make_shared<swoft_codec>();
  auto ann = open("ann", codec);
  auto welcome = ann.sink->take();
  CAF_REQUIRE_EQUAL(welcome.size(), 1u);
  CAF_CHECK_EQUAL(welcome[0]["cmd"], "welcome");
  CAF_CHECK_EQUAL(welcome[0]["data"]["uid"], "ann");
  // A json client: its sink applies the identity.
  auto bob = open("bob", std::make_shared<json_codec>());
  bob.sink->take();
  say(ann, R"({"cmd":"send","data":{"to":"bob","data":{"t":"hi"}},)"
           R"("ext":{"id":1}})");
  auto acks = ann.sink->take();
  CAF_REQUIRE_EQUAL(acks.size(), 1u);
  CAF_CHECK_EQUAL(acks[0]["cmd"], "send");
  CAF_CHECK_EQUAL(acks[0]["data"]["type"], "ack");
  CAF_CHECK_EQUAL(acks[0]["data"]["id"], 1);
  CAF_CHECK_EQUAL(acks[0]["ext"], (json{{"id", 1}}));
  auto got = bob.sink->take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK_EQUAL(got[0]["type"], "message");
  CAF_CHECK_EQUAL(got[0]["from"], "ann");
  CAF_CHECK_EQUAL(got[0]["data"], (json{{"t", "hi"}}));
  // A reply (members) in the same form.
  say(ann, R"({"cmd":"join","data":{"group":"g"},"ext":{"id":2}})");
  ann.sink->take();
  say(ann, R"({"cmd":"members","data":{"group":"g"},"ext":{"id":3}})");
  auto reply = ann.sink->take();
  CAF_REQUIRE_EQUAL(reply.size(), 1u);
  CAF_CHECK_EQUAL(reply[0]["cmd"], "members");
  CAF_CHECK_EQUAL(reply[0]["data"]["uids"], (json{"ann"}));
  CAF_CHECK_EQUAL(reply[0]["data"]["id"], 3);
  // Errors: of a decoded frame with its cmd and ext; of an undecodable one
  // as a push. The connection stays open and keeps answering.
  say(ann, R"({"cmd":"nope.nothing","ext":{"id":4}})");
  auto err = ann.sink->take();
  CAF_REQUIRE_EQUAL(err.size(), 1u);
  CAF_CHECK_EQUAL(err[0]["cmd"], "nope.nothing");
  CAF_CHECK_EQUAL(err[0]["data"]["code"], "unknown_type");
  CAF_CHECK_EQUAL(err[0]["ext"]["id"], 4);
  say(ann, "{not json");
  err = ann.sink->take();
  CAF_REQUIRE_EQUAL(err.size(), 1u);
  CAF_CHECK_EQUAL(err[0]["cmd"], "error");
  CAF_CHECK_EQUAL(err[0]["data"]["code"], "bad_json");
  say(ann, R"({"cmd":"ping","ext":{"id":5}})");
  auto pong = ann.sink->take();
  CAF_REQUIRE_EQUAL(pong.size(), 1u);
  CAF_CHECK_EQUAL(pong[0]["cmd"], "ping");
  CAF_CHECK_EQUAL(pong[0]["ext"]["id"], 5);
}

CAF_TEST(a frame read before the socket went is handled all the same) {
  // As with json: the socket can be gone while frames it read still wait
  // in the CONNECTION's mailbox; the send is made, only its ack is lost.
  auto ann = open("ann", std::make_shared<swoft_codec>());
  auto bob = open("bob", std::make_shared<json_codec>());
  bob.sink->take();
  caf::anon_send(ann.handle, atom::frame_v,
                 std::string{R"({"cmd":"send","data":{"to":"bob",)"
                             R"("data":"late"},"ext":{"id":1}})"});
  ann.sink.reset(); // the session ends before the CONNECTION runs
  run();
  auto got = bob.sink->take();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK_EQUAL(got[0]["data"], "late");
}

CAF_TEST(binary frames reach only codecs that read them) {
  auto ann = open("ann", std::make_shared<text_only_codec>());
  ann.sink->take();
  say(ann, std::string(1, binary_frame_mark) + R"({"cmd":"ping"})");
  auto err = ann.sink->take();
  CAF_REQUIRE_EQUAL(err.size(), 1u);
  // Refused before decoding: no cmd to answer with.
  CAF_CHECK_EQUAL(err[0]["cmd"], "error");
  CAF_CHECK_EQUAL(err[0]["data"]["code"], "bad_frame");
  auto bob = open("bob", std::make_shared<swoft_codec>());
  bob.sink->take();
  say(bob, std::string(1, binary_frame_mark) + R"({"cmd":"ping"})");
  auto pong = bob.sink->take();
  CAF_REQUIRE_EQUAL(pong.size(), 1u);
  CAF_CHECK_EQUAL(pong[0]["cmd"], "ping");
  CAF_CHECK_NOT_EQUAL(pong[0]["data"]["type"], "error");
}

CAF_TEST_FIXTURE_SCOPE_END()

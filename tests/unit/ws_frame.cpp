#define CAF_SUITE ws_frame

// The server side of RFC 6455 framing: every header rule with the close code
// the reader fails with (as Beast, whose behaviour the conformance harness
// pins), fragments and interleaved control frames, bytes arriving in any
// split, the message bound, UTF-8 checked as it arrives, and the frames the
// server writes.

#include "protocol/ws_frame.hpp"

#include <caf/test/unit_test.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

using namespace wsc;
using namespace wsc::ws;

namespace {

/// A client frame: masked unless `masked` is false; `len_bytes` forces a
/// 16-bit (2) or 64-bit (8) length field.
std::string client_frame(uint8_t first, const std::string& payload,
                         bool masked = true, int len_bytes = 0) {
  std::string out;
  out += static_cast<char>(first);
  auto mask_bit = static_cast<uint8_t>(masked ? 0x80 : 0);
  auto n = payload.size();
  if (len_bytes == 0)
    len_bytes = n < 126 ? 0 : n <= 0xFFFF ? 2 : 8;
  if (len_bytes == 0) {
    out += static_cast<char>(mask_bit | n);
  } else {
    out += static_cast<char>(mask_bit | (len_bytes == 2 ? 126 : 127));
    for (int i = len_bytes - 1; i >= 0; --i)
      out += static_cast<char>((static_cast<uint64_t>(n) >> (8 * i)) & 0xFF);
  }
  const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  if (masked)
    out.append(reinterpret_cast<const char*>(key), 4);
  for (size_t i = 0; i < n; ++i)
    out += static_cast<char>(payload[i] ^ (masked ? key[i % 4] : 0));
  return out;
}

std::string text_frame(const std::string& payload, bool fin = true) {
  return client_frame(static_cast<uint8_t>((fin ? 0x80 : 0) | 0x1), payload);
}

std::string cont_frame(const std::string& payload, bool fin = true) {
  return client_frame(static_cast<uint8_t>((fin ? 0x80 : 0) | 0x0), payload);
}

std::string close_frame(const std::string& payload) {
  return client_frame(0x88, payload);
}

std::string code(uint16_t c) {
  return std::string{static_cast<char>(c >> 8), static_cast<char>(c & 0xFF)};
}

struct recorder : frame_events {
  std::vector<std::string> messages;
  std::vector<bool> binary;
  std::vector<std::string> pings;
  std::vector<uint16_t> closes;
  std::string close_reason;
  size_t stop_after = SIZE_MAX;
  /// The frames admit_frame was asked about, and how many it admits.
  std::vector<std::pair<opcode, uint64_t>> asked;
  size_t admit = SIZE_MAX;

  bool admit_frame(opcode op, uint64_t size) override {
    asked.emplace_back(op, size);
    return asked.size() <= admit;
  }

  bool on_message(bool is_binary, std::string& payload) override {
    messages.push_back(std::move(payload));
    binary.push_back(is_binary);
    return messages.size() < stop_after;
  }

  void on_ping(std::string_view payload) override {
    pings.emplace_back(payload);
  }

  void on_close(uint16_t c, std::string_view reason) override {
    closes.push_back(c);
    close_reason = std::string{reason};
  }
};

struct fixture {
  frame_reader reader{1000, "#"};
  recorder events;

  frame_reader::result feed(const std::string& bytes) {
    return reader.feed(bytes.data(), bytes.size(), events);
  }

  /// Feeds one byte at a time; the first failure, or success.
  frame_reader::result feed_bytewise(const std::string& bytes) {
    frame_reader::result last;
    for (char c : bytes) {
      last = reader.feed(&c, 1, events);
      if (last.fail_code != 0)
        return last;
    }
    return last;
  }

  uint16_t fails_with(const std::string& bytes) {
    return feed(bytes).fail_code;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(ws_frame_tests, fixture)

CAF_TEST(a masked text frame is one message) {
  auto bytes = text_frame("hello") + text_frame(std::string(300, 'x'));
  auto r = feed(bytes);
  CAF_CHECK_EQUAL(r.fail_code, 0u);
  CAF_CHECK_EQUAL(r.consumed, bytes.size());
  CAF_REQUIRE_EQUAL(events.messages.size(), 2u);
  CAF_CHECK_EQUAL(events.messages[0], "hello");
  CAF_CHECK_EQUAL(events.messages[1], std::string(300, 'x'));
  CAF_CHECK(!events.binary[0]);
}

CAF_TEST(any split of the bytes reads the same) {
  std::string big(70000, 'a');
  auto bytes = text_frame("x\xc3\xa9y") +
               client_frame(0x82, std::string(200, '\xff')) +
               client_frame(0x81, std::string(400, 'b'), true, 2);
  frame_reader big_reader{0, ""};
  auto all = bytes + text_frame(big);
  CAF_CHECK_EQUAL(big_reader.feed(all.data(), all.size(), events).fail_code,
                  0u);
  CAF_REQUIRE_EQUAL(events.messages.size(), 4u);
  recorder bytewise;
  frame_reader again{0, ""};
  for (char c : all)
    CAF_REQUIRE_EQUAL(again.feed(&c, 1, bytewise).fail_code, 0u);
  CAF_CHECK(bytewise.messages == events.messages);
  CAF_CHECK_EQUAL(bytewise.messages[3].size(), big.size());
}

CAF_TEST(fragments join and control frames interleave) {
  auto bytes = text_frame("ab", false) + client_frame(0x89, "pi") +
               cont_frame("c\xe2", false) + client_frame(0x8A, "") +
               cont_frame("\x82\xac!");
  CAF_CHECK_EQUAL(feed_bytewise(bytes).fail_code, 0u);
  CAF_REQUIRE_EQUAL(events.messages.size(), 1u);
  CAF_CHECK_EQUAL(events.messages[0], "abc\xe2\x82\xac!");
  CAF_REQUIRE_EQUAL(events.pings.size(), 1u);
  CAF_CHECK_EQUAL(events.pings[0], "pi");
}

CAF_TEST(only whole messages and control frames between them are activity) {
  // Found by a probe review: pings (or fragments) kept a connection open
  // whose fragmented message, holding up to max-message-bytes, never ended.
  CAF_CHECK_EQUAL(feed(client_frame(0x89, "pi")).fail_code, 0u);
  CAF_CHECK_EQUAL(reader.completed(), 1u);
  CAF_CHECK_EQUAL(feed(text_frame("ab", false)).fail_code, 0u);
  CAF_CHECK_EQUAL(feed(client_frame(0x89, "pi") + client_frame(0x8A, "") +
                       cont_frame("c", false) + client_frame(0x89, ""))
                      .fail_code,
                  0u);
  CAF_CHECK_EQUAL(reader.completed(), 1u);
  CAF_CHECK_EQUAL(feed(cont_frame("d")).fail_code, 0u);
  CAF_CHECK_EQUAL(reader.completed(), 2u);
  CAF_CHECK_EQUAL(feed(text_frame("hello")).fail_code, 0u);
  CAF_CHECK_EQUAL(reader.completed(), 3u);
  CAF_CHECK_EQUAL(events.pings.size(), 3u); // answered all the same
}

CAF_TEST(binary messages carry the prefix outside the bound) {
  auto r = feed(client_frame(0x82, std::string(1000, '\0')));
  CAF_CHECK_EQUAL(r.fail_code, 0u);
  CAF_REQUIRE_EQUAL(events.messages.size(), 1u);
  CAF_CHECK(events.binary[0]);
  CAF_CHECK_EQUAL(events.messages[0], "#" + std::string(1000, '\0'));
  CAF_CHECK_EQUAL(fails_with(client_frame(0x82, std::string(1001, 'x'))),
                  close_code::too_big);
}

CAF_TEST(the bound holds across fragments) {
  auto bytes = text_frame(std::string(600, 'a'), false) +
               cont_frame(std::string(401, 'b'));
  CAF_CHECK_EQUAL(fails_with(bytes), close_code::too_big);
  CAF_CHECK(events.messages.empty());
  CAF_CHECK(reader.closed());
}

CAF_TEST(a 64 bit length with the top bit set is too big) {
  std::string bytes = "\x81\xff\x80";
  bytes += std::string(7, '\0') + "abcd";
  CAF_CHECK_EQUAL(fails_with(bytes), close_code::too_big);
}

CAF_TEST(header rules fail with 1002) {
  auto check = [](const std::string& bytes) {
    fixture f;
    return f.fails_with(bytes);
  };
  auto p = close_code::protocol_error;
  CAF_CHECK_EQUAL(check(client_frame(0x81, "x", false)), p); // unmasked
  CAF_CHECK_EQUAL(check(client_frame(0xC1, "x")), p);        // RSV1
  CAF_CHECK_EQUAL(check(client_frame(0xA1, "x")), p);        // RSV2
  CAF_CHECK_EQUAL(check(client_frame(0x91, "x")), p);        // RSV3
  CAF_CHECK_EQUAL(check(client_frame(0x83, "x")), p);        // opcode 3
  CAF_CHECK_EQUAL(check(client_frame(0x8B, "x")), p);        // opcode 11
  CAF_CHECK_EQUAL(check(cont_frame("x")), p);                // nothing to go on
  CAF_CHECK_EQUAL(check(text_frame("a", false) + text_frame("b")), p);
  CAF_CHECK_EQUAL(check(client_frame(0x09, "")), p); // fragmented ping
  CAF_CHECK_EQUAL(check(client_frame(0x89, std::string(126, 'p'))), p);
  CAF_CHECK_EQUAL(check(client_frame(0xC9, "")), p); // RSV on a ping
  CAF_CHECK_EQUAL(check(client_frame(0x81, "short", true, 2)), p);
  CAF_CHECK_EQUAL(check(client_frame(0x81, std::string(200, 'l'), true, 8)), p);
  // A valid 16-bit length is fine.
  CAF_CHECK_EQUAL(check(client_frame(0x81, std::string(126, 'l'), true, 2)),
                  0u);
}

CAF_TEST(invalid UTF - 8 fails as soon as it arrives) {
  // The first fragment already cannot be UTF-8: no need to wait for FIN.
  CAF_CHECK_EQUAL(fails_with(text_frame("ok\xc0\xaf", false)),
                  close_code::bad_payload);
  fixture f2;
  CAF_CHECK_EQUAL(f2.fails_with(text_frame("\xed\xa0\x80")), // surrogate
                  close_code::bad_payload);
  fixture f3;
  CAF_CHECK_EQUAL(f3.fails_with(text_frame("\xf4\x90\x80\x80")), // > 10FFFF
                  close_code::bad_payload);
  fixture f4; // a sequence cut by the end of the message
  CAF_CHECK_EQUAL(f4.fails_with(text_frame("a\xe2\x82")),
                  close_code::bad_payload);
  fixture f5; // binary is not checked
  CAF_CHECK_EQUAL(f5.fails_with(client_frame(0x82, "\xc0\xaf")), 0u);
}

CAF_TEST(close frames) {
  CAF_CHECK_EQUAL(fails_with(close_frame(code(1000) + "bye") + "garbage"), 0u);
  CAF_REQUIRE_EQUAL(events.closes.size(), 1u);
  CAF_CHECK_EQUAL(events.closes[0], 1000u);
  CAF_CHECK_EQUAL(events.close_reason, "bye");
  CAF_CHECK(reader.closed());
  fixture empty;
  CAF_CHECK_EQUAL(empty.fails_with(close_frame("")), 0u);
  CAF_CHECK_EQUAL(empty.events.closes.at(0), close_code::no_status);
  auto p = close_code::protocol_error;
  for (uint16_t bad : {0, 999, 1004, 1005, 1006, 1014, 1015, 2999}) {
    fixture f;
    CAF_CHECK_EQUAL(f.fails_with(close_frame(code(bad))), p);
    CAF_CHECK(f.events.closes.empty());
  }
  fixture one_byte;
  CAF_CHECK_EQUAL(one_byte.fails_with(close_frame("\x03")), p);
  fixture bad_reason;
  CAF_CHECK_EQUAL(bad_reason.fails_with(close_frame(code(1000) + "\xff")), p);
  for (uint16_t good : {1001, 1013, 3000, 4999, 5000, 65535}) {
    fixture f;
    CAF_CHECK_EQUAL(f.fails_with(close_frame(code(good))), 0u);
    CAF_CHECK_EQUAL(f.events.closes.at(0), good);
  }
}

CAF_TEST(nothing is read after a close frame) {
  auto first = close_frame(code(1000));
  auto r = feed(first + text_frame("late"));
  CAF_CHECK_EQUAL(r.consumed, first.size());
  CAF_CHECK(events.messages.empty());
}

CAF_TEST(the reader stops where on_message asks it to) {
  events.stop_after = 1;
  auto first = text_frame("one");
  auto bytes = first + text_frame("two");
  auto r = feed(bytes);
  CAF_CHECK_EQUAL(r.fail_code, 0u);
  CAF_CHECK_EQUAL(r.consumed, first.size());
  CAF_REQUIRE_EQUAL(events.messages.size(), 1u);
  events.stop_after = SIZE_MAX;
  r = feed(bytes.substr(r.consumed));
  CAF_CHECK_EQUAL(events.messages.at(1), "two");
}

CAF_TEST(frames that start no message are admitted one by one) {
  auto ping = client_frame(0x89, "p");
  auto pong = client_frame(0x8A, "");
  auto bytes = text_frame("a", false) + ping + cont_frame("", false) + pong +
               cont_frame("bc") + client_frame(0x82, "d") + ping;
  CAF_CHECK_EQUAL(feed_bytewise(bytes).fail_code, 0u);
  // Messages' first frames and close frames are not asked about (the
  // CONNECTION's limit counts messages).
  using asked_t = std::vector<std::pair<opcode, uint64_t>>;
  CAF_CHECK(events.asked == (asked_t{{opcode::ping, 1},
                                     {opcode::continuation, 0},
                                     {opcode::pong, 0},
                                     {opcode::continuation, 2},
                                     {opcode::ping, 1}}));
  CAF_CHECK_EQUAL(events.messages.size(), 2u);
  CAF_CHECK_EQUAL(events.pings.size(), 2u);
  CAF_CHECK_EQUAL(fails_with(close_frame(code(1000))), 0u);
  CAF_CHECK_EQUAL(events.asked.size(), 5u);
}

CAF_TEST(a frame not admitted fails with 1008 before its payload) {
  events.admit = 2;
  auto ping = client_frame(0x89, "p");
  auto r = feed(ping + ping + ping + ping);
  CAF_CHECK_EQUAL(r.fail_code, close_code::policy);
  CAF_CHECK_EQUAL(events.pings.size(), 2u);
  // The third ping's header, not its payload, nor the fourth.
  CAF_CHECK_EQUAL(r.consumed, 2 * ping.size() + 6);
  CAF_CHECK(reader.closed());
  fixture again;
  again.events.admit = 0;
  CAF_CHECK_EQUAL(again.fails_with(text_frame("a", false) + cont_frame("")),
                  close_code::policy);
  CAF_CHECK(again.events.messages.empty());
}

CAF_TEST(server frames) {
  uint8_t header[10];
  CAF_CHECK_EQUAL(encode_header(opcode::text, 0, header), 2u);
  CAF_CHECK_EQUAL(header[0], 0x81);
  CAF_CHECK_EQUAL(header[1], 0);
  CAF_CHECK_EQUAL(encode_header(opcode::binary, 125, header), 2u);
  CAF_CHECK_EQUAL(header[1], 125);
  CAF_CHECK_EQUAL(encode_header(opcode::text, 126, header), 4u);
  CAF_CHECK_EQUAL(header[1], 126);
  CAF_CHECK_EQUAL(header[2], 0);
  CAF_CHECK_EQUAL(header[3], 126);
  CAF_CHECK_EQUAL(encode_header(opcode::text, 65535, header), 4u);
  CAF_CHECK_EQUAL(encode_header(opcode::close, 65536, header), 10u);
  CAF_CHECK_EQUAL(header[0], 0x88);
  CAF_CHECK_EQUAL(header[1], 127);
  CAF_CHECK_EQUAL(header[7], 1);
  CAF_CHECK_EQUAL(header[9], 0);
  auto payload = close_payload(1008, "slow");
  CAF_CHECK_EQUAL(payload, code(1008) + "slow");
  // Cut to 123 bytes of reason, never inside a character.
  auto long_reason = std::string(122, 'r') + "\xc3\xa9";
  auto cut = close_payload(1000, long_reason);
  CAF_CHECK_EQUAL(cut.size(), 2u + 122u);
  CAF_CHECK(valid_utf8(cut.substr(2)));
}

CAF_TEST(utf8 validation) {
  CAF_CHECK(valid_utf8(""));
  CAF_CHECK(valid_utf8("plain ascii text, longer than eight bytes"));
  CAF_CHECK(valid_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"));
  CAF_CHECK(!valid_utf8("\xc1\xbf"));         // overlong 2
  CAF_CHECK(!valid_utf8("\xe0\x9f\xbf"));     // overlong 3
  CAF_CHECK(!valid_utf8("\xf0\x8f\xbf\xbf")); // overlong 4
  CAF_CHECK(!valid_utf8("\xed\xbf\xbf"));     // surrogate
  CAF_CHECK(!valid_utf8("\xf5\x80\x80\x80"));
  CAF_CHECK(!valid_utf8("\x80"));
  CAF_CHECK(!valid_utf8("abcdefgh\xe2\x82")); // cut at the end
  utf8_validator split;
  auto euro = reinterpret_cast<const unsigned char*>("\xe2\x82\xac");
  CAF_CHECK(split.feed(euro, 1));
  CAF_CHECK(!split.complete());
  CAF_CHECK(split.feed(euro + 1, 2));
  CAF_CHECK(split.complete());
}

CAF_TEST_FIXTURE_SCOPE_END()

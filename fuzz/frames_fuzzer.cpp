// libFuzzer target: a client frame as it comes off the WebSocket.
//
// Runs what a connection does with every frame before any actor sees it:
// wsc::frames::parse_client, and then builds the frames the node writes back
// (error with the frame's id, a reply carrying the id, the data re-encoded as
// a message). Invariant: whatever the input, every frame the node would send
// is valid JSON and carries the client's id unchanged; and the syntax check
// of payloads from outside (`json_payload_ok`) agrees with nlohmann.

#include "protocol/frames.hpp"
#include "protocol/names.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

nlohmann::json must_parse(const std::string& text, const char* what) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    std::fprintf(stderr, "%s is not valid JSON: %.200s\n", what, text.c_str());
    std::abort();
  }
  return j;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // The payload check of deliveries from outside agrees with nlohmann
  // (which also checks UTF-8: frames::check does that apart; and which
  // takes a NUL byte for the end of its input, so "1\0x" is JSON to it).
  if (text.find('\0') == std::string_view::npos &&
      (wsc::frames::json_payload_ok(text) && wsc::valid_utf8(text)) !=
          (wsc::frames::json_depth_ok(text) && nlohmann::json::accept(text))) {
    std::fprintf(stderr, "json_payload_ok disagrees with nlohmann: %.200s\n",
                 std::string{text}.c_str());
    std::abort();
  }
  std::string id;
  auto frame = wsc::frames::parse_client(text, id);
  if (!frame) {
    auto out = wsc::frames::error(id, wsc::to_ec(frame.error()),
                                  wsc::error_message(frame.error()));
    auto j = must_parse(out, "error frame");
    if (j.value("type", "") != "error")
      std::abort();
    return 0;
  }
  if (frame->type.empty() && !frame->body->at("type").is_string())
    std::abort();
  // The answer of a behaviour, with the frame's id added.
  auto reply = wsc::frames::reply(nlohmann::json{{"type", "pong"}}, id);
  auto r = must_parse(reply, "reply");
  if (!id.empty() && r.at("id") != must_parse(id, "id"))
    std::abort();
  auto ack = must_parse(wsc::frames::ack(id), "ack");
  (void)ack;
  // The data as the built-ins re-encode it for receivers.
  const auto& body = *frame->body;
  if (auto d = body.find("data"); d != body.end()) {
    auto data_text =
        d->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    must_parse(wsc::frames::message(frame->type, "bob", data_text, 1),
               "message");
    must_parse(wsc::frames::group(frame->type, "alice", data_text, 2), "group");
  }
  // Strings of the frame quoted back.
  std::string quoted;
  wsc::frames::append_quoted(quoted, frame->type);
  if (must_parse(quoted, "quoted type") != frame->type)
    std::abort();
  return 0;
}

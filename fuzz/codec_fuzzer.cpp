// libFuzzer target: a client frame for a node with `frame-codec=swoft`.
//
// Runs what a connection does with the frame before any actor sees it
// (wsc::swoft_codec::decode), then encodes the answers the node would write:
// an ack or an error answering the frame in its codec's form, and the
// frame's JSON as a push. Invariants: every frame written is valid JSON of
// the form {"cmd":..,"data":..,"ext":..}; a decoded frame is an object with
// a string type equal to the cmd; the answer echoes the frame's ext, which
// is bounded.

#include "protocol/codec.hpp"
#include "protocol/frames.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

nlohmann::json must_parse(const std::string& text, const char* what) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("cmd") ||
      !j.contains("data") || !j.contains("ext")) {
    std::fprintf(stderr, "%s is not a swoft frame: %.200s\n", what,
                 text.c_str());
    std::abort();
  }
  return j;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  wsc::swoft_codec codec;
  std::string context;
  auto frame = codec.decode(text, false, context);
  if (context.size() > wsc::swoft_codec::max_ext_bytes + 2 * 6 * 128 + 8)
    std::abort(); // ext and cmd are bounded
  if (!frame) {
    auto err = wsc::frames::error({}, wsc::to_ec(frame.error()),
                                  wsc::error_message(frame.error()));
    must_parse(codec.encode_answer(err, context), "error answer");
    return 0;
  }
  auto type = frame->find("type");
  if (!frame->is_object() || type == frame->end() || !type->is_string())
    std::abort();
  auto input = nlohmann::json::parse(text);
  if (input.at("cmd") != *type)
    std::abort();
  std::string id;
  if (auto i = frame->find("id"); i != frame->end())
    id = i->dump();
  auto ack = must_parse(codec.encode_answer(wsc::frames::ack(id), context),
                        "ack answer");
  if (ack.at("cmd") != *type)
    std::abort();
  auto ext = input.find("ext");
  if (ext != input.end() && !ext->is_null() && ack.at("ext") != *ext)
    std::abort();
  auto push =
      must_parse(codec.encode_push(frame->dump(
                     -1, ' ', false, nlohmann::json::error_handler_t::replace)),
                 "push");
  if (push.at("cmd") != *type)
    std::abort();
  return 0;
}

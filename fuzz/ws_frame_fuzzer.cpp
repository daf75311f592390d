// libFuzzer target: the bytes a client sends after the WebSocket upgrade.
//
// Runs wsc::ws::frame_reader over the input twice: as one read and split
// into reads at the sizes the input's first bytes choose. Invariants: the
// reader never reads past its input, never returns a message over the bound
// or invalid UTF-8 in a text message, and the split changes nothing (same
// messages, pings, close, failure code).

#include "protocol/ws_frame.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

constexpr uint64_t max_message = 4096;

struct trace : wsc::ws::frame_events {
  std::vector<std::string> events;

  bool on_message(bool binary, std::string& payload) override {
    if (payload.size() > max_message + (binary ? 1 : 0))
      fail("message over the bound");
    if (!binary && !wsc::ws::valid_utf8(payload))
      fail("invalid UTF-8 in a text message");
    events.push_back((binary ? "B:" : "T:") + payload);
    return true;
  }

  void on_ping(std::string_view payload) override {
    events.push_back("P:" + std::string{payload});
  }

  void on_close(uint16_t code, std::string_view reason) override {
    events.push_back("C:" + std::to_string(code) + ":" + std::string{reason});
  }

  static void fail(const char* what) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
};

/// Feeds `data` in reads of the given sizes (cycled); returns the failure
/// code and, through `out`, the events.
uint16_t run(const uint8_t* data, size_t size, const std::vector<size_t>& cuts,
             trace& out) {
  wsc::ws::frame_reader reader{max_message, "#"};
  size_t at = 0;
  size_t k = 0;
  while (at < size && !reader.closed()) {
    auto n =
        cuts.empty() ? size - at : std::min(cuts[k++ % cuts.size()], size - at);
    auto r = reader.feed(reinterpret_cast<const char*>(data + at), n, out);
    if (r.consumed > n)
      trace::fail("consumed more than given");
    if (r.fail_code != 0)
      return r.fail_code;
    at += r.consumed;
  }
  return 0;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2)
    return 0;
  // The first two bytes pick the read sizes (1 to 16 bytes, alternating).
  std::vector<size_t> cuts{static_cast<size_t>(data[0] % 16 + 1),
                           static_cast<size_t>(data[1] % 16 + 1)};
  data += 2;
  size -= 2;
  trace whole;
  trace split;
  auto code_whole = run(data, size, {}, whole);
  auto code_split = run(data, size, cuts, split);
  if (code_whole != code_split || whole.events != split.events)
    trace::fail("the split of the input changed the outcome");
  return 0;
}

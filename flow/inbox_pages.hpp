#pragma once

// -- How much of an inbox one read takes (no CAF) -----------------------------

#include "protocol/messages.hpp"

#include <cstdint>

namespace wsc {

/// The size of the pages in which a connection reads its inbox (a replay,
/// or a gap's catch-up). A replay page stays in memory until the client
/// drained enough of its queue to take it, so a page is bounded in bytes as
/// well as in messages: with a count alone, a stalled resume held 64
/// messages of up to an API body each (helper-30's probe: +83 MB per
/// resume of 900 KB messages).
class inbox_pages {
public:
  /// Messages asked for per read at most.
  static constexpr uint32_t max_count = 64;

  /// Messages asked for by a connection's first read, before it saw their
  /// size: every reconnect with a device reads a page (the Redis store
  /// reads it in steps and stops about one message past `max_bytes`).
  static constexpr uint32_t first_count = 8;

  /// Bytes of messages a page keeps at most (at least one message).
  static constexpr uint64_t max_bytes = 256 * 1024;

  /// What a stored message weighs in a page: its strings plus bookkeeping.
  static uint64_t weight(const stored_message& msg);

  /// Messages to ask the store for in the next read.
  uint32_t count() const { return count_; }

  /// Cuts a page read from the store to `max_bytes` (it keeps at least its
  /// first message; a cut page is `more`, so the next read starts after its
  /// last kept message) and sizes the next read after the messages seen,
  /// so that large messages are not read 64 at a time again.
  void fit(inbox_replay& page);

private:
  uint32_t count_ = first_count;
};

} // namespace wsc

#pragma once

// -- The durable appends of a stage as few script calls -----------------------
//
// A durable send is one `append` call per receiver slot. On a single Redis
// the appends of one stage (of many messages) leave as `append_batch` calls
// instead: Redis' own cost of an EVALSHA (~7 us of CPU measured with
// redis-benchmark, more than the commands in it; bench/PROFILE.md) is paid
// once per batch, and the node formats and parses one command instead of
// many. Only runs of consecutive appends are packed, so every command keeps
// its place among the others. A Redis Cluster keeps one call per slot: a
// script may touch keys of its own slot only.

#include "adapters/redis_connection.hpp"
#include "adapters/redis_scripts.hpp"

#include <caf/expected.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace wsc::redis_store_impl {

/// One Redis command of a request: a call of one of our scripts (EVALSHA
/// sha 1 key prefix args...) or a plain command (args is the whole argv).
/// `key` decides the slot on a Redis Cluster (for scripts it is KEYS[1]).
struct redis_command {
  std::optional<redis_scripts::script> lua;
  std::string key;
  std::vector<std::string> args;
  /// A durable write: with durable-replicas, a WAIT on its connection says
  /// how many replicas have it (`job::replicas`).
  bool wait = false;
};

/// The arguments of an `append` call after the prefix (see redis_scripts'
/// inbox_helpers): 4 shared, the entry, then its uids' key bases.
namespace append_args {
/// max_messages, min_ms, ttl_ms, max_fanout_bytes: the same for every
/// message of a batch.
constexpr size_t shared = 4;
/// The packed inbox entry (redis_replies.hpp, pack_entry).
constexpr size_t entry = 4;
/// Where the key bases `P:{u:<uid>}:` of the receivers begin.
constexpr size_t uids_begin = 5;
} // namespace append_args

/// How much one `append_batch` call may carry: it blocks Redis while it
/// runs (~10 us per message and uid), and its arguments sit in Redis'
/// query buffer.
struct append_batch_limits {
  size_t max_messages = 128;
  size_t max_uids = 1024;
  size_t max_bytes = 1u << 20;
};

/// The commands of one stage as they leave.
struct packed_stage {
  /// In stage order; each points into a job or into `batches`.
  std::vector<const redis_command*> commands;
  /// Per entry of `commands`: how many commands of the stage it answers
  /// (1, or the messages of an `append_batch`). Empty when none is packed.
  std::vector<size_t> spans;
  /// The `append_batch` calls built (a deque: pointers to them stay valid).
  std::deque<redis_command> batches;

  void clear() {
    commands.clear();
    spans.clear();
    batches.clear();
  }
};

/// Fills `out` with `staged`, runs of consecutive `append` calls packed into
/// `append_batch` calls within `limits`. The appends' arguments move into
/// the batches (the executors send only `out.commands`).
void pack_appends(const std::vector<redis_command*>& staged,
                  const append_batch_limits& limits, packed_stage& out);

/// Turns the replies and replica counts of `stage.commands` into one per
/// staged command: a batch's array reply gives each message its own reply;
/// a batch that failed as a whole (no reply, an error reply) fails each of
/// its messages alike.
void unpack_replies(const packed_stage& stage,
                    std::vector<caf::expected<redis_reply_ptr>>& replies,
                    std::vector<int64_t>& replicas);

/// An error reply object with the text `text`, as hiredis would build it.
redis_reply_ptr make_error_reply(std::string_view text);

} // namespace wsc::redis_store_impl

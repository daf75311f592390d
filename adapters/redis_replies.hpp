#pragma once

// Reading what Redis answers the STORE's requests: pure functions from hiredis
// replies to our messages, with no actor and no I/O (tested in
// tests/unit/redis_replies.cpp). A reply that is not what our scripts and
// commands return reads as the nearest harmless value, or fails with
// `unexpected_reply`; nothing read from Redis is trusted further than a
// client's frame (entries are checked like one).

#include "adapters/redis_connection.hpp"
#include "protocol/messages.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace wsc::redis_store_impl {

// -- single replies -----------------------------------------------------------

/// The error of a reply that is not what our scripts and commands return.
caf::error unexpected_reply(const char* what);

/// The text of a string or status reply; empty for anything else.
std::string_view text_of(const redisReply* x);

bool is_array(const redisReply* x);

/// The value of an integer reply; none for anything else.
std::optional<long long> integer_of(const redisReply* x);

/// Parses a decimal number; 0 if `text` is not one (or out of T's range).
template<class T>
T parse_number(std::string_view text) {
  T result = 0;
  auto [end, err] =
      std::from_chars(text.data(), text.data() + text.size(), result);
  if (err != std::errc{} || end != text.data() + text.size())
    return 0;
  return result;
}

/// Parses a decimal number in [0, 2^53) (what Lua and JSON keep exactly).
std::optional<uint64_t> parse_count(std::string_view text);

/// The strings of an array reply, from element `first` on.
std::vector<std::string> strings_of(const redisReply* r, size_t first);

// -- routes -------------------------------------------------------------------

/// Builds a route table uid by uid, like the memory store: each uid once,
/// nodes in the order they first appear, per uid its nodes in byte order.
class route_builder {
public:
  /// Adds a uid with its binding values ("node|incarnation" per connection)
  /// and, for durable messages, the seq its inbox copy got.
  void add(std::string_view uid, const redisReply* values,
           std::optional<uint64_t> seq = std::nullopt);

  route_table& result() { return result_; }

private:
  route_table result_;
  std::map<std::string_view, uint32_t> per_node_;
  std::unordered_map<std::string, size_t> index_;
};

/// Adds the replies of `append` calls (seq, negated if the copy started
/// the inbox, binding values, ... per uid) to a route table; `uids[i]` are
/// the uids of `replies[i]`, in the order of the call's arguments.
caf::error add_appended(route_builder& builder,
                        const std::vector<redis_reply_ptr>& replies,
                        const std::vector<std::vector<std::string_view>>& uids);

// -- inboxes ------------------------------------------------------------------

/// A message as an inbox entry holds it (its one field `m`), packed once per
/// message by the STORE: "<ts>,<kind>,<a>,<b>,<c>," then msg_id (a bytes),
/// from (b bytes), group (c bytes) and the payload (the rest), so any bytes
/// pass. It starts with the ts: the append script reads it to trim by age.
std::string pack_entry(std::string_view msg_id, delivery_kind kind,
                       std::string_view from, std::string_view group,
                       std::string_view data, int64_t ts);

/// Unpacks what `pack_entry` wrote (seq stays 0); nullopt if `m` is not
/// that (a count missing or out of range, lengths past the end, a kind
/// beyond the last).
std::optional<stored_message> unpack_entry(std::string_view m);

/// The seq of an inbox entry id `0-<seq>` (XADD `0-*`): a decimal in
/// [1, 2^53) after "0-", nothing else; nullopt for any other id.
std::optional<uint64_t> entry_seq(std::string_view id);

/// Reads one inbox entry ({id, {"m", packed}}); nullopt if it is malformed.
std::optional<stored_message> read_entry(const redisReply* entry);

/// Reads a page of an inbox (the `inbox` script's reply: cursor, last seq,
/// oldest seq, more, the life's first seq, then the entries), replayed after
/// `since` (below 0: after the device's cursor). Entries that fail `read_entry`
/// or do not come after the cursor and the entry before are left out, their ids
/// (empty when an entry has none) added to `bad`.
caf::expected<inbox_replay> read_inbox(const redisReply* r, int64_t since,
                                       std::vector<std::string>& bad);

/// Per copy of a message (the HVALS of its uid's cursors, and the seq the
/// copy got): whether no device of the uid read it yet. A uid without any
/// device counts as read (nobody to remind).
std::vector<bool> read_unread(const std::vector<redis_reply_ptr>& replies,
                              const std::vector<uint64_t>& seqs);

// -- groups and counts --------------------------------------------------------

/// At most `limit` uids of a group (SRANDMEMBER: all of them when it has no
/// more), in byte order.
caf::expected<std::vector<std::string>> read_members(const redisReply* r,
                                                     size_t limit);

/// The members of a group from a `group_check` call: `not_member` if
/// `from` is not one (0), `too_large` if its members times `payload` bytes
/// exceed `fanout` (-n), else the members.
caf::expected<std::vector<std::string>>
read_group_check(const redisReply* r, const std::string& from,
                 const std::string& group, size_t payload, uint64_t fanout);

/// The uids online (GET P:users): 0 for nil (before the first uid came
/// online), anything but a number, or a count below 0.
uint64_t read_user_count(const redisReply* r);

// -- nodes --------------------------------------------------------------------

/// An entry "<incarnation>,<uid>,<conn>" of a node's binding index.
struct index_entry {
  std::string_view inc, uid, conn;
};

/// Parses an index entry "<incarnation>,<uid>,<conn>".
std::optional<index_entry> parse_index_entry(std::string_view e);

/// The `redis_version` of an `INFO server` reply ("7.0.15"); empty if it
/// holds none.
std::string redis_version_of(std::string_view info);

/// Whether `version` ("<major>.<minor>[...]") is at least major.minor; false
/// if it is not of that form.
bool redis_version_at_least(std::string_view version, int major, int minor);

/// Redis' TIME in ms; none unless the reply is an array of two.
std::optional<int64_t> read_redis_time(const redisReply* r);

/// How far a heartbeat may lie ahead of the Redis time it is compared with
/// and still count as fresh (the shards of a Redis Cluster have clocks of
/// their own); further ahead it counts as that old.
constexpr int64_t max_clock_skew_ms = 60'000;

/// A node's entry (the fields of a non-empty HGETALL P:{n:<id>}:h); none
/// while a claim cleans it up. Its heartbeat (Redis TIME) is put on this
/// process' clock: `local_now` minus the age Redis measured at `redis_now`.
std::optional<node_info> read_node_entry(std::string id,
                                         const redisReply* fields,
                                         int64_t local_now, int64_t redis_now);

} // namespace wsc::redis_store_impl

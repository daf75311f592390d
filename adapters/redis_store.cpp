// -- The Redis STATE_STORE ----------------------------------------------------
//
// Key layout. P is `redis-prefix` (default "wscluster"); every key is `P:...`.
//
//   P:u:<uid>          hash  conn id -> "<node>|<incarnation>": the uid's
//                            bindings. A uid is online iff this hash exists.
//   P:nb:<node>        set   "<incarnation>,<uid>,<conn>": every binding of a
//                            node, to remove them when the node goes. The
//                            separator is ',' because uids and conn ids never
//                            contain one (they may contain '|').
//   P:ni:<node>        set   incarnations of the node that (may) have
//                            entries in nb:<node>, so a heartbeat finds a
//                            predecessor's leftovers without scanning
//                            nb:<node>; deleted with the last nb entry.
//   P:g:<group>        set   member uids of a group.
//   P:ug:<uid>         set   groups of a uid.
//   P:nodes            set   registered node ids.
//   P:node:<id>        hash  listen, cluster, incarnation, connections,
//                            hb (last heartbeat, ms, Redis server TIME).
//   P:lease:<id>:<inc> string, expires node-timeout after the incarnation's
//                            last heartbeat (SET PX).
//   P:seq:<uid>        string the uid's last inbox sequence number.
//   P:in:<uid>         stream the uid's inbox; entry ids are `<seq>-0`, so a
//                            replay reads `XRANGE <cursor+1>-0 + COUNT n`.
//   P:cur:<uid>        hash  device -> the last seq it confirmed (`read`).
//   P:idem:<n>:<uid>:<idem> string, the msg_id of the durable send or
//                            publish of `uid` (n = its length in bytes; the
//                            API's uid is empty) that carried `idem`;
//                            expires idempotency-window after it (SET NX PX
//                            inside the append script).
//   P:layout           string the layout version of the keys above (2).
//
// Every per-uid key of durable delivery (seq, in, cur) expires
// inbox-max-age after the uid's last message (cur also after its last read);
// a counter that starts over (INCR gives 1) deletes what is left of the
// inbox and cursors. Keys never join two client strings: a key holds at
// most one uid, group or node id, always last (cursors are a hash per uid,
// not `cur:<uid>:<device>`, which let uid "a" + device "b:c" and uid "a:b" +
// device "c" collide). Node ids are [A-Za-z0-9_-], so `lease:<id>:<inc>` and
// `relay:<node>` cannot collide either.
//
// Empty sets and hashes do not exist (Redis deletes them). Incarnations are
// written in decimal. Node ids are [A-Za-z0-9_-]; uids, groups and conn ids
// may hold any byte but ',', whitespace and control characters; everything
// travels as binary-safe argv (nothing is interpolated into commands).
//
// Every change of more than one key is one Lua script (redis_scripts.hpp),
// run with EVALSHA (`route` and `members` are plain pipelined reads). The
// SHAs come from SCRIPT LOAD at each (re)connect; a NOSCRIPT reply reloads
// the scripts and retries once.
//
// Heartbeats and cleanup: `node` renews P:node:<id> and the lease, and sweeps
// the bindings of earlier incarnations of the same id whose lease expired (a
// restart under the same id must not keep its predecessor's bindings). It
// never touches the current incarnation, nor one whose lease still runs. The
// sweep runs on every heartbeat because it is cheap: it reads P:ni:<id>
// (usually one element, the current incarnation) and scans P:nb:<id> only
// when a stale incarnation is listed there. `claim` removes a silent node
// (lease gone or heartbeat older than the timeout by Redis TIME) for exactly
// one caller; `shutdown` does the same unconditionally.
//
// Pipelining: the STORE is a detached blocking actor owning one hiredis
// connection. It waits for a request, takes whatever else is queued (up to
// 256 requests), appends all their commands, reads all replies, and answers
// each request through its response promise: one round trip per batch.

#include "adapters/redis_store.hpp"

#include "actors/error.hpp"
#include "actors/frames.hpp"
#include "adapters/redis_connection.hpp"
#include "adapters/redis_scripts.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace wsc {

namespace {

using redis_scripts::script;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// -- settings -----------------------------------------------------------------

/// Settings of the STORE, fixed at spawn.
struct redis_store_config {
  redis_url url;
  std::string prefix;
  /// Lifetime of a node's lease (node-timeout), in ms.
  int64_t lease_ms = 3000;
  /// How long a connect (and the handshake after it) may take.
  milliseconds connect_timeout{1000};
  /// How long one read or write may take once connected.
  milliseconds io_timeout{2000};
  /// At most one reconnect attempt per interval.
  milliseconds retry_interval{250};
  /// Attempts that time out (a hung or black-holed server) stretch the
  /// interval, doubling up to this, so they do not block the STORE most of
  /// the time; a refused connect keeps the short interval.
  milliseconds max_retry_interval{2000};
  /// At most this many requests share one round trip.
  size_t max_batch = 256;
  /// How long to wait after the first request of a round trip for more
  /// (store-batch-delay; 0: send what is queued at once).
  milliseconds batch_delay{1};
  /// Bindings per EVALSHA when writing back many (rebind).
  size_t bindings_per_call = 512;
  /// Inbox retention: entries per uid, and age (trimmed by the `t` field;
  /// per-uid keys expire this long after their last write).
  uint64_t inbox_max_messages = 1000;
  int64_t inbox_max_age_ms = 24 * 3600 * 1000;
  /// Receivers times payload bytes one durable send or publish may store.
  uint64_t max_fanout_bytes = 1u << 20;
  /// Most members of one group.
  uint64_t max_group_members = 10000;
  /// group-membership=session: a uid leaves its groups with its last
  /// connection (persistent: never by going offline).
  bool session_groups = false;
  /// Receivers per EVALSHA of `append` (bigger sends are split into calls
  /// pipelined in the same round trip, so Redis serves others in between).
  size_t uids_per_call = 500;
  /// Most inbox entries one `inbox` request reads.
  uint32_t max_replay_page = 1000;
  /// How long `P:idem:<...>` keys live (idempotency-window; 0: no idem).
  int64_t idempotency_window_ms = 10 * 60 * 1000;
};

/// The version of the key layout this build writes (P:layout). Layout 1
/// (no P:layout key) kept inbox streams with time-based ids and cursors as
/// strings `P:cur:<uid>:<device>`.
constexpr std::string_view layout_version = "2";

// -- requests -----------------------------------------------------------------

/// One Redis command of a request: a call of one of our scripts (the prefix
/// goes first in ARGV) or a plain command.
struct redis_command {
  std::optional<script> lua;
  std::vector<std::string> args;
};

struct job;

/// Turns the replies of a job (one per command, none an error) into its
/// answer.
using answer_fn = caf::expected<caf::message> (*)(job&);

/// A request in the batch: the commands it needs and how to answer.
struct job {
  caf::response_promise promise;
  std::vector<redis_command> commands;
  std::vector<redis_reply_ptr> replies;
  answer_fn answer = nullptr;
  /// A number the answer needs besides the replies (members: the limit;
  /// route: the length of the key prefix in front of each uid; append: the
  /// payload size).
  uint64_t aux = 0;
  /// append: max-fanout-bytes. inbox: `since` if >= 0.
  int64_t aux2 = -1;
  /// inbox: the stream's key (to delete entries that fail the checks).
  std::string key;
  /// unread: the seq of each copy, parallel to the commands.
  std::vector<uint64_t> seqs;
  /// Commands to run after the answer (their replies are ignored), e.g.
  /// XDEL of invalid inbox entries.
  std::vector<redis_command> followups;
  /// Set when the job failed on its own (e.g. its script would not reload).
  caf::error error;
  /// The answer while Redis is unreachable, instead of `ec::unavailable`
  /// (health: false).
  caf::message when_down;
};

// -- reading replies ----------------------------------------------------------

caf::error unexpected_reply(const char* what) {
  return make_error(ec::internal,
                    std::string{"unexpected reply from Redis to "} + what);
}

std::string_view text_of(const redisReply* x) {
  if (x == nullptr || x->str == nullptr ||
      (x->type != REDIS_REPLY_STRING && x->type != REDIS_REPLY_STATUS))
    return {};
  return {x->str, x->len};
}

bool is_array(const redisReply* x) {
  return x != nullptr && x->type == REDIS_REPLY_ARRAY;
}

std::optional<long long> integer_of(const redisReply* x) {
  if (x == nullptr || x->type != REDIS_REPLY_INTEGER)
    return std::nullopt;
  return x->integer;
}

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
std::optional<uint64_t> parse_count(std::string_view text) {
  uint64_t result = 0;
  auto [end, err] =
      std::from_chars(text.data(), text.data() + text.size(), result);
  if (text.empty() || err != std::errc{} || end != text.data() + text.size() ||
      result >= (uint64_t{1} << 53))
    return std::nullopt;
  return result;
}

/// Logs a line about something bad found in Redis at most once per 10 s,
/// with the number of others since the last line.
void log_bad_content(const std::string& what) {
  static std::atomic<int64_t> last_ms{0};
  static std::atomic<uint64_t> suppressed{0};
  auto now = frames::now_ms();
  auto last = last_ms.load();
  if (now - last < 10000 || !last_ms.compare_exchange_strong(last, now)) {
    ++suppressed;
    return;
  }
  log::warn("dropped invalid data read from Redis: {} ({} more since the "
            "last report)",
            what, suppressed.exchange(0));
}

/// Builds a route table uid by uid, like the memory store: each uid once,
/// nodes in the order they first appear, per uid its nodes in byte order.
class route_builder {
public:
  /// Adds a uid with its binding values ("node|incarnation" per connection)
  /// and, for durable messages, the seq its inbox copy got.
  void add(std::string_view uid, const redisReply* values,
           std::optional<uint64_t> seq = std::nullopt) {
    if (!is_array(values) || values->elements == 0) {
      result_.offline.emplace_back(uid);
      if (seq)
        result_.offline_seqs.push_back(*seq);
      return;
    }
    per_node_.clear();
    for (size_t i = 0; i < values->elements; ++i) {
      auto value = text_of(values->element[i]);
      auto bar = value.rfind('|');
      ++per_node_[bar == std::string_view::npos ? value : value.substr(0, bar)];
    }
    for (auto& [node, count] : per_node_) {
      auto [i, added] = index_.emplace(node, result_.nodes.size());
      if (added)
        result_.nodes.push_back(node_route{std::string{node}, {}, {}, {}});
      auto& nr = result_.nodes[i->second];
      nr.uids.emplace_back(uid);
      nr.connections.push_back(count);
      if (seq)
        nr.seqs.push_back(*seq);
    }
  }

  route_table& result() { return result_; }

private:
  route_table result_;
  std::map<std::string_view, uint32_t> per_node_;
  std::unordered_map<std::string_view, size_t> index_;
};

// -- answers ------------------------------------------------------------------

caf::expected<caf::message> answer_ok(job&) {
  return caf::make_message(atom::ok_v);
}

caf::expected<caf::message> answer_read(job& j) {
  if (auto x = integer_of(j.replies.front().get()); x && *x < 0)
    return frames::too_many_devices();
  return caf::make_message(atom::ok_v);
}

caf::expected<caf::message> answer_bind(job& j) {
  auto& r = j.replies.front();
  if (!is_array(r.get()) || r->elements != 1 || !integer_of(r->element[0]))
    return unexpected_reply("bind");
  return caf::make_message(r->element[0]->integer == 1);
}

caf::expected<caf::message> answer_flag(job& j) {
  auto x = integer_of(j.replies.front().get());
  if (!x)
    return unexpected_reply("a script");
  return caf::make_message(*x == 1);
}

/// The uids of an array reply, from element `first` on.
std::vector<std::string> strings_of(const redisReply* r, size_t first) {
  std::vector<std::string> result;
  if (!is_array(r))
    return result;
  for (size_t i = first; i < r->elements; ++i)
    if (auto text = text_of(r->element[i]); !text.empty())
      result.emplace_back(text);
  return result;
}

caf::expected<caf::message> answer_claim(job& j) {
  auto r = j.replies.front().get();
  if (!is_array(r) || r->elements < 1 || !integer_of(r->element[0]))
    return unexpected_reply("claim");
  return caf::make_message(r->element[0]->integer == 1, strings_of(r, 1));
}

caf::expected<caf::message> answer_offline(job& j) {
  auto r = j.replies.front().get();
  if (!is_array(r))
    return unexpected_reply("shutdown");
  return caf::make_message(strings_of(r, 0));
}

caf::expected<caf::message> answer_stats(job& j) {
  // GET P:users: nil before the first uid came online.
  auto text = text_of(j.replies.front().get());
  auto n = parse_number<int64_t>(text);
  return caf::make_message(static_cast<uint64_t>(std::max<int64_t>(n, 0)));
}

caf::expected<caf::message> answer_unread(job& j) {
  // One HVALS of P:cur:<uid> per copy (its seq in `j.seqs`).
  std::vector<bool> result;
  result.reserve(j.replies.size());
  for (size_t i = 0; i < j.replies.size(); ++i) {
    auto r = j.replies[i].get();
    auto seq = i < j.seqs.size() ? j.seqs[i] : 0;
    if (!is_array(r) || r->elements == 0) {
      result.push_back(false); // no device: nobody to remind
      continue;
    }
    bool read = false;
    for (size_t k = 0; k < r->elements; ++k)
      read = read || parse_number<uint64_t>(text_of(r->element[k])) >= seq;
    result.push_back(!read);
  }
  return caf::make_message(std::move(result));
}

caf::expected<caf::message> answer_route(job& j) {
  // One HVALS per uid; the uid is the key's tail.
  route_builder builder;
  auto skip = j.aux;
  for (size_t i = 0; i < j.commands.size(); ++i) {
    auto& key = j.commands[i].args[1];
    builder.add(std::string_view{key}.substr(skip), j.replies[i].get());
  }
  return caf::make_message(std::move(builder.result()));
}

caf::expected<caf::message> answer_join(job& j) {
  auto x = integer_of(j.replies.front().get());
  if (!x)
    return unexpected_reply("join");
  if (*x == -2)
    return make_error(ec::group_full,
                      "'" + j.commands.front().args[1] + "' has " +
                          j.commands.front().args[3] + " members already");
  if (*x < 0)
    return make_error(ec::too_many_groups, "at most " +
                                               j.commands.front().args[2] +
                                               " groups per uid");
  return caf::make_message(static_cast<uint32_t>(*x));
}

caf::expected<caf::message> answer_members(job& j) {
  auto& r = j.replies.front();
  if (!is_array(r.get()))
    return unexpected_reply("SMEMBERS");
  std::vector<std::string> uids;
  uids.reserve(r->elements);
  for (size_t i = 0; i < r->elements; ++i)
    uids.emplace_back(text_of(r->element[i]));
  auto n = std::min(uids.size(), static_cast<size_t>(j.aux));
  std::partial_sort(uids.begin(), uids.begin() + n, uids.end());
  uids.resize(n);
  return caf::make_message(std::move(uids));
}

caf::expected<caf::message> answer_group_route(job& j) {
  auto& r = j.replies.front();
  auto& args = j.commands.front().args;
  if (auto x = integer_of(r.get()); x && *x == 0)
    return make_error(ec::not_member,
                      "'" + args[1] + "' is not a member of '" + args[0] + "'");
  if (!is_array(r.get()) || r->elements % 2 != 0)
    return unexpected_reply("group_route");
  // Members in byte order, like the memory store's std::set.
  std::vector<std::pair<std::string_view, const redisReply*>> members;
  members.reserve(r->elements / 2);
  for (size_t i = 0; i < r->elements; i += 2)
    members.emplace_back(text_of(r->element[i]), r->element[i + 1]);
  std::sort(members.begin(), members.end(),
            [](auto& x, auto& y) { return x.first < y.first; });
  route_builder builder;
  for (auto& [uid, values] : members)
    builder.add(uid, values);
  return caf::make_message(std::move(builder.result()));
}

caf::expected<caf::message> answer_append(job& j) {
  auto& first = j.replies.front();
  for (auto& r : j.replies)
    if (r->type == REDIS_REPLY_STATUS) {
      // A repeat of an idem: the msg_id of the earlier message.
      auto earlier = text_of(r.get());
      if (earlier.empty() || earlier.size() > 256)
        return unexpected_reply("append");
      route_table result;
      result.duplicate_of = earlier;
      return caf::make_message(std::move(result));
    }
  if (auto x = integer_of(first.get()); x && *x == 0)
    return make_error(ec::not_member, "'" + j.commands.front().args[6] +
                                          "' is not a member of '" +
                                          j.commands.front().args[7] + "'");
  if (auto x = integer_of(first.get()); x && *x < 0) {
    auto receivers = static_cast<size_t>(
        std::min<long long>(-*x, std::numeric_limits<uint32_t>::max()));
    if (auto err = frames::check_fanout(receivers, j.aux,
                                        static_cast<uint64_t>(j.aux2)))
      return err;
    return make_error(ec::too_large, "the group is too large for the payload");
  }
  // One reply per chunk of uids: uid, seq, binding values, uid, ...
  route_builder builder;
  for (auto& r : j.replies) {
    if (!is_array(r.get()) || r->elements % 3 != 0)
      return unexpected_reply("append");
    for (size_t i = 0; i < r->elements; i += 3) {
      auto seq = integer_of(r->element[i + 1]);
      if (!seq || *seq <= 0)
        return unexpected_reply("append");
      builder.add(text_of(r->element[i]), r->element[i + 2],
                  static_cast<uint64_t>(*seq));
    }
  }
  return caf::make_message(std::move(builder.result()));
}

/// Reads one inbox entry ({id, fields}); nullopt if it is malformed.
std::optional<stored_message> read_entry(const redisReply* entry) {
  if (!is_array(entry) || entry->elements != 2 || !is_array(entry->element[1]))
    return std::nullopt;
  auto id = text_of(entry->element[0]);
  auto seq = parse_count(id.substr(0, id.find('-')));
  if (!seq || *seq == 0)
    return std::nullopt;
  stored_message msg;
  msg.seq = *seq;
  auto fields = entry->element[1];
  bool has_kind = false;
  for (size_t k = 0; k + 1 < fields->elements; k += 2) {
    auto key = text_of(fields->element[k]);
    auto value = text_of(fields->element[k + 1]);
    if (key == "i") {
      msg.msg_id = value;
    } else if (key == "k") {
      auto kind = parse_count(value);
      if (!kind || *kind > static_cast<uint64_t>(delivery_kind::disconnect))
        return std::nullopt;
      msg.kind = static_cast<delivery_kind>(*kind);
      has_kind = true;
    } else if (key == "f") {
      msg.from = value;
    } else if (key == "g") {
      msg.group = value;
    } else if (key == "d") {
      msg.data = value;
    } else if (key == "t") {
      auto ts = parse_count(value);
      if (!ts)
        return std::nullopt;
      msg.ts = static_cast<int64_t>(*ts);
    }
  }
  // The payload is copied into frames as it is: it must be one JSON value.
  if (!has_kind || frames::check(msg) || !frames::json_depth_ok(msg.data) ||
      !nlohmann::json::accept(msg.data))
    return std::nullopt;
  return msg;
}

caf::expected<caf::message> answer_inbox(job& j) {
  auto& r = j.replies.front();
  if (!is_array(r.get()) || r->elements < 4)
    return unexpected_reply("inbox");
  auto number = [&](size_t i) {
    auto x = integer_of(r->element[i]);
    return x && *x > 0 ? static_cast<uint64_t>(*x) : uint64_t{0};
  };
  inbox_replay result;
  result.cursor = j.aux2 >= 0 ? static_cast<uint64_t>(j.aux2) : number(0);
  result.last_seq = number(1);
  auto oldest = number(2);
  result.too_old =
      result.cursor + 1 < oldest && result.cursor < result.last_seq;
  result.more = number(3) == 1;
  result.messages.reserve(r->elements - 4);
  auto seq = result.cursor;
  for (size_t i = 4; i < r->elements; ++i) {
    auto entry = r->element[i];
    auto msg = read_entry(entry);
    if (!msg || msg->seq <= seq) {
      // Not what our scripts write: never pass it on, and delete it so that
      // the next page (which starts after the last good one) skips it.
      auto id = is_array(entry) && entry->elements > 0
                    ? text_of(entry->element[0])
                    : std::string_view{};
      log_bad_content("inbox entry " + std::string{id} + " of " + j.key);
      if (!id.empty())
        j.followups.push_back(
            redis_command{std::nullopt, {"XDEL", j.key, std::string{id}}});
      continue;
    }
    seq = msg->seq;
    result.messages.push_back(std::move(*msg));
  }
  return caf::make_message(std::move(result));
}

caf::expected<caf::message> answer_nodes(job& j) {
  auto& r = j.replies.front();
  if (!is_array(r.get()) || r->elements % 2 != 1)
    return unexpected_reply("nodes");
  // Heartbeats are Redis TIME; callers compare them with their own clock, so
  // they get them on this process' clock: now minus the age Redis measured.
  auto redis_now = parse_count(text_of(r->element[0])).value_or(0);
  auto local_now = frames::now_ms();
  std::vector<node_info> result;
  for (size_t i = 1; i + 1 < r->elements; i += 2) {
    auto fields = r->element[i + 1];
    if (!is_array(fields))
      return unexpected_reply("nodes");
    node_info info;
    info.id = text_of(r->element[i]);
    for (size_t k = 0; k + 1 < fields->elements; k += 2) {
      auto key = text_of(fields->element[k]);
      auto value = text_of(fields->element[k + 1]);
      if (key == "listen")
        info.listen = value;
      else if (key == "cluster")
        info.cluster = value;
      else if (key == "incarnation")
        info.incarnation = parse_number<uint64_t>(value);
      else if (key == "connections")
        info.connections = parse_number<uint32_t>(value);
      else if (key == "hb")
        // Hostile values stay harmless: both times are in [0, 2^53).
        info.last_heartbeat_ms =
            local_now - (static_cast<int64_t>(redis_now) -
                         static_cast<int64_t>(parse_count(value).value_or(0)));
    }
    result.push_back(std::move(info));
  }
  std::sort(result.begin(), result.end(),
            [](auto& x, auto& y) { return x.id < y.id; });
  return caf::make_message(std::move(result));
}

caf::expected<caf::message> answer_health(job& j) {
  return caf::make_message(text_of(j.replies.front().get()) == "PONG");
}

// -- the actor state ----------------------------------------------------------

/// The state of the Redis STATE_STORE.
struct redis_store_state {
  static inline const char* name = "redis-store";

  redis_store_config cfg;
  /// Not `ok()` while Redis is unreachable.
  redis_connection conn;
  /// SHA1 of each script, from SCRIPT LOAD on the current connection.
  std::array<std::string, redis_scripts::script_count> shas;
  /// Requests taken from the mailbox, answered by the next `flush`.
  std::vector<job> batch;
  /// When the last connect was tried (at most one per retry interval).
  std::optional<steady_clock::time_point> last_attempt;
  /// The current interval between connects.
  milliseconds retry_interval{0};
  /// Why Redis is unreachable (none while connected).
  caf::error down_reason;
  /// Set by an exit message or when nobody holds a handle any more.
  bool quit = false;
  /// Reused by `append`.
  std::vector<std::string_view> argv_buffer;

  // -- connection -------------------------------------------------------------

  /// Connects unless tried less than a retry interval ago; true if connected.
  bool reconnect();

  /// Loads every script on the current connection.
  caf::error load_scripts();

  /// Drops a broken connection and remembers why (logged once per outage).
  void lost(const caf::error& reason);

  /// The error of requests while Redis is unreachable.
  caf::error unavailable() const;

  // -- batches ----------------------------------------------------------------

  /// Appends a command of a job to the output buffer.
  void append(const redis_command& cmd);

  /// Sends every queued job in one round trip and answers each.
  void flush();

  /// Reloads the scripts and reissues the commands that got NOSCRIPT; an
  /// error if the connection broke meanwhile.
  caf::error retry_noscript();

  /// Answers one job from its replies (or with `io_error`).
  void finish(job& j, const caf::error& io_error);

  // -- request builders -------------------------------------------------------

  job call(script s, std::vector<std::string> args, answer_fn f) const;
  job bind(std::vector<binding> bs, bool single) const;
  job unbind(const binding& b) const;
  job route(std::vector<std::string> uids) const;
  job join(std::string uid, std::string group, uint32_t max_groups) const;
  job leave(std::string uid, std::string group) const;
  job members(const std::string& group, uint32_t limit) const;
  job is_member(const std::string& group, const std::string& uid) const;
  job group_route(std::string group, std::string from) const;
  job node(const node_info& info) const;
  job nodes() const;
  job claim(std::string node, uint64_t incarnation, int64_t timeout_ms) const;
  job shutdown(std::string node, uint64_t incarnation) const;
  job health() const;
  job append(const delivery& d, bool group) const;
  job inbox(std::string uid, std::string device, int64_t since,
            uint32_t limit) const;
  job read(std::string uid, std::string device, uint64_t seq) const;
  job stats() const;
  job unread(const unread_watch& w) const;
};

bool redis_store_state::reconnect() {
  if (conn.ok())
    return true;
  auto now = steady_clock::now();
  if (last_attempt && now - *last_attempt < retry_interval)
    return false;
  last_attempt = now;
  auto failed = [&](const caf::error& reason) {
    lost(reason);
    auto slow = steady_clock::now() - now >= cfg.retry_interval;
    retry_interval =
        slow ? std::min(std::max(retry_interval * 2, cfg.retry_interval),
                        cfg.max_retry_interval)
             : cfg.retry_interval;
    return false;
  };
  auto fresh =
      redis_connection::open(cfg.url, cfg.connect_timeout, cfg.io_timeout);
  if (!fresh)
    return failed(fresh.error());
  conn = std::move(*fresh);
  if (auto err = load_scripts())
    return failed(err);
  if (down_reason)
    log::info("Redis at {} reachable again", cfg.url.redacted());
  down_reason = caf::none;
  retry_interval = cfg.retry_interval;
  return true;
}

caf::error redis_store_state::load_scripts() {
  for (size_t i = 0; i < redis_scripts::script_count; ++i) {
    auto sha = conn.load_script(
        redis_scripts::source(static_cast<script>(i), cfg.session_groups));
    if (!sha)
      return std::move(sha.error());
    shas[i] = std::move(*sha);
  }
  return caf::none;
}

void redis_store_state::lost(const caf::error& reason) {
  conn = redis_connection{};
  if (!down_reason)
    log::error("Redis at {} unreachable: {}", cfg.url.redacted(),
               error_message(reason));
  down_reason = reason;
}

caf::error redis_store_state::unavailable() const {
  return make_error(ec::unavailable,
                    "Redis at " + cfg.url.redacted() +
                        " unreachable: " + error_message(down_reason));
}

void redis_store_state::append(const redis_command& cmd) {
  auto& argv = argv_buffer;
  argv.clear();
  if (cmd.lua) {
    argv.emplace_back("EVALSHA");
    argv.emplace_back(shas[static_cast<size_t>(*cmd.lua)]);
    argv.emplace_back("0");
    argv.emplace_back(cfg.prefix);
  }
  for (auto& x : cmd.args)
    argv.emplace_back(x);
  conn.append(argv);
}

void redis_store_state::flush() {
  if (batch.empty())
    return;
  if (!reconnect()) {
    // Even requests that need no command fail: nothing works while down.
    auto err = unavailable();
    for (auto& j : batch)
      if (!j.when_down.empty())
        j.promise.deliver(std::move(j.when_down));
      else
        j.promise.deliver(err);
    batch.clear();
    return;
  }
  for (auto& j : batch)
    for (auto& cmd : j.commands)
      append(cmd);
  caf::error io_error;
  for (auto& j : batch) {
    for (size_t i = 0; i < j.commands.size() && !io_error; ++i) {
      if (auto reply = conn.read())
        j.replies.push_back(std::move(*reply));
      else
        io_error = std::move(reply.error());
    }
  }
  if (!io_error)
    io_error = retry_noscript();
  if (io_error) {
    lost(io_error);
    io_error = unavailable();
  }
  std::vector<redis_command> followups;
  for (auto& j : batch) {
    finish(j, io_error);
    std::move(j.followups.begin(), j.followups.end(),
              std::back_inserter(followups));
  }
  batch.clear();
  if (followups.empty() || !conn.ok())
    return;
  // Clean-ups (e.g. XDEL of invalid inbox entries) whose replies no one
  // waits for; an error reply is fine, a broken connection is an outage.
  for (auto& cmd : followups)
    append(cmd);
  for (size_t i = 0; i < followups.size(); ++i)
    if (auto reply = conn.read(); !reply) {
      lost(reply.error());
      return;
    }
}

caf::error redis_store_state::retry_noscript() {
  std::vector<redis_reply_ptr*> slots;
  std::vector<const redis_command*> cmds;
  for (auto& j : batch)
    for (size_t i = 0; i < j.replies.size(); ++i)
      if (is_noscript(*j.replies[i])) {
        slots.push_back(&j.replies[i]);
        cmds.push_back(&j.commands[i]);
      }
  if (slots.empty())
    return caf::none;
  log::warn("Redis lost our Lua scripts (NOSCRIPT): reloading them");
  if (auto err = load_scripts()) {
    if (!conn.ok())
      return err;
    // Redis answers but refuses the scripts: those requests fail.
    for (auto& j : batch)
      for (auto& r : j.replies)
        if (is_noscript(*r))
          j.error = err;
    return caf::none;
  }
  for (auto cmd : cmds)
    append(*cmd);
  // A slot left empty (the connection broke) fails its job as unavailable.
  for (auto slot : slots)
    slot->reset();
  for (auto slot : slots) {
    auto reply = conn.read();
    if (!reply)
      return std::move(reply.error());
    *slot = std::move(*reply);
  }
  return caf::none;
}

void redis_store_state::finish(job& j, const caf::error& io_error) {
  auto missing = [](const redis_reply_ptr& x) {
    return x == nullptr;
  };
  if (j.replies.size() < j.commands.size() ||
      std::any_of(j.replies.begin(), j.replies.end(), missing)) {
    if (!j.when_down.empty())
      j.promise.deliver(std::move(j.when_down));
    else
      j.promise.deliver(io_error ? io_error : unavailable());
    return;
  }
  if (j.error) {
    j.promise.deliver(std::move(j.error));
    return;
  }
  for (auto& r : j.replies)
    if (r->type == REDIS_REPLY_ERROR) {
      j.promise.deliver(redis_reply_error(*r));
      return;
    }
  j.promise.deliver(j.answer(j));
}

// -- request builders ---------------------------------------------------------

job redis_store_state::call(script s, std::vector<std::string> args,
                            answer_fn f) const {
  job result;
  result.commands.push_back(redis_command{s, std::move(args)});
  result.answer = f;
  return result;
}

job redis_store_state::bind(std::vector<binding> bs, bool single) const {
  job result;
  result.answer = single ? answer_bind : answer_ok;
  for (size_t i = 0; i < bs.size(); i += cfg.bindings_per_call) {
    redis_command cmd{script::bind, {}};
    auto end = std::min(bs.size(), i + cfg.bindings_per_call);
    cmd.args.reserve((end - i) * 4);
    for (auto k = i; k < end; ++k) {
      cmd.args.push_back(std::move(bs[k].uid));
      cmd.args.push_back(std::move(bs[k].conn));
      cmd.args.push_back(std::move(bs[k].node));
      cmd.args.push_back(std::to_string(bs[k].incarnation));
    }
    result.commands.push_back(std::move(cmd));
  }
  return result;
}

job redis_store_state::unbind(const binding& b) const {
  return call(script::unbind,
              {b.uid, b.conn, b.node, std::to_string(b.incarnation)},
              answer_flag);
}

job redis_store_state::route(std::vector<std::string> uids) const {
  // Each uid once, in first-seen order; one HVALS per uid, all pipelined
  // (plain HVALS costs Redis far less than a script doing the same).
  job result;
  result.answer = answer_route;
  auto key_prefix = cfg.prefix + ":u:";
  result.aux = key_prefix.size();
  result.commands.reserve(uids.size());
  std::unordered_set<std::string_view> seen;
  for (auto& uid : uids)
    if (seen.insert(uid).second)
      result.commands.push_back(
          redis_command{std::nullopt, {"HVALS", key_prefix + uid}});
  return result;
}

job redis_store_state::join(std::string uid, std::string group,
                            uint32_t max_groups) const {
  return call(script::join,
              {std::move(uid), std::move(group), std::to_string(max_groups),
               std::to_string(cfg.max_group_members)},
              answer_join);
}

job redis_store_state::leave(std::string uid, std::string group) const {
  return call(script::leave, {std::move(uid), std::move(group)}, answer_ok);
}

job redis_store_state::members(const std::string& group, uint32_t limit) const {
  job result;
  result.commands.push_back(
      redis_command{std::nullopt, {"SMEMBERS", cfg.prefix + ":g:" + group}});
  result.answer = answer_members;
  result.aux = limit;
  return result;
}

job redis_store_state::is_member(const std::string& group,
                                 const std::string& uid) const {
  job result;
  result.commands.push_back(redis_command{
      std::nullopt, {"SISMEMBER", cfg.prefix + ":g:" + group, uid}});
  result.answer = answer_flag;
  return result;
}

job redis_store_state::group_route(std::string group, std::string from) const {
  return call(script::group_route, {std::move(group), std::move(from)},
              answer_group_route);
}

job redis_store_state::node(const node_info& info) const {
  return call(script::node,
              {info.id, info.listen, info.cluster,
               std::to_string(info.incarnation),
               std::to_string(info.connections), std::to_string(cfg.lease_ms)},
              answer_flag);
}

job redis_store_state::nodes() const {
  return call(script::nodes, {}, answer_nodes);
}

job redis_store_state::claim(std::string node, uint64_t incarnation,
                             int64_t timeout_ms) const {
  return call(script::claim,
              {std::move(node), std::to_string(incarnation),
               std::to_string(timeout_ms)},
              answer_claim);
}

job redis_store_state::shutdown(std::string node, uint64_t incarnation) const {
  return call(script::shutdown, {std::move(node), std::to_string(incarnation)},
              answer_offline);
}

job redis_store_state::stats() const {
  job result;
  result.commands.push_back(
      redis_command{std::nullopt, {"GET", cfg.prefix + ":users"}});
  result.answer = answer_stats;
  return result;
}

job redis_store_state::unread(const unread_watch& w) const {
  job result;
  result.answer = answer_unread;
  for (size_t i = 0; i < w.uids.size() && i < w.seqs.size(); ++i) {
    result.commands.push_back(redis_command{
        std::nullopt, {"HVALS", cfg.prefix + ":cur:" + w.uids[i]}});
    result.seqs.push_back(w.seqs[i]);
  }
  return result;
}

job redis_store_state::append(const delivery& d, bool group) const {
  job result;
  result.answer = answer_append;
  result.aux = d.data.size();
  result.aux2 = static_cast<int64_t>(std::min<uint64_t>(
      cfg.max_fanout_bytes, std::numeric_limits<int64_t>::max()));
  std::vector<std::string> head{
      std::to_string(cfg.inbox_max_messages),
      std::to_string(frames::now_ms() - cfg.inbox_max_age_ms),
      std::to_string(std::max<int64_t>(cfg.inbox_max_age_ms, 1)),
      std::to_string(cfg.max_fanout_bytes),
      d.msg_id,
      std::to_string(static_cast<int>(d.kind)),
      d.from,
      d.group,
      d.data,
      std::to_string(d.ts),
      std::string{},
      std::to_string(cfg.idempotency_window_ms),
      "1"};
  if (!d.idem.empty() && cfg.idempotency_window_ms > 0)
    head[10] = std::to_string(d.from.size()) + ':' + d.from + ':' + d.idem;
  if (group) {
    result.commands.push_back(redis_command{script::group_append, head});
    return result;
  }
  // Each uid once; the budget is checked before anything is stored.
  std::vector<std::string_view> uids;
  uids.reserve(d.uids.size());
  std::unordered_set<std::string_view> seen;
  for (auto& uid : d.uids)
    if (seen.insert(uid).second)
      uids.emplace_back(uid);
  if (auto err = frames::check_fanout(uids.size(), d.data.size(),
                                      cfg.max_fanout_bytes)) {
    result.error = std::move(err);
    return result;
  }
  for (size_t i = 0; i < uids.size(); i += cfg.uids_per_call) {
    auto end = std::min(uids.size(), i + cfg.uids_per_call);
    redis_command cmd{script::append, head};
    if (i > 0)
      cmd.args[12] = "0"; // not the first call: the idem is claimed
    cmd.args.insert(cmd.args.end(), uids.begin() + i, uids.begin() + end);
    result.commands.push_back(std::move(cmd));
  }
  if (result.commands.empty()) // no receiver: one call that stores nothing
    result.commands.push_back(redis_command{script::append, std::move(head)});
  return result;
}

job redis_store_state::inbox(std::string uid, std::string device, int64_t since,
                             uint32_t limit) const {
  job result;
  result.key = cfg.prefix + ":in:" + uid;
  result.aux2 = since;
  result.commands.push_back(
      redis_command{script::inbox,
                    {std::move(uid), std::move(device), std::to_string(since),
                     std::to_string(std::min(limit, cfg.max_replay_page))}});
  result.answer = answer_inbox;
  return result;
}

job redis_store_state::read(std::string uid, std::string device,
                            uint64_t seq) const {
  return call(script::read,
              {std::move(uid), std::move(device), std::to_string(seq),
               std::to_string(std::max<int64_t>(cfg.inbox_max_age_ms, 1)),
               std::to_string(frames::max_devices_per_uid)},
              answer_read);
}

job redis_store_state::health() const {
  job result;
  result.commands.push_back(redis_command{std::nullopt, {"PING"}});
  result.answer = answer_health;
  result.when_down = caf::make_message(false);
  return result;
}

// -- the actor ----------------------------------------------------------------

using redis_store_actor =
    caf::stateful_actor<redis_store_state, caf::blocking_actor>;

/// Takes one message from the mailbox into the batch, waiting at most
/// `timeout`; runs `on_timeout` if none came.
template<class F>
void receive_one(redis_store_actor* self, caf::duration timeout, F on_timeout) {
  auto& st = self->state;
  auto add = [self](job j) {
    j.promise = self->make_response_promise();
    if (j.commands.empty() && j.error) { // refused before any round trip
      j.promise.deliver(std::move(j.error));
      return;
    }
    self->state.batch.push_back(std::move(j));
  };
  self->receive(
      [&](atom::bind, binding& b) { add(st.bind({std::move(b)}, true)); },
      [&](atom::unbind, const binding& b) { add(st.unbind(b)); },
      [&](atom::rebind, std::vector<binding>& bs) {
        add(st.bind(std::move(bs), false));
      },
      [&](atom::route, std::vector<std::string>& uids) {
        add(st.route(std::move(uids)));
      },
      [&](atom::join, std::string& uid, std::string& group,
          uint32_t max_groups) {
        add(st.join(std::move(uid), std::move(group), max_groups));
      },
      [&](atom::leave, std::string& uid, std::string& group) {
        add(st.leave(std::move(uid), std::move(group)));
      },
      [&](atom::members, const std::string& group, uint32_t limit) {
        add(st.members(group, limit));
      },
      [&](atom::is_member, const std::string& group, const std::string& uid) {
        add(st.is_member(group, uid));
      },
      [&](atom::group_route, std::string& group, std::string& from) {
        add(st.group_route(std::move(group), std::move(from)));
      },
      [&](atom::node, const node_info& info) { add(st.node(info)); },
      [&](atom::nodes) { add(st.nodes()); },
      [&](atom::claim, std::string& node, uint64_t incarnation,
          int64_t timeout_ms) {
        add(st.claim(std::move(node), incarnation, timeout_ms));
      },
      [&](atom::shutdown, std::string& node, uint64_t incarnation) {
        add(st.shutdown(std::move(node), incarnation));
      },
      [&](atom::health) { add(st.health()); },
      [&](atom::stats) { add(st.stats()); },
      [&](atom::unread, const unread_watch& w) { add(st.unread(w)); },
      [&](atom::append, const delivery& d) { add(st.append(d, false)); },
      [&](atom::group_append, const delivery& d) { add(st.append(d, true)); },
      [&](atom::inbox, std::string& uid, std::string& device, int64_t since,
          uint32_t limit) {
        add(st.inbox(std::move(uid), std::move(device), since, limit));
      },
      [&](atom::read, std::string& uid, std::string& device, uint64_t seq) {
        add(st.read(std::move(uid), std::move(device), seq));
      },
      // Like event-based actors, ignore exit messages of reason `normal`.
      [&](caf::exit_msg& x) { st.quit = st.quit || x.reason != caf::none; },
      caf::others >> [](caf::message_view&) -> caf::result<caf::message> {
        return caf::make_error(caf::sec::unexpected_message);
      },
      caf::after(timeout) >> on_timeout);
}

/// The STORE's thread: waits for a request, takes what else is queued, sends
/// it all in one round trip, answers.
void redis_store(redis_store_actor* self, redis_store_config cfg) {
  block_sigpipe_in_this_thread();
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.retry_interval = st.cfg.retry_interval;
  st.batch.reserve(st.cfg.max_batch);
  st.reconnect();
  while (!st.quit) {
    auto idle = st.conn.ok() ? caf::duration{std::chrono::seconds(1)}
                             : caf::duration{st.retry_interval};
    receive_one(self, idle, [self] {
      auto& st = self->state;
      st.reconnect();
      // Like an event-based actor, quit once nobody can send to us: the
      // only strong reference left is this thread's own.
      if (self->ctrl()->strong_refs.load() <= 1)
        st.quit = true;
    });
    // Whatever is queued joins this round trip; with a batch delay, also
    // what arrives within it (each round trip costs Redis and this thread
    // a wake-up and two system calls, however few requests it carries).
    bool more = true;
    auto deadline = steady_clock::now() + st.cfg.batch_delay;
    while (more && !st.quit && st.batch.size() < st.cfg.max_batch) {
      auto left = std::chrono::duration_cast<std::chrono::microseconds>(
          deadline - steady_clock::now());
      receive_one(self,
                  caf::duration{std::max(left, std::chrono::microseconds(0))},
                  [&more] { more = false; });
    }
    st.flush();
  }
}

// -- the layout guard ---------------------------------------------------------

/// `text` with the glob characters of SCAN MATCH escaped.
std::string glob_escape(std::string_view text) {
  std::string result;
  for (auto ch : text) {
    if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\')
      result += '\\';
    result += ch;
  }
  return result;
}

/// Looks for durable keys of layout 1 (cursor strings `P:cur:<uid>:<dev>`,
/// inbox streams with time-based ids): the name of one, or an empty string.
/// Scans the key space once (SCAN, 1000 keys a step, never blocking Redis)
/// and decides on the first 16 durable keys it finds.
caf::expected<std::string> find_layout_1(redis_connection& conn,
                                         const std::string& prefix) {
  auto pattern = glob_escape(prefix) + ":*";
  auto cur = prefix + ":cur:";
  auto in = prefix + ":in:";
  std::string cursor = "0";
  size_t checked = 0;
  do {
    auto r = conn.command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
    if (!r)
      return std::move(r.error());
    auto x = r->get();
    if (!is_array(x) || x->elements != 2 || !is_array(x->element[1]))
      return x->type == REDIS_REPLY_ERROR ? redis_reply_error(*x)
                                          : unexpected_reply("SCAN");
    cursor = std::string{text_of(x->element[0])};
    auto keys = x->element[1];
    for (size_t i = 0; i < keys->elements && checked < 16; ++i) {
      auto key = std::string{text_of(keys->element[i])};
      if (key.compare(0, cur.size(), cur) == 0) {
        ++checked;
        auto type = conn.command({"TYPE", key});
        if (!type)
          return std::move(type.error());
        if (text_of(type->get()) == "string")
          return key;
      } else if (key.compare(0, in.size(), in) == 0) {
        ++checked;
        auto first = conn.command({"XRANGE", key, "-", "+", "COUNT", "1"});
        if (!first)
          return std::move(first.error());
        auto e = first->get();
        if (!is_array(e) || e->elements != 1)
          continue;
        auto entry = e->element[0];
        if (!is_array(entry) || entry->elements != 2 ||
            !is_array(entry->element[1]))
          continue;
        auto id = text_of(entry->element[0]);
        auto fields = entry->element[1];
        for (size_t k = 0; k + 1 < fields->elements; k += 2)
          if (text_of(fields->element[k]) == "s" &&
              id.substr(0, id.find('-')) != text_of(fields->element[k + 1]))
            return key;
      }
    }
    if (checked >= 16)
      break;
  } while (cursor != "0" && !cursor.empty());
  return std::string{};
}

/// Refuses a Redis whose durable keys have another layout than ours
/// (P:layout); writes P:layout on a Redis that has none of them yet.
caf::error check_layout(redis_connection& conn, const redis_store_config& cfg) {
  auto key = cfg.prefix + ":layout";
  auto where =
      "Redis at " + cfg.url.redacted() + ", key prefix '" + cfg.prefix + "'";
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto r = conn.command({"GET", key});
    if (!r)
      return std::move(r.error());
    auto x = r->get();
    if (x->type == REDIS_REPLY_ERROR)
      return make_error(ec::unavailable,
                        where + ": " + error_message(redis_reply_error(*x)));
    if (x->type == REDIS_REPLY_STRING) {
      if (text_of(x) == layout_version)
        return caf::none;
      return make_error(
          ec::unavailable,
          where + " holds key layout '" + std::string{text_of(x)} +
              "', this build uses layout " + std::string{layout_version} +
              ": use another redis-prefix or a matching build");
    }
    if (x->type != REDIS_REPLY_NIL)
      return make_error(ec::unavailable, where + ": " + key + " is no string");
    auto old = find_layout_1(conn, cfg.prefix);
    if (!old)
      return std::move(old.error());
    if (!old->empty())
      return make_error(
          ec::unavailable,
          where + " holds inboxes of an older key layout (e.g. '" + *old +
              "'): stop the older nodes and delete the keys " + cfg.prefix +
              ":in:*, " + cfg.prefix + ":seq:* and " + cfg.prefix +
              ":cur:* (README, \"Redis key layout\"), or use another "
              "redis-prefix");
    auto set =
        conn.command({"SET", key, std::string_view{layout_version}, "NX"});
    if (!set)
      return std::move(set.error());
    if ((*set)->type == REDIS_REPLY_ERROR)
      return make_error(ec::unavailable,
                        where + ": " + error_message(redis_reply_error(**set)));
    // Written, or another node wrote it meanwhile: read it again.
  }
  return caf::none;
}

} // namespace

caf::expected<state_store_actor> spawn_redis_store(caf::actor_system& sys,
                                                   const options& opts) {
  redis_store_config cfg;
  cfg.url = opts.redis;
  cfg.prefix = opts.redis_prefix;
  cfg.lease_ms = std::max<int64_t>(opts.node_timeout.count(), 1);
  cfg.inbox_max_messages = opts.inbox_max_messages;
  cfg.inbox_max_age_ms = opts.inbox_max_age.count();
  cfg.max_fanout_bytes = opts.max_fanout_bytes;
  cfg.max_group_members = opts.max_group_members;
  cfg.session_groups = opts.group_membership == "session";
  cfg.idempotency_window_ms = opts.idempotency_window.count();
  cfg.io_timeout = redis_io_timeout(opts.request_timeout);
  cfg.batch_delay = opts.store_batch_delay;
  auto conn =
      redis_connection::open(cfg.url, cfg.connect_timeout, cfg.io_timeout);
  if (!conn)
    return make_error(ec::unavailable, "cannot reach Redis at " +
                                           cfg.url.redacted() + ": " +
                                           error_message(conn.error()));
  // Fails early where scripting is disabled or the server is too old.
  for (size_t i = 0; i < redis_scripts::script_count; ++i)
    if (auto sha = conn->load_script(
            redis_scripts::source(static_cast<script>(i), cfg.session_groups));
        !sha)
      return make_error(ec::unavailable, "cannot use Redis at " +
                                             cfg.url.redacted() + ": " +
                                             error_message(sha.error()));
  if (auto err = check_layout(*conn, cfg))
    return err;
  log::info("state store: Redis at {}, key prefix '{}'", cfg.url.redacted(),
            cfg.prefix);
  auto hdl = sys.spawn<caf::detached>(redis_store, std::move(cfg));
  return caf::actor_cast<state_store_actor>(hdl);
}

} // namespace wsc

// -- The Redis STATE_STORE ----------------------------------------------------
//
// Key layout 3. P is `redis-prefix` (default "wscluster"). Every key that one
// script touches shares a hash tag ({u:<uid>}, {g:<group>}, {n:<node>}), so
// the same scripts run on a single Redis and on a Redis Cluster
// (redis_keys.hpp builds the names and says why they cannot collide).
//
//   P:{u:<uid>}:b      hash  conn id -> "<node>|<incarnation>": the uid's
//                            bindings. A uid is online iff this hash exists.
//   P:{u:<uid>}:g      set   groups of a uid.
//   P:{u:<uid>}:seq    string the uid's last inbox sequence number.
//   P:{u:<uid>}:in     stream the uid's inbox; entry ids are `<seq>-0`, so a
//                            replay reads `XRANGE <cursor+1>-0 + COUNT n`.
//   P:{u:<uid>}:cur    hash  device -> the last seq it confirmed (`read`).
//   P:<n>:{u:<uid>}:idem:<idem> string, the msg_id of the durable send or
//                            publish of `uid` (n = its length in bytes; the
//                            API's uid is empty) that carried `idem`;
//                            expires idempotency-window after it (SET NX PX,
//                            script `idem`, in the sender's slot).
//   P:{g:<group>}:m    set   member uids of a group.
//   P:{n:<node>}:h     hash  listen, cluster, incarnation, connections,
//                            hb (last heartbeat, ms, Redis server TIME),
//                            claimed (set while a claim cleans the node up).
//   P:{n:<node>}:nb    set   "<incarnation>,<uid>,<conn>": every binding of a
//                            node, to remove them when the node goes. The
//                            separator is ',' because uids and conn ids never
//                            contain one (they may contain '|').
//   P:{n:<node>}:ni    set   incarnations of the node that (may) have
//                            entries in nb, so a heartbeat finds a
//                            predecessor's leftovers without scanning nb.
//   P:{n:<node>}:lease:<inc> string, expires node-timeout after the
//                            incarnation's last heartbeat (SET PX).
//   P:nodes            set   registered node ids.
//   P:users            string uids online (approximate after crashes).
//   P:layout           string the layout version of the keys above (3).
//
// Every per-uid key of durable delivery (seq, in, cur) expires
// inbox-max-age after the uid's last message (cur also after its last read);
// a counter that starts over (INCR gives 1) deletes what is left of the
// inbox and cursors. Cursors are a hash per uid, not `cur:<uid>:<device>`,
// which let uid "a" + device "b:c" and uid "a:b" + device "c" collide.
//
// Empty sets and hashes do not exist (Redis deletes them). Incarnations are
// written in decimal. Node ids are [A-Za-z0-9_-]; uids, groups and conn ids
// may hold any byte but ',', whitespace and control characters; everything
// travels as binary-safe argv (nothing is interpolated into commands).
//
// Every change of more than one key of one slot is one Lua script
// (redis_scripts.hpp), run with EVALSHA and KEYS[1] in that slot; reads are
// plain pipelined commands. Operations that span slots run as several
// stages (request builders below: the order of the steps and what a crash
// between two of them leaves). The SHAs come from SCRIPT LOAD at each
// (re)connect (on every master); a NOSCRIPT reply reloads the scripts and
// retries once.
//
// Heartbeats and cleanup: `node` renews P:{n:<id>}:h and the lease, and
// sweeps the bindings of earlier incarnations of the same id whose lease
// expired (a restart under the same id must not keep its predecessor's
// bindings). It never touches the current incarnation, nor one whose lease
// still runs. The sweep is cheap: the node script reads ni (usually one
// element, the current incarnation) and only a stale incarnation makes the
// STORE read nb. `claim` cleans up a silent node (lease gone or heartbeat
// older than the timeout by Redis TIME) for exactly one caller at a time;
// `shutdown` does the same unconditionally.
//
// Execution: the STORE is a detached blocking actor owning one hiredis
// connection (single Redis) or one redis_cluster client (one connection per
// master, `redis=cluster://...`); with scheduler-policy=loop and one Redis
// it is an actor on event loop 0 instead (redis_store_loop.cpp), with the
// same batches. It waits for a request, takes whatever
// else is queued (up to 256 requests), and runs their stages in lockstep:
// stage k of every job shares one round trip (per master), then each job is
// answered through its response promise.

#include "adapters/redis_store.hpp"

#include "actors/error.hpp"
#include "actors/frames.hpp"
#include "adapters/redis_cluster.hpp"
#include "adapters/redis_connection.hpp"
#include "adapters/redis_keys.hpp"
#include "adapters/redis_scripts.hpp"
#include "adapters/redis_store_state.hpp"
#include "loop/loop_coordinator.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace wsc::redis_store_impl {

using redis_scripts::script;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

/// The version of the key layout this build writes (P:layout). Layout 1
/// (no P:layout key) kept inbox streams with time-based ids and cursors as
/// strings `P:cur:<uid>:<device>`; layout 2 had the same names without hash
/// tags (`P:u:<uid>`, `P:in:<uid>`...), so its scripts spanned slots.
constexpr std::string_view layout_version = "3";

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
      auto [i, added] = index_.emplace(std::string{node}, result_.nodes.size());
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
  std::unordered_map<std::string, size_t> index_;
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

caf::expected<caf::message> answer_flag(job& j) {
  auto x = integer_of(j.replies.front().get());
  if (!x)
    return unexpected_reply("a script");
  return caf::make_message(*x == 1);
}

/// The strings of an array reply, from element `first` on.
std::vector<std::string> strings_of(const redisReply* r, size_t first) {
  std::vector<std::string> result;
  if (!is_array(r))
    return result;
  for (size_t i = first; i < r->elements; ++i)
    if (auto text = text_of(r->element[i]); !text.empty())
      result.emplace_back(text);
  return result;
}

caf::expected<caf::message> answer_stats(job& j) {
  // GET P:users: nil before the first uid came online.
  auto text = text_of(j.replies.front().get());
  auto n = parse_number<int64_t>(text);
  return caf::make_message(static_cast<uint64_t>(std::max<int64_t>(n, 0)));
}

caf::expected<caf::message> answer_unread(job& j, std::vector<uint64_t> seqs) {
  // One HVALS of the uid's cursors per copy.
  std::vector<bool> result;
  result.reserve(j.replies.size());
  for (size_t i = 0; i < j.replies.size(); ++i) {
    auto r = j.replies[i].get();
    auto seq = i < seqs.size() ? seqs[i] : 0;
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

caf::expected<caf::message> answer_members(job& j, size_t limit) {
  auto& r = j.replies.front();
  if (!is_array(r.get()))
    return unexpected_reply("SMEMBERS");
  std::vector<std::string> uids;
  uids.reserve(r->elements);
  for (size_t i = 0; i < r->elements; ++i)
    uids.emplace_back(text_of(r->element[i]));
  auto n = std::min(uids.size(), limit);
  std::partial_sort(uids.begin(), uids.begin() + n, uids.end());
  uids.resize(n);
  return caf::make_message(std::move(uids));
}

/// Adds the replies of `append` calls (uid, seq, binding values, ...) to a
/// route table.
caf::error add_appended(route_builder& builder,
                        const std::vector<redis_reply_ptr>& replies) {
  for (auto& r : replies) {
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
  return caf::none;
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

caf::expected<caf::message> answer_inbox(job& j, const std::string& key,
                                         int64_t since) {
  auto& r = j.replies.front();
  if (!is_array(r.get()) || r->elements < 4)
    return unexpected_reply("inbox");
  auto number = [&](size_t i) {
    auto x = integer_of(r->element[i]);
    return x && *x > 0 ? static_cast<uint64_t>(*x) : uint64_t{0};
  };
  inbox_replay result;
  result.cursor = since >= 0 ? static_cast<uint64_t>(since) : number(0);
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
      log_bad_content("inbox entry " + std::string{id} + " of " + key);
      if (!id.empty())
        j.followups.push_back(
            redis_command{std::nullopt, key, {"XDEL", key, std::string{id}}});
      continue;
    }
    seq = msg->seq;
    result.messages.push_back(std::move(*msg));
  }
  return caf::make_message(std::move(result));
}

caf::expected<caf::message> answer_health(job& j) {
  return caf::make_message(text_of(j.replies.front().get()) == "PONG");
}

bool redis_store_state::reconnect() {
  if (connected())
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
  if (is_cluster()) {
    auto fresh = redis_cluster::open(cfg.cluster);
    if (!fresh)
      return failed(fresh.error());
    cluster.emplace(std::move(*fresh));
    promotions_seen = 0;
  } else {
    auto fresh =
        redis_connection::open(cfg.url, cfg.connect_timeout, cfg.io_timeout);
    if (!fresh)
      return failed(fresh.error());
    conn = std::move(*fresh);
  }
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
    auto src =
        redis_scripts::source(static_cast<script>(i), cfg.session_groups);
    auto sha = is_cluster() ? cluster->load_script(src) : conn.load_script(src);
    if (!sha)
      return std::move(sha.error());
    shas[i] = std::move(*sha);
  }
  return caf::none;
}

void redis_store_state::lost(const caf::error& reason) {
  conn = redis_connection{};
  cluster.reset();
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

void redis_store_state::argv_of(const redis_command& cmd,
                                std::vector<std::string_view>& argv) {
  argv.clear();
  if (cmd.lua) {
    argv.emplace_back("EVALSHA");
    argv.emplace_back(shas[static_cast<size_t>(*cmd.lua)]);
    argv.emplace_back("1");
    argv.emplace_back(cmd.key);
    argv.emplace_back(cfg.prefix);
  }
  for (auto& x : cmd.args)
    argv.emplace_back(x);
}

std::vector<caf::expected<redis_reply_ptr>>
redis_store_state::run(const std::vector<const redis_command*>& cmds,
                       std::vector<int64_t>* replicas) {
  std::vector<caf::expected<redis_reply_ptr>> result;
  result.reserve(cmds.size());
  std::vector<int64_t> acked(cmds.size(), -1);
  if (replicas != nullptr)
    *replicas = acked;
  if (cmds.empty())
    return result;
  if (!reconnect()) {
    for (size_t i = 0; i < cmds.size(); ++i)
      result.emplace_back(unavailable());
    return result;
  }
  // Sends `which` (indices into cmds) and stores their replies in `result`.
  std::vector<std::vector<std::string_view>> argvs;
  auto send = [&](const std::vector<size_t>& which) {
    argvs.resize(which.size());
    for (size_t k = 0; k < which.size(); ++k)
      argv_of(*cmds[which[k]], argvs[k]);
    if (is_cluster()) {
      std::vector<redis_cluster_command> ccs;
      ccs.reserve(which.size());
      for (size_t k = 0; k < which.size(); ++k)
        ccs.push_back(redis_cluster_command{cmds[which[k]]->key, argvs[k],
                                            cmds[which[k]]->wait});
      std::vector<int64_t> confirmed;
      auto replies = cluster->execute(ccs, &confirmed);
      for (size_t k = 0; k < which.size(); ++k) {
        acked[which[k]] = confirmed[k];
        if (replies[k])
          result[which[k]] = std::move(*replies[k]);
        else
          result[which[k]] = make_error(
              ec::unavailable, "Redis Cluster at " + cfg.url.redacted() + ": " +
                                   error_message(replies[k].error()));
      }
      return;
    }
    // One WAIT after the last command confirms every write before it.
    auto wait = cfg.durable_replicas > 0 &&
                std::any_of(which.begin(), which.end(),
                            [&](size_t i) { return cmds[i]->wait; });
    for (auto& argv : argvs)
      conn.append(argv);
    if (wait)
      conn.append(redis_wait{cfg.durable_replicas, cfg.durable_replicas_timeout}
                      .argv());
    caf::error io_error;
    for (size_t k = 0; k < which.size(); ++k) {
      if (!io_error) {
        if (auto reply = conn.read()) {
          result[which[k]] = std::move(*reply);
          continue;
        } else {
          io_error = std::move(reply.error());
          lost(io_error);
        }
      }
      result[which[k]] = unavailable();
    }
    if (!wait || io_error)
      return;
    // The commands ran; without a WAIT answer they count as on no replica.
    int64_t n = 0;
    if (auto reply = conn.read())
      n = parse_wait_reply(**reply).value_or(0);
    else
      lost(reply.error());
    for (auto i : which)
      if (cmds[i]->wait)
        acked[i] = n;
  };
  std::vector<size_t> all(cmds.size());
  for (size_t i = 0; i < cmds.size(); ++i) {
    all[i] = i;
    result.emplace_back(redis_reply_ptr{});
  }
  // Hands the replica counts out (and checks them) however `run` returns.
  auto done = [&] {
    if (cfg.durable_replicas > 0)
      check_replicas(cmds, result, acked);
    if (replicas != nullptr)
      *replicas = std::move(acked);
    return std::move(result);
  };
  send(all);
  std::vector<size_t> noscript;
  for (size_t i = 0; i < cmds.size(); ++i)
    if (result[i] && *result[i] && is_noscript(**result[i]))
      noscript.push_back(i);
  if (noscript.empty() || !connected())
    return done();
  log::warn("Redis lost our Lua scripts (NOSCRIPT): reloading them");
  if (auto err = load_scripts()) {
    if (!is_cluster() && !conn.ok())
      lost(err);
    // Redis answers but refuses the scripts: those commands fail.
    for (auto i : noscript)
      result[i] = err;
    return done();
  }
  send(noscript);
  return done();
}

void redis_store_state::check_replicas(
    const std::vector<const redis_command*>& cmds,
    const std::vector<caf::expected<redis_reply_ptr>>& out,
    const std::vector<int64_t>& replicas) {
  uint64_t short_now = 0;
  uint64_t confirmed = 0;
  int64_t least = cfg.durable_replicas;
  for (size_t i = 0; i < cmds.size(); ++i) {
    // Only writes that ran: an error reply (NOSCRIPT...) stored nothing.
    if (!cmds[i]->wait || !out[i] || !*out[i] ||
        (*out[i])->type == REDIS_REPLY_ERROR)
      continue;
    if (replicas[i] >= cfg.durable_replicas) {
      ++confirmed;
      continue;
    }
    ++short_now;
    least = std::min(least, std::max<int64_t>(replicas[i], 0));
  }
  wait_shortfalls += short_now;
  if (short_now > 0 && !short_of_replicas)
    log::warn("durable writes reach {} of durable-replicas={} replicas "
              "within {}ms: their receivers are answered unavailable "
              "({} such writes so far)",
              least, cfg.durable_replicas, cfg.durable_replicas_timeout.count(),
              wait_shortfalls);
  else if (short_now == 0 && confirmed > 0 && short_of_replicas)
    log::info("durable writes reach durable-replicas={} replicas again ({} "
              "writes fell short)",
              cfg.durable_replicas, wait_shortfalls);
  if (short_now > 0)
    short_of_replicas = true;
  else if (confirmed > 0)
    short_of_replicas = false;
}

void redis_store_state::add(job j) {
  if (j.commands.empty() && j.error) { // refused before any round trip
    j.promise.deliver(std::move(j.error));
    return;
  }
  batch.push_back(std::move(j));
}

void redis_store_state::fail_batch() {
  // Even requests that need no command fail: nothing works while down.
  auto err = unavailable();
  for (auto& j : batch)
    if (!j.when_down.empty())
      j.promise.deliver(std::move(j.when_down));
    else
      j.promise.deliver(err);
  batch.clear();
}

void redis_store_state::begin_flight(flight& f) {
  // At most max-batch jobs (the thread never queues more; on the loop the
  // batch grows while one is in flight).
  auto n = std::min(batch.size(), cfg.max_batch);
  f.jobs.clear();
  std::move(batch.begin(), batch.begin() + static_cast<ptrdiff_t>(n),
            std::back_inserter(f.jobs));
  batch.erase(batch.begin(), batch.begin() + static_cast<ptrdiff_t>(n));
  f.active.clear();
  for (auto& j : f.jobs)
    f.active.push_back(&j);
  f.stage = 0;
  f.followups.clear();
}

void redis_store_state::stage_commands(flight& f) {
  // Stages in lockstep: stage k of every job shares one round trip (per
  // master), in batch order.
  std::vector<redis_command*> staged;
  for (auto j : f.active)
    for (auto& cmd : j->commands)
      staged.push_back(&cmd);
  if (is_cluster()) {
    f.out.clear();
    f.out.commands.assign(staged.begin(), staged.end());
  } else {
    // A batch holds no more uids than one append call (uids-per-call):
    // Redis serves others between calls.
    append_batch_limits limits;
    limits.max_uids = cfg.uids_per_call;
    pack_appends(staged, limits, f.out);
  }
}

void redis_store_state::end_stage(
    flight& f, std::vector<caf::expected<redis_reply_ptr>>& replies,
    std::vector<int64_t>& replicas) {
  unpack_replies(f.out, replies, replicas);
  size_t next = 0;
  std::vector<job*> still;
  for (auto j : f.active) {
    j->replies.clear();
    j->replicas.clear();
    j->stage_error = caf::none;
    for (size_t i = 0; i < j->commands.size(); ++i, ++next) {
      j->replicas.push_back(replicas[next]);
      auto& r = replies[next];
      if (!r) {
        if (!j->stage_error)
          j->stage_error = r.error();
        j->replies.emplace_back();
      } else {
        if (!j->stage_error && *r && (*r)->type == REDIS_REPLY_ERROR)
          j->stage_error = redis_reply_error(**r);
        j->replies.push_back(std::move(*r));
      }
    }
    j->commands.clear();
    std::optional<caf::expected<caf::message>> answer;
    if (f.stage >= 16)
      answer = caf::expected<caf::message>{
          make_error(ec::internal, "state store: too many stages")};
    else
      answer = j->step(*j);
    if (answer) {
      if (!*answer && !j->when_down.empty() &&
          answer->error() == ec::unavailable)
        j->promise.deliver(std::move(j->when_down));
      else if (*answer)
        j->promise.deliver(std::move(**answer));
      else
        j->promise.deliver(std::move(answer->error()));
      std::move(j->followups.begin(), j->followups.end(),
                std::back_inserter(f.followups));
    } else {
      still.push_back(j);
    }
  }
  f.active.swap(still);
  ++f.stage;
}

void redis_store_state::flush() {
  if (batch.empty())
    return;
  if (!reconnect())
    return fail_batch();
  flight f;
  begin_flight(f);
  for (stage_commands(f); !f.active.empty(); stage_commands(f)) {
    std::vector<int64_t> replicas;
    auto replies = run(f.out.commands, &replicas);
    end_stage(f, replies, replicas);
  }
  if (f.followups.empty() || !connected())
    return;
  // Clean-ups whose replies no one waits for; an error is fine: what they
  // leave behind is harmless or repaired later (see the builders).
  f.out.clear();
  for (auto& cmd : f.followups)
    f.out.commands.push_back(&cmd);
  run(f.out.commands);
}

// -- request builders ---------------------------------------------------------
//
// Operations that span slots are split into one call per slot; the order of
// the calls makes every crash between two of them (this node dies, or a
// shard is down) leave only what a later step repairs or ignores:
//
// - bind: the node index entry (P:{n:<node>}:nb, ni) goes first in the
//   pipeline, the uid's hash second. A single Redis runs them in that order,
//   so a binding is never in a uid's hash without being indexed (the crash
//   cleanup finds every binding through the index); an index entry without
//   a binding is harmless (the cleanup checks the hash's value). On a Redis
//   Cluster the two go to different masters: a node that dies at that very
//   moment may leave a binding unindexed (TODO(issue 15): a per-uid sweep
//   of bindings of unknown nodes would repair it). P:users and the previous
//   binding's index entry follow after the answer (followups): a lost
//   followup leaves a stale count or index entry, both harmless.
// - unbind: the uid's hash and the index entry in one stage; P:users and
//   (session groups) the group sets follow. A lost group removal leaves an
//   offline member in a group (it is routed as offline, as a member that
//   went offline with persistent groups).
// - join: the uid's groups set and the group's members set in one stage,
//   each with its own limit; when one refuses, the other's addition is
//   undone afterwards.
// - node cleanup (heartbeat sweep, claim, shutdown): (1) read the node's
//   index, (2) per uid slot remove the bindings that still point at the
//   node (drop_uid; repeating it is harmless), (3) remove the index
//   entries, the incarnation and, last, the node's entry (forget_node).
//   Until (3) the index still lists everything, so a cleanup cut short is
//   done again: by the next heartbeat sweep (same id), or, for a claim, by
//   the next claim once the first one's mark is older than the timeout.
// - durable append: (1) group_check in the group's slot (group publish),
//   (2) the idempotency key in the sender's slot, (3) one append per
//   receiver slot, pipelined. Every append job of a batch waits the same
//   stages, so the appends of one batch keep their order. When every call
//   of (3) fails, the claim is given back (a followup), so the sender's
//   retry stores the message. A crash of this node between (2) and (3)
//   (or a lost followup) leaves the idem claimed with nothing stored: a
//   retry of the same idem within the window is then answered as a
//   duplicate; the first attempt was never acked, but its retry is.
//   With durable-replicas=N, (2) and (3) are followed by WAIT N on their
//   connections (`run`); an append short of N replicas reports its uids
//   unavailable: a failover may lose it.

/// Parses an index entry "<incarnation>,<uid>,<conn>".
struct index_entry {
  std::string_view inc, uid, conn;
};

std::optional<index_entry> parse_index_entry(std::string_view e) {
  auto i = e.find(',');
  if (i == std::string_view::npos)
    return std::nullopt;
  auto j = e.find(',', i + 1);
  if (j == std::string_view::npos)
    return std::nullopt;
  return index_entry{e.substr(0, i), e.substr(i + 1, j - i - 1),
                     e.substr(j + 1)};
}

/// The state of a node cleanup (drop of the bindings of some incarnations
/// of one node) spread over the stages of a job.
struct drop_state {
  std::string node;
  /// The incarnations to drop; {"0"}: all.
  std::vector<std::string> incs;
  /// Also remove the node from P:nodes (claim, shutdown).
  bool unregister = false;
  int stage = 0;
  std::vector<std::string> entries;
  std::vector<std::string> offline;
};

/// Runs one stage of a drop: puts its commands into `j` and returns false,
/// or true once done (`d.offline` then holds the uids left offline).
bool drop_step(const redis_store_state& st, drop_state& d, job& j) {
  auto& cfg = st.cfg;
  switch (d.stage++) {
  case 0:
    j.commands.push_back(redis_command{std::nullopt,
                                       st.nkey(d.node, "nb"),
                                       {"SMEMBERS", st.nkey(d.node, "nb")}});
    return false;
  case 1: {
    if (j.stage_error)
      return true; // nothing changed; the next sweep or claim retries
    auto r = j.replies.front().get();
    bool all = d.incs.size() == 1 && d.incs.front() == "0";
    std::vector<std::string> triples; // inc, uid, conn
    std::vector<std::string_view> keys;
    std::vector<std::string> key_store;
    for (size_t i = 0; is_array(r) && i < r->elements; ++i) {
      auto e = text_of(r->element[i]);
      auto x = parse_index_entry(e);
      if (!x) {
        d.entries.emplace_back(e); // not ours: drop it
        continue;
      }
      if (!all &&
          std::find(d.incs.begin(), d.incs.end(), x->inc) == d.incs.end())
        continue;
      d.entries.emplace_back(e);
      triples.emplace_back(x->inc);
      triples.emplace_back(x->uid);
      triples.emplace_back(x->conn);
      key_store.push_back(st.ukey(x->uid, "b"));
    }
    keys.assign(key_store.begin(), key_store.end());
    for (auto& part : redis_keys::split_by_slot(keys, st.is_cluster(),
                                                cfg.bindings_per_call)) {
      redis_command cmd{script::drop_uid, key_store[part.front()], {d.node}};
      for (auto k : part)
        for (size_t m = 0; m < 3; ++m)
          cmd.args.push_back(triples[k * 3 + m]);
      j.commands.push_back(std::move(cmd));
    }
    return false;
  }
  case 2: {
    // Offline uids with their groups (session groups), per call. A call
    // that failed leaves its bindings and index entries: a later cleanup
    // repeats it.
    std::vector<std::pair<std::string, std::string>> memberships;
    bool complete = !j.stage_error;
    for (auto& r : j.replies) {
      if (!is_array(r.get()))
        continue;
      for (size_t i = 0; i + 1 < r->elements; i += 2) {
        auto uid = std::string{text_of(r->element[i])};
        for (auto& g : strings_of(r->element[i + 1], 0))
          memberships.emplace_back(g, uid);
        d.offline.push_back(std::move(uid));
      }
    }
    if (!d.offline.empty())
      j.commands.push_back(
          redis_command{script::users_add,
                        st.users_key(),
                        {"-" + std::to_string(d.offline.size())}});
    for (auto& [g, uid] : memberships)
      j.commands.push_back(
          redis_command{std::nullopt, st.gkey(g), {"SREM", st.gkey(g), uid}});
    if (!complete)
      return false; // keep the index: the next cleanup repeats the rest
    for (size_t i = 0; i < d.entries.size(); i += cfg.bindings_per_call) {
      redis_command cmd{
          std::nullopt, st.nkey(d.node, "nb"), {"SREM", st.nkey(d.node, "nb")}};
      auto end = std::min(d.entries.size(), i + cfg.bindings_per_call);
      for (auto k = i; k < end; ++k)
        cmd.args.push_back(d.entries[k]);
      j.commands.push_back(std::move(cmd));
    }
    bool all = d.incs.size() == 1 && d.incs.front() == "0";
    if (all) {
      j.commands.push_back(redis_command{
          std::nullopt, st.nkey(d.node, "ni"), {"DEL", st.nkey(d.node, "ni")}});
    } else {
      for (auto& inc : d.incs)
        j.commands.push_back(redis_command{
            script::forget_node, st.nkey(d.node, "h"), {d.node, inc}});
    }
    if (d.unregister)
      j.commands.push_back(redis_command{
          std::nullopt, st.nodes_key(), {"SREM", st.nodes_key(), d.node}});
    return false;
  }
  default:
    return true;
  }
}

job redis_store_state::bind(std::vector<binding> bs, bool single) {
  job result;
  auto count_users = single || !std::exchange(rebind_uncounted, false);
  // Stage 1, in this order: the node index (per node), then the uids'
  // hashes (per slot). Then P:users and stale index entries (followups).
  std::map<std::string, std::vector<size_t>> by_node;
  for (size_t i = 0; i < bs.size(); ++i)
    by_node[bs[i].node].push_back(i);
  for (auto& [node, idx] : by_node) {
    auto nb = nkey(node, "nb");
    auto ni = nkey(node, "ni");
    std::set<uint64_t> incs;
    for (size_t i = 0; i < idx.size(); i += cfg.bindings_per_call) {
      redis_command cmd{std::nullopt, nb, {"SADD", nb}};
      auto end = std::min(idx.size(), i + cfg.bindings_per_call);
      for (auto k = i; k < end; ++k) {
        auto& b = bs[idx[k]];
        cmd.args.push_back(std::to_string(b.incarnation) + ',' + b.uid + ',' +
                           b.conn);
        incs.insert(b.incarnation);
      }
      result.commands.push_back(std::move(cmd));
    }
    redis_command cmd{std::nullopt, ni, {"SADD", ni}};
    for (auto inc : incs)
      cmd.args.push_back(std::to_string(inc));
    result.commands.push_back(std::move(cmd));
  }
  auto index_commands = result.commands.size();
  std::vector<std::string> key_store;
  key_store.reserve(bs.size());
  for (auto& b : bs)
    key_store.push_back(ukey(b.uid, "b"));
  std::vector<std::string_view> keys(key_store.begin(), key_store.end());
  auto parts =
      redis_keys::split_by_slot(keys, is_cluster(), cfg.bindings_per_call);
  for (auto& part : parts) {
    redis_command cmd{script::bind_uid, key_store[part.front()], {}};
    cmd.args.reserve(part.size() * 4);
    for (auto k : part) {
      cmd.args.push_back(bs[k].uid);
      cmd.args.push_back(bs[k].conn);
      cmd.args.push_back(bs[k].node);
      cmd.args.push_back(std::to_string(bs[k].incarnation));
    }
    result.commands.push_back(std::move(cmd));
  }
  auto ctx = std::make_shared<
      std::pair<std::vector<binding>, std::vector<std::vector<size_t>>>>(
      std::move(bs), std::move(parts));
  auto prefix = cfg.prefix;
  result.step = [ctx, index_commands, single, prefix, count_users](
                    job& j) -> std::optional<caf::expected<caf::message>> {
    if (j.stage_error)
      return caf::expected<caf::message>{j.stage_error};
    auto& [bs, parts] = *ctx;
    int64_t added = 0;
    bool first_new = false;
    for (size_t p = 0; p < parts.size(); ++p) {
      auto r = j.replies[index_commands + p].get();
      if (!is_array(r) || r->elements != parts[p].size() * 2)
        return caf::expected<caf::message>{unexpected_reply("bind_uid")};
      for (size_t m = 0; m < parts[p].size(); ++m) {
        auto& b = bs[parts[p][m]];
        auto flag = integer_of(r->element[2 * m]);
        if (flag && *flag == 1) {
          ++added;
          if (parts[p][m] == 0)
            first_new = true;
        }
        auto prev = text_of(r->element[2 * m + 1]);
        auto bar = prev.rfind('|');
        auto value = b.node + '|' + std::to_string(b.incarnation);
        if (bar == std::string_view::npos || prev == value)
          continue;
        auto pnode = prev.substr(0, bar);
        auto nb = redis_keys::node_key(prefix, pnode, "nb");
        j.followups.push_back(redis_command{
            std::nullopt,
            nb,
            {"SREM", nb,
             std::string{prev.substr(bar + 1)} + ',' + b.uid + ',' + b.conn}});
      }
    }
    if (added > 0 && count_users)
      j.followups.push_back(redis_command{
          script::users_add, prefix + ":users", {std::to_string(added)}});
    if (single)
      return caf::expected<caf::message>{caf::make_message(first_new)};
    return caf::expected<caf::message>{caf::make_message(atom::ok_v)};
  };
  return result;
}

job redis_store_state::unbind(const binding& b) const {
  job result;
  auto inc = std::to_string(b.incarnation);
  auto entry = ',' + b.uid + ',' + b.conn;
  result.commands.push_back(
      redis_command{script::unbind_uid, ukey(b.uid, "b"), {b.uid, b.conn}});
  auto nb = nkey(b.node, "nb");
  result.commands.push_back(
      redis_command{std::nullopt, nb, {"SREM", nb, inc + entry}});
  auto prefix = cfg.prefix;
  result.step = [prefix, b, inc,
                 entry](job& j) -> std::optional<caf::expected<caf::message>> {
    auto r = j.replies.empty() ? nullptr : j.replies.front().get();
    if (!is_array(r) || r->elements < 2) {
      if (j.stage_error)
        return caf::expected<caf::message>{j.stage_error};
      return caf::expected<caf::message>{unexpected_reply("unbind_uid")};
    }
    auto offline = integer_of(r->element[0]).value_or(0) == 1;
    auto prev = text_of(r->element[1]);
    auto bar = prev.rfind('|');
    if (bar != std::string_view::npos && prev != b.node + '|' + inc) {
      auto pnb = redis_keys::node_key(prefix, prev.substr(0, bar), "nb");
      j.followups.push_back(redis_command{
          std::nullopt,
          pnb,
          {"SREM", pnb, std::string{prev.substr(bar + 1)} + entry}});
    }
    if (offline) {
      j.followups.push_back(
          redis_command{script::users_add, prefix + ":users", {"-1"}});
      for (size_t i = 2; i < r->elements; ++i) {
        auto g = redis_keys::group_key(prefix, text_of(r->element[i]));
        j.followups.push_back(
            redis_command{std::nullopt, g, {"SREM", g, b.uid}});
      }
    }
    return caf::expected<caf::message>{caf::make_message(offline)};
  };
  return result;
}

job redis_store_state::route(std::vector<std::string> uids) const {
  // Each uid once, in first-seen order; one HVALS per uid, all pipelined
  // (plain HVALS costs Redis far less than a script doing the same).
  job result;
  auto seen_uids = std::make_shared<std::vector<std::string>>();
  std::unordered_set<std::string_view> seen;
  for (auto& uid : uids)
    if (seen.insert(uid).second)
      seen_uids->push_back(uid);
  for (auto& uid : *seen_uids) {
    auto k = ukey(uid, "b");
    result.commands.push_back(redis_command{std::nullopt, k, {"HVALS", k}});
  }
  result.step = one_stage([seen_uids](job& j) -> caf::expected<caf::message> {
    route_builder builder;
    for (size_t i = 0; i < seen_uids->size(); ++i)
      builder.add((*seen_uids)[i], j.replies[i].get());
    return caf::make_message(std::move(builder.result()));
  });
  return result;
}

job redis_store_state::join(std::string uid, std::string group,
                            uint32_t max_groups) const {
  job result;
  auto ug = ukey(uid, "g");
  auto g = gkey(group);
  result.commands.push_back(redis_command{
      script::join_uid, ug, {uid, group, std::to_string(max_groups)}});
  result.commands.push_back(
      redis_command{script::join_group,
                    g,
                    {group, uid, std::to_string(cfg.max_group_members)}});
  auto members = cfg.max_group_members;
  result.step = [=](job& j) -> std::optional<caf::expected<caf::message>> {
    auto ru = j.replies.size() > 0 ? j.replies[0].get() : nullptr;
    auto rg = j.replies.size() > 1 ? j.replies[1].get() : nullptr;
    bool uid_added = is_array(ru) && ru->elements == 2 &&
                     integer_of(ru->element[0]).value_or(0) == 1;
    bool group_added = integer_of(rg).value_or(0) == 1;
    auto undo = [&] {
      if (uid_added)
        j.followups.push_back(
            redis_command{std::nullopt, ug, {"SREM", ug, group}});
      if (group_added)
        j.followups.push_back(redis_command{std::nullopt, g, {"SREM", g, uid}});
    };
    if (j.stage_error) {
      undo();
      return caf::expected<caf::message>{j.stage_error};
    }
    if (integer_of(rg).value_or(0) == -2) {
      undo();
      return caf::expected<caf::message>{make_error(
          ec::group_full, "'" + group + "' has " + std::to_string(members) +
                              " members already")};
    }
    if (integer_of(ru).value_or(0) == -1) {
      undo();
      return caf::expected<caf::message>{make_error(
          ec::too_many_groups,
          "at most " + std::to_string(max_groups) + " groups per uid")};
    }
    if (!is_array(ru) || ru->elements != 2 || !integer_of(ru->element[1]))
      return caf::expected<caf::message>{unexpected_reply("join")};
    return caf::expected<caf::message>{
        caf::make_message(static_cast<uint32_t>(*integer_of(ru->element[1])))};
  };
  return result;
}

job redis_store_state::leave(std::string uid, std::string group) const {
  job result;
  auto ug = ukey(uid, "g");
  auto g = gkey(group);
  result.commands.push_back(
      redis_command{std::nullopt, ug, {"SREM", ug, group}});
  result.commands.push_back(redis_command{std::nullopt, g, {"SREM", g, uid}});
  result.step = one_stage(answer_ok);
  return result;
}

job redis_store_state::members(const std::string& group, uint32_t limit) const {
  job result;
  auto g = gkey(group);
  result.commands.push_back(redis_command{std::nullopt, g, {"SMEMBERS", g}});
  result.step = one_stage([limit](job& j) {
    return answer_members(j, static_cast<size_t>(limit));
  });
  return result;
}

job redis_store_state::is_member(const std::string& group,
                                 const std::string& uid) const {
  job result;
  auto g = gkey(group);
  result.commands.push_back(
      redis_command{std::nullopt, g, {"SISMEMBER", g, uid}});
  result.step = one_stage(answer_flag);
  return result;
}

job redis_store_state::group_route(std::string group, std::string from) const {
  // (1) membership of `from` and the members, in the group's slot; (2) one
  // HVALS per member, each in its uid's slot.
  job result;
  auto g = gkey(group);
  if (!from.empty())
    result.commands.push_back(
        redis_command{std::nullopt, g, {"SISMEMBER", g, from}});
  result.commands.push_back(redis_command{std::nullopt, g, {"SMEMBERS", g}});
  auto uids = std::make_shared<std::vector<std::string>>();
  auto prefix = cfg.prefix;
  result.step =
      [uids, group, from, prefix, stage = 0](
          job& j) mutable -> std::optional<caf::expected<caf::message>> {
    if (j.stage_error)
      return caf::expected<caf::message>{j.stage_error};
    if (stage++ == 0) {
      if (!from.empty() && integer_of(j.replies.front().get()).value_or(0) == 0)
        return caf::expected<caf::message>{
            make_error(ec::not_member,
                       "'" + from + "' is not a member of '" + group + "'")};
      *uids = strings_of(j.replies.back().get(), 0);
      // Members in byte order, like the memory store's std::set.
      std::sort(uids->begin(), uids->end());
      for (auto& uid : *uids) {
        auto k = redis_keys::uid_key(prefix, uid, "b");
        j.commands.push_back(redis_command{std::nullopt, k, {"HVALS", k}});
      }
      if (!uids->empty())
        return std::nullopt;
    }
    route_builder builder;
    for (size_t i = 0; i < uids->size() && i < j.replies.size(); ++i)
      builder.add((*uids)[i], j.replies[i].get());
    return caf::expected<caf::message>{
        caf::make_message(std::move(builder.result()))};
  };
  return result;
}

job redis_store_state::node(const node_info& info) {
  // (1) the node's entry and lease (its slot) and P:nodes; (2..) the sweep
  // of earlier incarnations whose lease expired (a drop), if any.
  job result;
  auto id = info.id;
  result.commands.push_back(redis_command{
      script::node,
      nkey(id, "h"),
      {info.id, info.listen, info.cluster, std::to_string(info.incarnation),
       std::to_string(info.connections), std::to_string(cfg.lease_ms)}});
  result.commands.push_back(
      redis_command{std::nullopt, nodes_key(), {"SADD", nodes_key(), id}});
  auto d = std::make_shared<drop_state>();
  d->node = id;
  auto fresh = std::make_shared<bool>(false);
  auto self = this;
  result.step =
      [self, d, fresh, first = true](
          job& j) mutable -> std::optional<caf::expected<caf::message>> {
    if (first) {
      first = false;
      if (j.stage_error)
        return caf::expected<caf::message>{j.stage_error};
      auto r = j.replies.front().get();
      if (!is_array(r) || r->elements < 1)
        return caf::expected<caf::message>{unexpected_reply("node")};
      *fresh = integer_of(r->element[0]).value_or(0) == 1;
      // A failover may have lost writes of any shard, bindings among them:
      // the node writes its own back (as for a fresh entry). The map is
      // checked once per heartbeat, so a failover that no request ran into
      // is noticed too.
      // Only the write-back this heartbeat asks for skips P:users: a flag
      // left over from a write-back that did not happen must not make a
      // later one uncounted.
      self->rebind_uncounted = false;
      if (self->cluster) {
        self->cluster->refresh();
        auto n = self->cluster->stats().promotions;
        if (n != self->promotions_seen) {
          log::warn("Redis Cluster: a replica was promoted; this node "
                    "writes its bindings back");
          self->promotions_seen = n;
          self->rebind_uncounted = !*fresh;
          *fresh = true;
        }
      }
      d->incs = strings_of(r, 1);
      if (d->incs.empty())
        return caf::expected<caf::message>{caf::make_message(*fresh)};
    }
    if (!drop_step(*self, *d, j))
      return std::nullopt;
    return caf::expected<caf::message>{caf::make_message(*fresh)};
  };
  return result;
}

job redis_store_state::nodes() const {
  // (1) the node ids and Redis' time; (2) each node's entry.
  job result;
  result.commands.push_back(
      redis_command{std::nullopt, nodes_key(), {"SMEMBERS", nodes_key()}});
  result.commands.push_back(redis_command{std::nullopt, nodes_key(), {"TIME"}});
  auto ids = std::make_shared<std::vector<std::string>>();
  auto redis_now = std::make_shared<int64_t>(0);
  auto prefix = cfg.prefix;
  result.step =
      [ids, redis_now, prefix, stage = 0](
          job& j) mutable -> std::optional<caf::expected<caf::message>> {
    if (j.stage_error)
      return caf::expected<caf::message>{j.stage_error};
    if (stage++ == 0) {
      *ids = strings_of(j.replies[0].get(), 0);
      auto t = j.replies[1].get();
      if (!is_array(t) || t->elements != 2)
        return caf::expected<caf::message>{unexpected_reply("TIME")};
      *redis_now = static_cast<int64_t>(
          parse_count(text_of(t->element[0])).value_or(0) * 1000 +
          parse_count(text_of(t->element[1])).value_or(0) / 1000);
      for (auto& id : *ids) {
        auto h = redis_keys::node_key(prefix, id, "h");
        j.commands.push_back(redis_command{std::nullopt, h, {"HGETALL", h}});
      }
      if (!ids->empty())
        return std::nullopt;
    }
    // Heartbeats are Redis TIME; callers compare them with their own
    // clock, so they get them on this process' clock: now minus the age
    // Redis measured.
    auto local_now = frames::now_ms();
    std::vector<node_info> result;
    for (size_t i = 0; i < ids->size() && i < j.replies.size(); ++i) {
      auto fields = j.replies[i].get();
      if (!is_array(fields))
        return caf::expected<caf::message>{unexpected_reply("nodes")};
      if (fields->elements == 0)
        continue; // gone (its id leaves P:nodes with the cleanup)
      node_info info;
      info.id = (*ids)[i];
      bool claimed = false;
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
        else if (key == "claimed")
          claimed = true;
        else if (key == "hb")
          // Hostile values stay harmless: both times are in [0, 2^53).
          info.last_heartbeat_ms =
              local_now - (*redis_now - static_cast<int64_t>(
                                            parse_count(value).value_or(0)));
      }
      if (!claimed) // being cleaned up: gone for everyone
        result.push_back(std::move(info));
    }
    std::sort(result.begin(), result.end(),
              [](auto& x, auto& y) { return x.id < y.id; });
    return caf::expected<caf::message>{caf::make_message(std::move(result))};
  };
  return result;
}

job redis_store_state::claim(std::string node, uint64_t incarnation,
                             int64_t timeout_ms) const {
  // (1) the claim (the node's slot; one caller wins); (2..) a drop of the
  // incarnation's bindings, the node's entry last.
  job result;
  if (cluster && cluster->stats().promotions != promotions_seen) {
    // A replica was promoted since the last heartbeat told DISCOVERY (the
    // map was reloaded by another request): leases on that shard may have
    // run out during the failover. No claim until the heartbeat reports it
    // and DISCOVERY gives every lease a full timeout.
    result.step = [](job&) -> std::optional<caf::expected<caf::message>> {
      return caf::expected<caf::message>{
          caf::make_message(false, std::vector<std::string>{})};
    };
    return result;
  }
  auto inc = std::to_string(incarnation);
  result.commands.push_back(redis_command{
      script::claim, nkey(node, "h"), {node, inc, std::to_string(timeout_ms)}});
  auto d = std::make_shared<drop_state>();
  d->node = node;
  d->incs = {inc};
  d->unregister = true;
  auto self = this;
  result.step =
      [self, d, first = true](
          job& j) mutable -> std::optional<caf::expected<caf::message>> {
    if (first) {
      first = false;
      if (j.stage_error)
        return caf::expected<caf::message>{j.stage_error};
      if (integer_of(j.replies.front().get()).value_or(0) != 1)
        return caf::expected<caf::message>{
            caf::make_message(false, std::vector<std::string>{})};
    }
    if (!drop_step(*self, *d, j))
      return std::nullopt;
    return caf::expected<caf::message>{caf::make_message(true, d->offline)};
  };
  return result;
}

job redis_store_state::shutdown(std::string node, uint64_t incarnation) const {
  // A drop of the incarnation's bindings, then the node's entry. Should this
  // node die half way, its entry stays with an old heartbeat and the others
  // claim it.
  job result;
  auto d = std::make_shared<drop_state>();
  d->node = node;
  d->incs = {std::to_string(incarnation)};
  d->unregister = true;
  auto self = this;
  drop_step(*this, *d, result);
  result.step = [self,
                 d](job& j) -> std::optional<caf::expected<caf::message>> {
    if (!drop_step(*self, *d, j))
      return std::nullopt;
    return caf::expected<caf::message>{caf::make_message(d->offline)};
  };
  return result;
}

job redis_store_state::stats() const {
  job result;
  result.commands.push_back(
      redis_command{std::nullopt, users_key(), {"GET", users_key()}});
  result.step = one_stage(answer_stats);
  return result;
}

job redis_store_state::unread(const unread_watch& w) const {
  job result;
  std::vector<uint64_t> seqs;
  for (size_t i = 0; i < w.uids.size() && i < w.seqs.size(); ++i) {
    auto k = ukey(w.uids[i], "cur");
    result.commands.push_back(redis_command{std::nullopt, k, {"HVALS", k}});
    seqs.push_back(w.seqs[i]);
  }
  result.step = one_stage([seqs](job& j) { return answer_unread(j, seqs); });
  return result;
}

job redis_store_state::append(const delivery& d, bool group) const {
  // Three stages for every append job (some may be empty, so the appends of
  // one batch stay in order): (1) group_check, (2) the sender's idem key,
  // (3) one append per receiver slot (at most uids_per_call uids each).
  job result;
  // Shared by the stages' commands (copied into each; the payload is the
  // bulk of it).
  auto head =
      std::make_shared<std::vector<std::string>>(std::vector<std::string>{
          std::to_string(cfg.inbox_max_messages),
          std::to_string(frames::now_ms() - cfg.inbox_max_age_ms),
          std::to_string(std::max<int64_t>(cfg.inbox_max_age_ms, 1)),
          std::to_string(cfg.max_fanout_bytes), d.msg_id,
          std::to_string(static_cast<int>(d.kind)), d.from, d.group, d.data,
          std::to_string(d.ts), std::string{},
          std::to_string(cfg.idempotency_window_ms), "1"});
  std::string idem_key;
  if (!d.idem.empty() && cfg.idempotency_window_ms > 0) {
    (*head)[10] = std::to_string(d.from.size()) + ':' + d.from + ':' + d.idem;
    idem_key = redis_keys::idem_key(cfg.prefix, d.from, d.idem);
  }
  // durable-replicas: the appends wait for replicas. The idem claim does
  // not: it is pending until the appends are done (see `idem_command`).
  auto replicas = cfg.durable_replicas;
  // The idem script in one of its modes: "claim" (pending), "done" (the
  // message is stored: the record holds its msg_id for the window),
  // "release" (storing failed somewhere: a retry stores it again).
  auto idem_command =
      [idem_key, head,
       pending = std::to_string(cfg.idem_pending_ms)](const char* mode) {
        auto args = *head;
        args.emplace_back(mode);
        args.push_back(pending);
        return redis_command{script::idem, idem_key, std::move(args)};
      };
  auto uids = std::make_shared<std::vector<std::string>>();
  if (group) {
    result.commands.push_back(
        redis_command{script::group_check, gkey(d.group), *head});
  } else {
    // Each uid once; the budget is checked before anything is stored.
    std::unordered_set<std::string_view> seen;
    for (auto& uid : d.uids)
      if (seen.insert(uid).second)
        uids->push_back(uid);
    if (auto err = frames::check_fanout(uids->size(), d.data.size(),
                                        cfg.max_fanout_bytes)) {
      result.error = std::move(err);
      return result;
    }
  }
  auto payload = d.data.size();
  auto fanout = cfg.max_fanout_bytes;
  auto per_call = cfg.uids_per_call;
  auto cluster_mode = is_cluster();
  auto prefix = cfg.prefix;
  auto from = d.from;
  auto group_name = d.group;
  // The uids of each append call (stage 3), to report those of a call that
  // failed.
  auto parts = std::make_shared<std::vector<std::vector<size_t>>>();
  result.step =
      [=, stage =
              0](job& j) mutable -> std::optional<caf::expected<caf::message>> {
    using answer = caf::expected<caf::message>;
    if (j.stage_error && stage < 2)
      return answer{j.stage_error};
    switch (stage++) {
    case 0:
      if (group) {
        auto r = j.replies.front().get();
        if (auto x = integer_of(r); x && *x == 0)
          return answer{
              make_error(ec::not_member, "'" + from + "' is not a member of '" +
                                             group_name + "'")};
        if (auto x = integer_of(r); x && *x < 0) {
          auto receivers = static_cast<size_t>(
              std::min<long long>(-*x, std::numeric_limits<uint32_t>::max()));
          if (auto err = frames::check_fanout(receivers, payload, fanout))
            return answer{err};
          return answer{make_error(ec::too_large,
                                   "the group is too large for the payload")};
        }
        if (!is_array(r))
          return answer{unexpected_reply("group_check")};
        *uids = strings_of(r, 0);
      }
      if (!idem_key.empty())
        j.commands.push_back(idem_command("claim"));
      return std::nullopt;
    case 1: {
      if (!idem_key.empty()) {
        auto r = j.replies.front().get();
        if (integer_of(r).value_or(0) == 1) {
          // Another message with this idem is still being stored.
          route_table table;
          table.idem_pending = true;
          return answer{caf::make_message(std::move(table))};
        }
        if (r && r->type == REDIS_REPLY_STATUS) {
          // A repeat of an idem: the msg_id of the earlier message.
          auto earlier = text_of(r);
          if (earlier.empty() || earlier.size() > 256)
            return answer{unexpected_reply("idem")};
          route_table table;
          table.duplicate_of = earlier;
          return answer{caf::make_message(std::move(table))};
        }
      }
      std::vector<std::string> key_store;
      key_store.reserve(uids->size());
      for (auto& uid : *uids)
        key_store.push_back(redis_keys::uid_key(prefix, uid, "b"));
      std::vector<std::string_view> keys(key_store.begin(), key_store.end());
      *parts = redis_keys::split_by_slot(keys, cluster_mode, per_call);
      for (auto& part : *parts) {
        redis_command cmd{script::append, key_store[part.front()], *head,
                          replicas > 0};
        for (auto k : part)
          cmd.args.push_back((*uids)[k]);
        j.commands.push_back(std::move(cmd));
      }
      if (j.commands.empty()) { // no receiver
        if (!idem_key.empty())
          j.followups.push_back(idem_command("done"));
        return answer{caf::make_message(route_table{})};
      }
      return std::nullopt;
    }
    default: {
      // A call without reply (its shard unreachable within the retry
      // deadline) stored nothing: its uids are reported unavailable, the
      // others go on. So are those of a call that reached fewer than
      // durable-replicas replicas: stored on the master only, a failover
      // may lose it, so no ack may say stored (nor is it routed; the copy
      // may still come with a resume). An error reply, or no reply at all,
      // fails the send.
      // The idem record: done when every receiver has its copy (on enough
      // replicas); else given back, so that the sender's retry stores the
      // message again (for all receivers: at least once) instead of being
      // acked as a repeat of what some receivers never got.
      if (!idem_key.empty()) {
        auto complete =
            std::all_of(j.replies.begin(), j.replies.end(), [&](auto& r) {
              auto p = static_cast<size_t>(&r - j.replies.data());
              return r && r->type != REDIS_REPLY_ERROR &&
                     (replicas == 0 || j.replicas[p] >= replicas);
            });
        j.followups.push_back(idem_command(complete ? "done" : "release"));
      }
      std::vector<redis_reply_ptr> ok;
      std::vector<std::string> unavailable;
      for (size_t p = 0; p < j.replies.size(); ++p) {
        auto& r = j.replies[p];
        if (r && r->type == REDIS_REPLY_ERROR)
          return answer{redis_reply_error(*r)};
        if (r && replicas > 0 && j.replicas[p] < replicas)
          r.reset();
        if (r) {
          ok.push_back(std::move(r));
        } else if (p < parts->size()) {
          for (auto k : (*parts)[p])
            unavailable.push_back((*uids)[k]);
        }
      }
      if (ok.empty() && j.stage_error)
        return answer{j.stage_error};
      route_builder builder;
      if (auto err = add_appended(builder, ok))
        return answer{err};
      builder.result().unavailable = std::move(unavailable);
      return answer{caf::make_message(std::move(builder.result()))};
    }
    }
  };
  return result;
}

job redis_store_state::inbox(std::string uid, std::string device, int64_t since,
                             uint32_t limit) const {
  job result;
  auto key = ukey(uid, "in");
  result.commands.push_back(
      redis_command{script::inbox,
                    key,
                    {std::move(uid), std::move(device), std::to_string(since),
                     std::to_string(std::min(limit, cfg.max_replay_page))}});
  result.step =
      one_stage([key, since](job& j) { return answer_inbox(j, key, since); });
  return result;
}

job redis_store_state::read(std::string uid, std::string device,
                            uint64_t seq) const {
  job result;
  auto key = ukey(uid, "cur");
  result.commands.push_back(
      redis_command{script::read,
                    key,
                    {std::move(uid), std::move(device), std::to_string(seq),
                     std::to_string(std::max<int64_t>(cfg.inbox_max_age_ms, 1)),
                     std::to_string(frames::max_devices_per_uid)}});
  result.step = one_stage(answer_read);
  return result;
}

job redis_store_state::health() const {
  job result;
  result.commands.push_back(redis_command{std::nullopt, users_key(), {"PING"}});
  result.step = one_stage(answer_health);
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
    self->state.add(std::move(j));
  };
  std::apply(
      [&](auto... requests) {
        self->receive(
            requests...,
            // Like event-based actors, ignore exit messages of reason
            // `normal`.
            [&](caf::exit_msg& x) {
              st.quit = st.quit || x.reason != caf::none;
            },
            caf::others >> [](caf::message_view&) -> caf::result<caf::message> {
              return caf::make_error(caf::sec::unexpected_message);
            },
            caf::after(timeout) >> on_timeout);
      },
      request_handlers(st, add));
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
    auto idle = st.connected() ? caf::duration{std::chrono::seconds(1)}
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

/// Runs one command (single Redis or Redis Cluster, by its key).
using one_command_fn = std::function<caf::expected<redis_reply_ptr>(
    std::string_view key, std::vector<std::string_view> argv)>;

/// Refuses a Redis whose durable keys have another layout than ours
/// (P:layout); writes P:layout on a Redis that has none of them yet. Layout
/// 1 is looked for by a SCAN on a single Redis (`conn`); a Redis Cluster
/// (`conn` null) never held an older layout.
caf::error check_layout(const one_command_fn& command, redis_connection* conn,
                        const redis_store_config& cfg) {
  auto key = cfg.prefix + ":layout";
  auto where =
      "Redis at " + cfg.url.redacted() + ", key prefix '" + cfg.prefix + "'";
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto r = command(key, {"GET", key});
    if (!r)
      return std::move(r.error());
    auto x = r->get();
    if (x->type == REDIS_REPLY_ERROR)
      return make_error(ec::unavailable,
                        where + ": " + error_message(redis_reply_error(*x)));
    if (x->type == REDIS_REPLY_STRING) {
      if (text_of(x) == layout_version)
        return caf::none;
      if (text_of(x) == "2")
        return make_error(
            ec::unavailable,
            where + " holds key layout 2, this build uses layout 3 (keys "
                    "with hash tags, for Redis Cluster): stop the older "
                    "nodes and migrate or delete the keys (README, \"Redis "
                    "key layout\"), or use another redis-prefix");
      return make_error(
          ec::unavailable,
          where + " holds key layout '" + std::string{text_of(x)} +
              "', this build uses layout " + std::string{layout_version} +
              ": use another redis-prefix or a matching build");
    }
    if (x->type != REDIS_REPLY_NIL)
      return make_error(ec::unavailable, where + ": " + key + " is no string");
    if (conn != nullptr) {
      auto old = find_layout_1(*conn, cfg.prefix);
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
    }
    auto set = command(key, {"SET", key, layout_version, "NX"});
    if (!set)
      return std::move(set.error());
    if ((*set)->type == REDIS_REPLY_ERROR)
      return make_error(ec::unavailable,
                        where + ": " + error_message(redis_reply_error(**set)));
    // Written, or another node wrote it meanwhile: read it again.
  }
  return caf::none;
}

} // namespace wsc::redis_store_impl

namespace wsc {

using namespace redis_store_impl;

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
  cfg.idem_pending_ms = std::max<int64_t>(2 * opts.request_timeout.count(), 1);
  cfg.io_timeout = redis_io_timeout(opts.request_timeout);
  cfg.batch_delay = opts.store_batch_delay;
  cfg.durable_replicas = static_cast<int64_t>(opts.durable_replicas);
  cfg.durable_replicas_timeout = opts.durable_replicas_timeout;
  // A WAIT holds its connection up to its timeout: reads must outlast it.
  if (cfg.durable_replicas > 0)
    cfg.io_timeout = std::max(cfg.io_timeout,
                              cfg.durable_replicas_timeout + milliseconds{250});
  auto cant_use = [&](const caf::error& why) {
    return make_error(ec::unavailable, "cannot use Redis at " +
                                           cfg.url.redacted() + ": " +
                                           error_message(why));
  };
  if (cfg.url.is_cluster()) {
    if (cfg.prefix.find_first_of("{}") != std::string::npos)
      return make_error(ec::unavailable,
                        "redis-prefix must not contain '{' or '}' with a "
                        "Redis Cluster (it would change the keys' hash tags)");
    auto ccfg = parse_redis_cluster_url(cfg.url.cluster);
    if (!ccfg)
      return cant_use(ccfg.error());
    cfg.cluster = std::move(*ccfg);
    cfg.cluster.connect_timeout = cfg.connect_timeout;
    cfg.cluster.io_timeout = cfg.io_timeout;
    cfg.cluster.wait_replicas = cfg.durable_replicas;
    cfg.cluster.wait_timeout = cfg.durable_replicas_timeout;
    // A command retries through a failover for at most 60 % of the request
    // timeout, so that a shard that stays down is reported (unavailable)
    // before the caller's request times out.
    cfg.cluster.retry_deadline =
        std::max(milliseconds{500}, std::chrono::duration_cast<milliseconds>(
                                        opts.request_timeout * 6 / 10));
    auto cl = redis_cluster::open(cfg.cluster);
    if (!cl)
      return make_error(ec::unavailable, "cannot reach Redis at " +
                                             cfg.url.redacted() + ": " +
                                             error_message(cl.error()));
    // Fails early where scripting is disabled or the server is too old.
    for (size_t i = 0; i < redis_scripts::script_count; ++i)
      if (auto sha = cl->load_script(redis_scripts::source(
              static_cast<script>(i), cfg.session_groups));
          !sha)
        return cant_use(sha.error());
    auto command = [&](std::string_view key,
                       std::vector<std::string_view> argv) {
      return cl->command(key, std::move(argv));
    };
    if (auto err = check_layout(command, nullptr, cfg))
      return err;
  } else {
    auto conn =
        redis_connection::open(cfg.url, cfg.connect_timeout, cfg.io_timeout);
    if (!conn)
      return make_error(ec::unavailable, "cannot reach Redis at " +
                                             cfg.url.redacted() + ": " +
                                             error_message(conn.error()));
    std::array<std::string, redis_scripts::script_count> shas;
    for (size_t i = 0; i < redis_scripts::script_count; ++i) {
      auto sha = conn->load_script(
          redis_scripts::source(static_cast<script>(i), cfg.session_groups));
      if (!sha)
        return cant_use(sha.error());
      shas[i] = std::move(*sha);
    }
    auto command = [&](std::string_view, std::vector<std::string_view> argv) {
      return conn->command(argv);
    };
    if (auto err = check_layout(command, &*conn, cfg))
      return err;
    if (loop_coordinator::of(sys) != nullptr) {
      log::info("state store: Redis at {}, key prefix '{}' (on event loop 0)",
                cfg.url.redacted(), cfg.prefix);
      return caf::actor_cast<state_store_actor>(spawn_loop_store(
          sys, std::move(cfg), std::move(*conn), std::move(shas)));
    }
  }
  log::info("state store: Redis at {}, key prefix '{}'", cfg.url.redacted(),
            cfg.prefix);
  auto hdl = sys.spawn<caf::detached>(redis_store, std::move(cfg));
  return caf::actor_cast<state_store_actor>(hdl);
}

} // namespace wsc

// -- The Redis STATE_STORE ----------------------------------------------------
//
// Key layout 4. P is `redis-prefix` (default "wscluster"). Every key that one
// script touches shares a hash tag ({u:<uid>}, {g:<group>}, {n:<node>}), so
// the same scripts run on a single Redis and on a Redis Cluster
// (redis_keys.hpp builds the names and says why they cannot collide).
//
//   P:{u:<uid>}:b      hash  conn id -> "<node>|<incarnation>": the uid's
//                            bindings. A uid is online iff this hash exists.
//   P:{u:<uid>}:g      set   groups of a uid.
//   P:{u:<uid>}:in     stream the uid's inbox and its counter: entry ids
//                            are `0-<seq>` (XADD `0-*`, Redis >= 7.0: the
//                            sequence part after the last id, 1 in a new
//                            stream), so a replay reads
//                            `XRANGE 0-<cursor+1> + COUNT n` and the uid's
//                            last seq is its newest entry's; one field `m`
//                            per entry: the message packed by the STORE
//                            ("<ts>,<kind>,<lengths>,..." redis_replies.hpp,
//                            pack_entry).
//   P:{u:<uid>}:cur    hash  device -> the last seq it confirmed (`read`).
//   P:{u:<uid>}:last   string "<hint>,<born>": the uid's last seq within 15
//                            and the first seq of its inbox's life (the seq
//                            hint: redis_scripts.hpp, inbox_helpers; SET PX
//                            inbox-max-age + frames::seq_hint_keep_ms).
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
//   P:layout           string the layout version of the keys above (4).
//
// Both per-uid keys of durable delivery (in, cur) expire inbox-max-age
// after the uid's last message (cur also after the read that created it);
// the seq hint (last) outlives them by frames::seq_hint_keep_ms. A new
// inbox (XADD gives seq 1: new, expired, or replaced because it was not
// ours) starts its life past the hint and deletes the cursors: they belong
// to an earlier life. The hint is a key of its own, not a field of cur, so
// nodes that know no hint (same layout) never take it for a device, and
// cursors expire with their inbox (review helper-55). Cursors are a hash
// per uid, not `cur:<uid>:<device>`, which let uid "a" + device "b:c" and
// uid "a:b" + device "c" collide. Layout 4 spends four redis.calls per
// message and receiver (XADD of one field, two PEXPIREs, HVALS; and a GET
// and SET of the seq hint per 16) where layout 3 spent seven
// (bench/PROFILE.md, "layout 4").
//
// Empty sets and hashes do not exist (Redis deletes them). Incarnations are
// written in decimal. Node ids are [A-Za-z0-9_-]; uids, groups and conn ids
// may hold any byte but ',', whitespace and control characters; everything
// travels as binary-safe argv (nothing is interpolated into commands).
//
// Every change of more than one key of one slot is one Lua script
// (redis_scripts.hpp), run with EVALSHA and KEYS[1] in that slot; reads are
// plain pipelined commands. Operations that span slots run as several
// stages (the request builders; redis_store_detail.hpp says the order of the
// steps and what a crash between two of them leaves). The SHAs come from
// SCRIPT LOAD at each (re)connect (on every master); a NOSCRIPT reply
// reloads the scripts and retries once.
//
// Execution: the STORE is a detached blocking actor owning one hiredis
// connection (single Redis) or one redis_cluster client (one connection per
// master, `redis=cluster://...`); with scheduler-policy=loop and one Redis
// it is an actor on event loop 0 instead (redis_store_loop.cpp), with the
// same batches. It waits for a request, takes whatever
// else is queued (up to 256 requests), and runs their stages in lockstep:
// stage k of every job shares one round trip (per master), then each job is
// answered through its response promise.
//
// Files, in the order a request takes: redis_store_spawn.cpp checks the key
// layout and spawns the STORE; redis_requests_{bindings,groups,nodes,
// inbox}.cpp turn each request into a job (its commands and how to go on);
// redis_store_stages.cpp runs the stages of a batch of jobs, for this file's
// thread (connection, round trips) or redis_store_loop.cpp's event loop;
// redis_replies.cpp reads what Redis answers.

#include "adapters/redis_store.hpp"

#include "adapters/redis_cluster.hpp"
#include "adapters/redis_connection.hpp"
#include "adapters/redis_scripts.hpp"
#include "adapters/redis_store_detail.hpp"
#include "adapters/redis_store_state.hpp"
#include "protocol/error.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <iterator>
#include <optional>
#include <string_view>
#include <utility>

namespace wsc::redis_store_impl {

// -- connection ---------------------------------------------------------------

bool redis_store_state::reconnect() {
  if (connected())
    return true;
  auto now = steady_clock::now();
  if (last_attempt && now - *last_attempt < retry_interval)
    return false;
  last_attempt = now;
  auto failed = [&](const caf::error& reason) {
    lost(reason);
    connect_failed(steady_clock::now() - now);
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
  connect_succeeded();
  return true;
}

caf::error redis_store_state::load_scripts() {
  for (size_t i = 0; i < redis_scripts::script_count; ++i) {
    auto src =
        redis_scripts::source(static_cast<script>(i), cfg.session_groups);
    auto sha = is_cluster() ? cluster->load_script(src) : conn.load_script(src);
    if (!sha)
      return std::move(sha.error());
    // The same text keeps its buffer: argvs of a round trip under way
    // view it.
    if (shas[i] != *sha)
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

void redis_store_state::connect_failed(steady_clock::duration took) {
  retry_interval = next_retry_interval(retry_interval, took, cfg.retry_interval,
                                       cfg.max_retry_interval);
}

void redis_store_state::connect_succeeded() {
  if (down_reason)
    log::info("Redis at {} reachable again", cfg.url.redacted());
  down_reason = caf::none;
  retry_interval = cfg.retry_interval;
}

caf::error redis_store_state::unavailable() const {
  return make_error(ec::unavailable,
                    "Redis at " + cfg.url.redacted() +
                        " unreachable: " + error_message(down_reason));
}

// -- execution ----------------------------------------------------------------

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

redis_round_trip
redis_store_state::round_trip(std::vector<const redis_command*> cmds) {
  wait_settings wait{is_cluster() ? 0 : cfg.durable_replicas,
                     cfg.durable_replicas_timeout};
  return redis_round_trip{
      std::move(cmds), wait,
      [this](const redis_command& cmd, std::vector<std::string_view>& argv) {
        argv_of(cmd, argv);
      }};
}

namespace {

/// Sends `rt` through the Redis Cluster client (it runs each command on its
/// slot's master, with a WAIT per master for commands marked `wait`).
void send_to_cluster(redis_store_state& st, redis_round_trip& rt) {
  std::vector<redis_cluster_command> ccs;
  ccs.reserve(rt.commands().size());
  for (size_t i = 0; i < rt.commands().size(); ++i)
    ccs.push_back(redis_cluster_command{rt.commands()[i]->key, rt.argvs()[i],
                                        rt.commands()[i]->wait});
  std::vector<int64_t> confirmed;
  auto replies = st.cluster->execute(ccs, &confirmed);
  redis_round_trip::reply_list got;
  for (auto& reply : replies)
    if (reply)
      got.emplace_back(std::move(*reply));
    else
      got.emplace_back(make_error(ec::unavailable,
                                  "Redis Cluster at " + st.cfg.url.redacted() +
                                      ": " + error_message(reply.error())));
  rt.take(std::move(got), std::move(confirmed));
}

/// Sends `rt` in one pipeline on the single Redis connection; what comes
/// after a broken read fails as Redis is unreachable.
void send_to_redis(redis_store_state& st, redis_round_trip& rt) {
  for (auto& argv : rt.argvs())
    st.conn.append(argv);
  redis_round_trip::reply_list got;
  caf::error io_error;
  for (size_t k = 0; k < rt.argvs().size(); ++k) {
    if (!io_error) {
      if (auto reply = st.conn.read()) {
        got.emplace_back(std::move(*reply));
        continue;
      } else {
        io_error = std::move(reply.error());
        st.lost(io_error);
      }
    }
    got.emplace_back(st.unavailable());
  }
  rt.take(std::move(got));
}

/// Sends `rt` and takes its replies.
void exchange(redis_store_state& st, redis_round_trip& rt) {
  if (st.is_cluster())
    send_to_cluster(st, rt);
  else
    send_to_redis(st, rt);
}

/// NOSCRIPT (Redis lost our scripts, e.g. SCRIPT FLUSH or a restart behind
/// a proxy): loads them again and sends those commands again.
void retry_noscript(redis_store_state& st, redis_round_trip& rt) {
  if (rt.noscript().empty() || !st.connected())
    return;
  log::warn("Redis lost our Lua scripts (NOSCRIPT): reloading them");
  if (auto err = st.load_scripts()) {
    if (!st.is_cluster() && !st.conn.ok())
      st.lost(err);
    // Redis answers but refuses the scripts: those commands fail.
    return rt.refuse(err);
  }
  auto retry = rt.retry();
  exchange(st, retry);
  rt.merge(std::move(retry));
}

} // namespace

std::vector<caf::expected<redis_reply_ptr>>
redis_store_state::run(const std::vector<const redis_command*>& cmds,
                       std::vector<int64_t>* replicas) {
  auto up = cmds.empty() || reconnect();
  // After reconnect(): the argvs view the scripts' SHAs, which a new
  // connection loads again.
  auto rt = round_trip(cmds);
  if (cmds.empty()) {
    // nop: a stage in which every job waits
  } else if (!up) {
    rt.fail(unavailable());
  } else {
    exchange(*this, rt);
    retry_noscript(*this, rt);
    check_replicas(rt);
  }
  if (replicas != nullptr)
    *replicas = std::move(rt.replicas());
  return std::move(rt.replies());
}

void redis_store_state::check_replicas(const redis_round_trip& rt) {
  if (cfg.durable_replicas <= 0)
    return;
  auto& cmds = rt.commands();
  auto& out = rt.replies();
  auto& replicas = rt.replicas();
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

// -- the thread ---------------------------------------------------------------

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

} // namespace wsc::redis_store_impl

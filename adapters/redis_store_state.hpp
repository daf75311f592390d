#pragma once

// The Redis STATE_STORE's requests and state, shared by its two executors:
// the detached thread (redis_store.cpp: any scheduler, single Redis or Redis
// Cluster) and the event-loop one (redis_store_loop.cpp: single Redis with
// scheduler-policy=loop). redis_store.cpp describes the key layout;
// redis_requests_*.cpp build the requests (redis_store_detail.hpp says in
// which order their calls go and why), redis_replies.cpp reads the replies,
// redis_store_stages.cpp runs the stages of a batch; the executors only
// move commands and replies.

#include "actors/actors.hpp"
#include "adapters/redis_append_batch.hpp"
#include "adapters/redis_cluster.hpp"
#include "adapters/redis_connection.hpp"
#include "adapters/redis_keys.hpp"
#include "adapters/redis_round_trip.hpp"
#include "adapters/redis_scripts.hpp"
#include "protocol/messages.hpp"

#include <caf/behavior.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/message.hpp>
#include <caf/response_promise.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace wsc::redis_store_impl {

using redis_scripts::script;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// -- settings -----------------------------------------------------------------

/// Settings of the STORE, fixed at spawn.
struct redis_store_config {
  redis_url url;
  /// Seeds and timeouts when `url` names a Redis Cluster.
  redis_cluster_config cluster;
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
  /// The largest inbox entry a client's message makes (max-message-bytes
  /// and the entry's other fields): bounds how far the `inbox` script reads
  /// past a page (0: no bound).
  uint64_t max_entry_bytes = 0;
  /// How long `P:idem:<...>` keys live (idempotency-window; 0: no idem).
  int64_t idempotency_window_ms = 10 * 60 * 1000;
  /// How long a claimed idem stays pending (its message still being
  /// stored) before a repeat may store the message again: longer than any
  /// store attempt takes (twice request-timeout).
  int64_t idem_pending_ms = 10 * 1000;
  /// Replicas that must acknowledge a durable append before its receivers
  /// count as stored (durable-replicas; 0: no WAIT), and how long Redis
  /// may wait for them (durable-replicas-timeout).
  int64_t durable_replicas = 0;
  milliseconds durable_replicas_timeout{500};
};

// -- requests -----------------------------------------------------------------

struct job;

/// Called after each stage of a job (its replies in `replies`, the first
/// problem in `stage_error`): the answer, or none after putting the
/// commands of the next stage (possibly none: the job then waits a stage,
/// which keeps the durable appends of one batch in order) into `commands`.
using step_fn = std::function<std::optional<caf::expected<caf::message>>(job&)>;

/// A request in the batch: the commands of its current stage and how to go
/// on. Most requests take one stage; those that span slots take several
/// (redis_store_state's request builders say which and why).
struct job {
  caf::response_promise promise;
  std::vector<redis_command> commands;
  /// One per command; null when the command failed (see `stage_error`).
  std::vector<redis_reply_ptr> replies;
  /// One per command: the replicas that acknowledged it (commands marked
  /// `wait`, with durable-replicas), else -1.
  std::vector<int64_t> replicas;
  /// The first failure of the stage: no reply (Redis unreachable) or an
  /// error reply.
  caf::error stage_error;
  step_fn step;
  /// Commands to run after the answer (their replies are ignored): the
  /// tail of an operation whose outcome is known, e.g. index clean-ups, or
  /// XDEL of invalid inbox entries.
  std::vector<redis_command> followups;
  /// Set when the job failed on its own before any round trip.
  caf::error error;
  /// The answer while Redis is unreachable, instead of `ec::unavailable`
  /// (health: false).
  caf::message when_down;
};

/// A step for one-stage jobs: fails with the stage's error, else answers.
template<class F>
step_fn one_stage(F answer) {
  return [answer](job& j) -> std::optional<caf::expected<caf::message>> {
    if (j.stage_error)
      return caf::expected<caf::message>{j.stage_error};
    return answer(j);
  };
}

/// A batch on its way: its jobs and those still waiting for a stage. The
/// executor moves each stage's commands (`stage_commands`) to Redis and their
/// replies back (`end_stage`) until no job is active.
struct flight {
  std::vector<job> jobs;
  std::vector<job*> active;
  int stage = 0;
  /// The current stage's commands as they leave, in batch order (durable
  /// appends packed on a single Redis: redis_append_batch.hpp).
  packed_stage out;
  /// Collected from the answered jobs: run after the last stage.
  std::vector<redis_command> followups;
};

// -- the actor state ----------------------------------------------------------

/// The state of the Redis STATE_STORE.
struct redis_store_state {
  static inline const char* name = "redis-store";

  redis_store_config cfg;
  /// Single Redis: not `ok()` while Redis is unreachable.
  redis_connection conn;
  /// Redis Cluster: the client (it reconnects and follows failovers by
  /// itself); none until the first slot map loaded.
  std::optional<redis_cluster> cluster;
  /// SHA1 of each script, from SCRIPT LOAD at each (re)connect.
  std::array<std::string, redis_scripts::script_count> shas;
  /// Requests taken from the mailbox, answered by the next `flush`.
  std::vector<job> batch;
  /// When the last connect was tried (at most one per retry interval).
  std::optional<steady_clock::time_point> last_attempt;
  /// The current interval between connects (next_retry_interval).
  milliseconds retry_interval{0};
  /// Why Redis is unreachable (none while connected).
  caf::error down_reason;
  /// Set by an exit message or when nobody holds a handle any more.
  bool quit = false;
  /// Redis Cluster: the client's promotions already reported by `node`.
  uint64_t promotions_seen = 0;
  /// Set when `node` reported a promotion (the node's own entry intact):
  /// the write-back that follows re-creates bindings the failover lost,
  /// which P:users (most likely on another shard) still counts. Cleared
  /// by a rebind that succeeded, or a heartbeat that found the node's own
  /// entry lost.
  bool rebind_uncounted = false;
  /// Durable writes that reached fewer than durable-replicas replicas, and
  /// whether the last one did (its change is logged, not every write).
  uint64_t wait_shortfalls = 0;
  bool short_of_replicas = false;

  // -- connection -------------------------------------------------------------

  bool is_cluster() const noexcept { return cfg.url.is_cluster(); }

  /// Whether a connection (or the cluster client) is up.
  bool connected() const noexcept {
    return is_cluster() ? cluster.has_value() : conn.ok();
  }

  /// Connects unless tried less than a retry interval ago; true if connected.
  bool reconnect();

  /// Loads every script on the current connection (every master).
  caf::error load_scripts();

  /// Drops a broken connection and remembers why (logged once per outage).
  void lost(const caf::error& reason);

  /// A connect attempt failed after `took`: sets the interval to the next.
  void connect_failed(steady_clock::duration took);

  /// A connect attempt succeeded: ends the outage (logged), resets the
  /// interval.
  void connect_succeeded();

  /// The error of requests while Redis is unreachable.
  caf::error unavailable() const;

  // -- execution --------------------------------------------------------------

  /// The argv of a command.
  void argv_of(const redis_command& cmd, std::vector<std::string_view>& out);

  /// A round trip of `cmds` on the current connection: with a WAIT for
  /// durable-replicas on a single Redis (the Redis Cluster client waits on
  /// each master itself).
  redis_round_trip round_trip(std::vector<const redis_command*> cmds);

  /// Runs commands in one round trip (per master), blocking: a reply or an
  /// error per command; NOSCRIPT reloads the scripts and retries once. With
  /// `replicas`, what a WAIT confirmed of each (redis_round_trip::replicas).
  std::vector<caf::expected<redis_reply_ptr>>
  run(const std::vector<const redis_command*>& cmds,
      std::vector<int64_t>* replicas = nullptr);

  /// Counts and logs the durable writes of a round trip that reached fewer
  /// replicas than durable-replicas (none without durable-replicas).
  void check_replicas(const redis_round_trip& rt);

  /// Queues a request for the next batch (or answers it at once when it
  /// failed before needing Redis).
  void add(job j);

  /// Runs the stages of every queued job and answers each.
  void flush();

  /// Answers every queued request as Redis is unreachable.
  void fail_batch();

  /// Moves the batch into `f`, every job active at stage 0.
  void begin_flight(flight& f);

  /// Collects the commands of the active jobs' current stage into
  /// `f.out` (empty when no job is active any more).
  void stage_commands(flight& f);

  /// Hands the replies of `f.out.commands` to their jobs (one reply and one
  /// replica count per command) and answers each job that is done.
  void end_stage(flight& f,
                 std::vector<caf::expected<redis_reply_ptr>>& replies,
                 std::vector<int64_t>& replicas);

  // -- request builders -------------------------------------------------------

  redis_command lua(script s, std::string key,
                    std::vector<std::string> args) const {
    return redis_command{s, std::move(key), std::move(args)};
  }

  std::string ukey(std::string_view uid, std::string_view what) const {
    return redis_keys::uid_key(cfg.prefix, uid, what);
  }
  std::string gkey(std::string_view group) const {
    return redis_keys::group_key(cfg.prefix, group);
  }
  std::string nkey(std::string_view node, std::string_view what) const {
    return redis_keys::node_key(cfg.prefix, node, what);
  }
  std::string users_key() const { return cfg.prefix + ":users"; }
  std::string nodes_key() const { return cfg.prefix + ":nodes"; }

  job bind(std::vector<binding> bs, bool single);
  job unbind(const binding& b) const;
  job route(std::vector<std::string> uids) const;
  job join(std::string uid, std::string group, uint32_t max_groups) const;
  job leave(std::string uid, std::string group) const;
  job members(const std::string& group, uint32_t limit) const;
  job is_member(const std::string& group, const std::string& uid) const;
  job group_route(std::string group, std::string from) const;
  job node(const node_info& info);
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

/// The handlers of the STORE's requests (a tuple, for a behavior or a
/// blocking receive): each turns its request into a job for `add`.
template<class Add>
auto request_handlers(redis_store_state& st, Add add) {
  return std::make_tuple(
      [&st, add](atom::bind, binding& b) {
        add(st.bind({std::move(b)}, true));
      },
      [&st, add](atom::unbind, const binding& b) { add(st.unbind(b)); },
      [&st, add](atom::rebind, std::vector<binding>& bs) {
        add(st.bind(std::move(bs), false));
      },
      [&st, add](atom::route, std::vector<std::string>& uids) {
        add(st.route(std::move(uids)));
      },
      [&st, add](atom::join, std::string& uid, std::string& group,
                 uint32_t max_groups) {
        add(st.join(std::move(uid), std::move(group), max_groups));
      },
      [&st, add](atom::leave, std::string& uid, std::string& group) {
        add(st.leave(std::move(uid), std::move(group)));
      },
      [&st, add](atom::members, const std::string& group, uint32_t limit) {
        add(st.members(group, limit));
      },
      [&st, add](atom::is_member, const std::string& group,
                 const std::string& uid) { add(st.is_member(group, uid)); },
      [&st, add](atom::group_route, std::string& group, std::string& from) {
        add(st.group_route(std::move(group), std::move(from)));
      },
      [&st, add](atom::node, const node_info& info) { add(st.node(info)); },
      [&st, add](atom::nodes) { add(st.nodes()); },
      [&st, add](atom::claim, std::string& node, uint64_t incarnation,
                 int64_t timeout_ms) {
        add(st.claim(std::move(node), incarnation, timeout_ms));
      },
      [&st, add](atom::shutdown, std::string& node, uint64_t incarnation) {
        add(st.shutdown(std::move(node), incarnation));
      },
      [&st, add](atom::health) { add(st.health()); },
      [&st, add](atom::stats) { add(st.stats()); },
      [&st, add](atom::unread, const unread_watch& w) { add(st.unread(w)); },
      [&st, add](atom::append, const delivery& d) { add(st.append(d, false)); },
      [&st, add](atom::group_append, const delivery& d) {
        add(st.append(d, true));
      },
      [&st, add](atom::inbox, std::string& uid, std::string& device,
                 int64_t since, uint32_t limit) {
        add(st.inbox(std::move(uid), std::move(device), since, limit));
      },
      [&st, add](atom::read, std::string& uid, std::string& device,
                 uint64_t seq) {
        add(st.read(std::move(uid), std::move(device), seq));
      });
}

} // namespace wsc::redis_store_impl

namespace wsc::redis_store_impl {

/// The STORE on event loop 0 (scheduler-policy=loop, single Redis): `conn`
/// is connected and `shas` are its scripts' SHA1s.
caf::actor
spawn_loop_store(caf::actor_system& sys, redis_store_config cfg,
                 redis_connection conn,
                 std::array<std::string, redis_scripts::script_count> shas);

} // namespace wsc::redis_store_impl

// Spawning the Redis STATE_STORE: its settings from the options, a first
// connect that fails early (Redis unreachable, scripting disabled, another
// key layout), then the STORE on its own thread or, with
// scheduler-policy=loop and a single Redis, on event loop 0.

#include "adapters/redis_cluster.hpp"
#include "adapters/redis_connection.hpp"
#include "adapters/redis_replies.hpp"
#include "adapters/redis_scripts.hpp"
#include "adapters/redis_store.hpp"
#include "adapters/redis_store_detail.hpp"
#include "adapters/redis_store_state.hpp"
#include "loop/loop_coordinator.hpp"
#include "protocol/error.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <array>
#include <functional>
#include <string_view>
#include <utility>

namespace wsc::redis_store_impl {

namespace {

/// The version of the key layout this build writes (P:layout). Layout 1
/// (no P:layout key) kept inbox streams with time-based ids and cursors as
/// strings `P:cur:<uid>:<device>`; layout 2 had the names of layout 3
/// without hash tags (`P:u:<uid>`, `P:in:<uid>`...), so its scripts spanned
/// slots; layout 3 kept each uid's seq in a key of its own (`P:{u:<uid>}:seq`)
/// and inbox entries `<seq>-0` of seven fields (s, i, k, f, g, d, t).
constexpr std::string_view layout_version = "4";

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

/// How the STORE's errors at start name the Redis it uses.
std::string where_of(const redis_store_config& cfg) {
  return "Redis at " + cfg.url.redacted() + ", key prefix '" + cfg.prefix + "'";
}

/// Refuses a Redis older than the scripts need (redis_scripts.hpp: 7.0, for
/// XADD `0-*`), by the reply `info` to `INFO server`.
caf::error check_version(caf::expected<redis_reply_ptr> info,
                         const std::string& where) {
  if (!info)
    return std::move(info.error());
  auto x = info->get();
  if (x->type == REDIS_REPLY_ERROR)
    return make_error(
        ec::unavailable,
        where + ": INFO server: " + error_message(redis_reply_error(*x)));
  auto version = redis_version_of(text_of(x));
  if (redis_version_at_least(version, redis_scripts::min_redis_major,
                             redis_scripts::min_redis_minor))
    return caf::none;
  return make_error(
      ec::unavailable,
      where + " runs Redis " +
          (version.empty() ? std::string{"of unknown version"} : version) +
          ", this build needs Redis >= " +
          std::to_string(redis_scripts::min_redis_major) + "." +
          std::to_string(redis_scripts::min_redis_minor) +
          " (inbox entries `0-<seq>` by XADD 0-*; README, \"Redis key "
          "layout\"): upgrade Redis");
}

/// Refuses a Redis whose durable keys have another layout than ours
/// (P:layout); writes P:layout on a Redis that has none of them yet. Layout
/// 1 is looked for by a SCAN on a single Redis (`conn`); a Redis Cluster
/// (`conn` null) never held an older layout.
caf::error check_layout(const one_command_fn& command, redis_connection* conn,
                        const redis_store_config& cfg) {
  auto key = cfg.prefix + ":layout";
  auto where = where_of(cfg);
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
      if (text_of(x) == "2" || text_of(x) == "3")
        return make_error(
            ec::unavailable,
            where + " holds key layout " + std::string{text_of(x)} +
                ", this build uses layout " + std::string{layout_version} +
                " (inbox entries `0-<seq>` in one field, no counter key): "
                "stop the older nodes and migrate or delete the keys (README, "
                "\"Redis key layout\"), or use another redis-prefix");
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

/// The STORE's settings from the options.
redis_store_config store_config(const options& opts) {
  redis_store_config cfg;
  cfg.url = opts.redis;
  cfg.prefix = opts.redis_prefix;
  cfg.lease_ms = std::max<int64_t>(opts.node_timeout.count(), 1);
  cfg.inbox_max_messages = opts.inbox_max_messages;
  cfg.inbox_max_age_ms = opts.inbox_max_age.count();
  cfg.max_fanout_bytes = opts.max_fanout_bytes;
  cfg.max_group_members = opts.max_group_members;
  // The fields besides the payload: uids, group and id are at most a few
  // hundred bytes together.
  cfg.max_entry_bytes = opts.max_message_bytes + 1024;
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
  return cfg;
}

caf::error cant_use(const redis_store_config& cfg, const caf::error& why) {
  return make_error(ec::unavailable, "cannot use Redis at " +
                                         cfg.url.redacted() + ": " +
                                         error_message(why));
}

/// Redis Cluster: completes `cfg.cluster` from the URL and the options, and
/// checks that the cluster answers, takes our scripts and holds our key
/// layout.
caf::error check_cluster(redis_store_config& cfg, const options& opts) {
  if (cfg.prefix.find_first_of("{}") != std::string::npos)
    return make_error(ec::unavailable,
                      "redis-prefix must not contain '{' or '}' with a "
                      "Redis Cluster (it would change the keys' hash tags)");
  auto ccfg = parse_redis_cluster_url(cfg.url.cluster);
  if (!ccfg)
    return cant_use(cfg, ccfg.error());
  cfg.cluster = std::move(*ccfg);
  cfg.cluster.connect_timeout = cfg.connect_timeout;
  cfg.cluster.io_timeout = cfg.io_timeout;
  cfg.cluster.wait_replicas = cfg.durable_replicas;
  cfg.cluster.wait_timeout = cfg.durable_replicas_timeout;
  // A command retries through a failover for at most 60 % of the request
  // timeout, so that a shard that stays down is reported (unavailable)
  // before the caller's request times out.
  cfg.cluster.retry_deadline = std::max(
      milliseconds{500},
      std::chrono::duration_cast<milliseconds>(opts.request_timeout * 6 / 10));
  auto cl = redis_cluster::open(cfg.cluster);
  if (!cl)
    return make_error(ec::unavailable, "cannot reach Redis at " +
                                           cfg.url.redacted() + ": " +
                                           error_message(cl.error()));
  // Fails early where scripting is disabled or the server is too old.
  for (size_t i = 0; i < redis_scripts::script_count; ++i)
    if (auto sha = cl->load_script(
            redis_scripts::source(static_cast<script>(i), cfg.session_groups));
        !sha)
      return cant_use(cfg, sha.error());
  // Every master runs the scripts, so each is asked for its version (the
  // seed alone may be the one upgraded node). Replicas are not: Redis'
  // upgrade procedure upgrades replicas before their master fails over to
  // them, so a replica promoted later is never older than the master was.
  for (auto& [master, info] : cl->on_every_master({"INFO", "server"}))
    if (auto err = check_version(std::move(info), where_of(cfg) + " (master " +
                                                      master.to_string() + ")"))
      return err;
  auto command = [&](std::string_view key, std::vector<std::string_view> argv) {
    return cl->command(key, std::move(argv));
  };
  return check_layout(command, nullptr, cfg);
}

} // namespace

} // namespace wsc::redis_store_impl

namespace wsc {

caf::expected<state_store_actor> spawn_redis_store(caf::actor_system& sys,
                                                   const options& opts) {
  // In the function: the unity build puts other files after this one.
  using namespace redis_store_impl;
  auto cfg = store_config(opts);
  if (cfg.url.is_cluster()) {
    if (auto err = check_cluster(cfg, opts))
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
        return cant_use(cfg, sha.error());
      shas[i] = std::move(*sha);
    }
    auto command = [&](std::string_view, std::vector<std::string_view> argv) {
      return conn->command(argv);
    };
    if (auto err =
            check_version(conn->command({"INFO", "server"}), where_of(cfg)))
      return err;
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

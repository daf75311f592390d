// Requests of the Redis STATE_STORE about nodes: heartbeats (node), the
// list of nodes, claims of silent nodes, shutdowns, and the STORE's health.
// redis_store_detail.hpp says in which order a node's cleanup runs and what
// a crash in between leaves.
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

#include "actors/discovery.hpp"
#include "adapters/redis_cluster.hpp"
#include "adapters/redis_keys.hpp"
#include "adapters/redis_replies.hpp"
#include "adapters/redis_store_detail.hpp"
#include "adapters/redis_store_state.hpp"
#include "protocol/error.hpp"
#include "protocol/frames.hpp"
#include "protocol/names.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <memory>
#include <string_view>
#include <utility>

namespace wsc::redis_store_impl {

namespace {

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

/// Drop, stage 2: per uid slot, removes the bindings of the index entries
/// of the incarnations to drop that still point at the node (drop_uid).
void drop_bindings(const redis_store_state& st, drop_state& d, job& j) {
  auto& cfg = st.cfg;
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
    if (!all && std::find(d.incs.begin(), d.incs.end(), x->inc) == d.incs.end())
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
}

/// Drop, stage 3: P:users and (session groups) the group sets of the uids
/// left offline; once every drop_uid call succeeded, the index entries, the
/// incarnations and (claim, shutdown) the node's id.
void drop_index(const redis_store_state& st, drop_state& d, job& j) {
  auto& cfg = st.cfg;
  // Offline uids with their groups (session groups), per call. A call
  // that failed leaves its bindings and index entries: a later cleanup
  // repeats it.
  std::vector<std::pair<std::string, std::string>> memberships;
  bool complete = !j.stage_error;
  size_t gone = 0;
  for (auto& r : j.replies) {
    if (!is_array(r.get()))
      continue;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
      auto uid = std::string{text_of(r->element[i])};
      for (auto& g : strings_of(r->element[i + 1], 0))
        memberships.emplace_back(g, uid);
      ++gone;
      // Counted and cleaned up, but no OFFLINE event for a name no node
      // would have bound (written into Redis by someone else).
      if (valid_name(uid))
        d.offline.push_back(std::move(uid));
    }
  }
  if (gone > 0)
    j.commands.push_back(redis_command{
        script::users_add, st.users_key(), {"-" + std::to_string(gone)}});
  for (auto& [g, uid] : memberships)
    j.commands.push_back(
        redis_command{std::nullopt, st.gkey(g), {"SREM", st.gkey(g), uid}});
  if (!complete)
    return; // keep the index: the next cleanup repeats the rest
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
}

/// Runs one stage of a drop: puts its commands into `j` and returns false,
/// or true once done (`d.offline` then holds the uids left offline).
bool drop_step(const redis_store_state& st, drop_state& d, job& j) {
  switch (d.stage++) {
  case 0:
    j.commands.push_back(redis_command{std::nullopt,
                                       st.nkey(d.node, "nb"),
                                       {"SMEMBERS", st.nkey(d.node, "nb")}});
    return false;
  case 1:
    if (j.stage_error)
      return true; // nothing changed; the next sweep or claim retries
    drop_bindings(st, d, j);
    return false;
  case 2:
    drop_index(st, d, j);
    return false;
  default:
    return true;
  }
}

/// An error reply for a key of another type than asked for.
bool is_wrong_type(const redisReply* r) {
  return r && r->type == REDIS_REPLY_ERROR && r->str &&
         std::string_view{r->str, r->len}.substr(0, 9) == "WRONGTYPE";
}

caf::expected<caf::message> answer_health(job& j) {
  return caf::make_message(text_of(j.replies.front().get()) == "PONG");
}

} // namespace

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
      // The flag stays set until a write-back's rebind succeeds: the
      // heartbeats of a stalled batch are answered together, and the
      // second must not clear what the first reported, nor may a failed
      // rebind (DISCOVERY retries it). A lost entry of this node is
      // written back counted, as its bindings were dropped with it.
      if (*fresh)
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
  // (1) at most max_node_ids + 1 ids and Redis' time; (2) each one's entry.
  // SRANDMEMBER with a count answers the whole set while it is that small,
  // else as many distinct ids: a read costs the same however many ids
  // others wrote into P:nodes. More than max_node_ids answer a sample
  // (partial_nodes), as does an entry that could not be read (its shard is
  // down). Ids without an entry leave P:nodes afterwards: a set grown by
  // them shrinks back by up to a read's size per read. A live node always
  // has its entry; one registering meanwhile (entry and id are written in
  // one stage, on two shards on a Redis Cluster) may lose its id that way,
  // and adds it again at its next heartbeat. An entry stays until its
  // node's cleanup (claimed) or forget_node, so a crashed node keeps its id.
  job result;
  auto key = nodes_key();
  result.commands.push_back(
      redis_command{std::nullopt,
                    key,
                    {"SRANDMEMBER", key, std::to_string(max_node_ids + 1)}});
  result.commands.push_back(redis_command{std::nullopt, key, {"TIME"}});
  auto ids = std::make_shared<std::vector<std::string>>();
  auto redis_now = std::make_shared<int64_t>(0);
  auto prefix = cfg.prefix;
  result.step =
      [ids, redis_now, prefix, key, stage = 0](
          job& j) mutable -> std::optional<caf::expected<caf::message>> {
    if (stage++ == 0) {
      if (j.stage_error)
        return caf::expected<caf::message>{j.stage_error};
      *ids = strings_of(j.replies[0].get(), 0);
      // Never more than asked for, whatever answered.
      if (ids->size() > max_node_ids + 1)
        ids->resize(max_node_ids + 1);
      auto t = read_redis_time(j.replies[1].get());
      if (!t)
        return caf::expected<caf::message>{unexpected_reply("TIME")};
      *redis_now = *t;
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
    redis_command stale{std::nullopt, key, {"SREM", key}};
    size_t unread = 0;
    for (size_t i = 0; i < ids->size(); ++i) {
      auto fields = i < j.replies.size() ? j.replies[i].get() : nullptr;
      auto info =
          is_array(fields) && fields->elements > 0
              ? read_node_entry((*ids)[i], fields, local_now, *redis_now)
              : std::nullopt;
      if (info) {
        result.push_back(std::move(*info));
      } else if (is_array(fields) || is_wrong_type(fields)) {
        // No entry, or one no node wrote (a node writes every field at
        // once): its id leaves the list, the key stays for its owner.
        stale.args.push_back((*ids)[i]);
      } else {
        ++unread; // e.g. its shard is down: unknown, so the list is partial
      }
    }
    if (unread > 0 && unread == ids->size())
      return caf::expected<caf::message>{
          j.stage_error ? j.stage_error : unexpected_reply("nodes")};
    if (stale.args.size() > 2)
      j.followups.push_back(std::move(stale));
    std::sort(result.begin(), result.end(),
              [](auto& x, auto& y) { return x.id < y.id; });
    if (ids->size() > max_node_ids || unread > 0)
      return caf::expected<caf::message>{partial_nodes(std::move(result))};
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

job redis_store_state::health() const {
  job result;
  result.commands.push_back(redis_command{std::nullopt, users_key(), {"PING"}});
  result.step = one_stage(answer_health);
  result.when_down = caf::make_message(false);
  return result;
}

} // namespace wsc::redis_store_impl

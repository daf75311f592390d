#include "adapters/redis_cluster.hpp"

#include "protocol/error.hpp"

#include <algorithm>
#include <thread>

namespace wsc {

namespace {

constexpr uint16_t no_owner = 0xFFFF;

} // namespace

// -- the client
// -----------------------------------------------------------------

redis_cluster::redis_cluster(redis_cluster_config cfg)
    : cfg_(std::move(cfg)), owners_(redis_slot_count, no_owner) {
  // nop
}

caf::expected<redis_cluster> redis_cluster::open(redis_cluster_config cfg) {
  if (cfg.seeds.empty())
    return make_error(ec::internal, "Redis Cluster: no seed node");
  redis_cluster result{std::move(cfg)};
  if (auto err = result.refresh(true))
    return err;
  return result;
}

redis_connection* redis_cluster::connection(const redis_endpoint& ep,
                                            caf::error& why) {
  if (auto i = conns_.find(ep); i != conns_.end()) {
    if (i->second.ok())
      return &i->second;
    conns_.erase(i); // sticky error: only a new connection helps
  }
  redis_url url;
  url.host = ep.host;
  url.port = ep.port;
  url.password = cfg_.password;
  ++stats_.connects;
  auto conn =
      redis_connection::open(url, cfg_.connect_timeout, cfg_.io_timeout);
  if (!conn) {
    why = make_error(ec::unavailable, "Redis at " + ep.to_string() + ": " +
                                          error_message(conn.error()));
    return nullptr;
  }
  return &conns_.emplace(ep, std::move(*conn)).first->second;
}

void redis_cluster::install(redis_slot_map map) {
  masters_.clear();
  std::fill(owners_.begin(), owners_.end(), no_owner);
  for (auto& range : map) {
    auto i = std::find(masters_.begin(), masters_.end(), range.master);
    if (i == masters_.end())
      i = masters_.insert(masters_.end(), range.master);
    auto index = static_cast<uint16_t>(i - masters_.begin());
    std::fill(owners_.begin() + range.first, owners_.begin() + range.last + 1,
              index);
  }
  if (promoted_replica(map_, map))
    ++stats_.promotions;
  map_ = std::move(map);
  // Connections to former masters (now replicas, or gone) are of no use.
  for (auto i = conns_.begin(); i != conns_.end();)
    if (std::find(masters_.begin(), masters_.end(), i->first) == masters_.end())
      i = conns_.erase(i);
    else
      ++i;
}

std::optional<redis_endpoint> redis_cluster::owner(uint16_t slot) const {
  if (owners_[slot] == no_owner)
    return std::nullopt;
  return masters_[owners_[slot]];
}

caf::error redis_cluster::refresh(bool force) {
  auto now = clock::now();
  if (!force && last_refresh_ && now - *last_refresh_ < cfg_.refresh_interval)
    return caf::none;
  last_refresh_ = now;
  ++stats_.refreshes;
  // Ask nodes we are connected to first (no connect needed), then every
  // master and replica we know (a promoted replica is among them), then the
  // seeds.
  std::vector<redis_endpoint> candidates;
  auto add = [&](const redis_endpoint& ep) {
    if (std::find(candidates.begin(), candidates.end(), ep) == candidates.end())
      candidates.push_back(ep);
  };
  for (auto& [ep, conn] : conns_)
    if (conn.ok())
      add(ep);
  for (auto& range : map_) {
    add(range.master);
    for (auto& replica : range.replicas)
      add(replica);
  }
  for (auto& seed : cfg_.seeds)
    add(seed);
  caf::error last = make_error(ec::unavailable, "no node answered");
  for (auto& ep : candidates) {
    auto conn = connection(ep, last);
    if (conn == nullptr)
      continue;
    auto reply = conn->command({"CLUSTER", "SLOTS"});
    if (!reply) {
      last = std::move(reply.error());
      conns_.erase(ep);
      continue;
    }
    if ((*reply)->type == REDIS_REPLY_ERROR) {
      last = redis_reply_error(**reply);
      continue;
    }
    auto map = parse_cluster_slots(**reply, ep.host);
    if (!map) {
      last = std::move(map.error());
      continue;
    }
    if (map->empty()) {
      // A node that has not joined the cluster (yet) knows no slots.
      last = make_error(ec::unavailable, ep.to_string() + " serves no slots");
      continue;
    }
    install(std::move(*map));
    return caf::none;
  }
  return make_error(ec::unavailable,
                    "Redis Cluster: cannot load the slot map: " +
                        error_message(last));
}

/// A command waiting to be sent; `ask_to` set for the one try after ASK.
struct redis_cluster::pending_command {
  size_t index;
  std::optional<redis_endpoint> ask_to;
  int redirects = 0;
};

/// One master's commands of a pass, in one pipeline.
struct redis_cluster::shard_pipeline {
  redis_connection* conn = nullptr;
  std::vector<pending_command> cmds;
  /// Whether a WAIT follows the commands.
  bool wait = false;
};

/// One pass of `execute` over the commands without an answer yet: one
/// pipeline per master, the commands to send again at once (redirected) and
/// after a pause (no master, a broken connection, a cluster between states).
struct redis_cluster::pass {
  const std::vector<redis_cluster_command>& cmds;
  std::vector<result>& results;
  std::vector<int64_t>* replicas;
  const std::optional<redis_wait>& wait_cmd;
  caf::error& last_error;
  std::map<redis_endpoint, shard_pipeline> shards;
  std::vector<pending_command> again;
  std::vector<pending_command> later;
  /// A MOVED came: the slot map is reloaded after the pass.
  bool moved = false;
};

void redis_cluster::plan(pass& p, std::vector<pending_command>& todo) {
  for (auto& cmd : todo) {
    auto slot = key_slot(p.cmds[cmd.index].key);
    auto to = cmd.ask_to ? cmd.ask_to : owner(slot);
    if (!to) {
      p.last_error = make_error(
          ec::unavailable, "slot " + std::to_string(slot) + " has no master");
      p.later.push_back(std::move(cmd));
      continue;
    }
    p.shards[*to].cmds.push_back(std::move(cmd));
  }
}

void redis_cluster::send(pass& p) {
  for (auto& [ep, s] : p.shards) {
    s.conn = connection(ep, p.last_error);
    if (s.conn == nullptr) {
      p.later.insert(p.later.end(), s.cmds.begin(), s.cmds.end());
      s.cmds.clear();
      continue;
    }
    for (auto& cmd : s.cmds) {
      if (cmd.ask_to)
        s.conn->append({"ASKING"});
      s.conn->append(p.cmds[cmd.index].argv);
      s.wait = s.wait || (p.wait_cmd && p.cmds[cmd.index].wait);
    }
    if (s.wait)
      s.conn->append(p.wait_cmd->argv());
  }
}

bool redis_cluster::follow_redirect(pass& p, pending_command& cmd,
                                    std::string_view text,
                                    const redis_endpoint& from) {
  auto r = parse_redirect(text);
  if (!r)
    return false;
  if (++cmd.redirects > cfg_.max_redirects) {
    p.results[cmd.index] =
        make_error(ec::internal, "Redis Cluster: too many redirects, last: " +
                                     std::string{text});
    return true;
  }
  if (r->to.host.empty())
    r->to.host = from.host;
  if (r->ask) {
    ++stats_.ask;
    cmd.ask_to = std::move(r->to);
  } else {
    // Follow at once; the full map is reloaded after the pass (a MOVED
    // rarely comes alone: a failover or resharding moved more).
    ++stats_.moved;
    auto m = std::find(masters_.begin(), masters_.end(), r->to);
    if (m == masters_.end() && masters_.size() < no_owner)
      m = masters_.insert(masters_.end(), r->to);
    if (m != masters_.end())
      owners_[r->slot] = static_cast<uint16_t>(m - masters_.begin());
    p.moved = true;
  }
  p.again.push_back(std::move(cmd));
  return true;
}

void redis_cluster::receive(pass& p, const redis_endpoint& ep,
                            shard_pipeline& s) {
  auto lost = [&](const caf::error& why) {
    p.last_error = make_error(ec::unavailable, "Redis at " + ep.to_string() +
                                                   ": " + error_message(why));
    conns_.erase(ep);
  };
  // Commands of this round trip the WAIT confirms (they had a reply).
  std::vector<size_t> waiting;
  bool broken = false;
  for (size_t i = 0; i < s.cmds.size(); ++i) {
    auto cmd = s.cmds[i];
    auto asked = cmd.ask_to.has_value();
    cmd.ask_to.reset();
    auto reply = s.conn->read();
    if (asked && reply) // the answer of ASKING: the command's is next
      reply = s.conn->read();
    if (!reply) {
      // The pipeline's remaining replies are lost: send those again (at
      // least once: a command may have run before the break).
      lost(reply.error());
      p.later.push_back(cmd);
      p.later.insert(p.later.end(), s.cmds.begin() + i + 1, s.cmds.end());
      broken = true;
      break;
    }
    auto& x = **reply;
    if (x.type == REDIS_REPLY_ERROR) {
      auto text = std::string_view{x.str, x.len}; // set in error replies
      if (follow_redirect(p, cmd, text, ep))
        continue;
      // The cluster is between states (failover in progress, slot being
      // migrated): wait and try again.
      if (text.rfind("CLUSTERDOWN", 0) == 0 || text.rfind("TRYAGAIN", 0) == 0) {
        p.last_error = redis_reply_error(x);
        p.later.push_back(std::move(cmd));
        continue;
      }
    }
    if (s.wait && p.cmds[cmd.index].wait)
      waiting.push_back(cmd.index);
    p.results[cmd.index] = std::move(*reply);
  }
  if (!s.wait || s.cmds.empty())
    return;
  // The commands ran; without a WAIT answer they count as on no replica.
  int64_t acked = 0;
  if (!broken) {
    if (auto reply = s.conn->read())
      acked = parse_wait_reply(**reply).value_or(0);
    else
      lost(reply.error());
  }
  if (p.replicas != nullptr)
    for (auto i : waiting)
      (*p.replicas)[i] = acked;
}

std::vector<redis_cluster::result>
redis_cluster::execute(const std::vector<redis_cluster_command>& cmds,
                       std::vector<int64_t>* replicas) {
  std::vector<result> results;
  results.reserve(cmds.size());
  if (replicas != nullptr)
    replicas->assign(cmds.size(), -1);
  std::optional<redis_wait> wait_cmd;
  if (cfg_.wait_replicas > 0)
    wait_cmd.emplace(cfg_.wait_replicas, cfg_.wait_timeout);
  std::vector<pending_command> todo;
  for (size_t i = 0; i < cmds.size(); ++i) {
    results.emplace_back(redis_reply_ptr{});
    todo.push_back(pending_command{i, std::nullopt, 0});
  }
  auto deadline = clock::now() + cfg_.retry_deadline;
  auto backoff = duration{25};
  caf::error last_error;
  while (!todo.empty()) {
    // Appends all, then reads all: one round trip per master.
    pass p{cmds, results, replicas, wait_cmd, last_error, {}, {}, {}, false};
    plan(p, todo);
    send(p);
    for (auto& [ep, s] : p.shards)
      receive(p, ep, s);
    if (p.moved)
      refresh();
    todo = std::move(p.again);
    if (p.later.empty())
      continue;
    auto now = clock::now();
    if (now >= deadline) {
      for (auto& cmd : p.later)
        results[cmd.index] =
            make_error(ec::unavailable, error_message(last_error));
      continue;
    }
    stats_.retries += p.later.size();
    std::this_thread::sleep_for(std::min(
        backoff, std::chrono::duration_cast<duration>(deadline - now)));
    backoff = std::min(backoff * 2, duration{200});
    refresh();
    // An ASK is followed once: after an outage the map decides again.
    for (auto& cmd : p.later)
      cmd.ask_to.reset();
    todo.insert(todo.end(), p.later.begin(), p.later.end());
  }
  return results;
}

redis_cluster::result
redis_cluster::command(std::string_view key,
                       std::vector<std::string_view> argv) {
  auto results = execute({redis_cluster_command{key, std::move(argv)}});
  return std::move(results.front());
}

caf::expected<std::string>
redis_cluster::load_script(const std::string& source) {
  std::string sha;
  for (auto& ep : masters_) {
    caf::error why;
    auto conn = connection(ep, why);
    if (conn == nullptr)
      return why;
    auto result = conn->load_script(source);
    if (!result)
      return std::move(result.error());
    sha = std::move(*result);
  }
  if (sha.empty())
    return make_error(ec::unavailable, "Redis Cluster: no master known");
  return sha;
}

std::vector<std::pair<redis_endpoint, redis_cluster::result>>
redis_cluster::on_every_master(const std::vector<std::string_view>& argv) {
  std::vector<std::pair<redis_endpoint, result>> out;
  out.reserve(masters_.size());
  for (auto& ep : masters_) {
    caf::error why;
    auto conn = connection(ep, why);
    if (conn == nullptr)
      out.emplace_back(ep, std::move(why));
    else
      out.emplace_back(ep, conn->command(argv));
  }
  return out;
}

} // namespace wsc

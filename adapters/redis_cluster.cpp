#include "adapters/redis_cluster.hpp"

#include "protocol/error.hpp"

#include <algorithm>
#include <array>
#include <thread>

namespace wsc {

namespace {

constexpr uint16_t no_owner = 0xFFFF;

std::string_view text_of(const redisReply& x) {
  return x.str == nullptr ? std::string_view{} : std::string_view{x.str, x.len};
}

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

/// Decimal digits only, at most `max`.
std::optional<uint32_t> parse_number(std::string_view text, uint32_t max) {
  if (text.empty() || text.size() > 5)
    return std::nullopt;
  uint32_t result = 0;
  for (auto c : text) {
    if (c < '0' || c > '9')
      return std::nullopt;
    result = result * 10 + static_cast<uint32_t>(c - '0');
  }
  if (result > max)
    return std::nullopt;
  return result;
}

caf::error bad_slots(std::string what) {
  return make_error(ec::internal, "CLUSTER SLOTS: " + std::move(what));
}

/// One node entry of CLUSTER SLOTS: [host, port, id, ...]. None for a node
/// whose address is unknown ("?"); an error for a wrong shape.
caf::expected<std::optional<redis_endpoint>>
parse_slots_node(const redisReply& x, std::string_view answered_by) {
  if (x.type != REDIS_REPLY_ARRAY || x.elements < 2 || x.element == nullptr ||
      x.element[0] == nullptr || x.element[1] == nullptr ||
      x.element[0]->type != REDIS_REPLY_STRING ||
      x.element[1]->type != REDIS_REPLY_INTEGER)
    return bad_slots("a node is not [host, port, ...]");
  auto host = text_of(*x.element[0]);
  auto port = x.element[1]->integer;
  if (host == "?")
    return std::optional<redis_endpoint>{};
  if (host.empty())
    host = answered_by;
  auto ep =
      parse_redis_endpoint(std::string{host} + ":" + std::to_string(port));
  if (!ep || ep->host != host)
    return bad_slots("a node has an invalid address");
  return std::optional<redis_endpoint>{std::move(*ep)};
}

} // namespace

// -- slots and endpoints ------------------------------------------------------

uint16_t crc16_xmodem(std::string_view data) {
  // Table-driven, as in the Redis Cluster specification (crc16.c).
  static const auto table = [] {
    std::array<uint16_t, 256> t{};
    for (unsigned i = 0; i < 256; ++i) {
      uint16_t crc = static_cast<uint16_t>(i << 8);
      for (int bit = 0; bit < 8; ++bit)
        crc = static_cast<uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021
                                                   : crc << 1);
      t[i] = crc;
    }
    return t;
  }();
  uint16_t crc = 0;
  for (unsigned char c : data)
    crc = static_cast<uint16_t>((crc << 8) ^ table[((crc >> 8) ^ c) & 0xFF]);
  return crc;
}

uint16_t key_slot(std::string_view key) {
  // Only the first '{' counts, and only if a '}' follows with something in
  // between ("foo{}{bar}" hashes the whole key).
  if (auto open = key.find('{'); open != std::string_view::npos) {
    auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  return crc16_xmodem(key) & (redis_slot_count - 1);
}

std::string redis_endpoint::to_string() const {
  if (host.find(':') != std::string::npos)
    return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

caf::expected<redis_endpoint> parse_redis_endpoint(std::string_view text,
                                                   bool allow_empty_host) {
  auto invalid = [&] {
    return make_error(ec::internal, "invalid Redis address: " +
                                        std::string{text.substr(0, 64)});
  };
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find("]:");
    if (close == std::string_view::npos)
      return invalid();
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    // Redis writes IPv6 hosts bare ("::1:7000"): the port is after the last
    // colon.
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return invalid();
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  auto n = parse_number(port, 65535);
  if (!n || *n == 0 || host.size() > 255 || (host.empty() && !allow_empty_host))
    return invalid();
  for (unsigned char c : host)
    if (c <= ' ' || c >= 0x7F || c == '[' || c == ']' || c == '/')
      return invalid();
  return redis_endpoint{std::string{host}, static_cast<uint16_t>(*n)};
}

// -- the slot map
// ---------------------------------------------------------------

caf::expected<redis_slot_map>
parse_cluster_slots(const redisReply& reply, std::string_view answered_by) {
  if (reply.type != REDIS_REPLY_ARRAY)
    return bad_slots("the reply is not an array");
  if (reply.elements > redis_slot_count ||
      (reply.elements > 0 && reply.element == nullptr))
    return bad_slots("malformed array or more ranges than slots");
  redis_slot_map result;
  for (size_t i = 0; i < reply.elements; ++i) {
    auto* x = reply.element[i];
    if (x == nullptr || x->type != REDIS_REPLY_ARRAY || x->elements < 3 ||
        x->element == nullptr ||
        std::any_of(x->element, x->element + x->elements,
                    [](auto* y) { return y == nullptr; }) ||
        x->element[0]->type != REDIS_REPLY_INTEGER ||
        x->element[1]->type != REDIS_REPLY_INTEGER)
      return bad_slots("a range is not [first, last, master, ...]");
    auto first = x->element[0]->integer;
    auto last = x->element[1]->integer;
    if (first < 0 || last < first || last >= redis_slot_count)
      return bad_slots("a range is out of bounds");
    auto master = parse_slots_node(*x->element[2], answered_by);
    if (!master)
      return std::move(master.error());
    redis_slot_range range;
    range.first = static_cast<uint16_t>(first);
    range.last = static_cast<uint16_t>(last);
    for (size_t j = 3; j < x->elements; ++j) {
      auto replica = parse_slots_node(*x->element[j], answered_by);
      if (!replica)
        return std::move(replica.error());
      if (*replica)
        range.replicas.push_back(std::move(**replica));
    }
    // A master of unknown address cannot be reached: its slots stay
    // without owner until a later map knows it.
    if (*master) {
      range.master = std::move(**master);
      result.push_back(std::move(range));
    }
  }
  std::sort(result.begin(), result.end(),
            [](auto& x, auto& y) { return x.first < y.first; });
  for (size_t i = 1; i < result.size(); ++i)
    if (result[i].first <= result[i - 1].last)
      return bad_slots("ranges overlap");
  return result;
}

bool promoted_replica(const redis_slot_map& prev, const redis_slot_map& next) {
  for (auto& x : next)
    for (auto& y : prev)
      if (x.first <= y.last && y.first <= x.last && !(x.master == y.master) &&
          std::find(y.replicas.begin(), y.replicas.end(), x.master) !=
              y.replicas.end())
        return true;
  return false;
}

// -- redirects
// ------------------------------------------------------------------

std::optional<redis_redirect> parse_redirect(std::string_view text) {
  auto space1 = text.find(' ');
  if (space1 == std::string_view::npos)
    return std::nullopt;
  auto space2 = text.find(' ', space1 + 1);
  if (space2 == std::string_view::npos)
    return std::nullopt;
  auto kind = text.substr(0, space1);
  if (kind != "MOVED" && kind != "ASK")
    return std::nullopt;
  auto slot = parse_number(text.substr(space1 + 1, space2 - space1 - 1),
                           redis_slot_count - 1);
  auto to = parse_redis_endpoint(text.substr(space2 + 1), true);
  if (!slot || !to)
    return std::nullopt;
  return redis_redirect{kind == "ASK", static_cast<uint16_t>(*slot),
                        std::move(*to)};
}

// -- configuration
// -------------------------------------------------------------

caf::expected<redis_cluster_config>
parse_redis_cluster_url(std::string_view text) {
  constexpr std::string_view scheme = "cluster://";
  auto invalid = [] {
    return make_error(ec::internal,
                      "expected cluster://[:password@]host:port[,host:port]");
  };
  if (!starts_with(text, scheme))
    return invalid();
  text.remove_prefix(scheme.size());
  redis_cluster_config cfg;
  if (auto at = text.rfind('@'); at != std::string_view::npos) {
    auto userinfo = text.substr(0, at);
    auto colon = userinfo.find(':');
    cfg.password = std::string{colon == std::string_view::npos
                                   ? userinfo
                                   : userinfo.substr(colon + 1)};
    text.remove_prefix(at + 1);
  }
  // Every comma-separated part must be an endpoint ("h:1," is not).
  for (;;) {
    auto comma = text.find(',');
    auto ep = parse_redis_endpoint(text.substr(0, comma));
    if (!ep)
      return invalid();
    cfg.seeds.push_back(std::move(*ep));
    if (comma == std::string_view::npos)
      break;
    text.remove_prefix(comma + 1);
  }
  return cfg;
}

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
      auto text = text_of(x);
      if (follow_redirect(p, cmd, text, ep))
        continue;
      // The cluster is between states (failover in progress, slot being
      // migrated): wait and try again.
      if (starts_with(text, "CLUSTERDOWN") || starts_with(text, "TRYAGAIN")) {
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

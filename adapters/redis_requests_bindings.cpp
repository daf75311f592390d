// Requests of the Redis STATE_STORE about bindings: bind, rebind, unbind,
// route, and the count of uids online (stats) that bind and unbind keep.
// redis_store_detail.hpp says in which order the calls of bind and unbind
// run and what a crash between two of them leaves.

#include "adapters/redis_keys.hpp"
#include "adapters/redis_replies.hpp"
#include "adapters/redis_store_detail.hpp"
#include "adapters/redis_store_state.hpp"
#include "protocol/error.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string_view>
#include <unordered_set>
#include <utility>

namespace wsc::redis_store_impl {

namespace {

/// Stage 1 of a bind, first: the node index entries of `bs` (per node: SADD
/// to nb, at most bindings-per-call entries a call; then the incarnations
/// to ni).
void add_index_commands(const redis_store_state& st,
                        const std::vector<binding>& bs,
                        std::vector<redis_command>& out) {
  std::map<std::string, std::vector<size_t>> by_node;
  for (size_t i = 0; i < bs.size(); ++i)
    by_node[bs[i].node].push_back(i);
  for (auto& [node, idx] : by_node) {
    auto nb = st.nkey(node, "nb");
    auto ni = st.nkey(node, "ni");
    std::set<uint64_t> incs;
    for (size_t i = 0; i < idx.size(); i += st.cfg.bindings_per_call) {
      redis_command cmd{std::nullopt, nb, {"SADD", nb}};
      auto end = std::min(idx.size(), i + st.cfg.bindings_per_call);
      for (auto k = i; k < end; ++k) {
        auto& b = bs[idx[k]];
        cmd.args.push_back(std::to_string(b.incarnation) + ',' + b.uid + ',' +
                           b.conn);
        incs.insert(b.incarnation);
      }
      out.push_back(std::move(cmd));
    }
    redis_command cmd{std::nullopt, ni, {"SADD", ni}};
    for (auto inc : incs)
      cmd.args.push_back(std::to_string(inc));
    out.push_back(std::move(cmd));
  }
}

/// What the answer of a bind needs of its request.
struct bind_request {
  std::vector<binding> bs;
  /// Per bind_uid call (one per slot), the indices of its bindings in `bs`.
  std::vector<std::vector<size_t>> parts;
  /// How many index commands precede the bind_uid calls.
  size_t index_commands = 0;
  /// A single bind (answered whether its uid came online) or a rebind.
  bool single = false;
  /// Whether uids that came online count in P:users.
  bool count_users = false;
  std::string prefix;
};

/// Reads the replies of the bind_uid calls: the answer, with the followups
/// (P:users, the index entries of the bindings it replaced).
caf::expected<caf::message> answer_bind(const bind_request& req, job& j) {
  auto& [bs, parts, index_commands, single, count_users, prefix] = req;
  int64_t added = 0;
  bool first_new = false;
  for (size_t p = 0; p < parts.size(); ++p) {
    auto r = j.replies[index_commands + p].get();
    if (!is_array(r) || r->elements != parts[p].size() * 2)
      return unexpected_reply("bind_uid");
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
    return caf::make_message(first_new);
  return caf::make_message(atom::ok_v);
}

caf::expected<caf::message> answer_stats(job& j) {
  return caf::make_message(read_user_count(j.replies.front().get()));
}

} // namespace

job redis_store_state::bind(std::vector<binding> bs, bool single) {
  job result;
  // An uncounted rebind leaves the flag to its success (below): a retry
  // after a failure must not count the bindings the failover lost.
  auto count_users = single || !rebind_uncounted;
  // Stage 1, in this order: the node index (per node), then the uids'
  // hashes (per slot). Then P:users and stale index entries (followups).
  add_index_commands(*this, bs, result.commands);
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
  auto req = std::make_shared<bind_request>(
      bind_request{std::move(bs), std::move(parts), index_commands, single,
                   count_users, cfg.prefix});
  result.step =
      [req, self = this](job& j) -> std::optional<caf::expected<caf::message>> {
    if (j.stage_error)
      return caf::expected<caf::message>{j.stage_error};
    auto answer = answer_bind(*req, j);
    if (answer && !req->single && !req->count_users)
      self->rebind_uncounted = false;
    return answer;
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

job redis_store_state::stats() const {
  job result;
  result.commands.push_back(
      redis_command{std::nullopt, users_key(), {"GET", users_key()}});
  result.step = one_stage(answer_stats);
  return result;
}

} // namespace wsc::redis_store_impl

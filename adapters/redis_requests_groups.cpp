// Requests of the Redis STATE_STORE about groups: join, leave, members,
// is_member and the route of a group publish. redis_store_detail.hpp says in
// which order the calls of join run and what a crash between them leaves.

#include "adapters/redis_keys.hpp"
#include "adapters/redis_replies.hpp"
#include "adapters/redis_store_detail.hpp"
#include "adapters/redis_store_state.hpp"
#include "protocol/error.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <memory>
#include <utility>

namespace wsc::redis_store_impl {

namespace {

caf::expected<caf::message> answer_ok(job&) {
  return caf::make_message(atom::ok_v);
}

caf::expected<caf::message> answer_flag(job& j) {
  auto x = integer_of(j.replies.front().get());
  if (!x)
    return unexpected_reply("a script");
  return caf::make_message(*x == 1);
}

caf::expected<caf::message> answer_members(job& j, size_t limit) {
  auto uids = read_members(j.replies.front().get(), limit);
  if (!uids)
    return std::move(uids.error());
  return caf::make_message(std::move(*uids));
}

} // namespace

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
  // At most `limit` distinct members, whatever the group's size: SMEMBERS
  // sent a group of 10,000 long uids (1.2 MB) for every 35-byte frame
  // (helper-31's probe). Below the limit it is the whole group.
  result.commands.push_back(redis_command{
      std::nullopt, g, {"SRANDMEMBER", g, std::to_string(limit)}});
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
  // (1) group_check in the group's slot: a non-member is refused before any
  // member is read (helper-40's probe: SISMEMBER and SMEMBERS together made
  // each refused publish to a 10,000-member group copy them all); (2) one
  // HVALS per member, each in its uid's slot.
  job result;
  auto g = gkey(group);
  // group_check's arguments after the prefix (see append's): the fan-out
  // bound at 4, the sender at 7, the group at 8, the payload's size at 9
  // (0 here: the REGISTRY checks the copies against the payload once
  // routed; every member counts with its 64 bytes of envelope already).
  result.commands.push_back(
      redis_command{script::group_check,
                    g,
                    {"0", "0", "1", std::to_string(cfg.max_fanout_bytes), "",
                     "", from, group, "0"}});
  auto uids = std::make_shared<std::vector<std::string>>();
  auto prefix = cfg.prefix;
  auto fanout = cfg.max_fanout_bytes;
  result.step =
      [uids, group, from, prefix, fanout, stage = 0](
          job& j) mutable -> std::optional<caf::expected<caf::message>> {
    if (j.stage_error)
      return caf::expected<caf::message>{j.stage_error};
    if (stage++ == 0) {
      auto members =
          read_group_check(j.replies.front().get(), from, group, 0, fanout);
      if (!members)
        return caf::expected<caf::message>{std::move(members.error())};
      *uids = std::move(*members);
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

} // namespace wsc::redis_store_impl

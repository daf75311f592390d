// Requests of the Redis STATE_STORE about durable messages: append (a send
// or a group publish stored in each receiver's inbox), the inbox pages of a
// resume, read cursors, and which copies are still unread. The order of an
// append's calls and what a crash between two of them leaves:
// redis_store_detail.hpp.

#include "adapters/redis_keys.hpp"
#include "adapters/redis_replies.hpp"
#include "adapters/redis_store_detail.hpp"
#include "adapters/redis_store_state.hpp"
#include "flow/inbox_pages.hpp"
#include "protocol/error.hpp"
#include "protocol/frames.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <atomic>
#include <limits>
#include <memory>
#include <string_view>
#include <unordered_set>
#include <utility>

namespace wsc::redis_store_impl {

namespace {

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

caf::expected<caf::message> answer_read(job& j) {
  if (auto x = integer_of(j.replies.front().get()); x && *x < 0)
    return frames::too_many_devices();
  return caf::make_message(atom::ok_v);
}

caf::expected<caf::message> answer_unread(job& j, std::vector<uint64_t> seqs) {
  // One HVALS of the uid's cursors per copy.
  return caf::make_message(read_unread(j.replies, seqs));
}

caf::expected<caf::message> answer_inbox(job& j, const std::string& key,
                                         int64_t since) {
  std::vector<std::string> bad;
  auto replay = read_inbox(j.replies.front().get(), since, bad);
  if (!replay)
    return std::move(replay.error());
  // Not what our scripts write: delete it so that the next page (which
  // starts after the last good one) skips it.
  for (auto& id : bad) {
    log_bad_content("inbox entry " + id + " of " + key);
    if (!id.empty())
      j.followups.push_back(
          redis_command{std::nullopt, key, {"XDEL", key, id}});
  }
  return caf::make_message(std::move(*replay));
}

/// A durable append on its way through its stages (see `append`): the step
/// of its job.
struct append_flow {
  using answer = caf::expected<caf::message>;

  /// The arguments of the message's group_check and idem calls; the first
  /// append_args::shared of them start every append call.
  std::shared_ptr<std::vector<std::string>> head;
  /// The inbox entry (pack_entry), built once for all append calls.
  std::shared_ptr<const std::string> entry;
  /// None without an idem (or with idempotency-window=0).
  std::string idem_key;
  /// idempotency-pending, in ms.
  std::string pending;
  /// durable-replicas: the appends wait for replicas. The idem claim does
  /// not: it is pending until the appends are done (see `idem_command`).
  int64_t replicas = 0;
  /// A group publish (group_check first) or a send to uids.
  bool group = false;
  /// The receivers: the send's uids, each once, or the group's members.
  std::shared_ptr<std::vector<std::string>> uids;
  size_t payload = 0;
  uint64_t fanout = 0;
  size_t per_call = 0;
  bool cluster_mode = false;
  std::string prefix;
  std::string from;
  std::string group_name;
  /// The uids of each append call (stage 3), to report those of a call that
  /// failed.
  std::shared_ptr<std::vector<std::vector<size_t>>> parts;
  int stage = 0;

  std::optional<answer> operator()(job& j) {
    if (j.stage_error && stage < 2)
      return answer{j.stage_error};
    switch (stage++) {
    case 0:
      return check_group(j);
    case 1:
      return store(j);
    default:
      return report(j);
    }
  }

  // The idem script in one of its modes: "claim" (pending), "done" (the
  // message is stored: the record holds its msg_id for the window),
  // "release" (storing failed somewhere: a retry stores it again).
  redis_command idem_command(const char* mode) const {
    auto args = *head;
    args.emplace_back(mode);
    args.push_back(pending);
    return redis_command{script::idem, idem_key, std::move(args)};
  }

  /// Stage 1 answered (group_check, group publishes only): the members;
  /// then claims the idem.
  std::optional<answer> check_group(job& j) {
    if (group) {
      auto members = read_group_check(j.replies.front().get(), from, group_name,
                                      payload, fanout);
      if (!members)
        return answer{std::move(members.error())};
      *uids = std::move(*members);
    }
    if (!idem_key.empty())
      j.commands.push_back(idem_command("claim"));
    return std::nullopt;
  }

  /// Stage 2 answered (the idem claim, if any): a repeat or a pending idem
  /// ends here; else one append call per receiver slot.
  std::optional<answer> store(job& j) {
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
    // The uids' key bases `P:{u:<uid>}:` (the script appends in, cur, b).
    std::vector<std::string> bases;
    bases.reserve(uids->size());
    for (auto& uid : *uids)
      bases.push_back(redis_keys::uid_key(prefix, uid, ""));
    std::vector<std::string_view> keys(bases.begin(), bases.end());
    *parts = redis_keys::split_by_slot(keys, cluster_mode, per_call);
    for (auto& part : *parts) {
      redis_command cmd{script::append, bases[part.front()], {}, replicas > 0};
      cmd.args.reserve(append_args::uids_begin + part.size());
      cmd.args.assign(head->begin(), head->begin() + append_args::shared);
      cmd.args.push_back(*entry);
      for (auto k : part)
        cmd.args.push_back(std::move(bases[k]));
      j.commands.push_back(std::move(cmd));
    }
    if (j.commands.empty()) { // no receiver
      if (!idem_key.empty())
        j.followups.push_back(idem_command("done"));
      return answer{caf::make_message(route_table{})};
    }
    return std::nullopt;
  }

  /// Stage 3 answered (the append calls): the route table of the receivers
  /// that have their copy, the idem done or given back.
  std::optional<answer> report(job& j) {
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
    std::vector<std::vector<std::string_view>> ok_uids;
    std::vector<std::string> unavailable;
    for (size_t p = 0; p < j.replies.size(); ++p) {
      auto& r = j.replies[p];
      if (r && r->type == REDIS_REPLY_ERROR)
        return answer{redis_reply_error(*r)};
      if (r && replicas > 0 && j.replicas[p] < replicas)
        r.reset();
      static const std::vector<size_t> none;
      auto& part = p < parts->size() ? (*parts)[p] : none;
      if (r) {
        ok.push_back(std::move(r));
        auto& names = ok_uids.emplace_back();
        for (auto k : part)
          names.emplace_back((*uids)[k]);
      } else {
        for (auto k : part)
          unavailable.push_back((*uids)[k]);
      }
    }
    if (ok.empty() && j.stage_error)
      return answer{j.stage_error};
    route_builder builder;
    if (auto err = add_appended(builder, ok, ok_uids))
      return answer{err};
    builder.result().unavailable = std::move(unavailable);
    return answer{caf::make_message(std::move(builder.result()))};
  }
};

} // namespace

job redis_store_state::append(const delivery& d, bool group) const {
  // Three stages for every append job (some may be empty, so the appends of
  // one batch stay in order): (1) group_check, (2) the sender's idem key,
  // (3) one append per receiver slot (at most uids_per_call uids each).
  job result;
  // Shared by the stages' commands (copied into each). The payload itself
  // goes only in the packed entry: the checks need its size.
  auto head =
      std::make_shared<std::vector<std::string>>(std::vector<std::string>{
          std::to_string(cfg.inbox_max_messages),
          std::to_string(frames::now_ms() - cfg.inbox_max_age_ms),
          std::to_string(std::max<int64_t>(cfg.inbox_max_age_ms, 1)),
          std::to_string(cfg.max_fanout_bytes), d.msg_id,
          std::to_string(static_cast<int>(d.kind)), d.from, d.group,
          std::to_string(d.data.size()), std::to_string(d.ts), std::string{},
          std::to_string(cfg.idempotency_window_ms), "1"});
  auto entry = std::make_shared<const std::string>(
      pack_entry(d.msg_id, d.kind, d.from, d.group, d.data, d.ts));
  std::string idem_key;
  if (!d.idem.empty() && cfg.idempotency_window_ms > 0) {
    (*head)[10] = std::to_string(d.from.size()) + ':' + d.from + ':' + d.idem;
    idem_key = redis_keys::idem_key(cfg.prefix, d.from, d.idem);
  }
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
  append_flow flow;
  flow.head = head;
  flow.entry = std::move(entry);
  flow.idem_key = idem_key;
  flow.pending = std::to_string(cfg.idem_pending_ms);
  flow.replicas = cfg.durable_replicas;
  flow.group = group;
  flow.uids = uids;
  flow.payload = d.data.size();
  flow.fanout = cfg.max_fanout_bytes;
  flow.per_call = cfg.uids_per_call;
  flow.cluster_mode = is_cluster();
  flow.prefix = cfg.prefix;
  flow.from = d.from;
  flow.group_name = d.group;
  flow.parts = std::make_shared<std::vector<std::vector<size_t>>>();
  result.step = std::move(flow);
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
                     std::to_string(std::min(limit, cfg.max_replay_page)),
                     std::to_string(inbox_pages::max_bytes),
                     std::to_string(cfg.max_entry_bytes)}});
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

} // namespace wsc::redis_store_impl

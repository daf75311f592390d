#include "adapters/redis_replies.hpp"

#include "protocol/error.hpp"
#include "protocol/frames.hpp"
#include "protocol/names.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <utility>

namespace wsc::redis_store_impl {

// -- single replies -----------------------------------------------------------

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

std::optional<uint64_t> parse_count(std::string_view text) {
  uint64_t result = 0;
  auto [end, err] =
      std::from_chars(text.data(), text.data() + text.size(), result);
  if (text.empty() || err != std::errc{} || end != text.data() + text.size() ||
      result >= (uint64_t{1} << 53))
    return std::nullopt;
  return result;
}

std::vector<std::string> strings_of(const redisReply* r, size_t first) {
  std::vector<std::string> result;
  if (!is_array(r))
    return result;
  for (size_t i = first; i < r->elements; ++i)
    if (auto text = text_of(r->element[i]); !text.empty())
      result.emplace_back(text);
  return result;
}

namespace {

/// The uids of a group as Redis lists them, without those no join could
/// have written (whoever writes to Redis could: helper-44's probe got an
/// empty uid, one with a comma and one of 200,000 bytes back from
/// `members`; as receivers they would become keys).
std::vector<std::string> member_names(const redisReply* r) {
  std::vector<std::string> uids;
  uids.reserve(r->elements);
  for (size_t i = 0; i < r->elements; ++i)
    if (auto uid = text_of(r->element[i]); valid_name(uid))
      uids.emplace_back(uid);
  return uids;
}

} // namespace

// -- routes -------------------------------------------------------------------

void route_builder::add(std::string_view uid, const redisReply* values,
                        std::optional<uint64_t> seq) {
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

caf::error
add_appended(route_builder& builder,
             const std::vector<redis_reply_ptr>& replies,
             const std::vector<std::vector<std::string_view>>& uids) {
  for (size_t p = 0; p < replies.size(); ++p) {
    auto r = replies[p].get();
    if (p >= uids.size() || !is_array(r) || r->elements != 2 * uids[p].size())
      return unexpected_reply("append");
    for (size_t i = 0; i < uids[p].size(); ++i) {
      auto seq = integer_of(r->element[2 * i]);
      if (!seq || *seq == 0 || *seq == std::numeric_limits<long long>::min())
        return unexpected_reply("append");
      if (*seq < 0) // the copy started the inbox
        ++builder.result().new_inboxes;
      builder.add(uids[p][i], r->element[2 * i + 1],
                  static_cast<uint64_t>(*seq < 0 ? -*seq : *seq));
    }
  }
  return caf::none;
}

// -- inboxes ------------------------------------------------------------------

std::string pack_entry(std::string_view msg_id, delivery_kind kind,
                       std::string_view from, std::string_view group,
                       std::string_view data, int64_t ts) {
  std::string result;
  result.reserve(40 + msg_id.size() + from.size() + group.size() + data.size());
  for (auto n :
       {std::to_string(ts), std::to_string(static_cast<unsigned>(kind)),
        std::to_string(msg_id.size()), std::to_string(from.size()),
        std::to_string(group.size())})
    result.append(n).append(1, ',');
  result.append(msg_id).append(from).append(group).append(data);
  return result;
}

std::optional<stored_message> unpack_entry(std::string_view m) {
  // ts, kind and the lengths of msg_id, from and group, each ended by ','.
  std::array<uint64_t, 5> n{};
  for (auto& x : n) {
    auto comma = m.find(',');
    if (comma == std::string_view::npos)
      return std::nullopt;
    auto value = parse_count(m.substr(0, comma));
    if (!value)
      return std::nullopt;
    x = *value;
    m.remove_prefix(comma + 1);
  }
  // Each length is below 2^53: the sum does not overflow.
  if (n[1] > static_cast<uint64_t>(delivery_kind::disconnect) ||
      n[2] + n[3] + n[4] > m.size())
    return std::nullopt;
  stored_message msg;
  msg.ts = static_cast<int64_t>(n[0]);
  msg.kind = static_cast<delivery_kind>(n[1]);
  msg.msg_id = m.substr(0, n[2]);
  msg.from = m.substr(n[2], n[3]);
  msg.group = m.substr(n[2] + n[3], n[4]);
  msg.data = m.substr(n[2] + n[3] + n[4]);
  return msg;
}

std::optional<uint64_t> entry_seq(std::string_view id) {
  constexpr std::string_view head = "0-";
  if (id.substr(0, head.size()) != head)
    return std::nullopt;
  auto seq = parse_count(id.substr(head.size()));
  if (!seq || *seq == 0)
    return std::nullopt;
  return seq;
}

std::optional<stored_message> read_entry(const redisReply* entry) {
  if (!is_array(entry) || entry->elements != 2 || !is_array(entry->element[1]))
    return std::nullopt;
  auto seq = entry_seq(text_of(entry->element[0]));
  if (!seq)
    return std::nullopt;
  auto fields = entry->element[1];
  std::optional<stored_message> msg;
  for (size_t k = 0; !msg && k + 1 < fields->elements; k += 2)
    if (text_of(fields->element[k]) == "m")
      msg = unpack_entry(text_of(fields->element[k + 1]));
  // The payload is copied into frames as it is: it must be one JSON value.
  if (!msg || frames::check(*msg) || !frames::json_payload_ok(msg->data))
    return std::nullopt;
  msg->seq = *seq;
  return msg;
}

caf::expected<inbox_replay> read_inbox(const redisReply* r, int64_t since,
                                       std::vector<std::string>& bad) {
  if (!is_array(r) || r->elements < 5)
    return unexpected_reply("inbox");
  auto number = [&](size_t i) {
    auto x = integer_of(r->element[i]);
    return x && *x > 0 ? static_cast<uint64_t>(*x) : uint64_t{0};
  };
  inbox_replay result;
  result.cursor = since >= 0 ? static_cast<uint64_t>(since) : number(0);
  result.last_seq = number(1);
  result.oldest = number(2);
  result.too_old =
      replay_misses_messages(result.cursor, result.oldest, result.last_seq);
  result.more = number(3) == 1;
  result.born = number(4);
  result.messages.reserve(r->elements - 5);
  auto seq = result.cursor;
  for (size_t i = 5; i < r->elements; ++i) {
    auto entry = r->element[i];
    auto msg = read_entry(entry);
    if (!msg || msg->seq <= seq) {
      // Not what our scripts write: never pass it on; the caller deletes it
      // so that the next page (which starts after the last good one) skips
      // it.
      auto id = is_array(entry) && entry->elements > 0
                    ? text_of(entry->element[0])
                    : std::string_view{};
      bad.emplace_back(id);
      continue;
    }
    seq = msg->seq;
    result.messages.push_back(std::move(*msg));
  }
  return result;
}

std::vector<bool> read_unread(const std::vector<redis_reply_ptr>& replies,
                              const std::vector<uint64_t>& seqs) {
  std::vector<bool> result;
  result.reserve(replies.size());
  for (size_t i = 0; i < replies.size(); ++i) {
    auto r = replies[i].get();
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
  return result;
}

// -- groups and counts --------------------------------------------------------

caf::expected<std::vector<std::string>> read_members(const redisReply* r,
                                                     size_t limit) {
  if (!is_array(r))
    return unexpected_reply("SRANDMEMBER");
  auto uids = member_names(r);
  auto n = std::min(uids.size(), limit);
  std::partial_sort(uids.begin(), uids.begin() + n, uids.end());
  uids.resize(n);
  return uids;
}

caf::expected<std::vector<std::string>>
read_group_check(const redisReply* r, const std::string& from,
                 const std::string& group, size_t payload, uint64_t fanout) {
  if (auto x = integer_of(r); x && *x == 0)
    return make_error(ec::not_member,
                      "'" + from + "' is not a member of '" + group + "'");
  if (auto x = integer_of(r); x && *x < 0) {
    auto receivers = static_cast<size_t>(
        std::min<long long>(-*x, std::numeric_limits<uint32_t>::max()));
    if (auto err = frames::check_fanout(receivers, payload, fanout))
      return err;
    return make_error(ec::too_large, "the group is too large for the payload");
  }
  if (!is_array(r))
    return unexpected_reply("group_check");
  return member_names(r);
}

uint64_t read_user_count(const redisReply* r) {
  // GET P:users: nil before the first uid came online.
  auto text = text_of(r);
  auto n = parse_number<int64_t>(text);
  return static_cast<uint64_t>(std::max<int64_t>(n, 0));
}

// -- nodes --------------------------------------------------------------------

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

std::string redis_version_of(std::string_view info) {
  constexpr std::string_view field = "redis_version:";
  for (size_t pos = 0; pos < info.size();) {
    auto end = std::min(info.find('\n', pos), info.size());
    auto line = info.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (line.substr(0, field.size()) == field)
      return std::string{line.substr(field.size())};
    pos = end + 1;
  }
  return {};
}

bool redis_version_at_least(std::string_view version, int major, int minor) {
  std::array<int, 2> got{};
  for (size_t i = 0; i < got.size(); ++i) {
    auto [end, err] = std::from_chars(version.data(),
                                      version.data() + version.size(), got[i]);
    if (err != std::errc{} || end == version.data())
      return false;
    version.remove_prefix(static_cast<size_t>(end - version.data()));
    if (i == 0) {
      if (version.empty() || version.front() != '.')
        return false;
      version.remove_prefix(1);
    }
  }
  return got[0] > major || (got[0] == major && got[1] >= minor);
}

std::optional<int64_t> read_redis_time(const redisReply* r) {
  if (!is_array(r) || r->elements != 2)
    return std::nullopt;
  return static_cast<int64_t>(
      parse_count(text_of(r->element[0])).value_or(0) * 1000 +
      parse_count(text_of(r->element[1])).value_or(0) / 1000);
}

std::optional<node_info> read_node_entry(std::string id,
                                         const redisReply* fields,
                                         int64_t local_now, int64_t redis_now) {
  node_info info;
  info.id = std::move(id);
  bool claimed = false;
  for (size_t k = 0; is_array(fields) && k + 1 < fields->elements; k += 2) {
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
    else if (key == "hb") {
      // Hostile values stay harmless: both times are in [0, 2^53). Nodes
      // write Redis' time, so a heartbeat ahead of it by more than the
      // clocks of two Redis servers (a cluster's shards) or one stepping
      // back could explain is as old as it is ahead: one written far into
      // the future by someone else was never silent for us and never
      // declared down (helper-44's probe).
      auto age =
          redis_now - static_cast<int64_t>(parse_count(value).value_or(0));
      if (age < -max_clock_skew_ms)
        age = -age;
      info.last_heartbeat_ms = local_now - std::max<int64_t>(age, 0);
    }
  }
  if (claimed) // being cleaned up: gone for everyone
    return std::nullopt;
  return info;
}

} // namespace wsc::redis_store_impl

#include "adapters/redis_cluster.hpp"
#include "protocol/error.hpp"

#include <algorithm>
#include <array>

namespace wsc {

namespace {

std::string_view text_of(const redisReply& x) {
  return x.str == nullptr ? std::string_view{} : std::string_view{x.str, x.len};
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
  if (text.rfind(scheme, 0) != 0)
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

} // namespace wsc

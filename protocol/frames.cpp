#include "protocol/frames.hpp"

#include "protocol/json_syntax.hpp"
#include "protocol/names.hpp"

#include <nlohmann/json.hpp>

#include <chrono>

namespace wsc::frames {

void append_quoted(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
    case '"':
      out += "\\\"";
      break;
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      if (c < 0x20) {
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xF];
      } else {
        out += ch;
      }
    }
  }
  out += '"';
}

namespace {

void append_from(std::string& out, std::string_view from) {
  out += ",\"from\":";
  if (from.empty())
    out += "null";
  else
    append_quoted(out, from);
}

void append_tail(std::string& out, std::string_view data, int64_t ts) {
  out += ",\"data\":";
  out += data.empty() ? std::string_view{"null"} : data;
  out += ",\"ts\":";
  out += std::to_string(ts);
  out += '}';
}

void append_id(std::string& out, std::string_view id) {
  if (!id.empty()) {
    out += ",\"id\":";
    out += id;
  }
}

} // namespace

std::string welcome(const conn_ref& who) {
  std::string out = "{\"type\":\"welcome\",\"uid\":";
  append_quoted(out, who.uid);
  out += ",\"conn\":";
  append_quoted(out, who.conn);
  out += ",\"node\":";
  append_quoted(out, who.node);
  out += '}';
  return out;
}

std::string welcome(const conn_ref& who, bool resumed, std::string_view reason,
                    uint64_t from, uint64_t to) {
  auto out = welcome(who);
  out.pop_back();
  out += resumed ? ",\"resumed\":true" : ",\"resumed\":false,\"reason\":";
  if (!resumed)
    append_quoted(out, reason);
  out += ",\"from\":" + std::to_string(from) + ",\"to\":" + std::to_string(to) +
         "}";
  return out;
}

std::string message(std::string_view from, std::string_view to,
                    std::string_view data, int64_t ts) {
  std::string out;
  out.reserve(64 + from.size() + to.size() + data.size());
  out += "{\"type\":\"message\"";
  append_from(out, from);
  out += ",\"to\":";
  append_quoted(out, to);
  append_tail(out, data, ts);
  return out;
}

std::string broadcast(std::string_view from, std::string_view data,
                      int64_t ts) {
  std::string out;
  out.reserve(56 + from.size() + data.size());
  out += "{\"type\":\"broadcast\"";
  append_from(out, from);
  append_tail(out, data, ts);
  return out;
}

std::string group(std::string_view group, std::string_view from,
                  std::string_view data, int64_t ts) {
  std::string out;
  out.reserve(64 + group.size() + from.size() + data.size());
  out += "{\"type\":\"group\",\"group\":";
  append_quoted(out, group);
  append_from(out, from);
  append_tail(out, data, ts);
  return out;
}

std::string encode(const delivery& d, std::string_view uid, uint64_t seq) {
  std::string out;
  switch (d.kind) {
  case delivery_kind::message:
    out = message(d.from, uid, d.data, d.ts);
    break;
  case delivery_kind::broadcast:
    out = broadcast(d.from, d.data, d.ts);
    break;
  case delivery_kind::group:
    out = group(d.group, d.from, d.data, d.ts);
    break;
  case delivery_kind::disconnect:
  default: // out of range: check() refuses such deliveries
    return {};
  }
  if (seq != 0) {
    out.pop_back(); // the closing brace
    out += ",\"seq\":";
    out += std::to_string(seq);
    out += ",\"msg_id\":";
    append_quoted(out, d.msg_id);
    out += '}';
  }
  return out;
}

std::string encode(const stored_message& msg, std::string_view uid) {
  delivery d;
  d.kind = msg.kind;
  d.from = msg.from;
  d.group = msg.group;
  d.data = msg.data;
  d.ts = msg.ts;
  d.msg_id = msg.msg_id;
  return encode(d, uid, msg.seq);
}

std::string ack(std::string_view id) {
  std::string out = "{\"type\":\"ack\"";
  append_id(out, id);
  out += '}';
  return out;
}

std::string error(std::string_view id, ec code, std::string_view message) {
  std::string out = "{\"type\":\"error\"";
  append_id(out, id);
  out += ",\"code\":";
  append_quoted(out, to_string(code));
  out += ",\"message\":";
  append_quoted(out, message);
  out += '}';
  return out;
}

std::string bye(std::string_view reason, int64_t reconnect_after_ms) {
  std::string out = "{\"type\":\"bye\",\"reason\":";
  append_quoted(out, reason);
  out += ",\"reconnect_after_ms\":";
  out += std::to_string(reconnect_after_ms);
  out += '}';
  return out;
}

std::string reply(const nlohmann::json& answer, std::string_view id) {
  if (id.empty() || !answer.is_object() || answer.contains("id"))
    return answer.dump(-1, ' ', false,
                       nlohmann::json::error_handler_t::replace);
  auto copy = answer;
  copy["id"] = nlohmann::json::parse(id, nullptr, false);
  return copy.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool json_depth_ok(std::string_view text) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_json_depth)
        return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

bool json_payload_ok(std::string_view text) {
  return json_value_ok(text, max_json_depth);
}

caf::expected<nlohmann::json> parse_object(std::string_view text) {
  if (!json_depth_ok(text))
    return make_error(ec::bad_json, "frame nests deeper than " +
                                        std::to_string(max_json_depth) +
                                        " levels");
  auto parsed = nlohmann::json::parse(text, nullptr, false);
  if (parsed.is_discarded())
    return make_error(ec::bad_json, "frame is not valid JSON");
  if (!parsed.is_object())
    return make_error(ec::bad_frame, "frame must be a JSON object");
  return parsed;
}

caf::expected<client_frame> parse_client(std::string_view text,
                                         std::string& id) {
  auto object = parse_object(text);
  if (!object)
    return std::move(object.error());
  auto& parsed = *object;
  if (auto i = parsed.find("id"); i != parsed.end()) {
    if (!i->is_string() && !i->is_number())
      return make_error(ec::bad_frame, "id must be a string or a number");
    id = i->dump();
  }
  auto type = parsed.find("type");
  if (type == parsed.end() || !type->is_string())
    return make_error(ec::bad_frame, "missing string field 'type'");
  auto type_name = type->get<std::string>();
  return client_frame{std::make_shared<const nlohmann::json>(std::move(parsed)),
                      std::move(type_name)};
}

nlohmann::json members(const std::string& group, std::vector<std::string> uids,
                       size_t limit) {
  bool truncated = uids.size() > limit;
  if (truncated)
    uids.resize(limit);
  nlohmann::json result{{"group", group}, {"uids", std::move(uids)}};
  if (truncated)
    result["truncated"] = true;
  return result;
}

delivery make_delivery(delivery_kind kind, std::string from, std::string data,
                       bool durable) {
  delivery d;
  d.kind = kind;
  d.from = std::move(from);
  d.data = std::move(data);
  d.ts = now_ms();
  d.durable = durable;
  return d;
}

namespace {

/// The most receivers one delivery may name (an API request names at most
/// 10,000; a group route one node's share of a group).
constexpr size_t max_delivery_uids = 1'000'000;

/// The most payload bytes one delivery may carry (above any
/// max-message-bytes or API body).
constexpr size_t max_delivery_data = 64u << 20;

bool optional_name(std::string_view name) {
  return name.empty() || valid_name(name);
}

caf::error check_common(delivery_kind kind, std::string_view from,
                        std::string_view group, std::string_view data,
                        std::string_view msg_id) {
  if (kind > delivery_kind::disconnect)
    return make_error(ec::bad_frame, "delivery kind out of range");
  if (!optional_name(from) || !optional_name(msg_id))
    return make_error(ec::bad_frame, "malformed sender or message id");
  if (kind == delivery_kind::group ? !valid_name(group) : !group.empty())
    return make_error(ec::bad_frame, "malformed group");
  if (data.size() > max_delivery_data || !valid_utf8(data))
    return make_error(ec::bad_frame, "payload too large or not UTF-8");
  return caf::none;
}

} // namespace

caf::error too_many_devices() {
  return make_error(ec::forbidden,
                    "this uid has read cursors of " +
                        std::to_string(max_devices_per_uid) +
                        " devices already; a new device cannot confirm reads");
}

caf::error check_fanout(size_t receivers, size_t payload_bytes,
                        uint64_t budget) {
  // Each copy costs its payload plus some bytes of envelope.
  auto per_copy = static_cast<uint64_t>(payload_bytes) + 64;
  if (receivers == 0 || per_copy <= budget / receivers)
    return caf::none;
  return make_error(ec::too_large,
                    std::to_string(receivers) + " receivers x " +
                        std::to_string(payload_bytes) +
                        " payload bytes exceed max-fanout-bytes (" +
                        std::to_string(budget) + ")");
}

caf::error check(const delivery& d) {
  if (auto err = check_common(d.kind, d.from, d.group, d.data, d.msg_id))
    return err;
  if (d.kind == delivery_kind::disconnect) {
    if (d.ts < 1000 || d.ts > 4999)
      return make_error(ec::bad_frame, "close code out of range");
  } else if (!json_payload_ok(d.data)) {
    // Copied into frames as it is: a peer or a Redis writer must not make
    // a frame that is no JSON.
    return make_error(ec::bad_frame, "payload is not one JSON value");
  }
  if (d.uids.size() > max_delivery_uids || d.seqs.size() > d.uids.size() ||
      (d.kind == delivery_kind::broadcast && !d.uids.empty()))
    return make_error(ec::bad_frame, "receiver list out of bounds");
  for (auto& uid : d.uids)
    if (!valid_name(uid))
      return make_error(ec::bad_frame, "malformed receiver uid");
  if (d.except.size() > max_except)
    return make_error(ec::bad_frame, "except list out of bounds");
  for (auto& conn : d.except)
    if (!valid_name(conn))
      return make_error(ec::bad_frame, "malformed except entry");
  if (!d.to_conn.empty() &&
      (d.kind != delivery_kind::message || !d.uids.empty() || d.durable ||
       node_of_conn(d.to_conn).empty() || !valid_name(d.to_conn)))
    return make_error(ec::bad_frame, "malformed to_conn delivery");
  return caf::none;
}

std::string_view node_of_conn(std::string_view conn) {
  auto dot = conn.find('.');
  if (dot == 0 || dot == std::string_view::npos ||
      conn.find('.', dot + 1) == std::string_view::npos)
    return {};
  return conn.substr(0, dot);
}

caf::error check(const stored_message& msg) {
  if (msg.kind != delivery_kind::message && msg.kind != delivery_kind::group)
    return make_error(ec::bad_frame, "stored message of an unknown kind");
  return check_common(msg.kind, msg.from, msg.group, msg.data, msg.msg_id);
}

int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
      .count();
}

} // namespace wsc::frames

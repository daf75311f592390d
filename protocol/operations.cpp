#include "protocol/operations.hpp"

#include "protocol/error.hpp"
#include "protocol/frames.hpp"
#include "protocol/names.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <string_view>
#include <unordered_set>

namespace wsc::ops {

namespace {

using json = nlohmann::json;

caf::error bad_frame(std::string message) {
  return make_error(ec::bad_frame, std::move(message));
}

caf::expected<const json*> field(const json& object, const char* name) {
  auto i = object.find(name);
  if (i == object.end())
    return bad_frame(std::string{"missing field '"} + name + "'");
  return &*i;
}

} // namespace

caf::expected<std::string> name_field(const json& object, const char* name) {
  auto value = field(object, name);
  if (!value)
    return std::move(value.error());
  if (!(*value)->is_string() ||
      !valid_name((*value)->get_ref<const std::string&>()))
    return bad_frame(std::string{"field '"} + name +
                     "' must be a name of 1-128 bytes without spaces, "
                     "control characters or commas");
  return (*value)->get<std::string>();
}

caf::expected<std::vector<std::string>>
uid_list(const json& object, const char* name, size_t max_uids) {
  auto value = field(object, name);
  if (!value)
    return std::move(value.error());
  std::vector<std::string> uids;
  // Each uid once: a repeated receiver is neither stored nor counted twice.
  std::unordered_set<std::string_view> seen;
  auto add = [&](const json& x) {
    if (!x.is_string() || !valid_name(x.get_ref<const std::string&>()))
      return false;
    auto& uid = x.get_ref<const std::string&>();
    if (seen.insert(uid).second)
      uids.push_back(uid);
    return true;
  };
  auto what = std::string{"field '"} + name +
              "' must be a uid or a non-empty list of uids";
  if ((*value)->is_array()) {
    if ((*value)->empty() || (*value)->size() > max_uids)
      return bad_frame(what + " (at most " + std::to_string(max_uids) + ")");
    for (auto& x : **value)
      if (!add(x))
        return bad_frame(what);
  } else if (!add(**value)) {
    return bad_frame(what);
  }
  return uids;
}

caf::expected<std::string> data_field(const json& object, size_t max_bytes) {
  auto value = field(object, "data");
  if (!value)
    return std::move(value.error());
  auto text = (*value)->dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > max_bytes)
    return make_error(ec::too_large,
                      "field 'data' is " + std::to_string(text.size()) +
                          " bytes as the node writes it (numbers in full), "
                          "more than " +
                          std::to_string(max_bytes));
  return text;
}

bool idem_fits(std::string_view idem) {
  return idem.size() <= max_idem_bytes && valid_utf8(idem);
}

caf::error read_idem(const json& object, std::string& idem) {
  auto i = object.find("idem");
  if (i == object.end())
    return caf::none;
  if (!i->is_string() || i->get_ref<const std::string&>().empty() ||
      !idem_fits(i->get_ref<const std::string&>()))
    return bad_frame("field 'idem' must be a string of 1-" +
                     std::to_string(max_idem_bytes) + " bytes of UTF-8");
  idem = i->get<std::string>();
  return caf::none;
}

caf::error read_addressing(const json& object, const std::string& own_conn,
                           bool to_conn_allowed, delivery& d) {
  auto conn_id = [](const json& x) {
    return x.is_string() && valid_name(x.get_ref<const std::string&>()) &&
           !frames::node_of_conn(x.get_ref<const std::string&>()).empty();
  };
  if (auto i = object.find("except"); i != object.end()) {
    if (!i->is_array() || i->size() > frames::max_except ||
        !std::all_of(i->begin(), i->end(), conn_id))
      return bad_frame("field 'except' must be a list of at most " +
                       std::to_string(frames::max_except) + " connection ids");
    for (auto& x : *i)
      d.except.push_back(x.get<std::string>());
  }
  if (auto i = object.find("except_self"); i != object.end()) {
    if (!i->is_boolean())
      return bad_frame("field 'except_self' must be true or false");
    if (i->get<bool>()) {
      if (own_conn.empty())
        return bad_frame("'except_self' needs a connection: use 'except'");
      if (d.except.size() >= frames::max_except)
        return bad_frame("field 'except' names too many connections");
      d.except.push_back(own_conn);
    }
  }
  if (auto i = object.find("to_conn"); i != object.end()) {
    if (!to_conn_allowed)
      return bad_frame("field 'to_conn' is for send only");
    if (!conn_id(*i))
      return bad_frame("field 'to_conn' must be a connection id");
    d.to_conn = i->get<std::string>();
  }
  return caf::none;
}

namespace {

/// A delivery of `from` carrying `data`.
delivery delivery_from(delivery_kind kind, const origin& from, std::string data,
                       bool durable = false) {
  auto d = frames::make_delivery(kind, from.uid, std::move(data), durable);
  d.sender_address = from.address;
  return d;
}

} // namespace

caf::expected<delivery> send(const json& object, const origin& from,
                             bool durable, uint64_t max_fanout_bytes) {
  auto data = data_field(object, from.max_data_bytes);
  if (!data)
    return std::move(data.error());
  auto d =
      delivery_from(delivery_kind::message, from, std::move(*data), durable);
  if (auto err = read_addressing(object, from.conn, true, d))
    return err;
  bool to_conn = !d.to_conn.empty();
  if (to_conn == object.contains("to"))
    return bad_frame("a send needs either 'to' or 'to_conn'");
  if (!to_conn) {
    auto to = uid_list(object, "to", from.max_uids);
    if (!to)
      return std::move(to.error());
    d.uids = std::move(*to);
  }
  if (auto err = frames::check_fanout(to_conn ? 1 : d.uids.size(),
                                      d.data.size(), max_fanout_bytes))
    return err;
  if (auto err = read_idem(object, d.idem))
    return err;
  return d;
}

caf::expected<delivery> publish(const json& object, const origin& from,
                                bool durable) {
  auto group = name_field(object, "group");
  if (!group)
    return std::move(group.error());
  auto data = data_field(object, from.max_data_bytes);
  if (!data)
    return std::move(data.error());
  auto d = delivery_from(delivery_kind::group, from, std::move(*data), durable);
  d.group = std::move(*group);
  if (auto err = read_idem(object, d.idem))
    return err;
  if (auto err = read_addressing(object, from.conn, false, d))
    return err;
  return d;
}

caf::expected<delivery> broadcast(const json& object, const origin& from) {
  auto data = data_field(object, from.max_data_bytes);
  if (!data)
    return std::move(data.error());
  auto d = delivery_from(delivery_kind::broadcast, from, std::move(*data));
  if (auto err = read_addressing(object, from.conn, false, d))
    return err;
  return d;
}

} // namespace wsc::ops

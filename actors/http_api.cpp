#include "actors/http_api.hpp"

#include "actors/builtins.hpp"
#include "middleware/middleware.hpp"
#include "protocol/frames.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>

#include <unordered_set>

namespace wsc {

namespace {

using json = nlohmann::json;

/// Serializes an answer; text that is not UTF-8 (from a hostile store
/// entry, say) is replaced, never thrown about.
http_response json_answer(unsigned status, const json& body) {
  return {status, "application/json",
          body.dump(-1, ' ', false, json::error_handler_t::replace)};
}

http_response error_answer(unsigned status, const std::string& message) {
  return json_answer(status, {{"error", message}});
}

/// The HTTP status for an error from the node's actors.
unsigned status_of(const caf::error& err) {
  switch (to_ec(err)) {
  case ec::bad_frame:
  case ec::bad_json:
  case ec::too_many_groups:
    return 400;
  case ec::too_large:
    return 413;
  case ec::group_full:
    return 409;
  case ec::forbidden:
  case ec::not_member:
    return 403;
  case ec::unavailable:
    return 503;
  default:
    return 500;
  }
}

/// Reads `"to"`: one uid or a list of uids (each kept once).
bool read_uids(const json& x, std::vector<std::string>& out) {
  std::unordered_set<std::string> seen;
  auto add = [&](const json& v) {
    if (!v.is_string() || !valid_name(v.get_ref<const std::string&>()))
      return false;
    if (seen.insert(v.get<std::string>()).second)
      out.push_back(v.get<std::string>());
    return true;
  };
  if (x.is_array()) {
    if (x.empty() || x.size() > 10000)
      return false;
    for (auto& v : x)
      if (!add(v))
        return false;
    return true;
  }
  return add(x);
}

std::vector<std::string> split_uids(const std::string& text) {
  std::vector<std::string> result;
  size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    auto item = text.substr(
        start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty())
      result.push_back(std::move(item));
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return result;
}

/// Adds what a send or publish answers beyond `ok`: the `msg_id` of a
/// durable message, and `"duplicate":true` for the repeat of an `idem`.
void add_msg_id(json& answer, const delivery_report& report) {
  if (!report.msg_id.empty())
    answer["msg_id"] = report.msg_id;
  if (report.duplicate)
    answer["duplicate"] = true;
}

using respond_fn = std::function<void(http_response)>;

/// Forwards an actor's error as an HTTP error answer.
auto on_error(respond_fn respond) {
  return [respond](caf::error& err) {
    respond(error_answer(status_of(err), error_message(err)));
  };
}

/// The most uids one membership change may add and remove together.
constexpr size_t max_membership_changes = 1000;

/// POST /api/groups/<g>/members {"add":[uids],"remove":[uids]}: joins and
/// leaves through the REGISTRY (the state store is the cluster's, so the
/// change is cluster-wide; JOIN/LEAVE events fire). Idempotent; every change
/// is tried, failed ones are listed with their error code.
void edit_members(http_api_actor::stateful_pointer<http_api_state> self,
                  const std::string& group, const json& body,
                  const respond_fn& respond) {
  std::vector<std::string> add, remove;
  auto list = [&](const char* name, std::vector<std::string>& out) {
    auto i = body.find(name);
    return i == body.end() ||
           (i->is_array() && (i->empty() || read_uids(*i, out)));
  };
  if (!list("add", add) || !list("remove", remove))
    return respond(error_answer(400, "'add' and 'remove' must be lists of "
                                     "uids"));
  if (add.empty() && remove.empty())
    return respond(error_answer(400, "nothing to change: give 'add' and/or "
                                     "'remove'"));
  if (add.size() + remove.size() > max_membership_changes)
    return respond(
        error_answer(400, "at most " + std::to_string(max_membership_changes) +
                              " uids per request"));
  for (auto& uid : add)
    if (std::find(remove.begin(), remove.end(), uid) != remove.end())
      return respond(error_answer(400, "'" + uid + "' is in both lists"));
  struct progress {
    size_t pending = 0;
    json failed = json::object();
    caf::error first_error;
    respond_fn respond;
  };
  auto state = std::make_shared<progress>();
  state->pending = add.size() + remove.size();
  state->respond = respond;
  auto finish = [state](const std::string& uid, caf::error err) {
    if (err) {
      state->failed[uid] = to_string(to_ec(err));
      if (!state->first_error)
        state->first_error = std::move(err);
    }
    if (--state->pending > 0)
      return;
    if (!state->first_error)
      return state->respond(json_answer(200, {{"ok", true}}));
    state->respond(json_answer(status_of(state->first_error),
                               {{"error", error_message(state->first_error)},
                                {"failed", std::move(state->failed)}}));
  };
  auto& node = *self->state.node;
  auto timeout = node.opts.request_timeout;
  auto who = [&](const std::string& uid) {
    return conn_ref{node.node_id, {}, uid, {}};
  };
  for (auto& uid : add)
    self->request(node.registry, timeout, atom::join_v, who(uid), group)
        .then([finish, uid](atom::ok) { finish(uid, caf::none); },
              [finish, uid](caf::error& err) { finish(uid, std::move(err)); });
  for (auto& uid : remove)
    self->request(node.registry, timeout, atom::leave_v, who(uid), group)
        .then([finish, uid](atom::ok) { finish(uid, caf::none); },
              [finish, uid](caf::error& err) { finish(uid, std::move(err)); });
}

/// Answers one request (see the contract's section 3).
void serve(http_api_actor::stateful_pointer<http_api_state> self,
           const http_exchange_ptr& ex) {
  auto& node = *self->state.node;
  auto& req = ex->request;
  auto respond = ex->respond;
  auto timeout = node.opts.request_timeout;
  auto target = handshake_request::from_target(req.method, req.target);
  auto& path = target.path;
  bool get = req.method == "GET";
  bool post = req.method == "POST";
  if (path == "/healthz") {
    if (node.draining)
      return respond({503, "text/plain", "draining"});
    if (auto failed = node.failed_actor.load())
      return respond({503, "text/plain", std::string{failed} + " failed"});
    if (!node.store_healthy)
      return respond({503, "text/plain", "state store unreachable"});
    return respond({200, "text/plain", "ok"});
  }
  if (path == "/metrics")
    return respond({200, "text/plain; version=0.0.4",
                    node.metrics.render(node.open_connections, node.draining,
                                        node.store_healthy)});
  if (path.compare(0, 5, "/api/") != 0)
    return respond(error_answer(404, "not found"));
  if (!node.opts.api_key.empty() &&
      !secrets_equal(bearer_token(req.authorization), node.opts.api_key))
    return respond(error_answer(401, "missing or wrong API key"));
  json body;
  if (post) {
    if (!frames::json_depth_ok(req.body))
      return respond(error_answer(400, "body nests too deep"));
    body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object())
      return respond(error_answer(400, "body must be a JSON object"));
  }
  auto data_text = [&](std::string& out) {
    auto d = body.find("data");
    if (d == body.end())
      return false;
    out = d->dump(-1, ' ', false, json::error_handler_t::replace);
    return true;
  };
  // `except` (and `to_conn` for send) as the frames have them.
  auto addressing = [&](delivery& d, bool to_conn_allowed) {
    if (auto err = read_addressing(body, {}, to_conn_allowed, d)) {
      on_error(respond)(err);
      return false;
    }
    return true;
  };
  if (path == "/api/send" && post) {
    auto d = frames::make_delivery(delivery_kind::message, {}, {},
                                   node.durable("send"));
    if (!addressing(d, true))
      return;
    bool to_conn = !d.to_conn.empty();
    auto to = body.find("to");
    if (to_conn ? to != body.end()
                : to == body.end() || !read_uids(*to, d.uids))
      return respond(error_answer(
          400, "'to' must be a uid or a list of uids (or use 'to_conn')"));
    if (!data_text(d.data))
      return respond(error_answer(400, "missing field 'data'"));
    if (read_idem(body, d.idem))
      return respond(error_answer(400, "'idem' must be a string of 1-64 "
                                       "bytes of UTF-8"));
    if (auto err =
            frames::check_fanout(to_conn ? 1 : d.uids.size(), d.data.size(),
                                 node.opts.max_fanout_bytes))
      return on_error(respond)(err);
    bool receipts = body.contains("wait_ms");
    self->request(node.registry, timeout, atom::send_v, std::move(d))
        .then(
            [respond, receipts, to_conn](delivery_report& report) {
              json answer{{"ok", true}};
              add_msg_id(answer, report);
              if (to_conn) {
                answer["delivered"] = report.not_delivered.empty();
                if (!report.not_delivered.empty())
                  answer["reason"] = report.not_delivered;
              } else if (receipts) {
                json per_uid = json::object();
                for (size_t i = 0; i < report.uids.size(); ++i)
                  per_uid[report.uids[i]] = {
                      {"connections", report.connections[i]},
                      {"stored", static_cast<bool>(report.stored[i])}};
                // A receiver whose Redis Cluster shard was down.
                for (auto& uid : report.unavailable)
                  per_uid[uid]["error"] = "unavailable";
                answer["receipts"] = per_uid;
              }
              if (!report.unavailable.empty())
                answer["unavailable"] = report.unavailable;
              respond(json_answer(200, answer));
            },
            on_error(respond));
    return;
  }
  if (path == "/api/broadcast" && post) {
    auto d = frames::make_delivery(delivery_kind::broadcast, {}, {});
    if (!addressing(d, false))
      return;
    if (!data_text(d.data))
      return respond(error_answer(400, "missing field 'data'"));
    self->request(node.registry, timeout, atom::broadcast_v, std::move(d))
        .then(
            [respond](atom::ok) {
              respond(json_answer(200, {{"ok", true}}));
            },
            on_error(respond));
    return;
  }
  if (path == "/api/publish" && post) {
    auto d = frames::make_delivery(delivery_kind::group, {}, {},
                                   node.durable("publish"));
    auto group = body.find("group");
    if (group == body.end() || !group->is_string() ||
        !valid_name(group->get_ref<const std::string&>()))
      return respond(error_answer(400, "'group' must be a group name"));
    d.group = group->get<std::string>();
    if (!data_text(d.data))
      return respond(error_answer(400, "missing field 'data'"));
    if (read_idem(body, d.idem))
      return respond(error_answer(400, "'idem' must be a string of 1-64 "
                                       "bytes of UTF-8"));
    if (!addressing(d, false))
      return;
    self->request(node.registry, timeout, atom::publish_v, std::move(d))
        .then(
            [respond](delivery_report& report) {
              json answer{{"ok", true}};
              add_msg_id(answer, report);
              if (!report.unavailable.empty())
                answer["unavailable"] = report.unavailable;
              respond(json_answer(200, answer));
            },
            on_error(respond));
    return;
  }
  if (path == "/api/disconnect" && post) {
    auto uid = body.find("uid");
    if (uid == body.end() || !uid->is_string() ||
        !valid_name(uid->get_ref<const std::string&>()))
      return respond(error_answer(400, "'uid' must be a uid"));
    self->request(node.registry, timeout, atom::disconnect_v,
                  uid->get<std::string>(), uint16_t{4001})
        .then(
            [respond](atom::ok) {
              respond(json_answer(200, {{"ok", true}}));
            },
            on_error(respond));
    return;
  }
  if (path == "/api/presence" && get) {
    auto uids = split_uids(target.param("uids"));
    if (uids.empty() || uids.size() > 10000 ||
        !std::all_of(uids.begin(), uids.end(),
                     [](auto& u) { return valid_name(u); }))
      return respond(error_answer(400, "'uids' must list uids: ?uids=a,b"));
    self->request(node.registry, timeout, atom::presence_v, uids)
        .then(
            [respond, uids](std::vector<bool>& online) {
              json result = json::object();
              for (size_t i = 0; i < uids.size(); ++i)
                result[uids[i]] = static_cast<bool>(online[i]);
              respond(json_answer(200, {{"online", result}}));
            },
            on_error(respond));
    return;
  }
  const std::string groups_prefix = "/api/groups/";
  const std::string members_suffix = "/members";
  bool members_path =
      path.size() > groups_prefix.size() + members_suffix.size() &&
      path.compare(0, groups_prefix.size(), groups_prefix) == 0 &&
      path.compare(path.size() - members_suffix.size(), members_suffix.size(),
                   members_suffix) == 0;
  auto group = members_path ? path.substr(groups_prefix.size(),
                                          path.size() - groups_prefix.size() -
                                              members_suffix.size())
                            : std::string{};
  if (members_path &&
      (!valid_name(group) || group.find('/') != std::string::npos))
    return respond(error_answer(400, "malformed group name"));
  if (members_path && post)
    return edit_members(self, group, body, respond);
  if (members_path && get) {
    self->request(node.registry, timeout, atom::members_v, group)
        .then(
            [respond, group,
             limit = node.opts.members_limit](std::vector<std::string>& uids) {
              respond(json_answer(
                  200, frames::members(group, std::move(uids), limit)));
            },
            on_error(respond));
    return;
  }
  if (path == "/api/nodes" && get) {
    self->request(self->state.store, timeout, atom::nodes_v)
        .then(
            [respond](std::vector<node_info>& nodes) {
              json result = json::array();
              for (auto& n : nodes)
                result.push_back({{"id", n.id},
                                  {"listen", n.listen},
                                  {"cluster", n.cluster},
                                  {"connections", n.connections},
                                  {"last_heartbeat_ms", n.last_heartbeat_ms}});
              respond(json_answer(200, result));
            },
            on_error(respond));
    return;
  }
  if (path == "/api/stats" && get) {
    // Nodes and connections from the node entries (this node's own count
    // live, the others' as of their last heartbeat); users from the store's
    // counter, which bind, unbind and the cleanup of a node keep atomically.
    auto store = self->state.store;
    auto self_id = node.node_id;
    uint64_t own = node.open_connections.load();
    self->request(store, timeout, atom::nodes_v)
        .then(
            [self, store, timeout, respond, self_id,
             own](std::vector<node_info>& nodes) {
              uint64_t connections = 0;
              for (auto& n : nodes)
                connections += n.id == self_id ? own : n.connections;
              auto count = nodes.size();
              self->request(store, timeout, atom::stats_v)
                  .then(
                      [respond, count, connections](uint64_t users) {
                        respond(
                            json_answer(200, json{{"nodes", count},
                                                  {"connections", connections},
                                                  {"users", users}}));
                      },
                      on_error(respond));
            },
            on_error(respond));
    return;
  }
  if (path == "/api/events" && get) {
    json result = json::array();
    for (auto& e : node.cluster_events.snapshot()) {
      json entry{{"ts", e.ts}, {"event", e.event}, {"node", e.node}};
      if (!e.reason.empty())
        entry["reason"] = e.reason;
      result.push_back(std::move(entry));
    }
    return respond(json_answer(200, result));
  }
  if (path == "/api/send" || path == "/api/broadcast" ||
      path == "/api/publish" || path == "/api/disconnect" ||
      path == "/api/presence" || path == "/api/nodes" || path == "/api/stats")
    return respond(error_answer(405, "method not allowed"));
  respond(error_answer(404, "not found"));
}

} // namespace

bool secrets_equal(const std::string& a, const std::string& b) {
  return a.size() == b.size() &&
         CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

http_api_actor::behavior_type
http_api(http_api_actor::stateful_pointer<http_api_state> self,
         node_context_ptr node, state_store_actor store) {
  self->state.node = std::move(node);
  self->state.store = std::move(store);
  return {
      [self](http_exchange_ptr& ex) {
        // Whatever a request does, the actor lives on: a throw answers 500.
        try {
          serve(self, ex);
        } catch (const std::exception& e) {
          ++self->state.node->metrics.internal_failures;
          log::error("HTTP API: {} {} failed: {}", ex->request.method,
                     ex->request.target.substr(0, 200), e.what());
          ex->respond(error_answer(500, "internal error"));
        }
      },
  };
}

} // namespace wsc

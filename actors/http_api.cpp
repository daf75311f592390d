#include "actors/http_api.hpp"

#include "actors/builtins.hpp"
#include "middleware/middleware.hpp"
#include "protocol/frames.hpp"
#include "protocol/operations.hpp"
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
    if (i == body.end() || (i->is_array() && i->empty()))
      return true;
    if (!i->is_array())
      return false;
    auto uids = ops::uid_list(body, name, max_membership_changes);
    if (uids)
      out = std::move(*uids);
    return static_cast<bool>(uids);
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
  auto& st = self->state;
  auto timeout = st.cfg.request_timeout;
  auto who = [&](const std::string& uid) {
    return conn_ref{st.cfg.node_id, {}, uid, {}};
  };
  for (auto& uid : add)
    self->request(st.registry, timeout, atom::join_v, who(uid), group)
        .then([finish, uid](atom::ok) { finish(uid, caf::none); },
              [finish, uid](caf::error& err) { finish(uid, std::move(err)); });
  for (auto& uid : remove)
    self->request(st.registry, timeout, atom::leave_v, who(uid), group)
        .then([finish, uid](atom::ok) { finish(uid, caf::none); },
              [finish, uid](caf::error& err) { finish(uid, std::move(err)); });
}

/// What a handler of the API needs of its request.
struct api_call {
  http_api_actor::stateful_pointer<http_api_state> self;
  const http_api_state& st;
  const respond_fn& respond;
  caf::timespan timeout;
  const handshake_request& target;
  /// The JSON object of a POST (null for a GET).
  const json& body;

  /// Asks the REGISTRY, within request-timeout.
  template<class... Ts>
  auto ask_registry(Ts&&... xs) const {
    return self->request(st.registry, timeout, std::forward<Ts>(xs)...);
  }

  /// Answers an error of the node's actors (on_error).
  void fail(caf::error& err) const { on_error(respond)(err); }

  /// Answers a report of a send or publish: `ok`, the `msg_id` of a stored
  /// message, the uids whose shard was down; `more` adds to it.
  template<class F>
  auto report_to(F more) const {
    return [respond = respond, more](delivery_report& report) {
      json answer{{"ok", true}};
      add_msg_id(answer, report);
      more(answer, report);
      if (!report.unavailable.empty())
        answer["unavailable"] = report.unavailable;
      respond(json_answer(200, answer));
    };
  }

  /// Answers `{"ok":true}` to an `ok` of an actor.
  auto ok() const {
    return [respond = respond](atom::ok) {
      respond(json_answer(200, {{"ok", true}}));
    };
  }
};

/// The API sends as nobody, and may name more uids than a client.
const ops::origin api_origin{
    {}, {}, ops::api_max_uids, ops::api_max_data_bytes, {}};

/// POST /api/send: one uid, a list, or one connection (`to_conn`).
void api_send(const api_call& call) {
  auto& messages = call.st.cfg.messages;
  auto d = ops::send(call.body, api_origin, messages.durable("send"),
                     messages.max_fanout_bytes);
  if (!d)
    return call.fail(d.error());
  bool to_conn = !d->to_conn.empty();
  bool receipts = call.body.contains("wait_ms");
  auto more = [to_conn, receipts](json& answer, delivery_report& report) {
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
  };
  call.ask_registry(atom::send_v, std::move(*d))
      .then(call.report_to(more), on_error(call.respond));
}

/// POST /api/broadcast: every connection of the cluster.
void api_broadcast(const api_call& call) {
  auto d = ops::broadcast(call.body, api_origin);
  if (!d)
    return call.fail(d.error());
  call.ask_registry(atom::broadcast_v, std::move(*d))
      .then(call.ok(), on_error(call.respond));
}

/// POST /api/publish: every member of a group.
void api_publish(const api_call& call) {
  auto d = ops::publish(call.body, api_origin,
                        call.st.cfg.messages.durable("publish"));
  if (!d)
    return call.fail(d.error());
  call.ask_registry(atom::publish_v, std::move(*d))
      .then(call.report_to([](json&, delivery_report&) {}),
            on_error(call.respond));
}

/// POST /api/disconnect: closes every connection of a uid with 4001.
void api_disconnect(const api_call& call) {
  auto uid = ops::name_field(call.body, "uid");
  if (!uid)
    return call.fail(uid.error());
  call.ask_registry(atom::disconnect_v, std::move(*uid), uint16_t{4001})
      .then(call.ok(), on_error(call.respond));
}

/// GET /api/presence?uids=a,b: which uids have a connection.
void api_presence(const api_call& call) {
  auto uids = split_uids(call.target.param("uids"));
  if (uids.empty() || uids.size() > ops::api_max_uids ||
      !std::all_of(uids.begin(), uids.end(),
                   [](auto& u) { return valid_name(u); }))
    return call.respond(error_answer(400, "'uids' must list uids: ?uids=a,b"));
  call.ask_registry(atom::presence_v, uids)
      .then(
          [respond = call.respond, uids](std::vector<bool>& online) {
            json result = json::object();
            for (size_t i = 0; i < uids.size(); ++i)
              result[uids[i]] = static_cast<bool>(online[i]);
            respond(json_answer(200, {{"online", result}}));
          },
          on_error(call.respond));
}

/// GET /api/nodes: the live nodes as the state store lists them.
void api_nodes(const api_call& call) {
  call.self->request(call.self->state.store, call.timeout, atom::nodes_v)
      .then(
          [respond = call.respond](std::vector<node_info>& nodes) {
            json result = json::array();
            for (auto& n : nodes)
              result.push_back({{"id", n.id},
                                {"listen", n.listen},
                                {"cluster", n.cluster},
                                {"connections", n.connections},
                                {"last_heartbeat_ms", n.last_heartbeat_ms}});
            respond(json_answer(200, result));
          },
          on_error(call.respond));
}

/// GET /api/stats: nodes, connections and users of the cluster.
void api_stats(const api_call& call) {
  auto self = call.self;
  auto& st = call.st;
  auto& respond = call.respond;
  auto timeout = call.timeout;
  // Nodes and connections from the node entries (this node's own count
  // live, the others' as of their last heartbeat); users from the store's
  // counter, which bind, unbind and the cleanup of a node keep atomically.
  auto store = self->state.store;
  auto self_id = st.cfg.node_id;
  uint64_t own = st.health->open_connections.load();
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
}

/// GET /api/events: the DISCOVER and SHUTDOWN events this node saw last.
void api_events(const api_call& call) {
  auto& respond = call.respond;
  json result = json::array();
  for (auto& e : call.st.cluster_events->snapshot()) {
    json entry{{"ts", e.ts}, {"event", e.event}, {"node", e.node}};
    if (!e.reason.empty())
      entry["reason"] = e.reason;
    result.push_back(std::move(entry));
  }
  return respond(json_answer(200, result));
}

/// The routes of the API below /api/ (the group members route aside).
struct api_route {
  const char* method;
  const char* path;
  void (*handle)(const api_call&);
};

constexpr api_route api_routes[] = {
    {"POST", "/api/send", api_send},
    {"POST", "/api/broadcast", api_broadcast},
    {"POST", "/api/publish", api_publish},
    {"POST", "/api/disconnect", api_disconnect},
    {"GET", "/api/presence", api_presence},
    {"GET", "/api/nodes", api_nodes},
    {"GET", "/api/stats", api_stats},
    {"GET", "/api/events", api_events},
};

/// GET or POST /api/groups/<g>/members; false if `path` is not such a path.
bool serve_members(const api_call& call, const std::string& method,
                   const std::string& path) {
  const std::string groups_prefix = "/api/groups/";
  const std::string members_suffix = "/members";
  bool members_path =
      path.size() > groups_prefix.size() + members_suffix.size() &&
      path.compare(0, groups_prefix.size(), groups_prefix) == 0 &&
      path.compare(path.size() - members_suffix.size(), members_suffix.size(),
                   members_suffix) == 0;
  if (!members_path || (method != "GET" && method != "POST"))
    return false;
  auto& respond = call.respond;
  auto group =
      path.substr(groups_prefix.size(),
                  path.size() - groups_prefix.size() - members_suffix.size());
  if (!valid_name(group) || group.find('/') != std::string::npos) {
    respond(error_answer(400, "malformed group name"));
    return true;
  }
  if (method == "POST") {
    edit_members(call.self, group, call.body, respond);
    return true;
  }
  auto& st = call.st;
  call.self->request(st.registry, call.timeout, atom::members_v, group)
      .then(
          [respond, group, limit = st.cfg.messages.members_limit](
              std::vector<std::string>& uids) {
            respond(json_answer(
                200, frames::members(group, std::move(uids), limit)));
          },
          on_error(respond));
  return true;
}

/// Answers one request (see the contract's section 3).
void serve(http_api_actor::stateful_pointer<http_api_state> self,
           const http_exchange_ptr& ex) {
  auto& st = self->state;
  auto& health = *st.health;
  auto& req = ex->request;
  auto respond = ex->respond;
  auto target = handshake_request::from_target(req.method, req.target);
  auto& path = target.path;
  if (path == "/healthz") {
    // Answered here, not on the socket: a node whose actors do not run
    // answers no health check either.
    if (health.draining)
      return respond({503, "text/plain", "draining"});
    if (auto failed = health.failed_actor.load())
      return respond({503, "text/plain", std::string{failed} + " failed"});
    if (!health.store_healthy)
      return respond({503, "text/plain", "state store unreachable"});
    return respond({200, "text/plain", "ok"});
  }
  if (auto answer =
          answer_without_actor(path, req.authorization, st.cfg.api_key))
    return respond(std::move(*answer));
  if (path == "/metrics")
    return respond({200, "text/plain; version=0.0.4",
                    st.metrics->render(health.open_connections, health.draining,
                                       health.store_healthy)});
  json body;
  if (req.method == "POST") {
    if (!frames::json_depth_ok(req.body))
      return respond(error_answer(400, "body nests too deep"));
    body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object())
      return respond(error_answer(400, "body must be a JSON object"));
  }
  api_call call{self, st, respond, st.cfg.request_timeout, target, body};
  bool known_path = false;
  for (auto& route : api_routes) {
    if (path != route.path)
      continue;
    if (req.method == route.method)
      return route.handle(call);
    known_path = true;
  }
  if (known_path)
    return respond(error_answer(405, "method not allowed"));
  if (!serve_members(call, req.method, path))
    respond(error_answer(404, "not found"));
}

} // namespace

std::optional<http_response>
answer_without_actor(const std::string& path, const std::string& authorization,
                     const std::string& api_key) {
  if (path == "/healthz" || path == "/metrics")
    return std::nullopt;
  if (path.compare(0, 5, "/api/") != 0)
    return error_answer(404, "not found");
  if (!api_key_accepted(api_key, authorization))
    return error_answer(401, "missing or wrong API key");
  return std::nullopt;
}

bool api_key_accepted(const std::string& api_key,
                      const std::string& authorization) {
  return api_key.empty() || secrets_equal(bearer_token(authorization), api_key);
}

bool secrets_equal(const std::string& a, const std::string& b) {
  return a.size() == b.size() &&
         CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

http_api_actor::behavior_type
http_api(http_api_actor::stateful_pointer<http_api_state> self,
         http_api_config cfg, registry_actor registry, state_store_actor store,
         node_health_ptr health, std::shared_ptr<node_metrics> metrics,
         std::shared_ptr<const cluster_event_log> cluster_events) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.registry = std::move(registry);
  st.store = std::move(store);
  st.health = std::move(health);
  st.metrics = std::move(metrics);
  st.cluster_events = std::move(cluster_events);
  return {
      [self](http_exchange_ptr& ex) {
        // Whatever a request does, the actor lives on: a throw answers 500.
        try {
          serve(self, ex);
        } catch (const std::exception& e) {
          ++self->state.metrics->internal_failures;
          log::error("HTTP API: {} {} failed: {}", ex->request.method,
                     ex->request.target.substr(0, 200), e.what());
          ex->respond(error_answer(500, "internal error"));
        }
      },
  };
}

} // namespace wsc

#include "actors/builtins.hpp"

#include "middleware/jwt.hpp"
#include "middleware/middleware.hpp"
#include "protocol/frames.hpp"
#include "protocol/operations.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

namespace wsc {

namespace {

using json = nlohmann::json;

caf::error bad_frame(std::string message) {
  return make_error(ec::bad_frame, std::move(message));
}

json_ptr answer(json x) {
  return std::make_shared<const json>(std::move(x));
}

/// The answer to a `send` or `publish`: a plain ack, or with the message's
/// `msg_id` when it was stored (the repeat of an `idem` gets the same one);
/// for a `to_conn` send whether it reached the connection.
json_ptr sent(delivery_report& report, bool to_conn = false) {
  if (to_conn) {
    json ack{{"type", "ack"}, {"delivered", report.not_delivered.empty()}};
    if (!report.not_delivered.empty())
      ack["reason"] = std::move(report.not_delivered);
    return answer(std::move(ack));
  }
  if (report.msg_id.empty())
    return nullptr;
  json ack{{"type", "ack"}, {"msg_id", std::move(report.msg_id)}};
  // Receivers whose Redis Cluster shard was down: not stored (additive).
  if (!report.unavailable.empty())
    ack["unavailable"] = std::move(report.unavailable);
  return answer(std::move(ack));
}

} // namespace

namespace {

/// One built-in frame being carried out, and how to answer it.
struct builtin_call {
  const builtins_config& cfg;
  const registry_actor& registry;
  const frame_context& ctx;
  const json& f;
  /// Reads send, publish and broadcast fields as a client's.
  ops::origin sender;
  /// Gets the answer: null for `ack`, or an error. Shared: copying the
  /// callbacks below copies a pointer, not the callback (no allocation per
  /// copy on the path of every frame).
  std::shared_ptr<const builtin_done> reply;

  /// Answers the frame (a callable to keep in handlers).
  auto done() const {
    return [r = reply](caf::expected<json_ptr> answer) {
      (*r)(std::move(answer));
    };
  }

  /// Acks the frame when the REGISTRY answers `ok`.
  auto ok() const {
    return [r = reply](atom::ok) {
      (*r)(json_ptr{});
    };
  }

  /// Answers the REGISTRY's error.
  auto failed() const {
    return [r = reply](caf::error& err) {
      (*r)(std::move(err));
    };
  }
};

/// Answers a `members` frame: at most `limit` uids of `group`.
template<class Self, class Done>
void list_members(Self* self, const registry_actor& registry, size_t limit,
                  const std::string& group, Done done) {
  self->request(registry, caf::infinite, atom::members_v, group)
      .then(
          [done, group, limit](std::vector<std::string>& uids) {
            auto result = frames::members(group, std::move(uids), limit);
            result["type"] = "members";
            done(answer(std::move(result)));
          },
          [done](caf::error& err) { done(std::move(err)); });
}

// -- one function per built-in frame type -------------------------------------
//
// The REGISTRY always answers (its own requests to the store time out), so
// these requests arm no timeout of their own.

template<class Self>
void builtin_read(Self* self, const builtin_call& call) {
  auto seq = call.f.find("seq");
  if (seq == call.f.end() || !seq->is_number_unsigned())
    return call.done()(bad_frame("field 'seq' must be a non-negative integer"));
  self->request(call.registry, caf::infinite, atom::read_v, call.ctx.sender,
                seq->get<uint64_t>())
      .then(call.ok(), call.failed());
}

template<class Self>
void builtin_ping(Self*, const builtin_call& call) {
  call.done()(answer({{"type", "pong"}}));
}

/// A new token for the same uid moves the connection's expiry (4003);
/// anything else leaves it where it was.
template<class Self>
void builtin_refresh(Self* self, const builtin_call& call) {
  auto& cfg = call.cfg;
  auto done = call.done();
  if (cfg.auth != "jwt")
    return done(
        make_error(ec::forbidden, "refresh needs auth=jwt on this node"));
  auto token = call.f.find("token");
  if (token == call.f.end() || !token->is_string())
    return done(bad_frame("field 'token' must be a string"));
  auto claims =
      verify_jwt(token->get_ref<const std::string&>(), cfg.jwt_secret,
                 frames::now_ms() / 1000, {cfg.jwt_audience, cfg.jwt_issuer});
  if (!claims) {
    auto& why = claims.error().context();
    return done(make_error(
        ec::forbidden, "token refused: " + (why.match_elements<std::string>()
                                                ? why.get_as<std::string>(0)
                                                : std::string{"bad token"})));
  }
  if (claims->sub != call.ctx.sender.uid)
    return done(make_error(ec::forbidden, "the token is for another uid than "
                                          "this connection's"));
  self->send(call.ctx.connection, atom::refresh_v, claims->exp);
  done(json_ptr{});
}

template<class Self>
void builtin_send(Self* self, const builtin_call& call) {
  auto d = ops::send(call.f, call.sender, call.cfg.messages.durable("send"),
                     call.cfg.messages.max_fanout_bytes);
  if (!d)
    return call.done()(std::move(d.error()));
  bool to_conn = !d->to_conn.empty();
  self->request(call.registry, caf::infinite, atom::send_v, std::move(*d))
      .then([done = call.done(),
             to_conn](delivery_report& report) { done(sent(report, to_conn)); },
            call.failed());
}

template<class Self>
void builtin_broadcast(Self* self, const builtin_call& call) {
  if (!call.cfg.client_broadcast)
    return call.done()(
        make_error(ec::forbidden, "clients may not broadcast on this node"));
  auto d = ops::broadcast(call.f, call.sender);
  if (!d)
    return call.done()(std::move(d.error()));
  self->request(call.registry, caf::infinite, atom::broadcast_v, std::move(*d))
      .then(call.ok(), call.failed());
}

template<class Self, class Atom>
void builtin_membership(Self* self, const builtin_call& call, Atom what) {
  auto group = ops::name_field(call.f, "group");
  if (!group)
    return call.done()(std::move(group.error()));
  self->request(call.registry, caf::infinite, what, call.ctx.sender,
                std::move(*group))
      .then(call.ok(), call.failed());
}

template<class Self>
void builtin_join(Self* self, const builtin_call& call) {
  builtin_membership(self, call, atom::join_v);
}

template<class Self>
void builtin_leave(Self* self, const builtin_call& call) {
  builtin_membership(self, call, atom::leave_v);
}

template<class Self>
void builtin_publish(Self* self, const builtin_call& call) {
  auto d =
      ops::publish(call.f, call.sender, call.cfg.messages.durable("publish"));
  if (!d)
    return call.done()(std::move(d.error()));
  self->request(call.registry, caf::infinite, atom::publish_v, std::move(*d))
      .then(
          [done = call.done()](delivery_report& report) { done(sent(report)); },
          call.failed());
}

template<class Self>
void builtin_members(Self* self, const builtin_call& call) {
  auto group = ops::name_field(call.f, "group");
  auto done = call.done();
  if (!group)
    return done(std::move(group.error()));
  auto& cfg = call.cfg;
  if (cfg.group_join != "token")
    return list_members(self, call.registry, cfg.messages.members_limit, *group,
                        done);
  // Closed groups: only members may list the others (the API may).
  self->request(call.registry, caf::infinite, atom::is_member_v, *group,
                call.ctx.sender.uid)
      .then(
          [self, registry = call.registry, limit = cfg.messages.members_limit,
           group = *group, done](bool member) {
            if (!member)
              return done(make_error(ec::not_member,
                                     "only members may list a group's "
                                     "members (group-join=token)"));
            list_members(self, registry, limit, group, done);
          },
          call.failed());
}

template<class Self>
void builtin_presence(Self* self, const builtin_call& call) {
  auto uids = ops::uid_list(call.f, "uids", ops::frame_max_uids);
  if (!uids)
    return call.done()(std::move(uids.error()));
  self->request(call.registry, caf::infinite, atom::presence_v, *uids)
      .then(
          [done = call.done(), uids = *uids](std::vector<bool>& online) {
            json result = json::object();
            for (size_t i = 0; i < uids.size(); ++i)
              result[uids[i]] = static_cast<bool>(online[i]);
            done(answer({{"type", "presence"}, {"online", result}}));
          },
          call.failed());
}

/// The built-in frame types and their functions (for either kind of actor
/// that runs them).
template<class Self>
using builtin_fn = void (*)(Self*, const builtin_call&);

template<class Self>
struct builtin_entry {
  const char* type;
  builtin_fn<Self> run;
};

template<class Self>
constexpr builtin_entry<Self> builtin_table[] = {
    {"send", builtin_send<Self>},
    {"broadcast", builtin_broadcast<Self>},
    {"join", builtin_join<Self>},
    {"leave", builtin_leave<Self>},
    {"publish", builtin_publish<Self>},
    {"members", builtin_members<Self>},
    {"presence", builtin_presence<Self>},
    {"ping", builtin_ping<Self>},
    {"read", builtin_read<Self>},
    {"refresh", builtin_refresh<Self>},
};

/// Carries out one built-in frame: checks it and asks the REGISTRY.
template<class Self>
void run_builtin(Self* self, const builtins_config& cfg,
                 const registry_actor& registry, const frame_context& ctx,
                 const json& f, builtin_done reply) {
  auto& type = f["type"].get_ref<const std::string&>();
  builtin_call call{
      cfg,
      registry,
      ctx,
      f,
      ops::origin{ctx.sender.uid, ctx.sender.conn, ops::frame_max_uids,
                  static_cast<size_t>(cfg.messages.max_message_bytes),
                  ctx.address},
      std::make_shared<const builtin_done>(std::move(reply))};
  for (auto& entry : builtin_table<Self>)
    if (type == entry.type)
      return entry.run(self, call);
  call.done()(
      make_error(ec::unknown_type, "no built-in behaviour for " + type));
}

} // namespace

const std::vector<std::string>& builtin_frame_types() {
  static const auto types = [] {
    std::vector<std::string> result;
    for (auto& entry :
         builtin_table<std::remove_pointer_t<connection_actor::pointer>>)
      result.emplace_back(entry.type);
    return result;
  }();
  return types;
}

void run_builtin(connection_actor::pointer self, const builtins_config& cfg,
                 const registry_actor& registry, const frame_context& ctx,
                 const json& frame, builtin_done reply) {
  run_builtin<>(self, cfg, registry, ctx, frame, std::move(reply));
}

behaviour_actor::behavior_type
builtins(behaviour_actor::stateful_pointer<builtins_state> self,
         builtins_config cfg, registry_actor registry) {
  self->state.cfg = std::move(cfg);
  self->state.registry = std::move(registry);
  return {
      [self](atom::frame, frame_context& ctx,
             json_ptr& frame) -> caf::result<json_ptr> {
        auto rp = self->make_response_promise<json_ptr>();
        run_builtin<>(self, self->state.cfg, self->state.registry, ctx, *frame,
                      [rp](caf::expected<json_ptr> answer) mutable {
                        if (answer)
                          rp.deliver(std::move(*answer));
                        else
                          rp.deliver(std::move(answer.error()));
                      });
        return rp;
      },
  };
}

} // namespace wsc

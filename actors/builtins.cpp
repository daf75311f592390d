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

const std::vector<std::string>& builtin_frame_types() {
  static const std::vector<std::string> types{
      "send",    "broadcast", "join", "leave", "publish",
      "members", "presence",  "ping", "read",  "refresh"};
  return types;
}

namespace {

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

/// Carries out one built-in frame: checks it and asks the REGISTRY. The
/// REGISTRY always answers (its own requests to the store time out), so
/// these requests arm no timeout of their own.
template<class Self>
void run_builtin(Self* self, const node_context& node, const frame_context& ctx,
                 const json& f, builtin_done reply) {
  // Every handler below keeps `done`: copying it copies a pointer, not the
  // callback (no allocation per copy on the path of every frame).
  auto shared = std::make_shared<const builtin_done>(std::move(reply));
  auto done = [shared](caf::expected<json_ptr> answer) {
    (*shared)(std::move(answer));
  };
  auto ok = [done](auto&&...) {
    done(json_ptr{});
  };
  auto failed = [done](caf::error& err) {
    done(std::move(err));
  };
  auto& type = f["type"].get_ref<const std::string&>();
  const ops::origin sender{ctx.sender.uid, ctx.sender.conn,
                           ops::frame_max_uids};
  if (type == "read") {
    auto seq = f.find("seq");
    if (seq == f.end() || !seq->is_number_unsigned())
      return done(make_error(ec::bad_frame,
                             "field 'seq' must be a non-negative integer"));
    self->request(node.registry, caf::infinite, atom::read_v, ctx.sender,
                  seq->get<uint64_t>())
        .then([ok](atom::ok) { ok(); }, failed);
    return;
  }
  if (type == "ping")
    return done(answer({{"type", "pong"}}));
  if (type == "refresh") {
    // A new token for the same uid moves the connection's expiry (4003);
    // anything else leaves it where it was.
    if (node.opts.auth != "jwt")
      return done(
          make_error(ec::forbidden, "refresh needs auth=jwt on this node"));
    auto token = f.find("token");
    if (token == f.end() || !token->is_string())
      return done(bad_frame("field 'token' must be a string"));
    auto now_s = frames::now_ms() / 1000;
    auto claims =
        verify_jwt(token->get_ref<const std::string&>(), node.opts.jwt_secret,
                   now_s, {node.opts.jwt_audience, node.opts.jwt_issuer});
    if (!claims) {
      auto& ctx_msg = claims.error().context();
      return done(
          make_error(ec::forbidden,
                     "token refused: " + (ctx_msg.match_elements<std::string>()
                                              ? ctx_msg.get_as<std::string>(0)
                                              : std::string{"bad token"})));
    }
    if (claims->sub != ctx.sender.uid)
      return done(make_error(ec::forbidden,
                             "the token is for another uid than this "
                             "connection's"));
    self->send(ctx.connection, atom::refresh_v, claims->exp);
    return done(json_ptr{});
  }
  if (type == "send") {
    auto d =
        ops::send(f, sender, node.durable(type), node.opts.max_fanout_bytes);
    if (!d)
      return done(std::move(d.error()));
    bool to_conn = !d->to_conn.empty();
    self->request(node.registry, caf::infinite, atom::send_v, std::move(*d))
        .then([done, to_conn](
                  delivery_report& report) { done(sent(report, to_conn)); },
              failed);
    return;
  }
  if (type == "broadcast") {
    if (!node.opts.client_broadcast)
      return done(
          make_error(ec::forbidden, "clients may not broadcast on this node"));
    auto d = ops::broadcast(f, sender);
    if (!d)
      return done(std::move(d.error()));
    self->request(node.registry, caf::infinite, atom::broadcast_v,
                  std::move(*d))
        .then([ok](atom::ok) { ok(); }, failed);
    return;
  }
  if (type == "join" || type == "leave") {
    auto group = ops::name_field(f, "group");
    if (!group)
      return done(std::move(group.error()));
    if (type == "join")
      self->request(node.registry, caf::infinite, atom::join_v, ctx.sender,
                    std::move(*group))
          .then([ok](atom::ok) { ok(); }, failed);
    else
      self->request(node.registry, caf::infinite, atom::leave_v, ctx.sender,
                    std::move(*group))
          .then([ok](atom::ok) { ok(); }, failed);
    return;
  }
  if (type == "publish") {
    auto d = ops::publish(f, sender, node.durable(type));
    if (!d)
      return done(std::move(d.error()));
    self->request(node.registry, caf::infinite, atom::publish_v, std::move(*d))
        .then([done](delivery_report& report) { done(sent(report)); }, failed);
    return;
  }
  if (type == "members") {
    auto group = ops::name_field(f, "group");
    if (!group)
      return done(std::move(group.error()));
    if (node.opts.group_join == "token") {
      // Closed groups: only members may list the others (the API may).
      self->request(node.registry, caf::infinite, atom::is_member_v, *group,
                    ctx.sender.uid)
          .then(
              [self, registry = node.registry, limit = node.opts.members_limit,
               group = *group, done](bool member) {
                if (!member)
                  return done(make_error(ec::not_member,
                                         "only members may list a group's "
                                         "members (group-join=token)"));
                list_members(self, registry, limit, group, done);
              },
              failed);
      return;
    }
    list_members(self, node.registry, node.opts.members_limit, *group, done);
    return;
  }
  if (type == "presence") {
    auto uids = ops::uid_list(f, "uids", ops::frame_max_uids);
    if (!uids)
      return done(std::move(uids.error()));
    self->request(node.registry, caf::infinite, atom::presence_v, *uids)
        .then(
            [done, uids = *uids](std::vector<bool>& online) {
              json result = json::object();
              for (size_t i = 0; i < uids.size(); ++i)
                result[uids[i]] = static_cast<bool>(online[i]);
              done(answer({{"type", "presence"}, {"online", result}}));
            },
            failed);
    return;
  }
  done(make_error(ec::unknown_type, "no built-in behaviour for " + type));
}

} // namespace

void run_builtin(connection_actor::pointer self, const node_context& node,
                 const frame_context& ctx, const json& frame,
                 builtin_done reply) {
  run_builtin<>(self, node, ctx, frame, std::move(reply));
}

behaviour_actor::behavior_type
builtins(behaviour_actor::stateful_pointer<builtins_state> self,
         node_context_ptr node) {
  self->state.node = std::move(node);
  return {
      [self](atom::frame, frame_context& ctx,
             json_ptr& frame) -> caf::result<json_ptr> {
        auto rp = self->make_response_promise<json_ptr>();
        run_builtin<>(self, *self->state.node, ctx, *frame,
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

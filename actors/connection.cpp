#include "actors/connection.hpp"

#include "actors/builtins.hpp"
#include "flow/handshake_budget.hpp"
#include "middleware/jwt.hpp"
#include "protocol/frames.hpp"
#include "protocol/operations.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>

namespace wsc {

// -- rate_limiter -------------------------------------------------------------

rate_limiter::rate_limiter(uint64_t rate, clock::time_point now)
    : rate_(static_cast<double>(rate)),
      tokens_(2.0 * static_cast<double>(rate)), refilled_(now),
      window_start_(now) {
  // nop
}

rate_limiter::verdict rate_limiter::take(clock::time_point now) {
  using std::chrono::duration;
  auto elapsed = duration<double>(now - refilled_).count();
  tokens_ = std::min(2.0 * rate_, tokens_ + elapsed * rate_);
  refilled_ = now;
  if (tokens_ >= 1.0) {
    tokens_ -= 1.0;
    return verdict::pass;
  }
  if (now - window_start_ > std::chrono::seconds(1)) {
    window_start_ = now;
    refused_in_window_ = 0;
  }
  return ++refused_in_window_ > std::max(rate_, 1.0) ? verdict::close
                                                     : verdict::refuse;
}

// -- decode_client ------------------------------------------------------------

caf::expected<frames::client_frame> decode_client(const frame_codec& codec,
                                                  std::string_view payload,
                                                  bool binary,
                                                  request_info& req) {
  if (binary && !codec.reads_binary())
    return make_error(ec::bad_frame,
                      "this node's frame codec reads text frames only");
  auto decoded = codec.decode(payload, binary, req.context);
  if (!decoded)
    return std::move(decoded.error());
  auto& frame = *decoded;
  if (!frame.is_object())
    return make_error(ec::bad_frame, "frame must be a JSON object");
  if (auto i = frame.find("id"); i != frame.end()) {
    if (!i->is_string() && !i->is_number())
      return make_error(ec::bad_frame, "id must be a string or a number");
    req.id = i->dump();
  }
  auto type = frame.find("type");
  if (type == frame.end() || !type->is_string())
    return make_error(ec::bad_frame, "missing string field 'type'");
  auto type_name = type->get<std::string>();
  return frames::client_frame{
      std::make_shared<const nlohmann::json>(std::move(frame)),
      std::move(type_name)};
}

// -- connection_state ---------------------------------------------------------

namespace {

/// The most frames a client may send before its connection is open.
constexpr size_t max_early_frames = 256;

} // namespace

void connection_state::write(std::string frame) {
  if (auto s = sink.lock())
    s->write(std::make_shared<const std::string>(std::move(frame)), true);
}

void connection_state::write_answer(std::string frame,
                                    const request_info& req) {
  auto s = sink.lock();
  if (!s)
    return;
  if (!codec) {
    s->write(std::make_shared<const std::string>(std::move(frame)), true);
    return;
  }
  // A codec is set only for a sink that is a codec_sink.
  static_cast<codec_sink*>(s.get())->write_encoded(
      std::make_shared<const std::string>(
          codec->encode_answer(std::move(frame), req.context)),
      true);
}

void connection_state::close(uint16_t code, std::string reason) {
  if (auto s = sink.lock())
    s->close(code, std::move(reason));
}

void connection_state::fail(const request_info& req, ec code,
                            const std::string& message) {
  env->metrics->count_error(code);
  write_answer(frames::error(req.id, code, message), req);
}

void connection_state::arm_expiry(int64_t exp_s) {
  // Overflow-safe: the time is bounded to verify_jwt's range, and the delay
  // to ten years.
  exp_s = std::clamp<int64_t>(exp_s, 0, jwt_max_time_s);
  constexpr int64_t max_delay_ms = 10 * 366 * 86'400'000LL;
  auto left =
      std::clamp<int64_t>(exp_s * 1000 - frames::now_ms(), 0, max_delay_ms);
  if (auto s = sink.lock())
    s->close_after(std::chrono::milliseconds(left), 4003, "token expired");
}

void connection_state::answered() {
  if (auto s = sink.lock())
    s->frame_answered();
}

bool connection_state::may_join(const nlohmann::json& frame) const {
  if (env->builtins_cfg.group_join != "token")
    return true;
  auto group = frame.find("group");
  if (group == frame.end() || !group->is_string())
    return true; // malformed: the behaviour answers bad_frame
  if (!opening)
    return false;
  auto& granted = opening->context.groups;
  return std::find(granted.begin(), granted.end(),
                   group->get_ref<const std::string&>()) != granted.end();
}

namespace {

/// Frames' worth of `rate-limit` that naming or listing `uids` uids costs
/// beyond the frame itself: one more frame per 100 uids beyond the first
/// 100. At the frame rate alone, 54 KB presence frames issued 100,000 HVALs
/// a second and took others' send->ack from 2 to 308 ms (helper-31's
/// probe); 35-byte `members` frames of a 10,000-member group cost Redis
/// 0.6-1.6 ms each (helper-37's).
double list_cost(size_t uids) {
  constexpr size_t uids_per_frame = 100;
  if (uids <= uids_per_frame)
    return 0;
  return static_cast<double>(uids - uids_per_frame) / uids_per_frame;
}

/// What a frame costs beyond its own before it runs: a presence query by
/// the uids it names (a longer list than a frame may name is refused).
double extra_cost(const frames::client_frame& frame) {
  if (frame.type != "presence")
    return 0;
  auto uids = frame.body->find("uids");
  if (uids == frame.body->end() || !uids->is_array())
    return 0;
  return list_cost(std::min(uids->size(), ops::frame_max_uids));
}

/// What an answer costs beyond its frame: a member list by its length
/// (known only once the store answered; the limiter may go into debt).
double answer_cost(const std::string& type, const json_ptr& answer) {
  if (type != "members" || !answer)
    return 0;
  auto uids = answer->find("uids");
  if (uids == answer->end() || !uids->is_array())
    return 0;
  return list_cost(uids->size());
}

} // namespace

void connection_state::handle(std::string text) {
  if (!dispatch(std::move(text)))
    answered();
}

bool connection_state::dispatch(std::string text) {
  ++env->metrics->frames_in;
  if (!admit())
    return false;
  request_info req;
  auto frame = decode(std::move(text), req);
  if (!frame) {
    fail(req, to_ec(frame.error()), error_message(frame.error()));
    return false;
  }
  env->metrics->count_frame(frame->type);
  if (limiter.limits())
    limiter.charge(extra_cost(*frame));
  if (frame->type == "join" && !may_join(*frame->body)) {
    fail(req, ec::forbidden,
         "group-join=token: this connection may join only the groups its "
         "token grants");
    return false;
  }
  auto handler = env->behaviours->find(frame->type);
  if (!handler) {
    fail(req, ec::unknown_type, "no behaviour for type '" + frame->type + "'");
    return false;
  }
  frame_context ctx{who, caf::actor_cast<connection_actor>(self),
                    address ? *address : std::string{}};
  if (handler == env->builtins)
    run_builtin(
        self, env->builtins_cfg, env->registry, ctx, *frame->body,
        [this, req, type = frame->type](caf::expected<json_ptr> answer) {
          if (answer && limiter.limits())
            limiter.charge(answer_cost(type, *answer));
          if (!answer)
            fail(req, to_ec(answer.error()), error_message(answer.error()));
          else
            write_answer(*answer ? frames::reply(**answer, req.id)
                                 : frames::ack(req.id),
                         req);
          answered();
        });
  else
    ask(handler, std::move(ctx), std::move(*frame), std::move(req));
  return true;
}

bool connection_state::admit() {
  if (!limiter.limits())
    return true;
  switch (limiter.take()) {
  case rate_limiter::verdict::pass:
    return true;
  case rate_limiter::verdict::refuse:
    fail({}, ec::rate_limited, "rate limit exceeded, frame dropped");
    return false;
  case rate_limiter::verdict::close:
    env->metrics->count_error(ec::rate_limited);
    close(1008, "rate limit exceeded");
    return false;
  }
  return false; // not reached
}

caf::expected<frames::client_frame>
connection_state::decode(std::string text, request_info& req) {
  bool binary = false;
  if (codec && !text.empty() && text.front() == binary_frame_mark) {
    binary = true;
    text.erase(0, 1);
  }
  if (env->subscribed_events->load(std::memory_order_relaxed) & on_recv_message)
    self->send(env->events, recv_message_event{who, text});
  return codec ? decode_client(*codec, text, binary, req)
               : frames::parse_client(text, req.id);
}

void connection_state::ask(const behaviour_actor& handler, frame_context ctx,
                           frames::client_frame frame, request_info req) {
  self->request(handler, env->request_timeout, atom::frame_v, std::move(ctx),
                std::move(frame.body))
      .then(
          [this, req](json_ptr& answer) {
            write_answer(answer ? frames::reply(*answer, req.id)
                                : frames::ack(req.id),
                         req);
            answered();
          },
          [this, req, type = std::move(frame.type), handler](caf::error& err) {
            if (behaviour_failed(err, type, handler))
              fail(req, ec::internal, "behaviour for '" + type + "' failed");
            else
              fail(req, to_ec(err), error_message(err));
            answered();
          });
}

bool connection_state::behaviour_failed(const caf::error& err,
                                        const std::string& type,
                                        const behaviour_actor& handler) const {
  // The behaviour itself failed (it threw, or it is dead) rather than
  // answered an error: the client is told so without internals. One that
  // died holding the request leaves it to time out; its SUPERVISOR has
  // replaced or removed it by then.
  if (err.category() != caf::atom("system"))
    return false;
  switch (static_cast<caf::sec>(err.code())) {
  case caf::sec::runtime_error: // it threw
  case caf::sec::request_receiver_down:
    return true;
  case caf::sec::request_timeout:
    return env->behaviours->find(type) != handler;
  default:
    return false;
  }
}

// -- behaviour ----------------------------------------------------------------

// Every idle connection is one of these actors: CAF allocates its control
// block (padded to a cache line) and the actor together. Past 1,280 bytes
// that block takes jemalloc's next size class, 1,536.
static_assert(CAF_CACHE_LINE_SIZE +
                      sizeof(caf::stateful_actor<connection_state,
                                                 connection_actor::base>) <=
                  1280,
              "keep connection_state small (see its comment)");

connection_actor::behavior_type
connection(connection_actor::stateful_pointer<connection_state> self,
           connection_env_ptr env, std::weak_ptr<connection_sink> sink,
           open_context opening) {
  auto& st = self->state;
  st.self = self;
  st.env = std::move(env);
  st.sink = std::move(sink);
  if (auto s = st.sink.lock()) {
    if (auto coded = dynamic_cast<codec_sink*>(s.get());
        coded && coded->codec() && !coded->codec()->identity())
      st.codec = coded->codec();
    st.address =
        std::make_unique<const std::string>(address_key(s->client_address()));
  }
  st.limiter = rate_limiter{st.env->rate_limit};
  st.opening = std::make_unique<opening_state>();
  auto& ctx = st.opening->context;
  ctx = std::move(opening);
  int64_t since = -1;
  if (auto i = ctx.attributes.find("since"); i != ctx.attributes.end())
    since = std::stoll(i->second);
  // The open chain runs around the default step: binding the uid.
  auto refused = st.env->open.enter(ctx);
  st.who = ctx.who;
  if (refused) {
    st.close(refused->code, refused->reason);
  } else {
    // No timeout (its entry would sit in the clock for request-timeout, on
    // every connection): the REGISTRY answers every register_conn and join.
    // Its own store requests have deadlines (the built-in stores answer
    // every request; a custom store's requests time out after
    // request-timeout), and if it dies the node stops, closing this socket.
    self->request(st.env->registry, caf::infinite, atom::register_conn_v,
                  st.who, caf::actor_cast<connection_actor>(self), st.sink,
                  since)
        .then(
            [self](atom::ok) {
              auto& st = self->state;
              st.open = true;
              auto opening = std::move(st.opening);
              auto& ctx = opening->context;
              // A connection lives no longer than its token: 4003 tells the
              // client to come back with a fresh one.
              if (auto i = ctx.attributes.find("jwt.exp");
                  i != ctx.attributes.end()) {
                // Text that is no number expires now.
                int64_t exp_s = 0;
                auto& text = i->second;
                std::from_chars(text.data(), text.data() + text.size(), exp_s);
                st.arm_expiry(exp_s);
              }
              st.env->open.leave(ctx, std::nullopt);
              for (auto& group : ctx.groups)
                self->request(st.env->registry, caf::infinite, atom::join_v,
                              st.who, group)
                    .then([](atom::ok) {},
                          [self, group](caf::error& err) {
                            self->state.fail({}, to_ec(err),
                                             "cannot join '" + group +
                                                 "': " + error_message(err));
                          });
              auto early = std::move(opening->early_frames);
              if (st.env->builtins_cfg.group_join == "token" &&
                  !ctx.groups.empty()) {
                ctx.attributes.clear();
                st.opening = std::move(opening);
              }
              for (auto& text : early)
                st.handle(std::move(text));
            },
            [self](caf::error& err) {
              auto& st = self->state;
              st.env->open.leave(st.opening->context,
                                 close_request{1011, error_message(err)});
              st.close(1011, "cannot open connection: " + error_message(err));
            });
  }
  return {
      [self](atom::frame, std::string& text) {
        auto& st = self->state;
        if (st.open) {
          st.handle(std::move(text));
        } else if (st.opening->early_frames.size() < max_early_frames) {
          st.opening->early_frames.push_back(std::move(text));
        } else {
          st.close(1008, "too many frames before the connection opened");
        }
      },
      [self](atom::deliver, frame_ptr& frame) {
        if (auto s = self->state.sink.lock())
          s->write(std::move(frame), true);
      },
      [self](atom::replay, frame_ptr& frame) {
        if (auto s = self->state.sink.lock())
          s->write(std::move(frame), false);
      },
      [self](atom::disconnect, uint16_t code, std::string& reason) {
        self->state.close(code, std::move(reason));
      },
      [self](atom::refresh, int64_t exp_s) { self->state.arm_expiry(exp_s); },
      [self](atom::closed) {
        auto& st = self->state;
        // The registry learns of every connection it may have bound; one that
        // never opened is unknown there and the message is a no-op.
        self->send(st.env->registry, atom::unregister_v, st.who);
        self->quit();
      },
  };
}

} // namespace wsc

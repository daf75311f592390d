// -- The RELAY: deliveries between nodes through Redis pub/sub ----------------
//
// BASP is the fast path between nodes. When two nodes lose their CAF
// connection but both still reach Redis (a partition of the node network, a
// dial that has not succeeded yet), the REGISTRY hands the deliveries for the
// unreachable peer to the RELAY instead of dropping them. Two detached
// actors, each with its own hiredis connection: the publisher pipelines
// PUBLISH commands; the subscriber holds SUBSCRIBE on this node's channel and
// forwards each batch to the REGISTRY. Payload: a version byte, with
// `cluster-secret` the HMAC-SHA256 of the rest, then the delivery_batch in
// CAF's binary format. Without the secret, whoever can publish on Redis can
// inject deliveries; with TLS between nodes that would bypass the cluster
// certificate, so there the relay needs the secret (see node.cpp).

#include "adapters/redis_relay.hpp"

#include "adapters/redis_connection.hpp"
#include "util/hmac.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <algorithm>
#include <chrono>
#include <optional>

namespace wsc {

namespace {

using namespace std::chrono_literals;

/// Payload formats: plain, or authenticated with a MAC of `mac_size` bytes.
constexpr char plain_payload = 1;
constexpr char signed_payload = 2;
constexpr size_t mac_size = 32;
/// Deliveries per published message: keeps one message well below Redis'
/// client buffer limits when a large outbox moves to the relay at once.
constexpr size_t max_items_per_message = 512;
/// How long the subscriber waits for a message before it looks at its
/// mailbox (exit) and, when disconnected, retries.
constexpr auto poll_interval = 200ms;
constexpr auto retry_interval = 1s;
/// Commands pipelined into one round trip by the publisher.
constexpr size_t max_pipeline = 256;

std::string channel_of(const options& opts, const std::string& node) {
  return opts.redis_prefix + ":relay:" + node;
}

caf::expected<redis_connection> connect(const options& opts) {
  return redis_connection::open(opts.redis, 1000ms,
                                redis_io_timeout(opts.request_timeout));
}

/// Quits like an event-based actor once nobody can send to it any more.
template<class Self>
bool orphaned(Self* self) {
  return self->ctrl()->strong_refs.load() <= 1;
}

// -- subscriber ---------------------------------------------------------------

struct subscriber_state {
  static inline const char* name = "relay-subscriber";
  node_context_ptr node;
  redis_connection conn;
  bool quit = false;
};

using subscriber_actor =
    caf::stateful_actor<subscriber_state, caf::blocking_actor>;

/// Decodes one published payload and hands it to the REGISTRY.
void forward(subscriber_actor* self, const redisReply& payload) {
  auto& node = *self->state.node;
  auto& secret = node.opts.cluster_secret;
  if (payload.type != REDIS_REPLY_STRING || payload.len < 1) {
    log::warn("relay: ignored a message of an unknown format");
    return;
  }
  std::string_view text{payload.str, payload.len};
  auto format = text[0];
  text.remove_prefix(1);
  if (secret.empty() ? format != plain_payload
                     : format != signed_payload || text.size() < mac_size ||
                           !equal_constant_time(
                               text.substr(0, mac_size),
                               hmac_sha256(secret, text.substr(mac_size)))) {
    ++node.metrics.relay_rejected;
    log::warn("relay: dropped a message that is not {} (from a node outside "
              "the cluster, or cluster-secret differs between nodes)",
              secret.empty() ? "plain" : "signed with cluster-secret");
    return;
  }
  if (!secret.empty())
    text.remove_prefix(mac_size);
  auto bytes = caf::make_span(reinterpret_cast<const caf::byte*>(text.data()),
                              text.size());
  caf::binary_deserializer source{self->system(), bytes};
  delivery_batch batch;
  if (auto err = source(batch)) {
    log::warn("relay: ignored a malformed message: {}",
              self->system().render(err));
    return;
  }
  node.metrics.relayed_in += batch.items.size();
  caf::anon_send(node.registry, atom::remote_v, std::move(batch));
}

/// (Re)connects and subscribes to this node's channel.
bool subscribe(subscriber_actor* self) {
  auto& st = self->state;
  auto conn = connect(st.node->opts);
  if (!conn)
    return false;
  auto channel = channel_of(st.node->opts, st.node->node_id);
  auto reply = conn->command({"SUBSCRIBE", channel});
  if (!reply || (*reply)->type != REDIS_REPLY_ARRAY)
    return false;
  st.conn = std::move(*conn);
  log::info("relay: subscribed to {}", channel);
  return true;
}

void relay_subscriber(subscriber_actor* self, node_context_ptr node) {
  block_sigpipe_in_this_thread();
  auto& st = self->state;
  st.node = std::move(node);
  while (!st.quit) {
    // The wait for a message is in wait_reply; the mailbox is only looked at.
    auto wait = std::chrono::milliseconds{0};
    if (!st.conn.ok() && !subscribe(self)) {
      wait = retry_interval;
    } else if (auto reply = st.conn.wait_reply(poll_interval); !reply) {
      log::warn("relay: subscription lost: {}", error_message(reply.error()));
      st.conn = redis_connection{};
    } else if (*reply) {
      auto& x = **reply;
      // ["message", channel, payload]; subscribe confirmations are skipped.
      if (x.type == REDIS_REPLY_ARRAY && x.elements == 3 &&
          std::string_view{x.element[0]->str, x.element[0]->len} == "message")
        forward(self, *x.element[2]);
    }
    self->receive([&](caf::exit_msg& x) { st.quit = x.reason != caf::none; },
                  caf::others >>
                      [](caf::message_view&) -> caf::result<caf::message> {
                    return caf::make_error(caf::sec::unexpected_message);
                  },
                  caf::after(wait) >>
                      [self] {
                        if (orphaned(self))
                          self->state.quit = true;
                      });
  }
}

// -- publisher ----------------------------------------------------------------

struct publisher_state {
  static inline const char* name = "relay";
  node_context_ptr node;
  caf::actor subscriber;
  redis_connection conn;
  /// Replies still to read for the commands appended in this round.
  size_t pending = 0;
  std::chrono::steady_clock::time_point next_connect;
  bool quit = false;
};

using publisher_actor =
    caf::stateful_actor<publisher_state, caf::blocking_actor>;

/// Appends PUBLISH commands for a batch, in chunks.
void publish(publisher_actor* self, const std::string& peer,
             delivery_batch& batch) {
  auto& st = self->state;
  auto now = std::chrono::steady_clock::now();
  if (!st.conn.ok() && now >= st.next_connect) {
    if (auto conn = connect(st.node->opts)) {
      st.conn = std::move(*conn);
    } else {
      st.next_connect = now + retry_interval;
      log::warn("relay: cannot reach Redis: {}", error_message(conn.error()));
    }
  }
  if (!st.conn.ok()) {
    st.node->metrics.relay_dropped += batch.items.size();
    return;
  }
  auto channel = channel_of(st.node->opts, peer);
  auto& items = batch.items;
  for (size_t first = 0; first < items.size(); first += max_items_per_message) {
    delivery_batch chunk;
    chunk.origin = st.node->node_id;
    auto last = std::min(items.size(), first + max_items_per_message);
    chunk.items.assign(std::make_move_iterator(items.begin() + first),
                       std::make_move_iterator(items.begin() + last));
    auto& secret = st.node->opts.cluster_secret;
    // Format byte and room for the MAC first; the batch after them.
    auto header = 1 + (secret.empty() ? 0 : mac_size);
    std::vector<char> buf(header, '\0');
    buf[0] = secret.empty() ? plain_payload : signed_payload;
    caf::binary_serializer sink{self->system(), buf}; // appends
    if (auto err = sink(chunk)) {
      log::warn("relay: cannot encode a batch: {}", self->system().render(err));
      continue;
    }
    if (!secret.empty()) {
      auto mac = hmac_sha256(
          secret, std::string_view{buf.data() + header, buf.size() - header});
      std::copy(mac.begin(), mac.end(), buf.begin() + 1);
    }
    st.conn.append(
        {"PUBLISH", channel, std::string_view{buf.data(), buf.size()}});
    ++st.pending;
    st.node->metrics.relayed_out += chunk.items.size();
  }
}

/// Reads the replies of this round's PUBLISH commands.
void finish_round(publisher_actor* self) {
  auto& st = self->state;
  for (; st.pending > 0; --st.pending) {
    if (auto reply = st.conn.read(); !reply) {
      log::warn("relay: publish failed: {}", error_message(reply.error()));
      st.conn = redis_connection{};
      st.pending = 0;
      return;
    }
  }
}

void relay_publisher(publisher_actor* self, node_context_ptr node,
                     caf::actor subscriber) {
  block_sigpipe_in_this_thread();
  auto& st = self->state;
  st.node = std::move(node);
  st.subscriber = std::move(subscriber);
  auto take = [self](caf::duration timeout, auto on_timeout) {
    auto& st = self->state;
    self->receive(
        [self](atom::relay, const std::string& peer, delivery_batch& batch) {
          publish(self, peer, batch);
        },
        [&st](caf::exit_msg& x) { st.quit = st.quit || x.reason != caf::none; },
        caf::others >> [](caf::message_view&) -> caf::result<caf::message> {
          return caf::make_error(caf::sec::unexpected_message);
        },
        caf::after(timeout) >> on_timeout);
  };
  while (!st.quit) {
    take(caf::duration{std::chrono::seconds(1)}, [self] {
      if (orphaned(self))
        self->state.quit = true;
    });
    bool more = true;
    for (size_t n = 1; more && !st.quit && n < max_pipeline; ++n)
      take(caf::duration{std::chrono::seconds(0)}, [&more] { more = false; });
    finish_round(self);
  }
  self->send_exit(st.subscriber, caf::exit_reason::user_shutdown);
}

} // namespace

caf::expected<relay_actor> spawn_redis_relay(caf::actor_system& sys,
                                             const node_context_ptr& node) {
  // Checked once at start, like the state store; later outages are retried.
  if (auto conn = connect(node->opts); !conn)
    return make_error(ec::unavailable, "relay cannot reach Redis at " +
                                           node->opts.redis.redacted() + ": " +
                                           error_message(conn.error()));
  auto subscriber = sys.spawn<caf::detached>(relay_subscriber, node);
  auto publisher = sys.spawn<caf::detached>(relay_publisher, node, subscriber);
  return caf::actor_cast<relay_actor>(publisher);
}

} // namespace wsc

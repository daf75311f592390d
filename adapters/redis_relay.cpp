// -- The RELAY: deliveries between nodes through Redis pub/sub ----------------
//
// BASP is the fast path between nodes. When two nodes lose their CAF
// connection but both still reach Redis (a partition of the node network, a
// dial that has not succeeded yet), the REGISTRY hands the deliveries for the
// unreachable peer to the RELAY instead of dropping them. Two detached
// actors, each with its own hiredis connection: the publisher pipelines
// PUBLISH commands; the subscriber holds SUBSCRIBE on this node's channel and
// forwards each batch to the REGISTRY.
//
// With a Redis Cluster the relay uses sharded pub/sub (SPUBLISH/SSUBSCRIBE):
// a node's channel lives on the master of the channel's hash slot, so relay
// traffic spreads over the shards (classic PUBLISH is copied to every node
// of the cluster). The publisher routes through a redis_cluster client; the
// subscriber holds SSUBSCRIBE on that master and subscribes again when its
// connection breaks (failover) or Redis revokes the subscription (the slot
// moved: a `sunsubscribe` push).
//
// Payload (one PUBLISH):
//
//   byte 0   format: 5 unsigned, 6 signed (1 and 2, the batch alone without
//            the envelope, and 3 and 4, deliveries without `except` and
//            `to_conn`, are refused as `version`)
//   body     CAF binary format: destination node id (string), origin node id
//            (string), origin incarnation (u64), counter (u64, per origin
//            incarnation, +1 per payload), sender's wall time (i64, ms since
//            the epoch), the delivery_batch
//   MAC      format 6 only: 32 bytes, HMAC-SHA256 under `cluster-secret` of
//            byte 0 and the body
//
// The receiver drops, and counts by reason (wscluster_relay_rejected_by_
// reason_total): an unknown format, a payload not (correctly) signed when
// this node has the secret or signed when it has none, one it cannot decode,
// one addressed to another node, one whose wall time is more than
// `time_window` from its own, one whose counter is not above the highest seen
// from that origin incarnation (a replay, or a duplicate), and every delivery
// that fails `frames::check` (the others of that payload go on). Nodes'
// clocks must therefore agree within `time_window`. Without the secret the
// same checks run but whoever can publish on Redis can still forge
// deliveries; with TLS between nodes that would bypass the cluster
// certificate, so there the relay needs the secret (see node.cpp).

#include "adapters/redis_relay.hpp"

#include "adapters/redis_cluster.hpp"
#include "adapters/redis_connection.hpp"
#include "protocol/frames.hpp"
#include "util/hmac.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <exception>
#include <optional>
#include <unordered_map>

namespace wsc {

namespace {

using namespace std::chrono_literals;

/// Payload formats: plain, or authenticated with a MAC of `mac_size` bytes
/// at the end. 1 and 2 carried the batch without the envelope, 3 and 4
/// deliveries without `except` and `to_conn`.
constexpr char plain_payload = 5;
constexpr char signed_payload = 6;
constexpr size_t mac_size = 32;
/// Largest difference between the sender's wall time in a payload and the
/// receiver's: relayed payloads arrive within milliseconds, so this only
/// needs to cover clock skew between nodes.
constexpr int64_t time_window_ms = 60'000;
/// The receiver forgets the highest counter of an origin incarnation not
/// heard from for this long. Safe as long as it exceeds twice the time
/// window: a replay of anything older is stale by then.
constexpr auto forget_after = std::chrono::minutes{5};
/// Most origin incarnations remembered at once; beyond, the one heard from
/// least recently is forgotten first.
constexpr size_t max_origins = 1024;
/// Deliveries per published message: keeps one message well below Redis'
/// client buffer limits when a large outbox moves to the relay at once.
constexpr size_t max_items_per_message = 512;
/// How long the subscriber waits for a message before it looks at its
/// mailbox (exit) and, when disconnected, retries.
constexpr auto poll_interval = 200ms;
constexpr auto retry_interval = 1s;
/// The subscriber retries sooner: until it is back, relayed deliveries to
/// this node are lost (a failover promotes a replica in ~2 s).
constexpr auto resubscribe_interval = 250ms;
/// Commands pipelined into one round trip by the publisher.
constexpr size_t max_pipeline = 256;

std::string channel_of(const options& opts, const std::string& node) {
  return opts.redis_prefix + ":relay:" + node;
}

constexpr auto connect_timeout = 1000ms;

/// Whether the relay runs on a Redis Cluster (sharded pub/sub).
bool sharded(const options& opts) {
  return opts.redis.is_cluster();
}

caf::expected<redis_connection> connect(const options& opts) {
  return redis_connection::open(opts.redis, connect_timeout,
                                redis_io_timeout(opts.request_timeout));
}

caf::expected<redis_cluster_config> cluster_config(const options& opts) {
  auto cfg = parse_redis_cluster_url(opts.redis.cluster);
  if (!cfg)
    return cfg.error();
  cfg->connect_timeout = connect_timeout;
  cfg->io_timeout = redis_io_timeout(opts.request_timeout);
  // Relayed deliveries are the fallback path: give up on a shard that stays
  // down rather than hold up the publisher's mailbox for long.
  cfg->retry_deadline = 2000ms;
  return cfg;
}

caf::expected<redis_cluster> connect_cluster(const options& opts) {
  auto cfg = cluster_config(opts);
  if (!cfg)
    return cfg.error();
  return redis_cluster::open(std::move(*cfg));
}

/// A connection to the master serving `channel`'s hash slot (where
/// SSUBSCRIBE must go), per a freshly loaded slot map.
caf::expected<redis_connection> connect_to_shard(const options& opts,
                                                 std::string_view channel) {
  auto cfg = cluster_config(opts);
  if (!cfg)
    return cfg.error();
  auto cluster = redis_cluster::open(*cfg);
  if (!cluster)
    return cluster.error();
  auto slot = key_slot(channel);
  for (auto& range : cluster->slots())
    if (range.first <= slot && slot <= range.last) {
      redis_url url;
      url.host = range.master.host;
      url.port = range.master.port;
      url.password = cfg->password;
      return redis_connection::open(url, connect_timeout,
                                    redis_io_timeout(opts.request_timeout));
    }
  return make_error(ec::unavailable, "no master serves slot " +
                                         std::to_string(slot) + " (" +
                                         std::string{channel} + ")");
}

/// Quits like an event-based actor once nobody can send to it any more.
template<class Self>
bool orphaned(Self* self) {
  return self->ctrl()->strong_refs.load() <= 1;
}

/// The MAC of a signed payload: over the format byte and the body.
std::string mac_of(const std::string& secret, std::string_view signed_part) {
  return hmac_sha256(secret, signed_part);
}

/// Node ids as the `node-id` option accepts them.
bool valid_node_id(std::string_view id) {
  return !id.empty() && id.size() <= 64 &&
         std::all_of(id.begin(), id.end(), [](unsigned char c) {
           return std::isalnum(c) || c == '-' || c == '_';
         });
}

/// Why a payload was refused: indexes `relay_rejection_reasons`.
enum rejection : size_t {
  bad_version,
  bad_auth,
  malformed,
  misaddressed,
  stale,
  replayed,
  invalid,
  rejection_count
};

static_assert(rejection_count == node_metrics::relay_rejection_reasons.size());

// -- subscriber ---------------------------------------------------------------

/// The highest counter seen from one origin incarnation.
struct origin_seen {
  uint64_t counter = 0;
  std::chrono::steady_clock::time_point last;
};

struct subscriber_state {
  static inline const char* name = "relay-subscriber";
  node_context_ptr node;
  redis_connection conn;
  /// Keyed by "<origin>/<incarnation>"; bounded (forget_after, max_origins).
  std::unordered_map<std::string, origin_seen> seen;
  std::chrono::steady_clock::time_point next_purge;
  bool quit = false;
};

using subscriber_actor =
    caf::stateful_actor<subscriber_state, caf::blocking_actor>;

/// Counts a refused payload; logs the first of each reason and then every
/// 1000th (a flood of garbage does not flood the log).
void refuse(subscriber_state& st, rejection reason, const std::string& what) {
  auto& metrics = st.node->metrics;
  ++metrics.relay_rejected;
  if (metrics.relay_rejected_by_reason[reason]++ % 1000 == 0)
    log::warn("relay: dropped a message ({}): {}",
              node_metrics::relay_rejection_reasons[reason], what);
}

/// Records `counter` for the origin incarnation; false when it is not above
/// the highest one seen (a replay or a duplicate).
bool fresh_counter(subscriber_state& st, const std::string& origin,
                   uint64_t incarnation, uint64_t counter) {
  auto now = std::chrono::steady_clock::now();
  if (now >= st.next_purge || st.seen.size() >= max_origins) {
    for (auto i = st.seen.begin(); i != st.seen.end();)
      i = now - i->second.last > forget_after ? st.seen.erase(i) : std::next(i);
    st.next_purge = now + std::chrono::seconds{10};
  }
  auto key = origin + '/' + std::to_string(incarnation);
  if (auto i = st.seen.find(key); i != st.seen.end()) {
    if (counter <= i->second.counter)
      return false;
    i->second = origin_seen{counter, now};
    return true;
  }
  if (st.seen.size() >= max_origins)
    st.seen.erase(
        std::min_element(st.seen.begin(), st.seen.end(), [](auto& x, auto& y) {
          return x.second.last < y.second.last;
        }));
  st.seen.emplace(std::move(key), origin_seen{counter, now});
  return true;
}

/// Checks one published payload and hands its valid deliveries to the
/// REGISTRY; everything else is dropped and counted.
void forward(subscriber_actor* self, const redisReply& payload) {
  auto& st = self->state;
  auto& node = *st.node;
  auto& secret = node.opts.cluster_secret;
  if (payload.type != REDIS_REPLY_STRING || payload.len < 1)
    return refuse(st, bad_version, "not a payload");
  std::string_view text{payload.str, payload.len};
  auto format = text[0];
  if (format != plain_payload && format != signed_payload)
    return refuse(st, bad_version,
                  "unknown format " + std::to_string(int{format}) +
                      " (a node of another version?)");
  auto body = text.substr(1);
  if (secret.empty()
          ? format != plain_payload
          : format != signed_payload || body.size() < mac_size ||
                !equal_constant_time(
                    text.substr(text.size() - mac_size),
                    mac_of(secret, text.substr(0, text.size() - mac_size))))
    return refuse(st, bad_auth,
                  secret.empty()
                      ? "signed, but this node has no cluster-secret"
                      : "not signed with cluster-secret (from a node outside "
                        "the cluster, or cluster-secret differs between "
                        "nodes)");
  if (format == signed_payload)
    body.remove_suffix(mac_size);
  std::string destination;
  std::string origin;
  uint64_t incarnation = 0;
  uint64_t counter = 0;
  int64_t sent_ms = 0;
  delivery_batch batch;
  auto bytes = caf::make_span(reinterpret_cast<const caf::byte*>(body.data()),
                              body.size());
  caf::binary_deserializer source{self->system(), bytes};
  caf::error err;
  try {
    err = source(destination, origin, incarnation, counter, sent_ms, batch);
  } catch (const std::exception& ex) { // bad_alloc on absurd sizes
    err = make_error(ec::bad_frame, ex.what());
  }
  if (err)
    return refuse(st, malformed, self->system().render(err));
  if (source.remaining() != 0 || !valid_node_id(origin) ||
      batch.origin != origin || batch.items.size() > max_items_per_message)
    return refuse(st, malformed, "inconsistent envelope");
  if (destination != node.node_id)
    return refuse(st, misaddressed,
                  "for node '" +
                      (valid_node_id(destination) ? destination : "?") +
                      "' from '" + origin + "'");
  // now +- window cannot overflow; sent_ms - now could (any int64 arrives).
  if (auto now = frames::now_ms();
      sent_ms > now + time_window_ms || sent_ms < now - time_window_ms)
    return refuse(st, stale,
                  "from '" + origin + "', sent " +
                      (sent_ms > now ? "in the future" : "too long ago"));
  if (!fresh_counter(st, origin, incarnation, counter))
    return refuse(st, replayed,
                  "counter " + std::to_string(counter) + " of '" + origin +
                      "' seen before");
  auto valid = std::stable_partition(
      batch.items.begin(), batch.items.end(),
      [](const delivery& d) { return !frames::check(d); });
  if (auto bad = static_cast<size_t>(batch.items.end() - valid); bad > 0) {
    node.metrics.rejected_deliveries += bad;
    batch.items.erase(valid, batch.items.end());
    refuse(st, invalid,
           std::to_string(bad) + " malformed deliveries from '" + origin + "'");
  }
  if (batch.items.empty())
    return;
  node.metrics.relayed_in += batch.items.size();
  caf::anon_send(node.registry, atom::remote_v, std::move(batch));
}

/// (Re)connects and subscribes to this node's channel.
bool subscribe(subscriber_actor* self) {
  auto& st = self->state;
  auto& opts = st.node->opts;
  auto channel = channel_of(opts, st.node->node_id);
  auto conn = sharded(opts) ? connect_to_shard(opts, channel) : connect(opts);
  if (!conn)
    return false;
  // A MOVED error (the map changed since it was loaded) is retried after
  // resubscribe_interval with a new map.
  auto reply =
      conn->command({sharded(opts) ? "SSUBSCRIBE" : "SUBSCRIBE", channel});
  if (!reply || (*reply)->type != REDIS_REPLY_ARRAY)
    return false;
  st.conn = std::move(*conn);
  log::info("relay: subscribed to {}{}", channel,
            sharded(opts) ? " (sharded)" : "");
  return true;
}

/// The first element of a pushed array ("message", "smessage", ...).
std::string_view push_kind(const redisReply& x) {
  if (x.type != REDIS_REPLY_ARRAY || x.elements == 0 ||
      x.element[0]->type != REDIS_REPLY_STRING)
    return {};
  return {x.element[0]->str, x.element[0]->len};
}

void relay_subscriber(subscriber_actor* self, node_context_ptr node) {
  block_sigpipe_in_this_thread();
  auto& st = self->state;
  st.node = std::move(node);
  while (!st.quit) {
    // The wait for a message is in wait_reply; the mailbox is only looked at.
    auto wait = std::chrono::milliseconds{0};
    if (!st.conn.ok() && !subscribe(self)) {
      wait = resubscribe_interval;
    } else if (auto reply = st.conn.wait_reply(poll_interval); !reply) {
      log::warn("relay: subscription lost: {}", error_message(reply.error()));
      st.conn = redis_connection{};
    } else if (*reply) {
      auto& x = **reply;
      // ["message" or "smessage", channel, payload]; subscribe
      // confirmations are skipped. Redis Cluster revokes a shard channel
      // whose slot moved to another master: subscribe there.
      auto kind = push_kind(x);
      if ((kind == "message" || kind == "smessage") && x.elements == 3) {
        forward(self, *x.element[2]);
      } else if (kind == "sunsubscribe") {
        log::warn("relay: Redis ended the subscription (slot moved); "
                  "subscribing again");
        st.conn = redis_connection{};
      }
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

/// One payload of this round, published when the round ends.
struct outgoing {
  std::string channel;
  std::vector<char> payload;
  size_t items = 0;
};

struct publisher_state {
  static inline const char* name = "relay";
  node_context_ptr node;
  caf::actor subscriber;
  /// One Redis: PUBLISH, pipelined on this connection.
  redis_connection conn;
  /// Redis Cluster: SPUBLISH, routed to the master of the channel's slot.
  std::optional<redis_cluster> cluster;
  /// Payloads of this round.
  std::vector<outgoing> round;
  /// The counter of the last payload published by this incarnation.
  uint64_t counter = 0;
  std::chrono::steady_clock::time_point next_connect;
  bool quit = false;

  bool connected() const {
    return sharded(node->opts) ? cluster.has_value() : conn.ok();
  }

  /// Connects unless connected or a failed attempt was less than
  /// retry_interval ago.
  bool connect_if_due() {
    auto now = std::chrono::steady_clock::now();
    if (connected() || now < next_connect)
      return connected();
    caf::error err;
    if (sharded(node->opts)) {
      if (auto fresh = connect_cluster(node->opts))
        cluster.emplace(std::move(*fresh));
      else
        err = fresh.error();
    } else if (auto fresh = connect(node->opts)) {
      conn = std::move(*fresh);
    } else {
      err = fresh.error();
    }
    if (err) {
      next_connect = now + retry_interval;
      log::warn("relay: cannot reach Redis: {}", error_message(err));
    }
    return connected();
  }
};

using publisher_actor =
    caf::stateful_actor<publisher_state, caf::blocking_actor>;

/// Encodes a batch for this round, in chunks.
void publish(publisher_actor* self, const std::string& peer,
             delivery_batch& batch) {
  auto& st = self->state;
  if (!st.connect_if_due()) {
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
    // Format byte, envelope and batch; the MAC of all that last.
    std::vector<char> buf{secret.empty() ? plain_payload : signed_payload};
    caf::binary_serializer sink{self->system(), buf}; // appends
    auto destination = peer;
    auto origin = st.node->node_id;
    auto incarnation = st.node->incarnation;
    auto counter = st.counter + 1;
    auto sent_ms = frames::now_ms();
    if (auto err =
            sink(destination, origin, incarnation, counter, sent_ms, chunk)) {
      log::warn("relay: cannot encode a batch: {}", self->system().render(err));
      continue;
    }
    st.counter = counter;
    if (!secret.empty()) {
      auto mac = mac_of(secret, std::string_view{buf.data(), buf.size()});
      buf.insert(buf.end(), mac.begin(), mac.end());
    }
    st.round.push_back(outgoing{channel, std::move(buf), chunk.items.size()});
  }
}

std::string_view view_of(const std::vector<char>& bytes) {
  return {bytes.data(), bytes.size()};
}

/// Publishes this round's payloads in one round trip (per shard); what
/// Redis did not take counts as dropped.
void finish_round(publisher_actor* self) {
  auto& st = self->state;
  auto round = std::move(st.round);
  st.round.clear();
  if (round.empty())
    return;
  // Why each payload failed; empty: published.
  std::vector<std::string> errors(round.size());
  if (st.cluster) {
    std::vector<redis_cluster_command> cmds;
    cmds.reserve(round.size());
    for (auto& out : round)
      cmds.push_back(
          {out.channel, {"SPUBLISH", out.channel, view_of(out.payload)}});
    auto replies = st.cluster->execute(cmds);
    for (size_t i = 0; i < round.size(); ++i)
      if (!replies[i])
        errors[i] = error_message(replies[i].error());
      else if (auto& r = **replies[i]; r.type == REDIS_REPLY_ERROR)
        errors[i] = std::string{r.str, r.len};
  } else {
    for (auto& out : round)
      st.conn.append({"PUBLISH", out.channel, view_of(out.payload)});
    for (size_t i = 0; i < round.size(); ++i) {
      auto reply = st.conn.read();
      if (!reply) {
        // The connection is gone: so are the rest of the round.
        auto why = error_message(reply.error());
        std::fill(errors.begin() + i, errors.end(), why);
        st.conn = redis_connection{};
        break;
      }
      if (auto& r = **reply; r.type == REDIS_REPLY_ERROR)
        errors[i] = std::string{r.str, r.len};
    }
  }
  auto& metrics = st.node->metrics;
  for (size_t i = 0; i < round.size(); ++i) {
    if (errors[i].empty()) {
      metrics.relayed_out += round[i].items;
      continue;
    }
    // One line per failed round, however many payloads it had.
    if (std::find_if(errors.begin(), errors.begin() + i,
                     [](auto& e) { return !e.empty(); }) == errors.begin() + i)
      log::warn("relay: publish failed: {}", errors[i]);
    metrics.relay_dropped += round[i].items;
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
  auto& opts = node->opts;
  auto why = [](auto&& conn) {
    return conn ? caf::error{} : conn.error();
  };
  if (auto err =
          sharded(opts) ? why(connect_cluster(opts)) : why(connect(opts)))
    return make_error(ec::unavailable, "relay cannot reach Redis at " +
                                           opts.redis.redacted() + ": " +
                                           error_message(err));
  auto subscriber = sys.spawn<caf::detached>(relay_subscriber, node);
  auto publisher = sys.spawn<caf::detached>(relay_publisher, node, subscriber);
  return caf::actor_cast<relay_actor>(publisher);
}

} // namespace wsc

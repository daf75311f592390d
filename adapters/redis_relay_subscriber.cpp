// -- The RELAY's subscriber (see redis_relay.cpp) ---------------------------

#include "adapters/redis_relay_detail.hpp"
#include "protocol/error.hpp"
#include "protocol/frames.hpp"
#include "util/hmac.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <optional>
#include <unordered_map>

namespace wsc::relay_detail {

namespace {

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

/// The highest counter seen from one origin incarnation.
struct origin_seen {
  uint64_t counter = 0;
  std::chrono::steady_clock::time_point last;
};

struct subscriber_state {
  static inline const char* name = "relay-subscriber";
  relay_setup_ptr setup;
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
  auto& metrics = *st.setup->metrics;
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
  auto& setup = *st.setup;
  auto& secret = setup.opts.cluster_secret;
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
  if (destination != setup.who.id)
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
    setup.metrics->rejected_deliveries += bad;
    batch.items.erase(valid, batch.items.end());
    refuse(st, invalid,
           std::to_string(bad) + " malformed deliveries from '" + origin + "'");
  }
  if (batch.items.empty())
    return;
  setup.metrics->relayed_in += batch.items.size();
  caf::anon_send(setup.registry, atom::remote_v, std::move(batch));
}

/// (Re)connects and subscribes to this node's channel.
bool subscribe(subscriber_actor* self) {
  auto& st = self->state;
  auto& opts = st.setup->opts;
  auto channel = channel_of(opts, st.setup->who.id);
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

void relay_subscriber(subscriber_actor* self, relay_setup_ptr setup) {
  block_sigpipe_in_this_thread();
  auto& st = self->state;
  st.setup = std::move(setup);
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

} // namespace

caf::actor spawn_subscriber(caf::actor_system& sys, relay_setup_ptr setup) {
  return sys.spawn<caf::detached>(relay_subscriber, std::move(setup));
}

} // namespace wsc::relay_detail

// -- The RELAY's publisher (see redis_relay.cpp) ----------------------------

#include "adapters/redis_relay_detail.hpp"
#include "protocol/error.hpp"
#include "protocol/frames.hpp"
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

/// One payload of this round, published when the round ends.
struct outgoing {
  std::string channel;
  std::vector<char> payload;
  size_t items = 0;
};

struct publisher_state {
  static inline const char* name = "relay";
  relay_setup_ptr setup;
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
    return sharded(setup->opts) ? cluster.has_value() : conn.ok();
  }

  /// Connects unless connected or a failed attempt was less than
  /// retry_interval ago.
  bool connect_if_due() {
    auto now = std::chrono::steady_clock::now();
    if (connected() || now < next_connect)
      return connected();
    caf::error err;
    if (sharded(setup->opts)) {
      if (auto fresh = connect_cluster(setup->opts))
        cluster.emplace(std::move(*fresh));
      else
        err = fresh.error();
    } else if (auto fresh = connect(setup->opts)) {
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
    st.setup->metrics->relay_dropped += batch.items.size();
    return;
  }
  auto channel = channel_of(st.setup->opts, peer);
  auto& items = batch.items;
  for (size_t first = 0; first < items.size(); first += max_items_per_message) {
    delivery_batch chunk;
    chunk.origin = st.setup->who.id;
    auto last = std::min(items.size(), first + max_items_per_message);
    chunk.items.assign(std::make_move_iterator(items.begin() + first),
                       std::make_move_iterator(items.begin() + last));
    auto& secret = st.setup->opts.cluster_secret;
    // Format byte, envelope and batch; the MAC of all that last.
    std::vector<char> buf{secret.empty() ? plain_payload : signed_payload};
    caf::binary_serializer sink{self->system(), buf}; // appends
    auto destination = peer;
    auto origin = st.setup->who.id;
    auto incarnation = st.setup->who.incarnation;
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
  auto& metrics = *st.setup->metrics;
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

void relay_publisher(publisher_actor* self, relay_setup_ptr setup,
                     caf::actor subscriber) {
  block_sigpipe_in_this_thread();
  auto& st = self->state;
  st.setup = std::move(setup);
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

caf::actor spawn_publisher(caf::actor_system& sys, relay_setup_ptr setup,
                           caf::actor subscriber) {
  return sys.spawn<caf::detached>(relay_publisher, std::move(setup),
                                  std::move(subscriber));
}

} // namespace wsc::relay_detail

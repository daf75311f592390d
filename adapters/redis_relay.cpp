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

#include "adapters/redis_relay_detail.hpp"
#include "protocol/error.hpp"
#include "util/hmac.hpp"

#include <algorithm>
#include <cctype>

namespace wsc {

namespace relay_detail {

namespace {

caf::expected<redis_cluster_config> cluster_config(const options& opts) {
  auto cfg = parse_redis_cluster_url(opts.redis.cluster);
  if (!cfg)
    return cfg.error();
  cfg->connect_timeout = connect_timeout;
  cfg->io_timeout = redis_io_timeout(opts.request_timeout);
  // Relayed deliveries are the fallback path: give up on a shard that stays
  // down rather than hold up the publisher's mailbox for long.
  cfg->retry_deadline = std::chrono::milliseconds{2000};
  return cfg;
}

} // namespace

std::string channel_of(const options& opts, const std::string& node) {
  return opts.redis_prefix + ":relay:" + node;
}

/// Whether the relay runs on a Redis Cluster (sharded pub/sub).
bool sharded(const options& opts) {
  return opts.redis.is_cluster();
}

caf::expected<redis_connection> connect(const options& opts) {
  return redis_connection::open(opts.redis, connect_timeout,
                                redis_io_timeout(opts.request_timeout));
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

} // namespace relay_detail

caf::expected<relay_actor> spawn_redis_relay(caf::actor_system& sys,
                                             relay_setup setup) {
  // In the function: the unity build puts other files after this one.
  using namespace relay_detail;
  // Checked once at start, like the state store; later outages are retried.
  auto& opts = setup.opts;
  auto why = [](auto&& conn) {
    return conn ? caf::error{} : conn.error();
  };
  if (auto err =
          sharded(opts) ? why(connect_cluster(opts)) : why(connect(opts)))
    return make_error(ec::unavailable, "relay cannot reach Redis at " +
                                           opts.redis.redacted() + ": " +
                                           error_message(err));
  auto shared = std::make_shared<const relay_setup>(std::move(setup));
  auto subscriber = spawn_subscriber(sys, shared);
  auto publisher = spawn_publisher(sys, shared, subscriber);
  return caf::actor_cast<relay_actor>(publisher);
}

} // namespace wsc

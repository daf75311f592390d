#pragma once

// The parts of the RELAY that its publisher and subscriber share (see
// redis_relay.cpp for the wire format and the checks).

#include "adapters/redis_cluster.hpp"
#include "adapters/redis_connection.hpp"
#include "adapters/redis_relay.hpp"

#include <caf/actor.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wsc::relay_detail {

/// Payload formats: plain, or authenticated with a MAC of `mac_size` bytes
/// at the end. 1 and 2 carried the batch without the envelope, 3 and 4
/// deliveries without `except` and `to_conn`.
inline constexpr char plain_payload = 5;
inline constexpr char signed_payload = 6;
inline constexpr size_t mac_size = 32;
/// Largest difference between the sender's wall time in a payload and the
/// receiver's: relayed payloads arrive within milliseconds, so this only
/// needs to cover clock skew between nodes.
inline constexpr int64_t time_window_ms = 60'000;
/// The receiver forgets the highest counter of an origin incarnation not
/// heard from for this long. Safe as long as it exceeds twice the time
/// window: a replay of anything older is stale by then.
inline constexpr auto forget_after = std::chrono::minutes{5};
/// Most origin incarnations remembered at once; beyond, the one heard from
/// least recently is forgotten first.
inline constexpr size_t max_origins = 1024;
/// Deliveries per published message: keeps one message well below Redis'
/// client buffer limits when a large outbox moves to the relay at once.
inline constexpr size_t max_items_per_message = 512;
/// How long the subscriber waits for a message before it looks at its
/// mailbox (exit) and, when disconnected, retries.
inline constexpr auto poll_interval = std::chrono::milliseconds{200};
inline constexpr auto retry_interval = std::chrono::seconds{1};
/// The subscriber retries sooner: until it is back, relayed deliveries to
/// this node are lost (a failover promotes a replica in ~2 s).
inline constexpr auto resubscribe_interval = std::chrono::milliseconds{250};
/// Commands pipelined into one round trip by the publisher.
inline constexpr size_t max_pipeline = 256;

inline constexpr auto connect_timeout = std::chrono::milliseconds{1000};

/// The pub/sub channel of `node`.
std::string channel_of(const options& opts, const std::string& node);

/// Whether the relay runs on a Redis Cluster (sharded pub/sub).
bool sharded(const options& opts);

/// A connection to the one Redis of `opts`.
caf::expected<redis_connection> connect(const options& opts);

/// A client of the Redis Cluster of `opts`.
caf::expected<redis_cluster> connect_cluster(const options& opts);

/// A connection to the master serving `channel`'s hash slot (where
/// SSUBSCRIBE must go), per a freshly loaded slot map.
caf::expected<redis_connection> connect_to_shard(const options& opts,
                                                 std::string_view channel);

/// Quits like an event-based actor once nobody can send to it any more.
template<class Self>
bool orphaned(Self* self) {
  return self->ctrl()->strong_refs.load() <= 1;
}

/// The MAC of a signed payload: over the format byte and the body.
std::string mac_of(const std::string& secret, std::string_view signed_part);

/// Node ids as the `node-id` option accepts them.
bool valid_node_id(std::string_view id);

/// The subscriber: holds (S)SUBSCRIBE on this node's channel and hands what
/// passes the checks to the REGISTRY (redis_relay_subscriber.cpp).
caf::actor spawn_subscriber(caf::actor_system& sys, relay_setup_ptr setup);

/// The publisher, the RELAY's handle: pipelines (S)PUBLISH per round; stops
/// `subscriber` when it ends (redis_relay_publisher.cpp).
caf::actor spawn_publisher(caf::actor_system& sys, relay_setup_ptr setup,
                           caf::actor subscriber);

} // namespace wsc::relay_detail

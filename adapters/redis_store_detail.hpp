#pragma once

// What the files of the Redis STATE_STORE share beyond redis_store_state.hpp
// (internal: only adapters/redis_*.cpp include it): the order in which the
// request builders (redis_requests_*.cpp) run the calls of an operation, and
// the STORE's thread (redis_store.cpp), which redis_store_spawn.cpp spawns.

#include "adapters/redis_replies.hpp"
#include "adapters/redis_store_state.hpp"

#include <caf/blocking_actor.hpp>
#include <caf/stateful_actor.hpp>

namespace wsc::redis_store_impl {

// -- request builders ---------------------------------------------------------
//
// Operations that span slots are split into one call per slot; the order of
// the calls makes every crash between two of them (this node dies, or a
// shard is down) leave only what a later step repairs or ignores:
//
// - bind: the node index entry (P:{n:<node>}:nb, ni) goes first in the
//   pipeline, the uid's hash second. A single Redis runs them in that order,
//   so a binding is never in a uid's hash without being indexed (the crash
//   cleanup finds every binding through the index); an index entry without
//   a binding is harmless (the cleanup checks the hash's value). On a Redis
//   Cluster the two go to different masters: a node that dies at that very
//   moment may leave a binding unindexed (TODO(issue 15): a per-uid sweep
//   of bindings of unknown nodes would repair it). P:users and the previous
//   binding's index entry follow after the answer (followups): a lost
//   followup leaves a stale count or index entry, both harmless.
// - unbind: the uid's hash and the index entry in one stage; P:users and
//   (session groups) the group sets follow. A lost group removal leaves an
//   offline member in a group (it is routed as offline, as a member that
//   went offline with persistent groups).
// - join: the uid's groups set and the group's members set in one stage,
//   each with its own limit; when one refuses, the other's addition is
//   undone afterwards.
// - node cleanup (heartbeat sweep, claim, shutdown): (1) read the node's
//   index, (2) per uid slot remove the bindings that still point at the
//   node (drop_uid; repeating it is harmless), (3) remove the index
//   entries, the incarnation and, last, the node's entry (forget_node).
//   Until (3) the index still lists everything, so a cleanup cut short is
//   done again: by the next heartbeat sweep (same id), or, for a claim, by
//   the next claim once the first one's mark is older than the timeout.
// - durable append: (1) group_check in the group's slot (group publish),
//   (2) the idempotency key in the sender's slot, (3) one append per
//   receiver slot, pipelined. Every append job of a batch waits the same
//   stages, so the appends of one batch keep their order. When every call
//   of (3) fails, the claim is given back (a followup), so the sender's
//   retry stores the message. A crash of this node between (2) and (3)
//   (or a lost followup) leaves the idem claimed with nothing stored: a
//   retry of the same idem within the window is then answered as a
//   duplicate; the first attempt was never acked, but its retry is.
//   With durable-replicas=N, (2) and (3) are followed by WAIT N on their
//   connections (`run` in redis_store.cpp); an append short of N replicas
//   reports its uids unavailable: a failover may lose it.

// -- the thread ---------------------------------------------------------------

using redis_store_actor =
    caf::stateful_actor<redis_store_state, caf::blocking_actor>;

/// The STORE's thread: waits for a request, takes what else is queued, sends
/// it all in one round trip, answers.
void redis_store(redis_store_actor* self, redis_store_config cfg);

} // namespace wsc::redis_store_impl

#!/usr/bin/env python3
"""Turns a target load into the machines and Redis capacity a wscluster needs.

    scripts/capacity.py --connections 1000000 --messages 100000 \
        [--group-share 0.2 --group-size 20 --broadcasts 0 --nodes 0 \
         --node-cores 8 --redis-cores 1 --headroom 0.5 --durable 1]

Every constant is a measurement of this repository's benchmarks on the
2-core reference box (docs/scaling.md names the command of each); the script
prints them with the result, so a reader sees what the answer rests on.
It models a single Redis (state=redis today); the "Redis" line says how many
such instances' worth of CPU the load needs, which is what a Redis Cluster
would have to spread over its masters.
"""

import argparse
import math

# -- measured constants (docs/scaling.md, "Constants") --------------------------
NODE_BYTES_PER_CONN = 4_800          # S1, 10k idle connections, RSS per connection (issue 14 step 8)
KERNEL_BYTES_PER_CONN = 10_000       # S1 kernel slab per connection pair (client + server)
REDIS_BYTES_PER_CONN = 260           # S1 Redis used_memory per connection (bindings)
REDIS_BYTES_PER_STORED_MSG = 135     # inbox entry of a 64-byte payload (MEMORY USAGE of a stream)
INBOX_MAX_MESSAGES = 1000            # option inbox-max-messages (per uid)
INBOX_MAX_AGE_S = 86400              # option inbox-max-age
# CPU per message, both nodes together, cross-node send (S2), by load level:
NODE_US_PER_MSG_BUSY = 46.0          # S2 at 50k/s offered (threads stay awake, batches fill)
NODE_US_PER_MSG_10K = 120.0          # S2 at 10k/s on a 2-node pair
NODE_US_PER_GROUP_DELIVERY = 35.8    # S4 (persistent groups), per member copy
NODE_US_PER_BROADCAST_DELIVERY = 16.4  # S3, per receiving connection
REDIS_US_PER_MSG = 22.0              # S2 at 10k/s: Redis process CPU per durable send
REDIS_US_PER_MSG_VOLATILE = 5.3      # routing only (HVALS), PROFILE.md point 4
REDIS_US_PER_GROUP_DELIVERY = 15.8   # S4, per member copy (durable)
REDIS_US_PER_CONNECT = 5.1 + 5.2     # bind + unbind scripts (bench/redis_cost.py), Redis time
FDS_PER_NODE_BASE = 64               # listeners, Redis connections (4), logs, epoll, ...
NOFILE_SERVICE = 65_536              # packaging/wscluster@.service LimitNOFILE (--nofile)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, required=True, help="concurrent WebSocket connections")
    ap.add_argument("--messages", type=float, required=True, help="client messages per second (sends + publishes)")
    ap.add_argument("--group-share", type=float, default=0.0, help="share of messages that are group publishes")
    ap.add_argument("--group-size", type=int, default=20, help="members per group")
    ap.add_argument("--broadcasts", type=float, default=0.0, help="broadcasts per second (to every connection)")
    ap.add_argument("--connects", type=float, default=None,
                    help="connects (and as many disconnects) per second; default: connections / 3600")
    ap.add_argument("--durable", type=int, default=1, choices=(0, 1), help="1: sends stored in inboxes (default)")
    ap.add_argument("--node-cores", type=int, default=8, help="cores per node machine")
    ap.add_argument("--node-ram-gb", type=float, default=16.0, help="RAM per node machine")
    ap.add_argument("--redis-cores", type=float, default=1.0, help="cores one Redis instance uses (it is one thread)")
    ap.add_argument("--headroom", type=float, default=0.5, help="share of capacity kept free (failover, peaks)")
    ap.add_argument("--nodes", type=int, default=0, help="force this many nodes (0: computed)")
    ap.add_argument("--nofile", type=int, default=NOFILE_SERVICE,
                    help="file descriptors per node process (LimitNOFILE; default the packaged unit's)")
    args = ap.parse_args()
    if not 0 <= args.headroom < 0.95:
        ap.error("--headroom must be in [0, 0.95)")
    usable = 1.0 - args.headroom
    connects = args.connects if args.connects is not None else args.connections / 3600.0
    sends = args.messages * (1 - args.group_share)
    publishes = args.messages * args.group_share
    group_deliveries = publishes * args.group_size
    broadcast_deliveries = args.broadcasts * args.connections

    # Node CPU: the busy figure applies when nodes run near capacity (the
    # case that sizes a cluster); the 10k figure is printed for comparison.
    node_core_s = (sends * NODE_US_PER_MSG_BUSY + group_deliveries * NODE_US_PER_GROUP_DELIVERY
                   + broadcast_deliveries * NODE_US_PER_BROADCAST_DELIVERY) / 1e6
    nodes_for_cpu = node_core_s / (args.node_cores * usable)
    node_bytes = args.connections * NODE_BYTES_PER_CONN
    kernel_bytes = args.connections * KERNEL_BYTES_PER_CONN / 2
    nodes_for_ram = (node_bytes + kernel_bytes) / (args.node_ram_gb * (1 << 30) * usable)
    nodes_for_fds = args.connections / ((args.nofile - FDS_PER_NODE_BASE) * usable)
    nodes = args.nodes or max(2, math.ceil(max(nodes_for_cpu, nodes_for_ram, nodes_for_fds)))

    redis_per_send = REDIS_US_PER_MSG if args.durable else REDIS_US_PER_MSG_VOLATILE
    redis_core_s = (sends * redis_per_send + group_deliveries * REDIS_US_PER_GROUP_DELIVERY
                    + connects * REDIS_US_PER_CONNECT) / 1e6
    redis_instances = redis_core_s / (args.redis_cores * usable)
    heartbeat_calls = nodes * 2  # node + nodes scripts per heartbeat (1 s)
    heartbeat_rows = nodes * nodes  # each `nodes` call reads every node's hash
    stored_per_s = (sends if args.durable else 0) + group_deliveries
    stored = min(stored_per_s * INBOX_MAX_AGE_S, args.connections * INBOX_MAX_MESSAGES)
    redis_bytes = args.connections * REDIS_BYTES_PER_CONN + stored * REDIS_BYTES_PER_STORED_MSG

    print("Target: %d connections, %.0f messages/s (%.0f%% group publishes to %d members), "
          "%.1f broadcasts/s, %.0f connects/s, %s sends; headroom %.0f%%"
          % (args.connections, args.messages, 100 * args.group_share, args.group_size,
             args.broadcasts, connects, "durable" if args.durable else "volatile", 100 * args.headroom))
    print()
    print("Nodes: %d (of %d cores, %.0f GB each)" % (nodes, args.node_cores, args.node_ram_gb))
    print("  CPU  %.1f cores in all -> %.1f nodes" % (node_core_s, nodes_for_cpu))
    print("  RAM  %.1f GB (node heap) + %.1f GB (kernel socket buffers) -> %.1f nodes"
          % (node_bytes / 2**30, kernel_bytes / 2**30, nodes_for_ram))
    print("  fds  %.0f per node (LimitNOFILE %d) -> %.1f nodes%s"
          % (args.connections / nodes + FDS_PER_NODE_BASE, args.nofile, nodes_for_fds,
             "  <- the limit that decides: raise LimitNOFILE (--nofile)"
             if nodes_for_fds >= max(nodes_for_cpu, nodes_for_ram) else ""))
    print("  BASP links: %d (full mesh, one TCP connection per node pair)" % (nodes * (nodes - 1) // 2))
    print("Redis: %.2f cores of Redis CPU -> %d instance(s)/master(s) of one busy core at %.0f%% headroom"
          % (redis_core_s, max(1, math.ceil(redis_instances)), 100 * args.headroom))
    print("  memory: %.2f GB: bindings + %.0f million stored copies kept for inbox-max-age "
          "(at most inbox-max-messages per uid), %d B each"
          % (redis_bytes / 2**30, stored / 1e6, REDIS_BYTES_PER_STORED_MSG))
    print("  heartbeats: %d script calls/s reading %d node rows/s (grows with nodes squared)"
          % (heartbeat_calls, heartbeat_rows))
    if redis_instances > 1:
        print("  -> more than one Redis core: a single Redis cannot carry this; it needs Redis Cluster"
              " (issue 15: not supported yet) or volatile types for part of the traffic.")
    print()
    print("Assumptions (measured on the 2-core reference box, docs/scaling.md):")
    for name, value in sorted(globals().items()):
        if name.isupper() and isinstance(value, (int, float)):
            print("  %-32s %s" % (name, value))
    print("  node CPU at 10k msg/s per node pair would be %.0f us/msg instead of %.0f (less batching)"
          % (NODE_US_PER_MSG_10K, NODE_US_PER_MSG_BUSY))


if __name__ == "__main__":
    main()

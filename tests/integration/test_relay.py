"""Partition between nodes that both still reach Redis (issue 9): live
deliveries go through the relay (Redis pub/sub) until the CAF link is back.

n1 dials n2 through a TCP proxy in this process (n2 advertises the proxy's
port as its cluster address). `cut()` turns the proxy into a black hole:
bytes are read and dropped, new dials are accepted and never answered, as
with a network that lost its route. `heal()` forwards again.
"""

import selectors
import socket
import threading
import time
import unittest

from harness import (HOST, HarnessMixin, RedisClusterServer, free_port, key_slot,
                     redis_is_cluster, wait_until)

HEARTBEAT_MS = 500
NODE_TIMEOUT_MS = 2000


class LinkProxy:
    """Forwards TCP connections to `target_port`, or swallows them."""

    def __init__(self, target_port):
        self.target = (HOST, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.forwarding = True
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def cut(self):
        with self.lock:
            self.forwarding = False

    def heal(self):
        """Forwards new connections; drops the swallowed ones (their peers
        gave up on them long ago, as after a real outage)."""
        with self.lock:
            self.forwarding = True
            for key in list(self.sel.get_map().values()):
                if key.data is not None:
                    self._close(key.fileobj)

    def close(self):
        self.running = False
        self.thread.join(5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()

    def _close(self, sock):
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _loop(self):
        while self.running:
            with self.lock:
                for key, _ in self.sel.select(0.05):
                    if key.data is None:
                        self._accept()
                    else:
                        self._pump(key.fileobj, key.data)

    def _accept(self):
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        client.setblocking(False)
        if not self.forwarding:
            self.sel.register(client, selectors.EVENT_READ, [None])
            return
        upstream = socket.create_connection(self.target, timeout=2)
        upstream.setblocking(False)
        self.sel.register(client, selectors.EVENT_READ, [upstream])
        self.sel.register(upstream, selectors.EVENT_READ, [client])

    def _pump(self, sock, data):
        other = data[0]
        try:
            chunk = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(sock)
            if other is not None:
                self._close(other)
            return
        if other is None or not self.forwarding:
            return  # swallowed
        try:
            other.setblocking(True)
            other.sendall(chunk)
            other.setblocking(False)
        except OSError:
            self._close(sock)
            self._close(other)


def relayed(node, direction):
    return node.metric("wscluster_relayed_deliveries_total", 'direction="%s"' % direction)


class RelayTest(HarnessMixin, unittest.TestCase):
    extra = {}

    def setUp(self):
        self.redis = self.start_redis()
        n2_cluster_port = free_port()
        self.proxy = LinkProxy(n2_cluster_port)
        self.addCleanup(self.proxy.close)
        common = dict({"state": "redis", "redis": self.redis.url,
                       "client-broadcast": "true",
                       "heartbeat": "%dms" % HEARTBEAT_MS,
                       "node-timeout": "%dms" % NODE_TIMEOUT_MS}, **self.extra)
        self.n1 = self.start_node(dict(common, **{"node-id": "n1"}), name="n1")
        self.n2 = self.start_node(dict(common, **{
            "node-id": "n2", "cluster-listen": "%s:%d" % (HOST, n2_cluster_port),
            "cluster-advertise": "%s:%d" % (HOST, self.proxy.port)}), name="n2")
        wait_until(lambda: self.discovered(self.n1, "n2") >= 1 and
                   self.discovered(self.n2, "n1") >= 1, 15, what="n1 and n2 connected")

    def discovered(self, node, peer):
        status, _, events = node.http("GET", "/api/events")
        return sum(1 for e in events if e["event"] == "DISCOVER" and e["node"] == peer)

    def send(self, client, to, data, frame_id):
        client.send_json({"type": "send", "id": frame_id, "to": to, "data": data})
        reply = client.wait_for(lambda f: f.get("id") == frame_id, 5)
        self.assertEqual(reply["type"], "ack", reply)

    @staticmethod
    def read_messages(client, count, timeout, out):
        deadline = time.monotonic() + timeout
        try:
            while len(out) < count:
                frame = client.wait_for(lambda f: f.get("type") == "message",
                                        max(0.1, deadline - time.monotonic()))
                out.append((frame["seq"], time.monotonic()))
        except TimeoutError:
            pass

    def test_partition_keeps_live_delivery_through_redis(self):
        alice = self.n1.ws("alice")
        phone = self.n2.ws("bob", query={"device": "phone"})
        self.send(alice, "bob", "before", 0)
        first = phone.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual((first["seq"], first["data"]), (1, "before"))
        self.assertEqual(relayed(self.n1, "out"), 0)

        # A silent partition: the CAF link is declared lost after
        # node-timeout; what was in flight then is filled from the inbox.
        self.proxy.cut()
        arrivals = []  # (seq, time read)
        window = NODE_TIMEOUT_MS / 1000.0 + 3.0
        reader = threading.Thread(target=self.read_messages, args=(phone, 60, 6.0 + window,
                                                                   arrivals))
        reader.start()
        sent = {}
        for i in range(1, 61):
            sent[i + 1] = time.monotonic()
            self.send(alice, "bob", "during-%d" % i, i)
            time.sleep(0.1)
        reader.join()
        seqs = [seq for seq, _ in arrivals]
        self.assertEqual(seqs, list(range(2, 62)), "in order, no gap, no duplicate")
        late = [seq for seq, t in arrivals if t - sent[seq] > window]
        self.assertEqual(late, [], "delivered while the partition lasted")
        # The other direction.
        self.send(phone, "alice", "reply", "r")
        got = alice.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual(got["data"], "reply")
        self.assertGreater(relayed(self.n1, "out"), 0)
        self.assertGreater(relayed(self.n2, "in"), 0)
        self.assertGreater(relayed(self.n2, "out"), 0)

        # Healed: the next dial succeeds and BASP carries the traffic again
        # (a message that is not relayed).
        self.proxy.heal()
        seq = [61]

        def over_caf():
            before = relayed(self.n1, "out")
            seq[0] += 1
            self.send(alice, "bob", "after-%d" % seq[0], seq[0])
            got = phone.wait_for(lambda f: f.get("type") == "message", 5)
            self.assertEqual(got["seq"], seq[0])
            return relayed(self.n1, "out") == before

        wait_until(over_caf, 20, interval=0.2, what="deliveries over the CAF link again")

    def test_broadcast_crosses_a_partition(self):
        alice = self.n1.ws("alice")
        bob = self.n2.ws("bob")
        self.proxy.cut()
        # Wait until each node has given up the CAF link (its sends take the
        # relay); what BASP swallowed before that is lost for volatile frames.
        probes = [0]

        def relaying(node, client, to):
            probes[0] += 1
            self.send(client, to, "probe", "p%d" % probes[0])
            return relayed(node, "out") > 0

        for node, client, to in ((self.n1, alice, "bob"), (self.n2, bob, "alice")):
            wait_until(lambda: relaying(node, client, to), NODE_TIMEOUT_MS / 1000.0 + 10,
                       interval=0.3, what="%s relaying" % node.name)
        is_broadcast = lambda f: f.get("type") == "broadcast"  # noqa: E731
        alice.send_json({"type": "broadcast", "id": "b1", "data": "from n1"})
        status, _, _ = self.n2.http("POST", "/api/broadcast", {"data": "from n2"})
        self.assertEqual(status, 200)
        for client in (alice, bob):
            got = {client.wait_for(is_broadcast, 5)["data"] for _ in range(2)}
            self.assertEqual(got, {"from n1", "from n2"})
        self.assertEqual(self.proxy.forwarding, False, "still cut")

    @unittest.skipUnless(redis_is_cluster(), "sharded pub/sub: Redis Cluster only")
    def test_relay_channels_are_sharded(self):
        # Each node's channel is a shard channel on the master of its slot
        # (SSUBSCRIBE), not a classic channel copied to every cluster node.
        for node in ("n1", "n2"):
            channel = "wscluster:relay:" + node
            owner = self.redis.owner(key_slot(channel))
            wait_until(lambda: channel in (owner.command("PUBSUB", "SHARDCHANNELS") or []),
                       10, what="%s subscribed on its shard" % channel)
            for master in self.redis.master_servers():
                self.assertNotIn(channel, master.command("PUBSUB", "CHANNELS") or [])


@unittest.skipUnless(redis_is_cluster(), "Redis Cluster only")
class RelayFailoverTest(RelayTest):
    """The master holding n2's relay channel is killed while n1 and n2 are
    cut off from each other: n2 subscribes again on the promoted replica, n1
    publishes there, deliveries go on."""
    test_partition_keeps_live_delivery_through_redis = None
    test_broadcast_crosses_a_partition = None
    test_relay_channels_are_sharded = None

    def start_redis(self, **kwargs):
        redis = RedisClusterServer(replicas=1)
        self.addCleanup(redis.cleanup)
        return redis.start()

    def test_relay_follows_a_promoted_replica(self):
        alice = self.n1.ws("alice")
        bob = self.n2.ws("bob")
        self.proxy.cut()
        probes = [0]

        def relayed_to_bob():
            probes[0] += 1
            tag = "p%d" % probes[0]
            alice.send_json({"type": "send", "id": tag, "to": "bob", "data": tag})
            try:
                bob.wait_for(lambda f: f.get("type") == "message" and f.get("data") == tag,
                             0.5)
                return True
            except TimeoutError:
                return False

        wait_until(lambda: relayed_to_bob() and relayed(self.n1, "out") > 0,
                   NODE_TIMEOUT_MS / 1000.0 + 10, interval=0.2, what="n1 relaying to n2")
        owner = self.redis.owner(key_slot("wscluster:relay:n2"))
        owner.proc.kill()  # SIGKILL, by the Popen's own pid
        killed = time.monotonic()
        # cluster-node-timeout 1 s: the replica takes over in ~2-3 s; the
        # subscriber retries every second, the publisher's client follows
        # the new slot map.
        wait_until(relayed_to_bob, 15, interval=0.2, what="relaying after the failover")
        took = time.monotonic() - killed
        print("relay back %.1f s after the master was killed" % took)
        # Goal: cluster-node-timeout + 2 s (measured 2.8 s); slack for a
        # busy 2-core box.
        self.assertLess(took, 1.0 + 2.0 + 3.0)
        self.assertEqual(self.proxy.forwarding, False, "still cut")


class SignedRelayTest(RelayTest):
    """The same with cluster-secret: relayed batches carry an HMAC."""
    extra = {"cluster-secret": "a-secret-shared-by-n1-and-n2-0123456789"}

    def test_partition_keeps_live_delivery_through_redis(self):
        super().test_partition_keeps_live_delivery_through_redis()
        self.assertEqual(self.n2.metric("wscluster_relay_rejected_total"), 0)


if __name__ == "__main__":
    unittest.main()

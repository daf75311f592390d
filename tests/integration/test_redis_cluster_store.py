"""The Redis STATE_STORE on a Redis Cluster (issue 15): what only a cluster
shows. The cluster, groups and durable suites run against a cluster too
(``WSC_TEST_REDIS=cluster``, see tests/CMakeLists.txt).

- A durable send to uids spread over the shards while one master is down
  (no replica, ``cluster-require-full-coverage no``): the receivers on the
  dead shard are reported ``unavailable`` (HTTP receipts, not stored), the
  others get and keep the message.
- A durable send with `idem` that stored nothing (its receiver's shard
  refuses writes: NOREPLICAS) gives its idem claim back: the retry is stored and
  delivered, not acked as a repeat of a message nobody got.
"""

import time
import unittest

from harness import HarnessMixin, RedisClusterServer, key_slot, wait_until


def ukey(prefix, uid, what):
    return "%s:{u:%s}:%s" % (prefix, uid, what)


class RedisClusterStoreTest(HarnessMixin, unittest.TestCase):

    def start_cluster(self, **kwargs):
        cluster = RedisClusterServer(**kwargs)
        self.addCleanup(cluster.cleanup)
        return cluster.start()

    def test_receivers_on_a_dead_shard_are_unavailable(self):
        cluster = self.start_cluster(replicas=0, extra_args=[
            "--cluster-require-full-coverage", "no"])
        # A prefix whose single keys (P:nodes, P:users, P:layout) and the
        # node's own keys leave one master free: that one is killed.
        for i in range(200):
            prefix = "p%d" % i
            keep = {cluster.owner(key_slot(prefix + k)).port for k in
                    (":{n:n1}:h", ":nodes", ":users", ":layout")}
            victims = [s for s in cluster.master_servers() if s.port not in keep]
            if victims:
                break
        victim = victims[0]
        node = self.start_node({"node-id": "n1", "state": "redis", "redis": cluster.url,
                                "redis-prefix": prefix, "heartbeat": "500ms",
                                "node-timeout": "3s"})
        on_victim, elsewhere = [], []
        for i in range(400):
            uid = "r%d" % i
            (on_victim if cluster.owner(key_slot(ukey(prefix, uid, "b"))) is victim
             else elsewhere).append(uid)
        on_victim, elsewhere = on_victim[:3], elsewhere[:5]
        self.assertTrue(on_victim and elsewhere)
        online = node.ws(elsewhere[0])
        victim.stop()
        started = time.monotonic()
        status, _, body = node.api_send(on_victim + elsewhere, "partial", wait_ms=0)
        took = time.monotonic() - started
        self.assertEqual(status, 200, body)
        self.assertEqual(sorted(body.get("unavailable", [])), sorted(on_victim), body)
        for uid in on_victim:
            self.assertEqual(body["receipts"][uid]["error"], "unavailable", body)
            self.assertFalse(body["receipts"][uid]["stored"], body)
        for uid in elsewhere:
            self.assertTrue(body["receipts"][uid]["stored"], body)
            self.assertNotIn("error", body["receipts"][uid])
            self.assertEqual(cluster.command("XLEN", ukey(prefix, uid, "in")), 1, uid)
        got = online.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual(got["data"], "partial")
        print("\n  send with one shard down answered in %.1f s" % took)

    def test_a_send_that_stored_nothing_gives_its_idem_back(self):
        cluster = self.start_cluster(replicas=0)
        # A prefix whose single keys, the node's and alice's leave one
        # master free: bob lives there.
        for i in range(200):
            prefix = "p%d" % i
            keep = {cluster.owner(key_slot(prefix + k)).port for k in
                    (":{n:n1}:h", ":nodes", ":users", ":layout", ":{u:alice}:b")}
            victims = [s for s in cluster.master_servers() if s.port not in keep]
            if victims:
                break
        victim = victims[0]
        idem_key = "%s:5:{u:alice}:idem:r1" % prefix
        bob = next("bob%d" % i for i in range(1000)
                   if cluster.owner(key_slot(ukey(prefix, "bob%d" % i, "b"))) is victim)
        node = self.start_node({"node-id": "n1", "state": "redis", "redis": cluster.url,
                                "redis-prefix": prefix})
        receiver = node.ws(bob, query={"device": "d"})
        alice = node.ws("alice")
        send = {"type": "send", "to": bob, "data": "kept", "idem": "r1"}

        def say(frame_id):
            alice.send_json(dict(send, id=frame_id))
            return alice.wait_for(lambda f: f.get("id") == frame_id, 10)

        # Bob's shard refuses every write (NOREPLICAS: it has none):
        # nothing is stored.
        victim.command("CONFIG", "SET", "min-replicas-to-write", "1")
        try:
            first = say("a")
        finally:
            victim.command("CONFIG", "SET", "min-replicas-to-write", "0")
        self.assertEqual(first.get("type"), "error", first)
        # Not stored; served live (volatile, no seq) to this node's
        # connections, as the error says.
        self.assertIn("not stored", first.get("message", ""), first)
        live = receiver.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual((live["data"], live.get("seq")), ("kept", None), live)
        wait_until(lambda: cluster.command("EXISTS", idem_key) == 0, 5,
                   what="the idem claim given back")
        retry = say("b")
        self.assertEqual(retry.get("type"), "ack", retry)
        got = receiver.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual((got["data"], got.get("seq")), ("kept", 1), got)
        # From now on a repeat is one.
        again = say("c")
        self.assertEqual(again.get("msg_id"), retry["msg_id"], again)
        self.assertNoFrame(receiver, lambda f: f.get("type") == "message", 0.7, "second copy")


if __name__ == "__main__":
    unittest.main()

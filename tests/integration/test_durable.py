"""IM-grade delivery (issue 9): per-uid inboxes, device cursors, resume on
any node, receipts. A real redis-server, two node processes."""

import unittest

from harness import EXTRA_NODE_OPTIONS, HarnessMixin, RedisServer, redis_is_cluster, wait_until
from test_cluster import ClusterBase


def messages(client, count, timeout=5):
    """The next `count` message frames of a client."""
    got = []
    for _ in range(count):
        got.append(client.wait_for(lambda f: f.get("type") == "message", timeout))
    return got


def assert_since_past_the_last_seq_is_too_old(test, node):
    """A `since` past the inbox's last seq is a position from an earlier life
    of the inbox (it expired, or the store lost it, and started over at 1):
    the welcome says too_old instead of resuming after it (probe helper-51:
    `since=1000` against three messages was `resumed:true, from 1001 to 3`)."""
    alice = node.ws("alice")
    for i in range(3):
        alice.send_json({"type": "send", "id": i, "to": "erin", "data": i})
        test.assertEqual(alice.wait_for(lambda f: f.get("id") == i, 5)["type"], "ack")
    for uid, since in (("erin", "1000"), ("erin", "4"), ("nobody", "5")):
        late = node.ws(uid, query={"device": "d", "since": since})
        test.assertEqual((late.welcome["resumed"], late.welcome.get("reason")),
                         (False, "too_old"), (uid, since, late.welcome))
    # The last seq itself resumes (nothing after it), as does one before.
    for since, first in (("3", 4), ("1", 2)):
        ok = node.ws("erin", query={"device": "d", "since": since})
        test.assertEqual((ok.welcome["resumed"], ok.welcome["from"], ok.welcome["to"]),
                         (True, first, 3))


class DurableClusterTest(ClusterBase):
    nodes_count = 2

    def send_all(self, sender, to, values):
        for i, v in enumerate(values):
            sender.send_json({"type": "send", "id": i, "to": to, "data": v})
            self.assertEqual(sender.wait_for(lambda f: f.get("id") == i, 5)["type"], "ack")

    def test_two_devices_resume_on_any_node(self):
        n1, n2 = self.nodes
        alice = n1.ws("alice")
        # bob's phone reads the first two, then goes away.
        phone = n1.ws("bob", query={"device": "phone"})
        self.assertEqual((phone.welcome["resumed"], phone.welcome["from"], phone.welcome["to"]),
                         (True, 1, 0))
        self.send_all(alice, "bob", ["m1", "m2"])
        live = messages(phone, 2)
        self.assertEqual([(m["seq"], m["data"]) for m in live], [(1, "m1"), (2, "m2")])
        msg_ids = [m["msg_id"] for m in live]
        self.assertTrue(all(msg_ids) and len(set(msg_ids)) == 2, msg_ids)
        phone.send_json({"type": "read", "id": "r", "seq": 2})
        self.assertEqual(phone.wait_for(lambda f: f.get("id") == "r", 5)["type"], "ack")
        phone.close()
        # Offline for a while: more messages, from both nodes.
        self.send_all(alice, "bob", ["m3", "m4"])
        status, _, body = n2.http("POST", "/api/send", {"to": "bob", "data": "m5", "wait_ms": 500})
        self.assertEqual(status, 200)
        self.assertEqual(body["receipts"]["bob"], {"connections": 0, "stored": True})
        # The phone comes back on the other node: 3..5 in order, then live.
        phone = n2.ws("bob", query={"device": "phone"})
        self.assertEqual((phone.welcome["resumed"], phone.welcome["from"], phone.welcome["to"]),
                         (True, 3, 5))
        got = messages(phone, 3)
        self.assertEqual([(m["seq"], m["data"]) for m in got], [(3, "m3"), (4, "m4"), (5, "m5")])
        self.assertEqual(got[0]["from"], "alice")
        self.assertIsNone(got[2]["from"])
        # The laptop never confirmed anything: it gets everything.
        laptop = n1.ws("bob", query={"device": "laptop"})
        self.assertEqual((laptop.welcome["from"], laptop.welcome["to"]), (1, 5))
        got = messages(laptop, 5)
        self.assertEqual([m["seq"] for m in got], [1, 2, 3, 4, 5])
        self.assertEqual([m["msg_id"] for m in got[:2]], msg_ids)
        # Live messages now reach both devices once, with the next seq.
        self.send_all(alice, "bob", ["m6"])
        for c in (phone, laptop):
            (m,) = messages(c, 1)
            self.assertEqual((m["seq"], m["data"]), (6, "m6"))
            self.assertNoFrame(c, lambda f: f.get("type") == "message", 0.3, "duplicate")
        # since= overrides the cursor.
        again = n2.ws("bob", query={"device": "tablet", "since": "4"})
        self.assertEqual((again.welcome["from"], again.welcome["to"]), (5, 6))
        self.assertEqual([m["seq"] for m in messages(again, 2)], [5, 6])

    def test_a_since_past_the_last_seq_is_too_old(self):
        assert_since_past_the_last_seq_is_too_old(self, self.nodes[0])

    def test_receipts_online_and_offline(self):
        n1, n2 = self.nodes
        n1.ws("carol")
        n2.ws("carol")
        status, _, body = n2.http("POST", "/api/send",
                                  {"to": ["carol", "dora"], "data": 1, "wait_ms": 1000})
        self.assertEqual(status, 200)
        # A durable send answers its msg_id too (issue 16).
        self.assertTrue(body.pop("msg_id"))
        self.assertEqual(body, {"ok": True, "receipts": {
            "carol": {"connections": 2, "stored": True},
            "dora": {"connections": 0, "stored": True}}})
        status, _, body = n1.http("POST", "/api/send", {"to": "carol", "data": 2})
        self.assertTrue(body.pop("msg_id"))
        self.assertEqual((status, body), (200, {"ok": True}))


class SessionGroupDurableTest(ClusterBase):
    """group-membership=session (persistent groups: test_groups_persistent)."""
    nodes_count = 2

    def node_options(self, i, **extra):
        return super().node_options(i, **dict({"group-membership": "session"}, **extra))

    def test_group_messages_are_stored_per_member(self):
        n1, n2 = self.nodes
        ann = n1.ws("ann", query={"device": "d"})
        ben = n2.ws("ben", query={"device": "d"})
        for c in (ann, ben):
            c.send_json({"type": "join", "id": 1, "group": "crew"})
            c.wait_for(lambda f: f.get("id") == 1, 5)
        ben.close()
        # His last connection is gone only once the node has processed the
        # close; a publish racing with it may still count him as a member.
        wait_until(lambda: not n1.presence(["ben"])["ben"], 10, what="ben offline")
        ann.send_json({"type": "publish", "id": 2, "group": "crew", "data": "while away"})
        self.assertEqual(ann.wait_for(lambda f: f.get("id") == 2, 5)["type"], "ack")
        # ben's last connection closed, so he left the group; what he missed
        # while a member is what he gets: nothing was sent while he was one
        # and offline, so reconnecting replays nothing.
        ben = n2.ws("ben", query={"device": "d"})
        self.assertEqual((ben.welcome["from"], ben.welcome["to"]), (1, 0))
        ben.send_json({"type": "join", "id": 3, "group": "crew"})
        ben.wait_for(lambda f: f.get("id") == 3, 5)
        ben2 = n1.ws("ben")  # a second connection without a device keeps him online
        ben.close()
        ann.send_json({"type": "publish", "id": 4, "group": "crew", "data": "stored"})
        ann.wait_for(lambda f: f.get("id") == 4, 5)
        f = ben2.wait_for(lambda f: f.get("type") == "group", 5)
        self.assertEqual((f["data"], f["seq"]), ("stored", 1))
        ben = n2.ws("ben", query={"device": "d"})
        self.assertEqual((ben.welcome["from"], ben.welcome["to"]), (1, 1))
        g = ben.wait_for(lambda f: f.get("type") == "group", 5)
        self.assertEqual((g["group"], g["from"], g["data"], g["msg_id"]),
                         ("crew", "ann", "stored", f["msg_id"]))


class DurableLimitsTest(HarnessMixin, unittest.TestCase):
    def test_retention_and_volatile_types(self):
        node = self.start_node({"inbox-max-messages": "5"})
        alice = node.ws("alice")
        for i in range(8):
            alice.send_json({"type": "send", "to": "carl", "data": i})
        for _ in range(8):
            alice.wait_for(lambda f: f.get("type") == "ack", 5)
        carl = node.ws("carl", query={"device": "x"})
        self.assertEqual((carl.welcome["resumed"], carl.welcome["reason"]), (False, "too_old"))
        got = messages(carl, 5)
        self.assertEqual([m["data"] for m in got], [3, 4, 5, 6, 7])
        bad = node.http("GET", "/ws?uid=x&since=abc")  # plain GET: no upgrade
        self.assertIn(bad[0], (400, 404, 426))
        quiet = self.start_node({"volatile-types": "send"})
        a = quiet.ws("a")
        b = quiet.ws("b", query={"device": "x"})
        a.send_json({"type": "send", "to": "b", "data": "typing"})
        m = b.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertNotIn("seq", m)
        self.assertNotIn("msg_id", m)
        b2 = quiet.ws("b", query={"device": "y"})
        self.assertEqual((b2.welcome["from"], b2.welcome["to"]), (1, 0))

    def test_a_since_past_the_last_seq_is_too_old(self):
        assert_since_past_the_last_seq_is_too_old(self, self.start_node())



@unittest.skipIf(redis_is_cluster() or EXTRA_NODE_OPTIONS,
                 "one Redis with a replica; runs both STORE executors itself")
class DurableReplicasNoscriptTest(HarnessMixin, unittest.TestCase):
    """durable-replicas=1 on one Redis with a real replica while Redis loses
    our scripts (SCRIPT FLUSH): the retried write counts only on a WAIT sent
    after it, under both executors of the STORE (the loop's and the thread
    of `sharing`)."""

    def setUp(self):
        self.master = self.start_redis(cluster=False)
        self.replica = RedisServer(extra_args=("--replicaof", "127.0.0.1", str(self.master.port)))
        self.replica.start()
        self.addCleanup(self.replica.cleanup)

        def synced():
            self.master.command("SET", "probe", "1")
            return self.master.command("WAIT", "1", "200") == 1
        wait_until(synced, 15, what="replica synced")

    def send(self, client, frame_id, data):
        client.send_json({"type": "send", "id": frame_id, "to": "bob", "data": data})
        reply = client.wait_for(lambda f: f.get("id") == frame_id, 5)
        self.assertEqual(reply["type"], "ack", reply)
        return reply

    def run_policy(self, policy):
        node = self.start_node({"state": "redis", "redis": self.master.url,
                                "scheduler-policy": policy, "durable-replicas": "1",
                                "durable-replicas-timeout": "1000ms"})
        bob = node.ws("bob")
        alice = node.ws("alice")
        self.assertFalse(self.send(alice, 1, "before").get("unavailable"))
        for k in range(3):
            self.assertEqual(self.master.command("SCRIPT", "FLUSH"), "OK")
            reply = self.send(alice, 2 + k, "after%d" % k)
            self.assertFalse(reply.get("unavailable"), reply)
        self.assertIn("NOSCRIPT", node.log_text())
        self.assertEqual([m["data"] for m in messages(bob, 4)],
                         ["before", "after0", "after1", "after2"])
        # Without the replica the retried write is short of replicas: its
        # receiver is reported unavailable, not acked as stored.
        self.replica.stop()
        self.assertEqual(self.master.command("SCRIPT", "FLUSH"), "OK")
        self.assertEqual(self.send(alice, 9, "short").get("unavailable"), ["bob"])

    def test_event_loop_store(self):
        self.run_policy("loop")

    def test_thread_store(self):
        self.run_policy("sharing")


if __name__ == "__main__":
    unittest.main()

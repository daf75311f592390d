"""Groups and presence across the cluster (issue 4): a real redis-server,
three node processes, real clients."""

import re
import time
import unittest

from harness import wait_until
from test_cluster import ClusterBase, HEARTBEAT_MS, NODE_TIMEOUT_MS


def is_group(frame):
    return frame.get("type") == "group"


class GroupsTest(ClusterBase):
    def join(self, client, group, frame_id=1):
        client.send_json({"type": "join", "id": frame_id, "group": group})
        reply = client.wait_for(lambda f: f.get("id") == frame_id, 5)
        self.assertEqual(reply["type"], "ack", reply)

    def members(self, client, group, frame_id=99):
        client.send_json({"type": "members", "id": frame_id, "group": group})
        reply = client.wait_for(lambda f: f.get("id") == frame_id, 5)
        self.assertEqual(reply["type"], "members", reply)
        return reply

    def remote_batches(self, node, peer, direction):
        return node.metric("wscluster_remote_batches_total",
                           'peer="%s",direction="%s"' % (peer, direction), default=0)

    def test_publish_reaches_members_on_every_node_only(self):
        n1, n2, n3 = self.nodes
        alice = n1.ws("alice")
        alice2 = n2.ws("alice")
        bob = n2.ws("bob")
        carol = n3.ws("carol")
        dave = n3.ws("dave")
        for c in (alice, bob, carol):
            self.join(c, "g")
        alice.send_json({"type": "publish", "id": 2, "group": "g", "data": {"t": "hi"}})
        self.assertEqual(alice.wait_for(lambda f: f.get("id") == 2, 5)["type"], "ack")
        # Every connection of every member: bob, carol, alice's other device
        # and the sending connection itself.
        for c in (bob, carol, alice2, alice):
            f = c.wait_for(is_group, 5)
            self.assertEqual((f["group"], f["from"], f["data"]), ("g", "alice", {"t": "hi"}))
            self.assertTs(f)
        self.assertNoFrame(dave, is_group, 0.5, "group frame for a non-member")
        dave.send_json({"type": "publish", "id": 3, "group": "g", "data": 1})
        reply = dave.wait_for(lambda f: f.get("id") == 3, 5)
        self.assertEqual((reply["type"], reply["code"]), ("error", "not_member"))
        for c in (alice, bob, carol):
            self.assertNoFrame(c, is_group, 0.3, "a rejected publish")

    def test_members_everywhere_and_leave(self):
        n1, n2, n3 = self.nodes
        alice, bob, carol = n1.ws("alice"), n2.ws("bob"), n3.ws("carol")
        for c in (alice, bob, carol):
            self.join(c, "team")
        for c in (alice, bob, carol):
            self.assertEqual(sorted(self.members(c, "team")["uids"]), ["alice", "bob", "carol"])
        for n in self.nodes:
            status, _, body = n.http("GET", "/api/groups/team/members")
            self.assertEqual(status, 200)
            self.assertEqual((body["group"], sorted(body["uids"])), ("team", ["alice", "bob", "carol"]))
        bob.send_json({"type": "leave", "id": 5, "group": "team"})
        self.assertEqual(bob.wait_for(lambda f: f.get("id") == 5, 5)["type"], "ack")
        for c in (alice, bob, carol):
            self.assertEqual(sorted(self.members(c, "team", 6)["uids"]), ["alice", "carol"])
        status, _, _ = n1.http("POST", "/api/publish", {"group": "team", "data": "api"})
        self.assertEqual(status, 200)
        for c in (alice, carol):
            f = c.wait_for(is_group, 5)
            self.assertEqual((f["from"], f["data"]), (None, "api"))
        self.assertNoFrame(bob, is_group, 0.5, "group frame after leave")

    def test_group_on_one_node_costs_nothing_elsewhere(self):
        n1, n2, n3 = self.nodes
        sender = n1.ws("sender")
        self.join(sender, "local")
        self.join(n2.ws("m1"), "local")
        self.join(n2.ws("m2"), "local")
        # The sender is the only member on n1; the others are all on n2.
        before_n3 = self.remote_batches(n1, "n3", "out")
        before_n2 = self.remote_batches(n1, "n2", "out")
        before_in = self.remote_batches(n3, "n1", "in")
        for i in range(20):
            sender.send_json({"type": "publish", "group": "local", "data": i})
        wait_until(lambda: self.remote_batches(n1, "n2", "out") > before_n2, 5,
                   what="batches to n2")
        time.sleep(0.3)
        self.assertEqual(self.remote_batches(n1, "n3", "out"), before_n3)
        self.assertEqual(self.remote_batches(n3, "n1", "in"), before_in)

    def test_api_disconnect_closes_every_node(self):
        n1, n2, _ = self.nodes
        b1 = n1.ws("bob")
        b2 = n2.ws("bob")
        other = n1.ws("zoe")
        status, _, body = n2.http("POST", "/api/disconnect", {"uid": "bob"})
        self.assertEqual((status, body), (200, {"ok": True}))
        for c in (b1, b2):
            c.wait_closed(5)
            self.assertEqual(c.close_code, 4001)
        other.send_json({"type": "ping", "id": 1})
        self.assertEqual(other.wait_for(lambda f: f.get("id") == 1, 5)["type"], "pong")
        wait_until(lambda: not n1.presence(["bob"])["bob"], 5, what="bob offline")


class GroupLimitsTest(ClusterBase):
    nodes_count = 1

    def setUp(self):
        self.redis = self.start_redis()
        self.nodes = [self.start_node(self.node_options(1, **{"max-groups": "3",
                                                               "members-limit": "2"}),
                                      name="n1")]

    def test_limits_and_names(self):
        (n1,) = self.nodes
        c = n1.ws("ann")
        for i, g in enumerate(["a", "b", "c"]):
            c.send_json({"type": "join", "id": i, "group": g})
            self.assertEqual(c.wait_for(lambda f: f.get("id") == i, 5)["type"], "ack")
        c.send_json({"type": "join", "id": 10, "group": "d"})
        reply = c.wait_for(lambda f: f.get("id") == 10, 5)
        self.assertEqual((reply["type"], reply["code"]), ("error", "too_many_groups"))
        for bad in ["", "has space", "a,b", "x" * 129, 7]:
            c.send_json({"type": "join", "id": 11, "group": bad})
            reply = c.wait_for(lambda f: f.get("id") == 11, 5)
            self.assertEqual((reply["type"], reply["code"]), ("error", "bad_frame"), bad)
        # Rejoining a group already joined is not a new group.
        c.send_json({"type": "join", "id": 12, "group": "a"})
        self.assertEqual(c.wait_for(lambda f: f.get("id") == 12, 5)["type"], "ack")
        # members is capped with a clear flag.
        for uid in ("bo", "cy"):
            other = n1.ws(uid)
            other.send_json({"type": "join", "id": 1, "group": "a"})
            other.wait_for(lambda f: f.get("id") == 1, 5)
        c.send_json({"type": "members", "id": 13, "group": "a"})
        reply = c.wait_for(lambda f: f.get("id") == 13, 5)
        self.assertEqual(len(reply["uids"]), 2)
        self.assertTrue(reply.get("truncated"))
        status, _, body = n1.http("GET", "/api/groups/a/members")
        self.assertEqual((status, len(body["uids"]), body.get("truncated")), (200, 2, True))

    def test_members_reads_no_more_than_the_limit_from_redis(self):
        # A probe's `members` frame pulled the whole group (SMEMBERS: 10,000
        # uids of 120 bytes, 1.2 MB) out of Redis to answer 1,000 of them.
        if hasattr(self.redis, "owner"):
            self.skipTest("one Redis: its output bytes are the group's read")
        (n1,) = self.nodes
        many = ["m%03d-" % i + "u" * 100 for i in range(500)]
        status, _, body = n1.http("POST", "/api/groups/big/members", {"add": many})
        self.assertEqual(status, 200, body)
        c = n1.ws("ann")
        self.redis.command("CONFIG", "RESETSTAT")
        c.send_json({"type": "members", "id": 1, "group": "big"})
        reply = c.wait_for(lambda f: f.get("id") == 1, 5)
        self.assertEqual((len(reply["uids"]), reply.get("truncated")), (2, True))
        self.assertTrue(set(reply["uids"]) <= set(many), reply)
        sent = int(re.search(r"total_net_output_bytes:(\d+)",
                             self.redis.command("INFO", "stats")).group(1))
        self.assertLess(sent, 5000)


if __name__ == "__main__":
    unittest.main()

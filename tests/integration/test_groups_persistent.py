"""Persistent groups, the membership API and addressing (issue 17): a real
redis-server, three node processes, real clients.

group-membership=persistent (the default) keeps a uid in its groups while it
is offline: the group's messages wait in its inbox and come back on resume.
group-membership=session is the old behaviour. `except`, `except_self` and
`to_conn` pick connections, on any node.
"""

import unittest

from harness import wait_until
from test_cluster import ClusterBase, HEARTBEAT_MS, NODE_TIMEOUT_MS


def is_group(frame):
    return frame.get("type") == "group"


def is_message(frame):
    return frame.get("type") == "message"


class GroupTestBase(ClusterBase):
    def call(self, client, frame, frame_id):
        client.send_json(dict(frame, id=frame_id))
        return client.wait_for(lambda f: f.get("id") == frame_id, 5)

    def join(self, client, group, frame_id=1):
        reply = self.call(client, {"type": "join", "group": group}, frame_id)
        self.assertEqual(reply["type"], "ack", reply)

    def publish(self, client, group, data, frame_id, **extra):
        reply = self.call(client, dict({"type": "publish", "group": group, "data": data},
                                       **extra), frame_id)
        self.assertEqual(reply["type"], "ack", reply)
        return reply

    def members(self, node, group):
        status, _, body = node.http("GET", "/api/groups/%s/members" % group)
        self.assertEqual(status, 200, body)
        return sorted(body["uids"])

    def edit(self, node, group, **change):
        return node.http("POST", "/api/groups/%s/members" % group, change)

    def offline(self, uid, timeout=10):
        wait_until(lambda: not any(n.presence([uid])[uid] for n in self.nodes
                                   if n.proc.poll() is None),
                   timeout, what="%s offline" % uid)


class PersistentGroupsTest(GroupTestBase):
    def test_offline_member_gets_every_message_on_resume(self):
        n1, n2, n3 = self.nodes
        ann = n1.ws("ann", query={"device": "d"})
        ben = n2.ws("ben", query={"device": "phone"})
        cid = n3.ws("cid")
        for c in (ann, ben, cid):
            self.join(c, "crew")
        ben.close()
        self.offline("ben")
        # Still a member while offline, on every node.
        for n in self.nodes:
            self.assertEqual(self.members(n, "crew"), ["ann", "ben", "cid"])
        for i in range(10):
            self.publish(ann if i % 2 else cid, "crew", {"n": i}, 10 + i)
        # Back on another node: all ten, in order, once, then live.
        ben = n3.ws("ben", query={"device": "phone"})
        self.assertTrue(ben.welcome["resumed"], ben.welcome)
        got = [ben.wait_for(is_group, 5) for _ in range(10)]
        self.assertEqual([g["data"]["n"] for g in got], list(range(10)))
        self.assertEqual([g["seq"] for g in got], list(range(1, 11)))
        self.assertEqual({g["group"] for g in got}, {"crew"})
        self.assertEqual(len({g["msg_id"] for g in got}), 10)
        self.assertNoFrame(ben, is_group, 0.5, "a group message twice")
        self.publish(ann, "crew", "live", 30)
        live = ben.wait_for(is_group, 5)
        self.assertEqual((live["data"], live["seq"]), ("live", 11))
        # `leave` ends the membership: nothing more is stored for him.
        reply = self.call(ben, {"type": "leave", "group": "crew"}, 31)
        self.assertEqual(reply["type"], "ack")
        self.assertEqual(self.members(n1, "crew"), ["ann", "cid"])
        self.publish(ann, "crew", "after leave", 32)
        self.assertNoFrame(ben, is_group, 0.5, "a group frame after leave")

    def test_api_adds_and_removes_members_cluster_wide(self):
        n1, n2, n3 = self.nodes
        dan = n3.ws("dan")
        eve = n2.ws("eve", query={"device": "tab"})
        status, _, body = self.edit(n1, "ops", add=["dan", "eve", "fay"])
        self.assertEqual((status, body), (200, {"ok": True}))
        for n in self.nodes:
            self.assertEqual(self.members(n, "ops"), ["dan", "eve", "fay"])
        # Idempotent: adding again changes nothing.
        status, _, body = self.edit(n2, "ops", add=["dan"])
        self.assertEqual((status, body), (200, {"ok": True}))
        status, _, _ = n2.http("POST", "/api/publish", {"group": "ops", "data": "one"})
        self.assertEqual(status, 200)
        for c in (dan, eve):
            self.assertEqual(c.wait_for(is_group, 5)["data"], "one")
        status, _, body = self.edit(n3, "ops", remove=["eve", "nobody"])
        self.assertEqual((status, body), (200, {"ok": True}))
        for n in self.nodes:
            self.assertEqual(self.members(n, "ops"), ["dan", "fay"])
        status, _, _ = n1.http("POST", "/api/publish", {"group": "ops", "data": "two"})
        self.assertEqual(dan.wait_for(is_group, 5)["data"], "two")
        self.assertNoFrame(eve, is_group, 0.5, "a group frame after the API removed eve")
        # fay was never online: her copies wait in her inbox.
        fay = n1.ws("fay", query={"device": "x", "since": "0"})
        self.assertEqual([fay.wait_for(is_group, 5)["data"] for _ in range(2)], ["one", "two"])
        # Members may act on what the API did: fay publishes to the group.
        self.publish(fay, "ops", "from fay", 40)
        self.assertEqual(dan.wait_for(is_group, 5)["data"], "from fay")

    def test_api_rejects_bad_membership_changes(self):
        n1 = self.nodes[0]
        for body in ({}, {"add": "ann"}, {"add": [1]}, {"add": ["a b"]},
                     {"remove": ["x,y"]}, {"add": ["ann"], "remove": ["ann"]},
                     {"add": ["u%d" % i for i in range(1001)]}):
            status, _, answer = n1.http("POST", "/api/groups/g/members", body)
            self.assertEqual(status, 400, (body, answer))
            self.assertIn("error", answer)
        status, _, _ = n1.http("POST", "/api/groups/a%20b/members", {"add": ["ann"]})
        self.assertEqual(status, 400)
        self.assertEqual(self.members(n1, "g"), [])

    def test_kill_9_keeps_members_and_clears_presence(self):
        n1, n2, n3 = self.nodes
        alice = n1.ws("alice")
        carol = n3.ws("carol", query={"device": "c"})
        for c in (alice, carol):
            self.join(c, "g2")
        n3.kill()
        wait_until(lambda: not n1.presence(["carol"])["carol"],
                   (NODE_TIMEOUT_MS + HEARTBEAT_MS) / 1000.0 + 6,
                   what="carol offline after kill -9 of her node")
        self.assertEqual(n2.presence(["carol", "alice"]), {"carol": False, "alice": True})
        for n in (n1, n2):
            self.assertEqual(self.members(n, "g2"), ["alice", "carol"])
        self.assertEqual(self.redis.command("SMEMBERS", "wscluster:{u:carol}:g"), ["g2"])
        self.assertEqual(self.redis.command("KEYS", "wscluster:*n3*"), [])
        self.publish(alice, "g2", "while her node was dead", 5)
        carol = n2.ws("carol", query={"device": "c"})
        self.assertEqual(carol.wait_for(is_group, 5)["data"], "while her node was dead")


class SessionGroupsTest(GroupTestBase):
    """group-membership=session: membership ends with the last connection,
    also when its node dies."""

    def node_options(self, i, **extra):
        return super().node_options(i, **dict({"group-membership": "session"}, **extra))

    def test_membership_ends_with_the_last_connection(self):
        n1, n2, n3 = self.nodes
        ann = n1.ws("ann")
        ben = n2.ws("ben", query={"device": "d"})
        carol = n3.ws("carol")
        for c in (ann, ben, carol):
            self.join(c, "crew")
        ben.close()
        self.offline("ben")
        self.assertEqual(self.members(n1, "crew"), ["ann", "carol"])
        self.publish(ann, "crew", "while away", 2)
        ben = n2.ws("ben", query={"device": "d"})
        self.assertEqual((ben.welcome["from"], ben.welcome["to"]), (1, 0))
        self.assertNoFrame(ben, is_group, 0.5, "a group message for an ex-member")
        n3.kill()
        wait_until(lambda: self.members(n1, "crew") == ["ann"],
                   (NODE_TIMEOUT_MS + HEARTBEAT_MS) / 1000.0 + 6,
                   what="carol out of the group after kill -9 of her node")
        self.assertEqual(self.redis.command("SMEMBERS", "wscluster:{u:carol}:g"), [])


class AddressingTest(GroupTestBase):
    def test_except_self_on_a_group_publish(self):
        n1, n2, n3 = self.nodes
        alice = n1.ws("alice")
        alice_tab = n2.ws("alice", query={"device": "tab"})
        bob = n2.ws("bob")
        bob2 = n3.ws("bob")
        carol = n3.ws("carol", query={"device": "c"})
        for c in (alice, bob, carol):
            self.join(c, "room")
        self.publish(alice, "room", "hi all", 7, except_self=True)
        # Every connection of every member but the sending one; her other
        # device does get it.
        for c in (alice_tab, bob, bob2, carol):
            f = c.wait_for(is_group, 5)
            self.assertEqual((f["from"], f["data"]), ("alice", "hi all"))
        self.assertNoFrame(alice, is_group, 0.5, "the publish on its own connection")
        # `except` names connections anywhere; a durable copy the excluded
        # device skipped does not come back as a gap later.
        status, _, _ = n1.http("POST", "/api/publish", {
            "group": "room", "data": "not to carol", "except": [carol.welcome["conn"]]})
        self.assertEqual(status, 200)
        for c in (alice, alice_tab, bob, bob2):
            self.assertEqual(c.wait_for(is_group, 5)["data"], "not to carol")
        self.assertNoFrame(carol, is_group, 0.5, "an excluded connection")
        self.publish(bob, "room", "next", 8)
        nxt = carol.wait_for(is_group, 5)
        self.assertEqual(nxt["data"], "next")
        self.assertNoFrame(carol, lambda f: f.get("data") == "not to carol", 0.5,
                           "the excluded message through a catch-up")

    def test_except_on_send_and_broadcast(self):
        n1, n2, n3 = self.nodes
        a1, a2 = n1.ws("amy"), n2.ws("amy")
        sender = n3.ws("sam")
        reply = self.call(sender, {"type": "send", "to": "amy", "data": "x",
                                   "except": [a2.welcome["conn"]]}, 1)
        self.assertEqual(reply["type"], "ack", reply)
        self.assertEqual(a1.wait_for(is_message, 5)["data"], "x")
        self.assertNoFrame(a2, is_message, 0.5, "a send to an excluded connection")
        reply = self.call(sender, {"type": "broadcast", "data": "b", "except_self": True}, 2)
        self.assertEqual(reply["type"], "ack", reply)
        for c in (a1, a2):
            self.assertEqual(c.wait_for(lambda f: f.get("type") == "broadcast", 5)["data"], "b")
        self.assertNoFrame(sender, lambda f: f.get("type") == "broadcast", 0.5,
                           "a broadcast to its excluded sender")
        status, _, _ = n2.http("POST", "/api/broadcast", {"data": "c",
                                                          "except": [a1.welcome["conn"]]})
        self.assertEqual(status, 200)
        self.assertEqual(a2.wait_for(lambda f: f.get("type") == "broadcast", 5)["data"], "c")
        self.assertEqual(sender.wait_for(lambda f: f.get("type") == "broadcast", 5)["data"], "c")
        self.assertNoFrame(a1, lambda f: f.get("type") == "broadcast", 0.5, "excluded")
        # Malformed lists are refused, the connection stays usable.
        for bad_id, extra in ((3, {"except": "x.y.1"}), (4, {"except": ["no-dots"]}),
                              (5, {"except": ["a.b.%d" % i for i in range(257)]}),
                              (6, {"except_self": "yes"})):
            reply = self.call(sender, dict({"type": "send", "to": "amy", "data": 1}, **extra),
                              bad_id)
            self.assertEqual((reply["type"], reply["code"]), ("error", "bad_frame"), extra)
        status, _, body = n1.http("POST", "/api/send", {"to": "amy", "data": 1,
                                                        "except_self": True})
        self.assertEqual(status, 400, body)

    def test_to_conn_reaches_exactly_one_connection(self):
        n1, n2, n3 = self.nodes
        target = n2.ws("tom")
        other = n3.ws("tom")
        same_node = n2.ws("tom")
        sender = n1.ws("sue")
        conn = target.welcome["conn"]
        reply = self.call(sender, {"type": "send", "to_conn": conn, "data": "just you"}, 1)
        self.assertEqual((reply["type"], reply["delivered"]), ("ack", True), reply)
        f = target.wait_for(is_message, 5)
        self.assertEqual((f["from"], f["to"], f["data"]), ("sue", "tom", "just you"))
        self.assertNotIn("seq", f)
        for c in (other, same_node):
            self.assertNoFrame(c, is_message, 0.3, "a to_conn frame elsewhere")
        # The API, and a connection on the sender's own node.
        status, _, body = n2.http("POST", "/api/send", {"to_conn": sender.welcome["conn"],
                                                        "data": "api"})
        self.assertEqual((status, body), (200, {"ok": True, "delivered": True}))
        self.assertEqual(sender.wait_for(is_message, 5)["data"], "api")
        # Gone and unknown connections: the ack says so.
        target.close()
        wait_until(lambda: self.call(sender, {"type": "send", "to_conn": conn, "data": 0},
                                     "probe").get("delivered") is False,
                   5, what="the closed connection reported gone")
        reply = self.call(sender, {"type": "send", "to_conn": "n9.abc.1", "data": 0}, 2)
        self.assertEqual((reply["delivered"], reply["reason"]), (False, "gone"))
        reply = self.call(sender, {"type": "send", "to_conn": conn.split(".")[0] + ".x.999999",
                                   "data": 0}, 3)
        self.assertEqual((reply["delivered"], reply["reason"]), (False, "gone"))
        for bad_id, frame in ((4, {"to_conn": conn, "to": "tom"}), (5, {"to_conn": 7}),
                              (6, {"to_conn": "nodots"})):
            reply = self.call(sender, dict({"type": "send", "data": 1}, **frame), bad_id)
            self.assertEqual((reply["type"], reply["code"]), ("error", "bad_frame"), frame)
        self.assertNoFrame(other, is_message, 0.3, "a to_conn frame elsewhere")


if __name__ == "__main__":
    unittest.main()

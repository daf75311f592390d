"""Idempotent sends (`idem`, `idempotency-window`, `msg_id` in acks) and token
refresh (`refresh` frames with auth=jwt), issue 16 acceptance 3 and 4.

Idempotency runs on a two-node Redis cluster (the repeat arrives on the other
node after a reconnect) and on a single node with the memory store; refresh on
a single node with auth=jwt."""

import time
import unittest

from harness import HarnessMixin, wait_until
from test_cluster import ClusterBase
from test_security import SECRET, claims, make_token

WINDOW_S = 2


def messages(client, count, timeout=5, kind="message"):
    """The next `count` frames of type `kind` of a client."""
    return [client.wait_for(lambda f: f.get("type") == kind, timeout) for _ in range(count)]


def no_more(test, client, kind="message", duration=0.7):
    test.assertNoFrame(client, lambda f: f.get("type") == kind, duration, "second copy")


class IdemMixin:
    """Sends a frame and returns its reply (ack or error)."""

    def say(self, client, frame):
        frame = dict(frame)
        frame.setdefault("id", "f%d" % self.next_id())
        client.send_json(frame)
        return self.reply_to(client, frame["id"])

    def next_id(self):
        self._ids = getattr(self, "_ids", 0) + 1
        return self._ids

    def acked(self, client, frame):
        reply = self.say(client, frame)
        self.assertEqual(reply.get("type"), "ack", reply)
        return reply


class IdempotencyClusterTest(IdemMixin, ClusterBase):
    nodes_count = 2

    def node_options(self, i, **extra):
        return super().node_options(i, **dict({"idempotency-window": "%ds" % WINDOW_S}, **extra))

    def test_repeat_on_another_node_after_reconnect_is_stored_and_delivered_once(self):
        n1, n2 = self.nodes
        phone = n2.ws("bob", query={"device": "phone"})
        alice = n1.ws("alice")
        send = {"type": "send", "to": "bob", "data": {"text": "hi"}, "idem": "order-17"}
        first = self.acked(alice, send)
        msg_id = first.get("msg_id")
        self.assertIsInstance(msg_id, str)
        self.assertTrue(msg_id)
        # The ack was lost, the client reconnects to the other node and resends.
        alice.close()
        alice = n2.ws("alice")
        again = self.acked(alice, send)
        self.assertEqual(again.get("msg_id"), msg_id)
        (m,) = messages(phone, 1)
        self.assertEqual((m["data"], m["msg_id"], m["seq"]), ({"text": "hi"}, msg_id, 1))
        no_more(self, phone)
        # Stored once: a device resuming from the start sees exactly one copy.
        self.assertEqual(self.redis.command("XLEN", "wscluster:{u:bob}:in"), 1)
        laptop = n1.ws("bob", query={"device": "laptop"})
        self.assertEqual((laptop.welcome["from"], laptop.welcome["to"]), (1, 1))
        (r,) = messages(laptop, 1)
        self.assertEqual((r["msg_id"], r["seq"]), (msg_id, 1))
        no_more(self, laptop)
        # The record is a length-prefixed key with the window as its TTL.
        key = "wscluster:5:{u:alice}:idem:order-17"
        self.assertEqual(self.redis.command("GET", key), msg_id)
        ttl = self.redis.command("PTTL", key)
        self.assertTrue(0 < ttl <= WINDOW_S * 1000, ttl)

    def test_other_uid_or_other_idem_is_a_new_message(self):
        n1, n2 = self.nodes
        bob = n1.ws("bob")
        alice, carol = n1.ws("alice"), n2.ws("carol")
        a = self.acked(alice, {"type": "send", "to": "bob", "data": 1, "idem": "k"})
        c = self.acked(carol, {"type": "send", "to": "bob", "data": 2, "idem": "k"})
        b = self.acked(alice, {"type": "send", "to": "bob", "data": 3, "idem": "k2"})
        ids = [a["msg_id"], c["msg_id"], b["msg_id"]]
        self.assertEqual(len(set(ids)), 3, ids)
        got = messages(bob, 3)
        self.assertEqual(sorted(m["data"] for m in got), [1, 2, 3])
        # Uids with ':' cannot forge another sender's key.
        x = n2.ws("a:b")
        y = n2.ws("a")
        self.assertNotEqual(self.acked(x, {"type": "send", "to": "bob", "data": 4, "idem": "c"})["msg_id"],
                            self.acked(y, {"type": "send", "to": "bob", "data": 5, "idem": "b:c"})["msg_id"])
        self.assertEqual(sorted(m["data"] for m in messages(bob, 2)), [4, 5])

    def test_after_the_window_the_same_idem_is_a_new_message(self):
        n1, n2 = self.nodes
        bob = n2.ws("bob")
        alice = n1.ws("alice")
        send = {"type": "send", "to": "bob", "data": "again", "idem": "w"}
        first = self.acked(alice, send)["msg_id"]
        messages(bob, 1)
        time.sleep(WINDOW_S + 0.5)
        second = self.acked(alice, send)["msg_id"]
        self.assertNotEqual(first, second)
        (m,) = messages(bob, 1)
        self.assertEqual(m["msg_id"], second)

    def test_repeat_of_a_send_split_into_several_store_calls_stores_nothing(self):
        # More than 500 receivers: the store appends in several script calls;
        # the first claims the idem, none of the repeat's stores anything.
        n1, n2 = self.nodes
        uids = ["u%d" % i for i in range(620)]
        last = n2.ws(uids[-1])
        send = {"type": "send", "to": uids, "data": 0, "idem": "many"}
        msg_id = self.acked(n1.ws("alice"), send)["msg_id"]
        self.assertEqual(self.acked(n2.ws("alice"), send)["msg_id"], msg_id)
        for uid in (uids[0], uids[499], uids[500], uids[-1]):
            self.assertEqual(self.redis.command("XLEN", "wscluster:{u:%s}:in" % uid), 1, uid)
        (m,) = messages(last, 1)
        self.assertEqual(m["msg_id"], msg_id)
        no_more(self, last)

    def test_a_tampered_idem_key_is_taken_over(self):
        # Whatever else holds the key (another type, an empty string) is not
        # an earlier message: the send goes through and claims the key.
        n1, _ = self.nodes
        bob = n1.ws("bob")
        alice = n1.ws("alice")
        self.redis.command("HSET", "wscluster:5:{u:alice}:idem:h", "x", "1")
        self.redis.command("SET", "wscluster:5:{u:alice}:idem:e", "")
        for idem in ("h", "e"):
            send = {"type": "send", "to": "bob", "data": idem, "idem": idem}
            msg_id = self.acked(alice, send)["msg_id"]
            self.assertEqual(self.acked(alice, send)["msg_id"], msg_id)
            (m,) = messages(bob, 1)
            self.assertEqual((m["data"], m["msg_id"]), (idem, msg_id))
        no_more(self, bob)

    def test_publish_repeat_is_delivered_once(self):
        n1, n2 = self.nodes
        ann, ben = n1.ws("ann"), n2.ws("ben", query={"device": "d"})
        for c in (ann, ben):
            self.acked(c, {"type": "join", "group": "crew"})
        pub = {"type": "publish", "group": "crew", "data": "go", "idem": "p-1"}
        first = self.acked(ann, pub)["msg_id"]
        ann2 = n2.ws("ann")  # the same uid from the other node
        self.assertEqual(self.acked(ann2, pub)["msg_id"], first)
        (g,) = messages(ben, 1, kind="group")
        self.assertEqual((g["data"], g["msg_id"]), ("go", first))
        no_more(self, ben, "group")
        self.assertEqual(self.redis.command("XLEN", "wscluster:{u:ben}:in"), 1)

    def test_api_repeat_on_another_node_is_delivered_once(self):
        n1, n2 = self.nodes
        bob = n2.ws("bob", query={"device": "d"})
        body = {"to": "bob", "data": "from the backend", "idem": "api-1", "wait_ms": 500}
        status, _, first = n1.http("POST", "/api/send", body)
        self.assertEqual(status, 200, first)
        msg_id = first["msg_id"]
        self.assertEqual(first["receipts"]["bob"], {"connections": 1, "stored": True})
        status, _, again = n2.http("POST", "/api/send", body)
        self.assertEqual(status, 200, again)
        self.assertEqual((again["msg_id"], again.get("duplicate")), (msg_id, True))
        (m,) = messages(bob, 1)
        self.assertEqual((m["from"], m["msg_id"]), (None, msg_id))
        no_more(self, bob)
        # The API is one sender of its own: a client's idem does not collide.
        alice = n1.ws("alice")
        self.assertNotEqual(self.acked(alice, {"type": "send", "to": "bob", "data": 2,
                                               "idem": "api-1"})["msg_id"], msg_id)
        messages(bob, 1)
        # Publish too.
        self.acked(bob, {"type": "join", "group": "news"})
        status, _, p1 = n2.http("POST", "/api/publish", {"group": "news", "data": 3, "idem": "n"})
        self.assertEqual(status, 200, p1)
        status, _, p2 = n1.http("POST", "/api/publish", {"group": "news", "data": 3, "idem": "n"})
        self.assertEqual((status, p2["msg_id"], p2.get("duplicate")), (200, p1["msg_id"], True))
        (g,) = messages(bob, 1, kind="group")
        self.assertEqual(g["msg_id"], p1["msg_id"])
        no_more(self, bob, "group")

    def test_malformed_idem_is_bad_frame(self):
        n1, _ = self.nodes
        alice = n1.ws("alice")
        n1.ws("bob")
        for idem in ("", "x" * 65, 17, None, ["a"], {"k": 1}):
            with self.subTest(idem=idem):
                reply = self.say(alice, {"type": "send", "to": "bob", "data": 1, "idem": idem})
                self.assertEqual((reply["type"], reply.get("code")), ("error", "bad_frame"), reply)
                reply = self.say(alice, {"type": "publish", "group": "g", "data": 1, "idem": idem})
                self.assertEqual((reply["type"], reply.get("code")), ("error", "bad_frame"), reply)
                status, _, body = n1.http("POST", "/api/send", {"to": "bob", "data": 1, "idem": idem})
                self.assertEqual(status, 400, body)
        # 64 bytes of UTF-8 (multi-byte characters count in bytes) are fine.
        self.acked(alice, {"type": "send", "to": "bob", "data": 1, "idem": "\u00e9" * 32})
        reply = self.say(alice, {"type": "send", "to": "bob", "data": 1, "idem": "\u00e9" * 33})
        self.assertEqual(reply.get("code"), "bad_frame", reply)


class IdempotencySingleNodeTest(IdemMixin, HarnessMixin, unittest.TestCase):

    def test_memory_store_repeat_after_reconnect_is_delivered_once(self):
        node = self.start_node({"idempotency-window": "%ds" % WINDOW_S})
        phone = node.ws("bob", query={"device": "phone"})
        alice = node.ws("alice")
        send = {"type": "send", "to": ["bob"], "data": "once", "idem": "m-1"}
        msg_id = self.acked(alice, send)["msg_id"]
        alice.close()
        alice = node.ws("alice")
        self.assertEqual(self.acked(alice, send)["msg_id"], msg_id)
        (m,) = messages(phone, 1)
        self.assertEqual(m["msg_id"], msg_id)
        no_more(self, phone)
        laptop = node.ws("bob", query={"device": "laptop"})
        self.assertEqual((laptop.welcome["from"], laptop.welcome["to"]), (1, 1))
        messages(laptop, 1)
        # Another sender, the API and the end of the window are new messages.
        other = self.acked(node.ws("carol"), send)["msg_id"]
        status, _, api = node.http("POST", "/api/send", {"to": "bob", "data": "once", "idem": "m-1"})
        self.assertEqual((status, api.get("duplicate")), (200, None), api)
        time.sleep(WINDOW_S + 0.5)
        late = self.acked(alice, send)["msg_id"]
        ids = [msg_id, other, api["msg_id"], late]
        self.assertEqual(len(set(ids)), 4, ids)
        self.assertEqual(len(messages(phone, 3)), 3)
        no_more(self, phone)

    def test_volatile_types_ignore_idem_and_ack_without_msg_id(self):
        # Documented choice: a volatile send is at most once and stores
        # nothing, so `idem` is checked for form and otherwise ignored.
        node = self.start_node({"volatile-types": "send"})
        bob = node.ws("bob")
        alice = node.ws("alice")
        for _ in range(2):
            reply = self.acked(alice, {"type": "send", "to": "bob", "data": "v", "idem": "k"})
            self.assertNotIn("msg_id", reply)
        self.assertEqual(len(messages(bob, 2)), 2)
        # Durable acks carry msg_id without idem too; other acks are unchanged.
        self.assertEqual(set(self.acked(alice, {"type": "join", "group": "g"})), {"type", "id"})
        self.assertIn("msg_id", self.acked(alice, {"type": "publish", "group": "g", "data": 1}))

    def test_window_zero_turns_dedupe_off(self):
        node = self.start_node({"idempotency-window": "0s"})
        bob = node.ws("bob")
        alice = node.ws("alice")
        send = {"type": "send", "to": "bob", "data": "z", "idem": "k"}
        a, b = self.acked(alice, send)["msg_id"], self.acked(alice, send)["msg_id"]
        self.assertNotEqual(a, b)
        self.assertEqual(len(messages(bob, 2)), 2)


class IdempotencyRecordTest(IdemMixin, HarnessMixin, unittest.TestCase):
    """The idem record in Redis is pending while its message is stored and
    given back when storing fell short, so that a repeat is only acked as
    stored when the first really was (one Redis without replicas)."""

    def setUp(self):
        self.redis = self.start_redis(cluster=False)

    def node(self, **extra):
        options = {"state": "redis", "redis": self.redis.url, "node-id": "n1"}
        options.update(extra)
        return self.start_node(options)

    def test_a_repeat_after_a_send_short_of_replicas_is_stored_again(self):
        # durable-replicas=1 and no replica: every copy is short; the ack
        # lists the receiver as unavailable. The repeat must say the same,
        # not "stored" (a failover would lose a copy only on the master).
        node = self.node(**{"durable-replicas": "1", "durable-replicas-timeout": "100ms"})
        node.ws("bob")
        alice = node.ws("alice")
        send = {"type": "send", "to": "bob", "data": "x", "idem": "short"}
        for _ in range(2):
            reply = self.acked(alice, send)
            self.assertEqual(reply.get("unavailable"), ["bob"], reply)
        status, _, body = node.http("POST", "/api/send", {"to": "bob", "data": "x",
                                                          "idem": "short-api", "wait_ms": 0})
        self.assertEqual(status, 200, body)
        status, _, again = node.http("POST", "/api/send", {"to": "bob", "data": "x",
                                                           "idem": "short-api", "wait_ms": 0})
        self.assertEqual(status, 200, again)
        self.assertFalse(again["receipts"]["bob"]["stored"], again)

    def test_repeats_sent_while_the_first_is_stored_are_acked_with_its_msg_id(self):
        # A client that resends at once (pipelined, before any ack) had its
        # repeats refused `unavailable` while the first was being stored
        # (probe helper-51: 30 of 30 rounds). Repeats on the node of the
        # first now wait for its answer: the contract's "acked again".
        node = self.node()
        bob = node.ws("bob")
        alice = node.ws("alice")
        for client in (alice, bob):
            self.acked(client, {"type": "join", "group": "g"})
        frames = {"message": {"type": "send", "to": "bob"},
                  "group": {"type": "publish", "group": "g"}}
        for round_ in range(6):
            kind = "message" if round_ % 2 == 0 else "group"
            ids = ["b%d-%d" % (round_, k) for k in range(4)]
            for frame_id in ids:
                alice.send_json(dict(frames[kind], id=frame_id, data=round_,
                                     idem="burst-%d" % round_))
            replies = [self.reply_to(alice, frame_id) for frame_id in ids]
            self.assertEqual([r.get("type") for r in replies], ["ack"] * 4, replies)
            self.assertEqual(len({r["msg_id"] for r in replies}), 1, replies)
            (m,) = messages(bob, 1, kind=kind)
            self.assertEqual((m["data"], m["msg_id"]), (round_, replies[0]["msg_id"]))
        no_more(self, bob)
        no_more(self, bob, kind="group")

    def test_pipelined_repeats_of_a_send_short_of_replicas_are_stored_one_at_a_time(self):
        # Each copy falls short and gives its record back: the repeats that
        # waited store the message again (at least once), one after the
        # other, instead of racing for the record (review helper-52: all
        # but one were refused).
        node = self.node(**{"durable-replicas": "1", "durable-replicas-timeout": "100ms"})
        node.ws("bob")
        alice = node.ws("alice")
        ids = ["s%d" % k for k in range(4)]
        for frame_id in ids:
            alice.send_json({"type": "send", "id": frame_id, "to": "bob", "data": "x",
                             "idem": "short-burst"})
        replies = [self.reply_to(alice, frame_id, 10) for frame_id in ids]
        self.assertEqual([r.get("type") for r in replies], ["ack"] * 4, replies)
        self.assertEqual([r.get("unavailable") for r in replies], [["bob"]] * 4, replies)

    def test_a_repeat_while_the_first_is_pending_is_refused(self):
        node = self.node()
        bob = node.ws("bob")
        alice = node.ws("alice")
        key = "wscluster:5:{u:alice}:idem:p1"
        # Another message with this idem is being stored (its record pending).
        self.redis.command("SET", key, "p:n9-1-1", "PX", "60000")
        send = {"type": "send", "to": "bob", "data": "later", "idem": "p1"}
        refused = self.say(alice, send)
        self.assertEqual((refused.get("type"), refused.get("code")), ("error", "unavailable"),
                         refused)
        self.assertIn("still being stored", refused.get("message", ""))
        no_more(self, bob)
        # That attempt ended without storing (its pending record expired or
        # was given back): the repeat is stored, and the record then holds
        # its msg_id.
        self.redis.command("DEL", key)
        msg_id = self.acked(alice, send)["msg_id"]
        (m,) = messages(bob, 1)
        self.assertEqual(m["data"], "later")
        wait_until(lambda: self.redis.command("GET", key) == msg_id, 5,
                   what="the record holds the msg_id")
        self.assertEqual(self.acked(alice, send)["msg_id"], msg_id)
        no_more(self, bob)


class RefreshTest(IdemMixin, HarnessMixin, unittest.TestCase):

    def setUp(self):
        self.node = self.start_node({"auth": "jwt", "jwt-secret": SECRET})

    def connect(self, exp_in, sub="alice"):
        return self.node.ws(query={"token": make_token(claims(sub, exp_in=exp_in))})

    def refresh(self, client, token):
        return self.say(client, {"type": "refresh", "token": token})

    def assertOpenAt(self, client, deadline):
        """Still open (answers a ping) once `deadline` (monotonic) is past."""
        time.sleep(max(0.0, deadline - time.monotonic()))
        reply = self.say(client, {"type": "ping"})
        self.assertEqual(reply["type"], "pong", reply)

    def test_refreshed_connection_outlives_the_old_exp(self):
        start = time.monotonic()
        ws = self.connect(3)
        reply = self.refresh(ws, make_token(claims("alice", exp_in=60)))
        self.assertEqual(reply, {"type": "ack", "id": reply["id"]})
        self.assertOpenAt(ws, start + 5)

    def test_every_refresh_replaces_the_timer(self):
        # A later exp, then a later one again: neither older timer closes it.
        start = time.monotonic()
        ws = self.connect(2)
        self.assertEqual(self.refresh(ws, make_token(claims("alice", exp_in=4)))["type"], "ack")
        self.assertEqual(self.refresh(ws, make_token(claims("alice", exp_in=60)))["type"], "ack")
        self.assertOpenAt(ws, start + 5.5)

    def test_refresh_to_an_earlier_exp_closes_then(self):
        ws = self.connect(60)
        start = time.monotonic()
        self.assertEqual(self.refresh(ws, make_token(claims("alice", exp_in=2)))["type"], "ack")
        self.assertEqual(ws.wait_closed(timeout=6), 4003)
        self.assertLess(time.monotonic() - start, 4.5)

    def test_another_sub_is_forbidden_and_the_old_expiry_holds(self):
        start = time.monotonic()
        ws = self.connect(3)
        reply = self.refresh(ws, make_token(claims("mallory", exp_in=60)))
        self.assertEqual((reply["type"], reply.get("code")), ("error", "forbidden"), reply)
        self.assertEqual(ws.wait_closed(timeout=7), 4003)
        elapsed = time.monotonic() - start
        self.assertTrue(1.0 < elapsed < 5.0, elapsed)

    def test_bad_tokens_are_forbidden(self):
        start = time.monotonic()
        ws = self.connect(3)
        bad = [make_token(claims("alice", exp_in=60), secret="wrong"),
               make_token(claims("alice", exp_in=-10)),
               make_token(claims("alice", exp_in=None)),
               make_token(claims("alice", exp_in=60), alg="HS512"),
               "not-a-token", ""]
        for token in bad:
            with self.subTest(token=token):
                reply = self.refresh(ws, token)
                self.assertEqual((reply["type"], reply.get("code")), ("error", "forbidden"), reply)
        reply = self.say(ws, {"type": "refresh", "token": 5})
        self.assertEqual(reply.get("code"), "bad_frame", reply)
        # Still the old expiry.
        self.assertEqual(ws.wait_closed(timeout=7), 4003)
        self.assertLess(time.monotonic() - start, 5.0)

    def test_audience_and_issuer_are_checked_like_the_handshake(self):
        node = self.start_node({"auth": "jwt", "jwt-secret": SECRET, "jwt-audience": "app",
                                "jwt-issuer": "me"})
        ws = node.ws(query={"token": make_token(claims("alice", exp_in=60, aud="app", iss="me"))})
        wrong = make_token(claims("alice", exp_in=120, aud="other", iss="me"))
        self.assertEqual(self.refresh(ws, wrong).get("code"), "forbidden")
        right = make_token(claims("alice", exp_in=120, aud=["x", "app"], iss="me"))
        self.assertEqual(self.refresh(ws, right)["type"], "ack")


class RefreshWithoutJwtTest(IdemMixin, HarnessMixin, unittest.TestCase):

    def test_refresh_is_forbidden_with_auth_none(self):
        node = self.start_node()
        ws = node.ws("alice")
        reply = self.say(ws, {"type": "refresh", "token": make_token(claims("alice"))})
        self.assertEqual((reply["type"], reply.get("code")), ("error", "forbidden"), reply)


if __name__ == "__main__":
    unittest.main()

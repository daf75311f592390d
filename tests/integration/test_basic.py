"""Single node, embedded defaults: welcome, send (one uid / list), ping,
presence, uid from the ``auth`` header, generated uid, per-pair ordering.

Run: /usr/bin/python3 -m unittest tests/integration/test_basic.py
"""

import json
import os
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import HarnessMixin, make_message_check, wait_until  # noqa: E402
from wsclient import OP_CLOSE, OP_TEXT, encode_frame  # noqa: E402


class BasicTest(HarnessMixin, unittest.TestCase):

    def setUp(self):
        # Embedded default options; only the listen port is given.
        self.node = self.start_node()

    def test_scheduler_policy_loop_runs_basp_on_the_event_loop(self):
        # The suites under scheduler-policy=loop (the default, and
        # integration.loop2) would pass on CAF's own multiplexer thread too:
        # this says which ran.
        # (A debug line: at info it would precede the one-line refusal of a
        # node that does not start.)
        node = self.start_node({"scheduler-policy": "loop", "log-level": "debug"})
        def logged():
            with open(node.log_path) as f:
                return "BASP runs on event loop 0" in f.read()

        wait_until(logged, 5, what="the multiplexer on loop 0")
        node.ws("u").close()

    def test_welcome_has_uid_conn_node_and_distinct_conn_ids(self):
        clients = [self.node.ws(uid="alice"), self.node.ws(uid="alice"),
                   self.node.ws(uid="bob"), self.node.ws(uid="bob")]
        uids = ["alice", "alice", "bob", "bob"]
        for c, uid in zip(clients, uids):
            w = c.welcome
            self.assertEqual(w["type"], "welcome")
            self.assertEqual(w["uid"], uid, w)
            self.assertIsInstance(w.get("conn"), str, w)
            self.assertTrue(w["conn"], w)
            self.assertIsInstance(w.get("node"), str, w)
            self.assertTrue(w["node"], w)
        self.assertEqual(len({c.welcome["conn"] for c in clients}), 4,
                         "connection ids must be distinct: %r" % [c.welcome for c in clients])
        self.assertEqual(len({c.welcome["node"] for c in clients}), 1,
                         "one node must report one node id")

    def test_send_reaches_every_connection_of_the_uid_and_is_acked(self):
        alice1, alice2 = self.node.ws(uid="alice"), self.node.ws(uid="alice")
        bob1, bob2 = self.node.ws(uid="bob"), self.node.ws(uid="bob")
        data = {"text": "hi bob", "n": [1, 2.5, {"x": None, "ok": True}], "u": "h\u00e9\u2603"}
        alice1.send_json({"type": "send", "id": 1, "to": "bob", "data": data})

        check = make_message_check(self, "alice", "bob", data)
        for bob in (bob1, bob2):
            check(bob.wait_for(lambda f: f.get("type") == "message", 5, "message at bob"))
        reply = self.reply_to(alice1, 1)
        self.assertEqual(reply["type"], "ack", reply)

        # Exactly one copy per connection, nothing for the sender's other
        # connection, no stray ack elsewhere.
        for bob in (bob1, bob2):
            self.assertNoFrame(bob, lambda f: f.get("type") == "message", 0.3, "second copy")
        self.assertNoFrame(alice2, lambda f: f.get("type") in ("message", "ack"), 0.3,
                           "frame at alice's other connection")
        self.assertNoFrame(alice1, lambda f: f.get("id") == 1, 0.1, "second reply to id 1")

    def test_send_to_a_list_of_uids(self):
        alice = self.node.ws(uid="alice")
        bob1, bob2 = self.node.ws(uid="bob"), self.node.ws(uid="bob")
        carol = self.node.ws(uid="carol")
        dave = self.node.ws(uid="dave")
        data = {"k": "list"}
        alice.send_json({"type": "send", "id": "L1", "to": ["bob", "carol"], "data": data})
        # Assumption: the contract shows "to":"bob" for both forms of "send";
        # each receiver sees its own uid in "to" (not the sender's list).
        for client, uid in ((bob1, "bob"), (bob2, "bob"), (carol, "carol")):
            frame = client.wait_for(lambda f: f.get("type") == "message", 5, "message at " + uid)
            make_message_check(self, "alice", uid, data)(frame)
        reply = self.reply_to(alice, "L1")
        self.assertEqual(reply["type"], "ack", reply)
        self.assertNoFrame(dave, lambda f: f.get("type") == "message", 0.3, "message at dave")
        self.assertNoFrame(carol, lambda f: f.get("type") == "message", 0.1, "second copy")

    def test_ping_pong_echoes_string_and_number_ids(self):
        c = self.node.ws(uid="alice")
        c.send_json({"type": "ping", "id": "p-1"})
        # Extra fields are tolerated ("add freely"); type and id must match.
        self.assertFields(self.reply_to(c, "p-1"), {"type": "pong", "id": "p-1"})
        c.send_json({"type": "ping", "id": 7})
        self.assertFields(self.reply_to(c, 7), {"type": "pong", "id": 7})

    def test_presence_frame(self):
        bob1, bob2 = self.node.ws(uid="bob"), self.node.ws(uid="bob")
        alice = self.node.ws(uid="alice")
        alice.send_json({"type": "presence", "id": 5, "uids": ["bob", "zed"]})
        reply = self.reply_to(alice, 5)
        self.assertFields(reply, {"type": "presence", "id": 5,
                                  "online": {"bob": True, "zed": False}})

        # Closing one of two connections keeps bob online; closing both
        # makes him offline (bounded poll: closing is asynchronous).
        bob1.close()
        time.sleep(0.3)
        alice.send_json({"type": "presence", "id": 6, "uids": ["bob"]})
        self.assertEqual(self.reply_to(alice, 6)["online"], {"bob": True})
        bob2.close()
        ids = iter(range(100, 200))

        def bob_offline():
            i = next(ids)
            alice.send_json({"type": "presence", "id": i, "uids": ["bob"]})
            return self.reply_to(alice, i)["online"] == {"bob": False}
        wait_until(bob_offline, 5, 0.1, "bob to be reported offline")

    def test_uid_from_auth_header(self):
        bob2 = self.node.ws(headers={"auth": "bob2"})
        self.assertEqual(bob2.welcome["uid"], "bob2")
        alice = self.node.ws(uid="alice")
        alice.send_json({"type": "send", "id": 2, "to": "bob2", "data": "via header"})
        frame = bob2.wait_for(lambda f: f.get("type") == "message", 5, "message at bob2")
        make_message_check(self, "alice", "bob2", "via header")(frame)
        self.assertEqual(self.reply_to(alice, 2)["type"], "ack")

    def test_no_uid_gets_a_generated_uid(self):
        a = self.node.ws()
        b = self.node.ws()
        for c in (a, b):
            self.assertIsInstance(c.welcome.get("uid"), str, c.welcome)
            self.assertTrue(c.welcome["uid"], c.welcome)
        self.assertNotEqual(a.welcome["uid"], b.welcome["uid"], "generated uids must differ")
        # The generated uid is a real identity: messages to it arrive.
        sender = self.node.ws(uid="alice")
        sender.send_json({"type": "send", "id": 3, "to": a.welcome["uid"], "data": 42})
        frame = a.wait_for(lambda f: f.get("type") == "message", 5, "message at generated uid")
        make_message_check(self, "alice", a.welcome["uid"], 42)(frame)
        self.assertNoFrame(b, lambda f: f.get("type") == "message", 0.3, "message at other anon")

    def test_messages_from_one_sender_arrive_in_order(self):
        alice = self.node.ws(uid="alice")
        bob = self.node.ws(uid="bob", timeout=10)
        total = 200
        # The default rate limit is 100 frames/s with a burst of 2x: send the
        # first 150 back to back (within the burst), let the bucket refill,
        # then the last 50 back to back.  Ordering is what is tested here.
        for i in range(150):
            alice.send_json({"type": "send", "id": i, "to": "bob", "data": {"seq": i}})
        time.sleep(1.0)
        for i in range(150, total):
            alice.send_json({"type": "send", "id": i, "to": "bob", "data": {"seq": i}})

        got = []
        deadline = time.monotonic() + 20
        while len(got) < total and time.monotonic() < deadline:
            frame = bob.wait_for(lambda f: f.get("type") == "message",
                                 max(0.1, deadline - time.monotonic()), "message %d" % len(got))
            self.assertEqual(frame["from"], "alice")
            got.append(frame["data"]["seq"])
        self.assertEqual(got, list(range(total)), "messages out of order or missing")

        replies = alice.collect(0.5)
        deadline = time.monotonic() + 10
        while sum(1 for f in replies if f.get("type") in ("ack", "error")) < total \
                and time.monotonic() < deadline:
            replies += alice.collect(0.5)
        errors = [f for f in replies if f.get("type") == "error"]
        self.assertEqual(errors, [], "sends were refused")
        self.assertEqual(sorted(f["id"] for f in replies if f.get("type") == "ack"),
                         list(range(total)), "every send must be acked once")


class CloseAfterSendTest(HarnessMixin, unittest.TestCase):
    """A client that sends a frame and its close at once still gets the
    frame's answer before the server's close (RFC 6455 5.5.1 lets the server
    send what it has first). Found by a probe (helper-58): the message was
    stored and delivered, the ack never sent (20 of 20), so a client that
    resends what was not acked without an idem key made a duplicate."""

    def setUp(self):
        self.node = self.start_node()

    def test_a_send_followed_at_once_by_a_close_is_acked_before_the_close(self):
        bob = self.node.ws(uid="bob")
        for i in range(5):
            alice = self.node.ws(uid="alice")
            send = json.dumps({"type": "send", "id": i, "to": "bob", "data": i}).encode()
            alice.send_raw(encode_frame(True, 0, OP_TEXT, send)
                           + encode_frame(True, 0, OP_CLOSE, struct.pack("!H", 1000)))
            alice.close_sent = True
            frames = []
            while True:
                f = alice.recv_frame(5)
                frames.append((f.opcode, f.payload))
                if f.opcode == OP_CLOSE:
                    break
            texts = [json.loads(p) for op, p in frames if op == OP_TEXT]
            self.assertIn({"type": "ack", "id": i}, [{k: t.get(k) for k in ("type", "id")}
                                                    for t in texts], frames)
            self.assertEqual(frames[-1], (OP_CLOSE, struct.pack("!H", 1000)))
            got = bob.wait_for(lambda f: f.get("type") == "message" and f.get("data") == i, 5)
            self.assertEqual(got["from"], "alice")


if __name__ == "__main__":
    unittest.main()

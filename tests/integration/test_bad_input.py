"""Bad client input: error frames, the connection survives, other clients
are not disturbed; too-large frames close with 1009; client broadcast is
off by default and works when enabled.

Run: /usr/bin/python3 -m unittest tests/integration/test_bad_input.py
"""

import itertools
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import HarnessMixin, make_message_check  # noqa: E402

_nonce = itertools.count(1)


class BadInputMixin(HarnessMixin):

    def open_bystanders(self, node):
        """A sender and an unrelated receiver on ``node``."""
        self.carol = node.ws(uid="carol")
        self.bystander = node.ws(uid="bystander")

    def assertBystanderOK(self):
        """carol -> bystander still works: ack and the message arrive."""
        n = next(_nonce)
        fid = "by-%d" % n
        self.carol.send_json({"type": "send", "id": fid, "to": "bystander", "data": {"n": n}})
        frame = self.bystander.wait_for(
            lambda f: f.get("type") == "message" and f.get("data") == {"n": n}, 5,
            "message %d at the unrelated client" % n)
        make_message_check(self, "carol", "bystander", {"n": n})(frame)
        self.assertEqual(self.reply_to(self.carol, fid)["type"], "ack")

    def assertStillWorks(self, client):
        """The connection that sent bad input still answers ping with pong."""
        fid = "alive-%d" % next(_nonce)
        client.send_json({"type": "ping", "id": fid})
        self.assertEqual(self.reply_to(client, fid)["type"], "pong")
        self.assertFalse(client.closed)

    def assertErrorFrame(self, frame, code, frame_id=None):
        self.assertEqual(frame.get("type"), "error", frame)
        self.assertEqual(frame.get("code"), code, frame)
        self.assertIsInstance(frame.get("message"), str, frame)
        if frame_id is not None:
            self.assertEqual(frame.get("id"), frame_id, frame)

    def next_error(self, client, timeout=5):
        return client.wait_for(lambda f: f.get("type") == "error", timeout, "an error frame")


class BadFramesTest(BadInputMixin, unittest.TestCase):

    def setUp(self):
        self.node = self.start_node()
        self.open_bystanders(self.node)
        self.mallory = self.node.ws(uid="mallory")

    def test_invalid_json_is_bad_json_and_connection_survives(self):
        for text in ('{"type":"ping","id":1', "hello", '{"type": "send", "to": }', "{}}"):
            with self.subTest(text=text):
                self.mallory.send_text(text)
                self.assertErrorFrame(self.next_error(self.mallory), "bad_json")
                self.assertStillWorks(self.mallory)
        self.assertBystanderOK()

    def test_missing_or_wrong_field_is_bad_frame_with_the_frame_id(self):
        cases = [
            ({"type": "send", "id": "m1", "data": {"x": 1}}, "send without to"),
            ({"type": "send", "id": "m2", "to": 5, "data": 1}, "send with numeric to"),
            ({"type": "send", "id": 33, "to": [1, 2], "data": 1}, "send to a list of numbers"),
            ({"type": "presence", "id": "m4"}, "presence without uids"),
            ({"type": "join", "id": "m5"}, "join without group"),
            ({"id": "m6", "data": 1}, "no type"),
            ({"type": 12, "id": "m7"}, "numeric type"),
        ]
        for frame, what in cases:
            with self.subTest(what=what):
                self.mallory.send_json(frame)
                reply = self.reply_to(self.mallory, frame["id"])
                self.assertErrorFrame(reply, "bad_frame", frame["id"])
                self.assertStillWorks(self.mallory)
        # Nothing was delivered by the refused sends.
        self.assertNoFrame(self.bystander, lambda f: f.get("type") == "message", 0.2,
                           "message from a refused frame")
        self.assertBystanderOK()

    def test_json_that_is_not_an_object_is_bad_frame(self):
        # Assumption: valid JSON that is not an object has no "type" field,
        # so it is a bad frame (not bad JSON).
        for text in ("[1,2,3]", "42", '"send"', "null"):
            with self.subTest(text=text):
                self.mallory.send_text(text)
                self.assertErrorFrame(self.next_error(self.mallory), "bad_frame")
                self.assertStillWorks(self.mallory)
        self.assertBystanderOK()

    def test_unknown_type(self):
        self.mallory.send_json({"type": "frobnicate", "id": 3, "data": {}})
        self.assertErrorFrame(self.reply_to(self.mallory, 3), "unknown_type", 3)
        self.assertStillWorks(self.mallory)
        self.assertBystanderOK()

    def test_client_broadcast_is_forbidden_by_default(self):
        self.mallory.send_json({"type": "broadcast", "id": "b1", "data": "spam"})
        self.assertErrorFrame(self.reply_to(self.mallory, "b1"), "forbidden", "b1")
        for c in (self.bystander, self.carol):
            self.assertNoFrame(c, lambda f: f.get("type") == "broadcast", 0.5,
                               "broadcast while client-broadcast=false")
        self.assertStillWorks(self.mallory)
        self.assertBystanderOK()


class MaxMessageBytesTest(BadInputMixin, unittest.TestCase):

    def setUp(self):
        self.node = self.start_node({"max-message-bytes": 1024})
        self.open_bystanders(self.node)

    def frame_of_size(self, size, frame_id):
        """``(text, data)``: a send frame whose JSON text is exactly ``size`` bytes."""
        base = {"type": "send", "id": frame_id, "to": "bystander", "data": ""}
        pad = size - len(_dumps(base))
        self.assertGreater(pad, 0)
        base["data"] = "x" * pad
        text = _dumps(base)
        self.assertEqual(len(text.encode("utf-8")), size)
        return text, base["data"]

    def test_frame_under_the_limit_is_fine(self):
        client = self.node.ws(uid="big")
        text, data = self.frame_of_size(1000, "small")
        client.send_text(text)
        self.assertEqual(self.reply_to(client, "small")["type"], "ack")
        frame = self.bystander.wait_for(lambda f: f.get("type") == "message", 5)
        make_message_check(self, "big", "bystander", data)(frame)
        self.assertStillWorks(client)

    def test_frame_over_the_limit_closes_with_1009(self):
        client = self.node.ws(uid="big")
        client.send_text(self.frame_of_size(2000, "huge")[0])
        code = client.wait_closed(5)
        self.assertTrue(client.close_frame_received,
                        "the server must close with a close frame (1009), not just drop TCP")
        self.assertEqual(code, 1009)
        self.assertBystanderOK()
        # The node still accepts new connections and big is offline.
        again = self.node.ws(uid="big2")
        self.assertStillWorks(again)


class ClientBroadcastEnabledTest(BadInputMixin, unittest.TestCase):

    def setUp(self):
        self.node = self.start_node({"client-broadcast": "true"})

    def test_broadcast_reaches_every_connection(self):
        alice = self.node.ws(uid="alice")
        others = [self.node.ws(uid="bob"), self.node.ws(uid="bob"), self.node.ws(uid="carol"),
                  self.node.ws()]
        data = {"hello": "everyone"}
        alice.send_json({"type": "broadcast", "id": "b1", "data": data})
        # Contract: "every connection on every node", which includes the
        # sender's own connection.
        for c in others + [alice]:
            frame = c.wait_for(lambda f: f.get("type") == "broadcast", 5,
                               "broadcast at %s" % c.welcome["uid"])
            self.assertEqual(frame.get("from"), "alice", frame)
            self.assertEqual(frame.get("data"), data, frame)
            self.assertTs(frame)
        self.assertEqual(self.reply_to(alice, "b1")["type"], "ack")
        for c in others:
            self.assertNoFrame(c, lambda f: f.get("type") == "broadcast", 0.2, "second copy")


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


if __name__ == "__main__":
    unittest.main()

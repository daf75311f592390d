"""Frame codecs (issue 17, acceptance 3): a Swoft-style client (`cmd`
frames) on a node with `frame-codec=swoft` chats with a JSON client on a
node with the default codec, through a 2-node cluster over a real
redis-server; bad swoft frames get errors in the swoft form and the
connection stays open; an unknown codec name refuses to start.

The custom codec example (examples/custom_codec, `line`) runs from the
in-tree build here ($WSC_CODEC_BINARY, default build/examples/
wsc-codec-node); test_package.py builds it against the installed package.

Run: WSC_BINARY=build/wscluster python3 -m unittest tests/integration/test_codecs.py
"""

import json
import os
import unittest

from harness import (REPO_ROOT, HarnessMixin, binary_path, free_port, run_binary,
                     stderr_lines, wait_until)

HEARTBEAT_MS = 500
NODE_TIMEOUT_MS = 2000


def codec_binary():
    path = os.environ.get("WSC_CODEC_BINARY")
    if path:
        return path
    return os.path.join(os.path.dirname(os.path.abspath(binary_path())), "examples",
                        "wsc-codec-node")


class SwoftClient:
    """A client speaking `{"cmd":..,"data":..,"ext":..}` over a harness
    WebSocket (whose JSON helpers still work: every frame is JSON)."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    def send(self, cmd, data=None, ext=None):
        frame = {"cmd": cmd}
        if data is not None:
            frame["data"] = data
        if ext is not None:
            frame["ext"] = ext
        self.ws.send_json(frame)

    def ask(self, cmd, data=None, ext=None, timeout=5.0):
        """Sends with a fresh ext.id; returns the answer (same cmd, same id)."""
        self.next_id += 1
        frame_id = self.next_id
        ext = dict(ext or {}, id=frame_id)
        self.send(cmd, data, ext)
        return self.ws.wait_for(
            lambda f: f.get("cmd") == cmd and isinstance(f.get("ext"), dict)
            and f["ext"].get("id") == frame_id, timeout, what="the answer to %s" % cmd)

    def push(self, cmd, predicate=lambda data: True, timeout=5.0):
        """The next push of `cmd` whose data matches."""
        return self.ws.wait_for(lambda f: f.get("cmd") == cmd and predicate(f.get("data")),
                                timeout, what="a %s push" % cmd)


class SwoftClusterTest(HarnessMixin, unittest.TestCase):
    def setUp(self):
        self.redis = self.start_redis()
        common = {"state": "redis", "redis": self.redis.url,
                  "heartbeat": "%dms" % HEARTBEAT_MS, "node-timeout": "%dms" % NODE_TIMEOUT_MS}
        self.a = self.start_node(dict(common, **{"node-id": "n1", "frame-codec": "swoft"}),
                                 name="n1")
        self.b = self.start_node(dict(common, **{"node-id": "n2"}), name="n2")

        def meshed():
            for n in (self.a, self.b):
                status, _, body = n.http("GET", "/api/nodes")
                if status != 200 or {e["id"] for e in body} != {"n1", "n2"}:
                    return False
            return True

        wait_until(meshed, 15, what="both nodes see each other")

    def swoft(self, uid):
        ws = self.a.ws(uid, welcome=False)
        welcome = ws.recv_json()
        self.assertEqual(welcome["cmd"], "welcome", welcome)
        self.assertEqual(welcome["data"]["type"], "welcome")
        self.assertEqual(welcome["data"]["uid"], uid)
        self.assertEqual(welcome["data"]["node"], "n1")
        self.assertEqual(welcome["ext"], {})
        return SwoftClient(ws)

    def test_swoft_and_json_clients_chat_across_nodes(self):
        ann = self.swoft("ann")
        bob = self.b.ws("bob")
        # swoft -> json: the ack in swoft form, the message as JSON.
        ack = ann.ask("send", {"to": "bob", "data": {"text": "hi bob"}}, ext={"trace": "t1"})
        self.assertEqual(ack["data"]["type"], "ack", ack)
        self.assertEqual(ack["data"]["id"], ack["ext"]["id"])
        self.assertEqual(ack["ext"]["trace"], "t1")
        msg = bob.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertFields(msg, {"from": "ann", "to": "bob", "data": {"text": "hi bob"}})
        # json -> swoft: a push of cmd "message", data the JSON frame.
        bob.send_json({"type": "send", "id": 1, "to": "ann", "data": {"text": "hi ann"}})
        self.assertEqual(self.reply_to(bob, 1)["type"], "ack")
        push = ann.push("message")
        self.assertFields(push["data"], {"type": "message", "from": "bob", "to": "ann",
                                         "data": {"text": "hi ann"}})
        self.assertEqual(push["ext"], {})
        # A group across nodes: both join, each publishes, the other gets it.
        self.assertEqual(ann.ask("join", {"group": "room"})["data"]["type"], "ack")
        bob.send_json({"type": "join", "id": 2, "group": "room"})
        self.assertEqual(self.reply_to(bob, 2)["type"], "ack")
        members = ann.ask("members", {"group": "room"})
        self.assertEqual(sorted(members["data"]["uids"]), ["ann", "bob"])
        ack = ann.ask("publish", {"group": "room", "data": "from ann"})
        self.assertEqual(ack["data"]["type"], "ack", ack)
        got = bob.wait_for(lambda f: f.get("type") == "group", 5)
        self.assertFields(got, {"group": "room", "from": "ann", "data": "from ann"})
        bob.send_json({"type": "publish", "id": 3, "group": "room", "data": "from bob"})
        self.assertEqual(self.reply_to(bob, 3)["type"], "ack")
        got = ann.push("group", lambda d: d.get("from") == "bob")
        self.assertFields(got["data"], {"type": "group", "group": "room", "data": "from bob"})

    def test_bad_swoft_frames_get_errors_and_the_connection_stays_open(self):
        ann = self.swoft("ann")
        # Not JSON: no cmd to answer with, so an error push.
        ann.ws.send_text("{nope")
        err = ann.push("error")
        self.assertEqual(err["data"]["code"], "bad_json")
        # No cmd, a cmd that is no name, a too long one: bad_frame pushes.
        for frame in ({"data": {}}, {"cmd": 5}, {"cmd": "a b"}, {"cmd": "c" * 200}):
            ann.ws.send_json(frame)
            err = ann.push("error")
            self.assertEqual(err["data"]["code"], "bad_frame", frame)
        # Known cmd: the error answers it, with its ext.
        err = ann.ask("send", {"data": "no receiver"})
        self.assertEqual(err["data"]["type"], "error")
        self.assertEqual(err["data"]["code"], "bad_frame")
        err = ann.ask("nothing.here")
        self.assertEqual(err["data"]["code"], "unknown_type")
        ann.send("send", {"to": "bob"}, ext="not an object")
        err = ann.push("send", lambda d: d.get("type") == "error")
        self.assertEqual(err["data"]["code"], "bad_frame")
        self.assertEqual(err["ext"], {})
        # A large ext is refused, not echoed back.
        ann.send("ping", ext={"id": 99, "pad": "x" * 5000})
        err = ann.push("ping", lambda d: d.get("type") == "error")
        self.assertEqual(err["data"]["code"], "bad_frame")
        self.assertEqual(err["ext"], {})
        # Binary frames are read like text.
        ann.ws.send_binary(json.dumps({"cmd": "ping", "ext": {"id": "b"}}).encode())
        pong = ann.push("ping", lambda d: d.get("id") == "b")
        self.assertEqual(pong["data"]["type"], "pong")
        # Still open, still answering.
        self.assertEqual(ann.ask("ping")["data"]["type"], "pong")


class CodecCliTest(HarnessMixin, unittest.TestCase):
    def test_unknown_codec_refuses_to_start(self):
        proc = run_binary(["--listen=127.0.0.1:%d" % free_port(), "--frame-codec=msgpack"],
                          timeout=10)
        self.assertGreater(proc.returncode, 0, proc.stderr)
        lines = stderr_lines(proc.stderr)
        self.assertEqual(len(lines), 1, proc.stderr)
        self.assertIn("unknown frame-codec \"msgpack\"", lines[0])
        self.assertIn("json, swoft", lines[0])

    def test_json_stays_the_default(self):
        node = self.start_node()
        c = node.ws("ann")
        c.send_json({"type": "ping", "id": 1})
        self.assertEqual(self.reply_to(c, 1), {"type": "pong", "id": 1})


class LineCodecExampleTest(HarnessMixin, unittest.TestCase):
    """examples/custom_codec: `<type> {fields}` in, `<type> <json>` out."""

    def setUp(self):
        if not os.access(codec_binary(), os.X_OK):
            self.skipTest("%s is not built" % codec_binary())

    def recv_line(self, ws):
        opcode, payload = ws.recv()
        while opcode in (0x9, 0xA):  # ping, pong
            opcode, payload = ws.recv()
        kind, _, frame = payload.decode().partition(" ")
        return kind, json.loads(frame)

    def test_line_clients_chat(self):
        node = self.start_node({"frame-codec": "line"}, binary=codec_binary())
        ann = node.ws("ann", welcome=False)
        bob = node.ws("bob", welcome=False)
        for ws, uid in ((ann, "ann"), (bob, "bob")):
            kind, welcome = self.recv_line(ws)
            self.assertEqual((kind, welcome["uid"]), ("welcome", uid))
        ann.send_text('send {"to":"bob","data":"hi","id":7}')
        kind, ack = self.recv_line(ann)
        self.assertEqual(kind, "ack")
        self.assertFields(ack, {"type": "ack", "id": 7})
        kind, msg = self.recv_line(bob)
        self.assertEqual(kind, "message")
        self.assertFields(msg, {"from": "ann", "data": "hi"})
        bob.send_text("ping")
        self.assertEqual(self.recv_line(bob), ("pong", {"type": "pong"}))
        bob.send_text("ping [1]")
        kind, err = self.recv_line(bob)
        self.assertEqual((kind, err["code"]), ("error", "bad_frame"))
        # Text frames only: a binary frame is refused, the connection stays.
        bob.send_binary(b"ping")
        kind, err = self.recv_line(bob)
        self.assertEqual((kind, err["code"]), ("error", "bad_frame"))
        bob.send_text('ping {"id":"x"}')
        self.assertEqual(self.recv_line(bob), ("pong", {"type": "pong", "id": "x"}))


if __name__ == "__main__":
    unittest.main()

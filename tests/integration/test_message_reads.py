"""How the WebSocket session reads messages (issue 14, idle memory): the
first bytes of a message land in a small buffer of the session, the rest is
read straight into the message. Whatever the split, a message arrives whole
and intact: large ones in many frames and many TCP segments, sizes around
the first read's 256 bytes, several messages in one TCP write, multi-byte
UTF-8 cut by frame and segment borders, binary frames through a codec. The
limits stay: max-message-bytes counts the whole message (1009), invalid
UTF-8 after the first read still closes with 1007.

Run: WSC_BINARY=build/wscluster python3 -m unittest tests/integration/test_message_reads.py
"""

import itertools
import json
import socket
import time
import unittest

from harness import HarnessMixin
from wsclient import OP_BINARY, OP_CONT, OP_TEXT, ConnectionClosed, encode_frame

_ids = itertools.count(1)


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _frames(opcode, payload, sizes):
    """``payload`` as one message in frames of the given sizes (cycled; a
    size 0 is an empty frame), FIN on the last."""
    out, pos, sizes = [], 0, itertools.cycle(sizes)
    while True:
        n = next(sizes)
        chunk = payload[pos:pos + n]
        pos += len(chunk)
        last = pos >= len(payload)
        out.append(encode_frame(last, 0, opcode if not out else OP_CONT, chunk))
        if last:
            return b"".join(out)


def _trickle(client, data, segment, pause=0.0005):
    """Writes ``data`` in TCP segments of ``segment`` bytes (no Nagle), with a
    pause now and then so the server sees many short reads."""
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(0, len(data), segment):
        client.send_raw(data[i:i + segment])
        if (i // segment) % 4 == 0:
            time.sleep(pause)


class MessageReadsMixin(HarnessMixin):

    def send_frame_text(self, to, data):
        """(id, text) of a send frame."""
        frame_id = "m%d" % next(_ids)
        return frame_id, _dumps({"type": "send", "id": frame_id, "to": to, "data": data})

    def text_of_size(self, to, size, wide=False):
        """(id, text, data) of a send frame of exactly ``size`` bytes; with
        ``wide`` its data is two-byte characters (and an ``x`` if odd)."""
        frame_id = "m%d" % next(_ids)
        base = {"type": "send", "id": frame_id, "to": to, "data": ""}
        pad = size - len(_dumps(base).encode())
        self.assertGreaterEqual(pad, 0)
        data = "\u00e9" * (pad // 2) + "x" * (pad % 2) if wide else "x" * pad
        text = _dumps(dict(base, data=data))
        self.assertEqual(len(text.encode()), size)
        return frame_id, text, data

    def assertAcked(self, client, frame_id, timeout=10.0):
        reply = client.wait_for(lambda f: f.get("id") == frame_id, timeout,
                                what="the answer to %s" % frame_id)
        self.assertEqual(reply.get("type"), "ack", reply)

    def assertReceived(self, client, expected, timeout=10.0):
        """The next messages at ``client`` carry ``expected`` data, in order."""
        for i, data in enumerate(expected):
            frame = client.wait_for(lambda f: f.get("type") == "message", timeout,
                                    what="message %d" % i)
            self.assertEqual(len(frame.get("data", "")), len(data), "message %d's length" % i)
            self.assertEqual(frame.get("data"), data, "message %d" % i)


class WholeMessagesTest(MessageReadsMixin, unittest.TestCase):

    def setUp(self):
        self.node = self.start_node({"max-message-bytes": 1 << 20, "rate-limit": 0})
        self.alice = self.node.ws(uid="alice")
        self.bob = self.node.ws(uid="bob")

    def test_large_message_in_many_frames_and_segments_arrives_whole(self):
        # Multi-byte characters, so that frame and segment borders cut them.
        unit = "abc\u00e9\u20ac\U0001f600-" * 7 + "0123456789"
        data = unit * 2500
        frame_id, text = self.send_frame_text("bob", data)
        payload = text.encode()
        self.assertGreater(len(payload), 200_000)
        wire = _frames(OP_TEXT, payload, [1, 0, 7, 255, 256, 257, 997, 4099, 3, 65536, 13])
        _trickle(self.alice, wire, 613)
        self.assertAcked(self.alice, frame_id)
        self.assertReceived(self.bob, [data])
        # One read after the large message still starts a new one.
        frame_id, text = self.send_frame_text("bob", "after")
        self.alice.send_text(text)
        self.assertAcked(self.alice, frame_id)
        self.assertReceived(self.bob, ["after"])

    def test_messages_around_the_first_read_size_in_one_write(self):
        sizes = [60, 250, 255, 256, 257, 300, 511, 512, 513, 1000, 4096, 70_000]
        datas, ids, wire = [], [], b""
        for i, size in enumerate(sizes):
            # Two-byte characters: some straddle the first read's end.
            frame_id, text, data = self.text_of_size("bob", size, wide=True)
            datas.append(data)
            ids.append(frame_id)
            # Half of them as one frame, half in frames of 128 bytes.
            if i % 2:
                wire += _frames(OP_TEXT, text.encode(), [128])
            else:
                wire += encode_frame(True, 0, OP_TEXT, text.encode())
        self.alice.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.alice.send_raw(wire)
        for frame_id in ids:
            self.assertAcked(self.alice, frame_id)
        self.assertReceived(self.bob, datas)

    def test_empty_and_tiny_messages(self):
        # An empty text message is no JSON: an error, and the connection
        # reads on.
        self.alice.send_frame(True, 0, OP_TEXT, b"")
        err = self.alice.wait_for(lambda f: f.get("type") == "error", 5)
        self.assertEqual(err.get("code"), "bad_json", err)
        # A message whose frames are all empty but the last byte.
        frame_id, text = self.send_frame_text("bob", "tiny")
        payload = text.encode()
        wire = b"".join(encode_frame(False, 0, OP_TEXT if i == 0 else OP_CONT, b"")
                        for i in range(3))
        wire += _frames(OP_CONT, payload, [1])
        self.alice.send_raw(wire)
        self.assertAcked(self.alice, frame_id)
        self.assertReceived(self.bob, ["tiny"])


class LimitsTest(MessageReadsMixin, unittest.TestCase):
    LIMIT = 4096

    def setUp(self):
        self.node = self.start_node({"max-message-bytes": self.LIMIT, "rate-limit": 0})
        self.bob = self.node.ws(uid="bob")

    def test_a_message_of_exactly_the_limit_in_many_frames_passes(self):
        alice = self.node.ws(uid="alice")
        frame_id, text, data = self.text_of_size("bob", self.LIMIT)
        _trickle(alice, _frames(OP_TEXT, text.encode(), [100, 7, 300]), 97)
        self.assertAcked(alice, frame_id)
        self.assertReceived(self.bob, [data])

    def test_a_message_over_the_limit_in_small_frames_closes_with_1009(self):
        # Every frame is small; the message is not: the limit counts the
        # whole message across the reads.
        alice = self.node.ws(uid="alice")
        _, text, _ = self.text_of_size("bob", self.LIMIT + 1)
        try:
            _trickle(alice, _frames(OP_TEXT, text.encode(), [200]), 300)
        except (ConnectionClosed, OSError):
            pass  # the server may close before the last bytes
        self.assertEqual(alice.wait_closed(5), 1009)
        self.assertTrue(alice.close_frame_received)
        self.assertFalse(any(f.get("type") == "message" for f in self.bob.collect(0.3)))

    def test_a_frame_announcing_more_than_the_limit_closes_with_1009(self):
        alice = self.node.ws(uid="alice")
        # 300 bytes of a message first (past the first read), then a frame
        # whose length alone goes over.
        _, text, _ = self.text_of_size("bob", self.LIMIT + 500)
        payload = text.encode()
        alice.send_raw(encode_frame(False, 0, OP_TEXT, payload[:300]))
        try:
            alice.send_raw(encode_frame(True, 0, OP_CONT, payload[300:]))
        except (ConnectionClosed, OSError):
            pass
        self.assertEqual(alice.wait_closed(5), 1009)
        self.assertTrue(alice.close_frame_received)

    def test_invalid_utf8_after_the_first_read_closes_with_1007(self):
        alice = self.node.ws(uid="alice")
        _, text, _ = self.text_of_size("bob", 1000)
        payload = bytearray(text.encode())
        payload[600] = 0xFF  # inside the data string, past the first 256 bytes
        try:
            _trickle(alice, _frames(OP_TEXT, bytes(payload), [300, 50]), 128)
        except (ConnectionClosed, OSError):
            pass
        self.assertEqual(alice.wait_closed(5), 1007)
        self.assertTrue(alice.close_frame_received)
        # The node reads on for everyone else.
        carol = self.node.ws(uid="carol")
        frame_id, text = self.send_frame_text("bob", "still here")
        carol.send_text(text)
        self.assertAcked(carol, frame_id)
        self.assertReceived(self.bob, ["still here"])


class CodecBinaryTest(MessageReadsMixin, unittest.TestCase):
    """With a frame codec that reads binary frames (swoft), a large binary
    message in many frames reaches the CONNECTION whole and marked binary."""

    def setUp(self):
        self.node = self.start_node({"frame-codec": "swoft", "max-message-bytes": 1 << 20,
                                     "rate-limit": 0})

    def swoft(self, uid):
        ws = self.node.ws(uid, welcome=False)
        self.assertEqual(ws.recv_json()["cmd"], "welcome")
        return ws

    def test_large_binary_message_in_frames_arrives_whole(self):
        ann, bob = self.swoft("ann"), self.swoft("bob")
        data = {"text": "\u20ac" * 30_000 + "end"}
        frame = {"cmd": "send", "data": {"to": "bob", "data": data}, "ext": {"id": 7}}
        payload = _dumps(frame).encode()
        _trickle(ann, _frames(OP_BINARY, payload, [255, 1, 256, 4000]), 1400)
        ack = ann.wait_for(lambda f: f.get("cmd") == "send"
                           and (f.get("ext") or {}).get("id") == 7, 10)
        self.assertEqual(ack["data"]["type"], "ack", ack)
        push = bob.wait_for(lambda f: f.get("cmd") == "message", 10)
        self.assertEqual(push["data"]["data"], data)
        # A small binary frame right after: a new message, marked binary too.
        ann.send_binary(_dumps({"cmd": "ping", "ext": {"id": "b"}}).encode())
        pong = ann.wait_for(lambda f: f.get("cmd") == "ping", 5)
        self.assertEqual(pong["data"]["type"], "pong")


if __name__ == "__main__":
    unittest.main()

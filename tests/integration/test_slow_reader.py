"""A client that never reads is closed once its send queue overflows
(--send-queue-limit), while a normal reader on the same node keeps getting
every message, in order. The other direction: a node reads at most a few
frames of a client ahead of their answers.

Run: /usr/bin/python3 -m unittest tests/integration/test_slow_reader.py
"""

import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import HarnessMixin, wait_until  # noqa: E402
from wsclient import ConnectionClosed  # noqa: E402

MAX_MESSAGES = 2000       # bound on the number of big messages pushed
PUSH_TIME_LIMIT = 30.0    # bound on the time spent pushing them
PAD = "x" * 60000         # ~60 KB of data per message


class Reader(threading.Thread):
    """Reads JSON frames from a client into ``frames`` until stopped."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client = client
        self.frames = []
        self.error = None
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        while not self.stop_event.is_set():
            try:
                frame = self.client.recv_json(0.2)
            except TimeoutError:
                continue
            except ConnectionClosed as e:
                self.error = e
                return
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.error = e
                return
            with self.lock:
                self.frames.append(frame)

    def message_numbers(self):
        with self.lock:
            return [f["data"]["n"] for f in self.frames
                    if f.get("type") == "message" and isinstance(f.get("data"), dict)
                    and "n" in f["data"]]

    def stop(self):
        self.stop_event.set()
        self.join(5)


class SlowReaderTest(HarnessMixin, unittest.TestCase):

    def setUp(self):
        self.node = self.start_node({"send-queue-limit": 64})

    def test_slow_reader_is_closed_and_others_keep_receiving(self):
        # The slow client reads its welcome and then nothing; a small receive
        # buffer keeps the kernel from absorbing much of what is sent to it.
        slow = self.node.ws(uid="slow", rcvbuf=4096, timeout=10)
        fast = self.node.ws(uid="fast", timeout=10)
        reader = Reader(fast)
        reader.start()
        self.addCleanup(reader.stop)

        sent_fast = 0
        pushed = 0
        slow_gone = False
        started = time.monotonic()
        deadline = started + PUSH_TIME_LIMIT
        for i in range(MAX_MESSAGES):
            if time.monotonic() > deadline:
                break
            status, _, body = self.node.api_send(["slow"], {"i": i, "pad": PAD})
            self.assertEqual(status, 200, "POST /api/send (big #%d): %s %r" % (i, status, body))
            pushed += 1
            if i % 5 == 0:
                status, _, body = self.node.api_send(["fast"], {"n": sent_fast})
                self.assertEqual(status, 200, body)
                sent_fast += 1
            if i % 10 == 9 and not self.node.presence(["slow"])["slow"]:
                slow_gone = True
                break
        if not slow_gone:
            # Closing may lag the last push a little.
            try:
                wait_until(lambda: not self.node.presence(["slow"])["slow"], 5, 0.1)
                slow_gone = True
            except AssertionError:
                pass
        self.assertTrue(slow_gone, "after %d messages of 60 KB (%.0fs) the slow reader is still "
                        "online: the send queue limit is not enforced"
                        % (pushed, time.monotonic() - started))
        # 64 queued frames of 60 KB plus kernel buffers: far fewer than the bound.
        self.assertLess(pushed, MAX_MESSAGES)

        # The normal reader got every message, in order, and is still open.
        status, _, _ = self.node.api_send(["fast"], {"n": sent_fast})
        self.assertEqual(status, 200)
        sent_fast += 1
        wait_until(lambda: len(reader.message_numbers()) >= sent_fast or reader.error, 10, 0.05,
                   "the normal reader to receive all %d messages" % sent_fast)
        self.assertIsNone(reader.error, "the normal reader lost its connection: %r" % reader.error)
        self.assertEqual(reader.message_numbers(), list(range(sent_fast)))
        reader.stop()
        fast.send_json({"type": "ping", "id": "still-here"})
        self.assertEqual(self.reply_to(fast, "still-here")["type"], "pong")

        # The slow socket really is closed: reading drains what the kernel
        # still holds and then meets the close frame, EOF or a reset.
        code = slow.wait_closed(20)
        if slow.close_frame_received:
            self.assertEqual(code, 1008, "slow reader must be closed with 1008 (policy)")
        status, _, body = self.node.http("GET", "/healthz")
        self.assertEqual(status, 200, body)



class ReadAheadTest(HarnessMixin, unittest.TestCase):
    """While its store hangs, a node answers nothing that needs the store;
    it reads at most 16 frames of a client ahead of their answers, so a
    `ping` sent after 40 such frames is only read (and answered) once the
    first answers went out. A node without that bound reads everything at
    once and answers the ping first."""

    def test_frames_are_read_only_a_little_ahead_of_their_answers(self):
        redis = self.start_redis()
        node = self.start_node({"state": "redis", "redis": redis.url, "node-id": "n1",
                                "request-timeout": "1s"})
        client = node.ws("alice")
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            for i in range(40):
                client.send_json({"type": "send", "id": i, "to": "bob", "data": i})
            client.send_json({"type": "ping", "id": "p"})
            order = []
            while "p" not in order:
                frame = client.recv_json(timeout=30)
                if "id" in frame:
                    order.append(frame["id"])
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        answered_before_pong = [x for x in order if x != "p"]
        self.assertGreaterEqual(len(answered_before_pong), 24,
                                "the ping was read before the first sends were answered: %r"
                                % order)
        # Every frame is still answered, in the order of the answers the
        # store gave; the node recovers.
        while len(order) < 41:
            order.append(client.recv_json(timeout=30).get("id"))
        self.assertEqual(sorted(x for x in order if x != "p"), list(range(40)))
        client.send_json({"type": "ping", "id": "after"})
        self.assertEqual(self.reply_to(client, "after")["type"], "pong")


if __name__ == "__main__":
    unittest.main()

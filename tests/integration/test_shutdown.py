"""Graceful stop: on SIGTERM/SIGINT /healthz turns 503, new handshakes are
refused, every client gets bye (reconnect_after_ms within drain-period) then
close 1001, and the process exits 0.

Run: /usr/bin/python3 -m unittest tests/integration/test_shutdown.py
"""

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import HarnessMixin, http_request  # noqa: E402
from wsclient import HandshakeError, WebSocket  # noqa: E402

DRAIN_MS = 1000


class HealthPoller(threading.Thread):
    """Polls /healthz as fast as it reasonably can (bounded in time) and
    records (monotonic time, status or "down")."""

    def __init__(self, node, limit=30.0):
        super().__init__(daemon=True)
        self.node = node
        self.limit = limit
        self.samples = []
        self.saw_200 = threading.Event()
        self.saw_503 = threading.Event()
        self.stop_event = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.limit
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                status, _, _ = http_request(self.node.host, self.node.port, "GET", "/healthz",
                                            timeout=1.0)
            except (OSError, http.client.HTTPException):
                status = "down"
            self.samples.append((time.monotonic(), status))
            if status == 200:
                self.saw_200.set()
            elif status == 503:
                self.saw_503.set()
            elif status == "down" and not self.node.running():
                return
            time.sleep(0.005)

    def stop(self):
        self.stop_event.set()
        self.join(5)


class ShutdownTest(HarnessMixin, unittest.TestCase):

    def setUp(self):
        self.node = self.start_node({"drain-period": "1s"})

    def assertBye(self, client):
        bye = client.wait_for(lambda f: f.get("type") == "bye", 5, "bye")
        self.assertEqual(bye.get("reason"), "shutdown", bye)
        r = bye.get("reconnect_after_ms")
        self.assertIsInstance(r, int, bye)
        self.assertNotIsInstance(r, bool, bye)
        self.assertGreaterEqual(r, 0, bye)
        self.assertLessEqual(r, DRAIN_MS, "reconnect_after_ms beyond drain-period: %r" % bye)
        code = client.wait_closed(5)
        self.assertTrue(client.close_frame_received,
                        "expected a close frame (1001) after bye, got EOF/reset")
        self.assertEqual(code, 1001)
        return r

    def drain_and_check(self, sig, clients):
        poller = HealthPoller(self.node)
        poller.start()
        self.addCleanup(poller.stop)
        self.assertTrue(poller.saw_200.wait(5), "/healthz is not 200 before the signal")

        sent_at = time.monotonic()
        self.node.signal(sig)

        # Assumption: a production drain keeps the listener up answering 503
        # while clients are told to leave (so load balancers see it); the
        # clients below do not read (nor answer the close) until then.
        self.assertTrue(poller.saw_503.wait(5),
                        "/healthz never answered 503 during the drain; samples after the "
                        "signal: %r" % [s for t, s in poller.samples if t >= sent_at][:20])

        # It stops accepting: a new handshake must not be upgraded.
        try:
            late = WebSocket(self.node.host, self.node.port, "/ws", {"uid": "late"}, None, 3.0)
        except HandshakeError as e:
            if e.status is not None:
                self.assertNotEqual(e.status, 101)
        except OSError:
            pass  # refused or reset: not accepting either
        else:
            late.close()
            self.fail("a WebSocket handshake was accepted while draining")

        rs = [self.assertBye(c) for c in clients]
        try:
            rc = self.node.wait(15)
        except subprocess.TimeoutExpired:
            self.fail("the node did not exit within 15 s of the signal")
        self.assertEqual(rc, 0, "exit code after a graceful stop")
        poller.stop()

        after = [s for t, s in poller.samples if t >= sent_at]
        first_503 = after.index(503)
        self.assertNotIn(200, after[first_503:], "/healthz went back to 200 during the drain")
        return rs

    def test_sigterm_drains_clients_and_exits_0(self):
        clients = [self.node.ws(uid="alice"), self.node.ws(uid="bob")]
        self.drain_and_check(signal.SIGTERM, clients)

    def test_sigint_drains_too(self):
        clients = [self.node.ws(uid="carol")]
        self.drain_and_check(signal.SIGINT, clients)

    def test_reconnect_delays_are_spread(self):
        clients = [self.node.ws(uid="u%d" % i) for i in range(8)]
        rs = self.drain_and_check(signal.SIGTERM, clients)
        # "R spread at random over drain-period": 8 equal draws in ms
        # resolution would not be random.
        self.assertGreater(len(set(rs)), 1, "every client got the same reconnect_after_ms: %r"
                           % rs)


if __name__ == "__main__":
    unittest.main()

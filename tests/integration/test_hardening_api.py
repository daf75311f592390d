"""Hardening of the HTTP API, names, fan-out and resumes (issue 13).

Each test is written so that it fails without its defence:

* F2: percent-decoded invalid UTF-8 in an API path or query is a 400, and
  the API (healthz, metrics, every endpoint) keeps answering afterwards.
* F8: a uid, device or `auth` header of invalid UTF-8 is refused with 400
  at the handshake, so it never reaches other clients inside a text frame.
* F4: a non-loopback `listen` without `api-key` refuses to start unless
  `api-insecure=true`.
* F1: one send (frame or API) may not produce more than `max-fanout-bytes`
  (receivers x payload): `too_large` / HTTP 413; a repeated uid counts once.
* F3: resumes are paged and written as the client drains: ten stalled
  resumes of a 60 MB inbox do not hold 60 MB each; more concurrent resumes of
  one uid than `max-resumes-per-uid` are closed with 1013; a large inbox is
  still replayed completely, in order, exactly once.
* F13: /metrics and the dashboard's endpoints send no CORS header.

Only 127.0.0.1 is used (and 0.0.0.0 for the one start that must show a
non-loopback listen is accepted with an api-key; a few seconds).
"""

import socket
import time
import unittest

from harness import HarnessMixin, Node, free_port, run_binary, stderr_lines, wait_until


def raw_http(node, request_bytes, timeout=5.0):
    """Sends raw request bytes; returns the status code of the answer."""
    with socket.create_connection((node.host, node.port), timeout=timeout) as sock:
        sock.sendall(request_bytes)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    line = data.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 else None


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class InvalidUtf8Test(HarnessMixin, unittest.TestCase):
    """F2 and F8."""

    def setUp(self):
        self.node = self.start_node()

    def assert_api_alive(self):
        status, _, body = self.node.http("GET", "/healthz")
        self.assertEqual((status, body), (200, "ok"))
        status, _, _ = self.node.http("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(self.node.presence(["alice"]), {"alice": False})

    def test_invalid_utf8_in_api_paths_is_400_and_the_api_lives_on(self):
        for path in ("/api/groups/%FF/members", "/api/groups/%C3%28/members",
                     "/api/presence?uids=%C3%28", "/api/presence?uids=a,%ED%A0%80",
                     "/api/groups/%F4%90%80%80/members"):
            status, _, body = self.node.http("GET", path)
            self.assertEqual(status, 400, path)
            self.assertIn("error", body)
        self.assert_api_alive()

    def test_invalid_utf8_uid_device_or_auth_header_is_refused_at_the_handshake(self):
        for target in ("/ws?uid=%FF", "/ws?uid=%C3%28", "/ws?uid=ok&device=%E0%80%AF"):
            status = raw_http(self.node, ("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                          "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                                          % target).encode())
            self.assertEqual(status, 400, target)
        status = raw_http(self.node, b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                     b"auth: \xc3\x28bob\r\n\r\n")
        self.assertEqual(status, 400)
        # A valid non-ASCII uid still works and reaches others as UTF-8.
        bob = self.node.ws(uid="bob")
        zoe = self.node.ws(uid="zo\u00eb")
        zoe.send_json({"type": "send", "id": 1, "to": "bob", "data": "hi"})
        self.assertEqual(zoe.wait_for(lambda f: f.get("id") == 1, 5)["type"], "ack")
        self.assertEqual(bob.wait_for(lambda f: f.get("type") == "message", 5)["from"],
                         "zo\u00eb")
        self.assert_api_alive()

    def test_no_cors_on_metrics_nodes_or_events(self):
        for path in ("/metrics", "/api/nodes", "/api/events"):
            status, headers, _ = self.node.http("GET", path, headers={"Origin": "http://evil.example"})
            self.assertEqual(status, 200, path)
            self.assertNotIn("access-control-allow-origin", headers, path)


class FanoutBudgetTest(HarnessMixin, unittest.TestCase):
    """F1: receivers x payload bytes per send, frames and API."""

    def setUp(self):
        self.node = self.start_node({"max-fanout-bytes": 100000, "rate-limit": 0})

    def test_frame_send_over_the_budget_is_too_large(self):
        alice = self.node.ws(uid="alice")
        uids = ["u%d" % i for i in range(1000)]
        alice.send_json({"type": "send", "id": 1, "to": uids, "data": "x" * 2000})
        answer = alice.wait_for(lambda f: f.get("id") == 1, 5)
        self.assertEqual((answer["type"], answer["code"]), ("error", "too_large"))
        # Within the budget it goes through; a repeated uid counts once.
        bob = self.node.ws(uid="bob")
        alice.send_json({"type": "send", "id": 2, "to": ["bob"] * 1000, "data": "y" * 2000})
        self.assertEqual(alice.wait_for(lambda f: f.get("id") == 2, 5)["type"], "ack")
        got = bob.collect(0.5)
        self.assertEqual(len([f for f in got if f.get("type") == "message"]), 1)

    def test_api_send_over_the_budget_is_413(self):
        uids = ["u%d" % i for i in range(10000)]
        status, _, body = self.node.api_send(uids, "z" * 200)
        self.assertEqual(status, 413)
        self.assertIn("max-fanout-bytes", body["error"])
        status, _, _ = self.node.api_send(uids[:100], "z" * 200)
        self.assertEqual(status, 200)
        # Nothing of the refused request was stored: u5000 has no inbox.
        dev = self.node.ws(uid="u5000", query={"device": "d"})
        self.assertEqual(dev.welcome.get("to"), 0)


class ApiInsecureTest(unittest.TestCase):
    """F4: the HTTP API is not served open on a public address by default."""

    def test_non_loopback_listen_without_api_key_refuses_to_start(self):
        result = run_binary(["--listen=0.0.0.0:%d" % free_port()])
        self.assertEqual(result.returncode, 2)
        lines = stderr_lines(result.stderr)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("api-key", lines[0])

    def test_api_key_or_api_insecure_allows_it(self):
        for extra in ({"api-key": "k" * 32}, {"api-insecure": "true"}):
            port = free_port()
            node = Node(dict(extra, listen="0.0.0.0:%d" % port), port=port, pass_listen=False,
                        name="public")
            try:
                node.start()
                status, _, _ = node.http("GET", "/healthz")
                self.assertEqual(status, 200)
            finally:
                node.stop()


class ResumeBoundsTest(HarnessMixin, unittest.TestCase):
    """F3: replays are paged, written as the client reads, and bounded per uid."""

    def fill_inbox(self, node, uid, count, size):
        payload = "p" * size
        for i in range(count):
            status, _, _ = node.api_send([uid], {"n": i, "p": payload})
            self.assertEqual(status, 200)

    def test_large_inbox_is_replayed_completely_in_order(self):
        node = self.start_node({"inbox-max-messages": 5000})
        self.fill_inbox(node, "bob", 700, 100)
        bob = node.ws(uid="bob", query={"device": "phone"})
        self.assertEqual((bob.welcome["resumed"], bob.welcome["from"], bob.welcome["to"]),
                         (True, 1, 700))
        seqs = []
        deadline = time.time() + 20
        while len(seqs) < 700 and time.time() < deadline:
            f = bob.recv_json(5)
            if f.get("type") == "message":
                seqs.append(f["seq"])
        self.assertEqual(seqs, list(range(1, 701)))
        # Live traffic flows after the replay.
        node.api_send(["bob"], "live")
        live = bob.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual((live["data"], live["seq"]), ("live", 701))

    def test_stalled_resumes_hold_a_queue_not_the_inbox(self):
        node = self.start_node({"max-resumes-per-uid": 10, "max-message-bytes": 1 << 20,
                                "idle-timeout": "60s"})
        self.fill_inbox(node, "bob", 1000, 60000)  # 60 MB of inbox
        before = rss_kb(node.pid)
        stalled = [node.ws(uid="bob", query={"device": "d%d" % i}, rcvbuf=4096)
                   for i in range(10)]
        time.sleep(2.0)  # let every replay run into its client's full queue
        grown_mb = (rss_kb(node.pid) - before) / 1024.0
        # Unbounded, each replay queued the whole 60 MB inbox (600 MB); paged,
        # each holds about a send queue (1 MiB) and a page (64 x 60 KB).
        self.assertLess(grown_mb, 150, "node RSS grew by %.0f MB" % grown_mb)
        status, _, _ = node.http("GET", "/healthz")
        self.assertEqual(status, 200)
        for client in stalled:
            client.close()

    def test_more_concurrent_resumes_than_allowed_are_closed_with_1013(self):
        node = self.start_node({"max-resumes-per-uid": 2})
        self.fill_inbox(node, "bob", 200, 20000)  # 4 MB: a stalled reader stays resuming
        first = [node.ws(uid="bob", query={"device": "d%d" % i}, rcvbuf=4096) for i in range(2)]
        time.sleep(0.5)
        third = node.ws(uid="bob", query={"device": "d2"}, welcome=False)
        self.assertEqual(third.wait_closed(5), 1013)
        # Others are not affected: a plain connection of bob works.
        plain = node.ws(uid="bob")
        plain.send_json({"type": "ping", "id": 7})
        self.assertEqual(plain.wait_for(lambda f: f.get("id") == 7, 5)["type"], "pong")
        # Once a stalled resume goes, a new one is admitted.
        first[0].close()
        wait_until(lambda: self._resume_admitted(node), 10, what="a resume admitted")

    def _resume_admitted(self, node):
        client = node.ws(uid="bob", query={"device": "d9"}, welcome=False, rcvbuf=4096)
        frame = client.recv_json(2)
        client.close()
        return isinstance(frame, dict) and frame.get("type") == "welcome"


if __name__ == "__main__":
    unittest.main()

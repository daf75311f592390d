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
* F11: with `group-join=token` a client joins only the groups of its token,
  and only members list a group's members (the API is exempt).
* F13: /metrics and the dashboard's endpoints send no CORS header; the
  API key's `Bearer` scheme is case-insensitive (F10).
* Sibling of F5: a BASP header on the cluster port cannot make the node
  allocate what it announces (CAF 0.17 would allocate up to 4 GiB before any
  handshake); the cluster keeps working.

Only 127.0.0.1 is used (and 0.0.0.0 for the one start that must show a
non-loopback listen is accepted with an api-key; a few seconds).
"""

import json
import os
import random
import re
import socket
import struct
import time
import unittest

from harness import HarnessMixin, Node, free_port, run_binary, stderr_lines, rss_kb, wait_until
from wsclient import ConnectionClosed
from test_security import SECRET, claims, make_token


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


class GroupJoinTokenTest(HarnessMixin, unittest.TestCase):
    """F11: closed groups."""

    def setUp(self):
        self.node = self.start_node({"auth": "jwt", "jwt-secret": SECRET, "group-join": "token"})

    def connect(self, uid, groups=None):
        extra = {"groups": groups} if groups is not None else {}
        return self.node.ws(query={"token": make_token(claims(sub=uid, **extra))})

    def answer(self, client, frame):
        client.send_json(frame)
        return client.wait_for(lambda f: f.get("id") == frame["id"], 5)

    def test_only_token_groups_may_be_joined_and_listed(self):
        alice = self.connect("alice", ["team"])
        mallory = self.connect("mallory")
        wait_until(lambda: self.node.http("GET", "/api/groups/team/members")[2].get("uids")
                   == ["alice"], 5, what="alice joined team from her token")
        self.assertEqual(self.answer(alice, {"type": "join", "id": 1, "group": "team"})["type"],
                         "ack")
        refused = self.answer(alice, {"type": "join", "id": 2, "group": "other"})
        self.assertEqual((refused["type"], refused["code"]), ("error", "forbidden"))
        refused = self.answer(mallory, {"type": "join", "id": 3, "group": "team"})
        self.assertEqual((refused["type"], refused["code"]), ("error", "forbidden"))
        refused = self.answer(mallory, {"type": "members", "id": 4, "group": "team"})
        self.assertEqual((refused["type"], refused["code"]), ("error", "not_member"))
        refused = self.answer(mallory, {"type": "publish", "id": 5, "group": "team", "data": 1})
        self.assertEqual((refused["type"], refused["code"]), ("error", "not_member"))
        listed = self.answer(alice, {"type": "members", "id": 6, "group": "team"})
        self.assertEqual(listed["uids"], ["alice"])
        status, _, body = self.node.http("GET", "/api/groups/team/members")
        self.assertEqual((status, body["uids"]), (200, ["alice"]))


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


def durable_send(client, frame_id, to, data):
    """Sends `data` to `to` and returns the frame that answers it."""
    client.send_json({"type": "send", "id": frame_id, "to": to, "data": data})
    return client.wait_for(lambda f: f.get("id") == frame_id, 10)


class StoredBytesRateTest(HarnessMixin, unittest.TestCase):
    """R1's rate: bytes one uid may store per second, not only per frame."""

    def test_a_uid_storing_too_fast_is_rate_limited_even_after_reconnecting(self):
        # 1 KiB/s refills nothing that matters here: the 2 MiB burst (twice
        # max-fanout-bytes) is all there is, whatever the machine's speed.
        node = self.start_node({"rate-limit": 0, "stored-bytes-rate": 1024})
        alice = node.ws(uid="alice")
        uids = ["u%d" % i for i in range(1000)]

        def send(client, frame_id):
            answer = durable_send(client, frame_id, uids, "x" * 900)
            return answer.get("code", answer["type"])

        # ~0.96 MB of copies, plus 1000 inboxes started (~4.4 KB each in
        # Redis, charged alike for the memory store): the first send finds a
        # full burst (2 MB) and leaves the uid ~3.3 MB in debt, the second is
        # refused. Charging only the copies let three through.
        self.assertEqual([send(alice, i) for i in range(2)], ["ack", "rate_limited"])
        # A new connection of the same uid does not reset the debt.
        alice.close()
        again = node.ws(uid="alice")
        self.assertEqual(send(again, 10), "rate_limited")
        # Other uids and the HTTP API are not affected.
        bob = node.ws(uid="bob")
        bob.send_json({"type": "send", "id": 1, "to": "alice", "data": "hi"})
        self.assertEqual(bob.wait_for(lambda f: f.get("id") == 1, 5)["type"], "ack")
        self.assertEqual(node.api_send(uids, "y" * 900)[0], 200)


    def test_sends_waiting_for_the_store_count_against_the_budget(self):
        # helper-31's probe: the budget was charged only when the store
        # answered, so every send already in flight was admitted (16 of 16
        # pipelined ~1 MB sends stored; 32 connections of one uid stored 80x
        # the budget). Each is now reserved when admitted (16 x (60,000 + 64
        # + 4,400 for an inbox it may start) = 1,031,424 bytes): the 2 MiB
        # burst admits three while it is above zero, the rest are refused
        # without being stored.
        node = self.start_node({"rate-limit": 0, "stored-bytes-rate": 1024})
        alice = node.ws(uid="alice")
        receivers = ["r%d" % i for i in range(16)]
        for i in range(16):
            alice.send_json({"type": "send", "id": i, "to": receivers, "data": "x" * 60000})
        answers = [alice.wait_for(lambda f, i=i: f.get("id") == i, 20) for i in range(16)]
        kinds = [a.get("code", a["type"]) for a in answers]
        self.assertEqual(kinds.count("ack"), 3, kinds)
        self.assertEqual(kinds.count("rate_limited"), 13, kinds)


class StoredBytesPerAddressTest(HarnessMixin, unittest.TestCase):
    """The store budgets bound one client address, not only each of its uids:
    under auth=none one address may take any number of uids (helper-51's
    probe: 2,417 uids from one address, 1.17 GB of Redis in 8 s)."""

    def check_address_budget(self, extra):
        # Per uid 64 MiB/s (a 128 MiB burst): far from binding here. Per
        # address 1 KiB/s: its 2 MiB burst (twice max-fanout-bytes) is all
        # there is. Each send reserves 100 x (902 + 64) + 100 new inboxes
        # x 4,400 = 536,600 bytes: four pass while the bucket is above zero
        # (the fourth runs it into debt), the fifth is refused, whichever
        # uid of the address sends it.
        node = self.start_node(dict({"rate-limit": 0, "stored-bytes-rate": 64 << 20,
                                     "stored-bytes-rate-per-address": 1024}, **extra))
        senders = [node.ws(uid="s%d" % i) for i in range(3)]

        def send(client, n):
            receivers = ["r%d-%d" % (n, i) for i in range(100)]
            answer = durable_send(client, n, receivers, "x" * 900)
            return answer.get("code", answer["type"]), answer.get("message", "")

        kinds = [send(senders[n % 3], n) for n in range(5)]
        self.assertEqual([k for k, _ in kinds], ["ack"] * 4 + ["rate_limited"], kinds)
        self.assertIn("stored-bytes-rate-per-address", kinds[4][1])
        # A new uid of the same address is refused too.
        self.assertEqual(send(node.ws(uid="fresh"), 5)[0], "rate_limited")
        # Another address is not affected, not even for a uid of the first.
        elsewhere = node.ws(uid="s1", source="127.0.0.2")
        self.assertEqual(send(elsewhere, 6)[0], "ack")
        # Nor is the HTTP API.
        self.assertEqual(node.api_send(["r0-0"], "y" * 900)[0], 200)

    def test_memory_store(self):
        self.check_address_budget({})

    def test_redis_store(self):
        redis = self.start_redis()
        self.check_address_budget({"state": "redis", "redis": redis.url})


class StoredBytesKeptTest(HarnessMixin, unittest.TestCase):
    """What one uid stores is bounded over inbox-max-age, not only per second."""

    def test_a_uid_that_stored_its_share_is_refused_until_it_refills(self):
        # Far below stored-bytes-rate (1 MiB/s, 2 MiB burst): without the
        # kept bound all 20 sends are acked. With 100,000 bytes kept per
        # 24 h: 10 new inboxes (44,000) + 10 copies of 1,064 bytes per
        # send, then 10,640 per send: the sixth leaves the uid in debt,
        # the seventh is refused; the refill (1.2 B/s) changes nothing here.
        node = self.start_node({"rate-limit": 0, "stored-bytes-kept": 100000})
        alice = node.ws(uid="alice")
        receivers = ["k%d" % i for i in range(10)]

        def send(client, frame_id):
            return durable_send(client, frame_id, receivers, "x" * 1000)

        answers = [send(alice, i) for i in range(20)]
        kinds = [a.get("code", a["type"]) for a in answers]
        self.assertEqual(kinds[:6], ["ack"] * 6, kinds)
        self.assertEqual(kinds[6:], ["rate_limited"] * 14, kinds)
        self.assertIn("stored-bytes-kept", answers[6].get("message", ""))
        # Nothing of a refused send was stored.
        reader = node.ws(uid="k0", query={"device": "d"})
        self.assertEqual(reader.welcome.get("to"), 6)
        # A new connection of the same uid does not reset what it kept.
        alice.close()
        again = node.ws(uid="alice")
        self.assertEqual(send(again, 100).get("code"), "rate_limited")
        # Other uids and the HTTP API are not affected.
        bob = node.ws(uid="bob")
        self.assertEqual(send(bob, 1)["type"], "ack")
        self.assertEqual(node.api_send(receivers, "y" * 1000)[0], 200)


class ClusterPortGarbageTest(HarnessMixin, unittest.TestCase):
    """Garbage and oversized BASP headers on `cluster-listen`."""

    def test_announced_payloads_are_not_allocated_and_the_cluster_works(self):
        redis = self.start_redis()
        opts = {"state": "redis", "redis": redis.url, "heartbeat": "200ms",
                "node-timeout": "1000ms"}
        n1 = self.start_node(dict(opts, **{"node-id": "n1"}), name="n1")
        port = int(re.search(r"cluster=127\.0\.0\.1:(\d+)", n1.log_text()).group(1))
        before = rss_kb(n1.pid)
        rng = random.Random(7)
        held = []
        # A direct message first, handshakes announcing 1 GiB / 200 MiB, then
        # random headers (each announcing up to 4 GiB): held open meanwhile.
        headers = [struct.pack(">BBBBIQQQ", op, 0, 0, 0, size, 0, 0, 0)
                   for op, size in ((2, 64 << 20), (1, 1 << 30), (0, 200 << 20))]
        headers += [bytes(rng.getrandbits(8) for _ in range(32)) for _ in range(40)]
        for header in headers:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(header + b"x" * 4096)
            held.append(sock)
        time.sleep(1.0)
        grown_mb = (rss_kb(n1.pid) - before) / 1024.0
        self.assertLess(grown_mb, 50, "node RSS grew by %.0f MB" % grown_mb)
        self.assertEqual(n1.http("GET", "/healthz")[0], 200)
        for sock in held:
            sock.close()
        # Real peers still connect and deliver.
        n2 = self.start_node(dict(opts, **{"node-id": "n2"}), name="n2")
        bob = n2.ws(uid="bob")
        alice = n1.ws(uid="alice")
        deadline = time.time() + 10
        got = None
        while got is None and time.time() < deadline:
            alice.send_json({"type": "send", "to": "bob", "data": "over basp"})
            frames = [f for f in bob.collect(0.3) if f.get("type") == "message"]
            got = frames[0] if frames else None
        self.assertIsNotNone(got, "no cross-node delivery after the garbage")
        self.assertEqual(got["from"], "alice")


class ApiKeySchemeTest(HarnessMixin, unittest.TestCase):
    """F10: RFC 7235 makes the auth scheme case-insensitive."""

    def test_bearer_in_any_case(self):
        node = self.start_node({"api-key": "k" * 32})
        for scheme in ("Bearer", "bearer", "BEARER"):
            status, _, _ = node.http("GET", "/api/nodes",
                                     headers={"Authorization": scheme + " " + "k" * 32})
            self.assertEqual(status, 200, scheme)
        status, _, _ = node.http("GET", "/api/nodes", headers={"Authorization": "k" * 32})
        self.assertEqual(status, 401)


    def test_a_request_without_the_key_gets_no_large_body_read(self):
        # Found by a probe review: the whole body (up to 1 MiB) was read
        # before the key was checked, so anyone who could connect made the
        # node hold 1 MiB per socket. Without the key, a body announced
        # beyond 16 KiB is answered 401 at once, before it is sent.
        node = self.start_node({"api-key": "k" * 32})
        head = ("POST /api/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000000\r\n%s\r\n")
        with socket.create_connection((node.host, node.port), timeout=5) as s:
            s.sendall((head % "").encode())
            s.settimeout(3)
            answer = s.recv(4096).decode(errors="replace")
        self.assertTrue(answer.startswith("HTTP/1.1 401"), answer[:80])
        # With the key the same request waits for its body (and gets it).
        body = json.dumps({"to": "bob", "data": "x" * 200000})
        status, _, _ = node.http("POST", "/api/send", body=json.loads(body),
                                 headers={"Authorization": "Bearer " + "k" * 32})
        self.assertEqual(status, 200)
        # A small body without the key is read and answered 401 as before.
        status, _, _ = node.http("POST", "/api/send", {"to": "bob", "data": 1})
        self.assertEqual(status, 401)
        # No other path takes a large body, with or without the key (a probe
        # held 1 MiB per socket posting to / or to a percent-encoded /api/).
        for target, key in (("/", ""), ("/%61pi/send", ""),
                            ("/dashboard", "Authorization: Bearer " + "k" * 32 + "\r\n")):
            with socket.create_connection((node.host, node.port), timeout=5) as s:
                s.sendall((head % key).replace("/api/send", target).encode())
                s.settimeout(3)
                answer = s.recv(4096).decode(errors="replace")
            self.assertTrue(answer.startswith("HTTP/1.1 413"), (target, answer[:80]))

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
        # each holds about a send queue (1 MiB) and a page or two (64 x 60 KB
        # each). Measured: ~70 MB with scheduler-policy=sharing, ~130 MB with
        # loop (about one page more per stalled resume: not explained yet),
        # ~225 MB with loop under ASan (its quarantine keeps freed pages). The
        # bound is half the unbounded case.
        self.assertLess(grown_mb, 300, "node RSS grew by %.0f MB" % grown_mb)
        status, _, _ = node.http("GET", "/healthz")
        self.assertEqual(status, 200)
        for client in stalled:
            client.close()

    def test_more_concurrent_resumes_than_allowed_are_closed_with_1013(self):
        node = self.start_node({"max-resumes-per-uid": 2})
        # 12 MB: more than a stalled reader's queue plus the kernel's socket
        # buffers (up to ~4 MB on loopback), so its resume stays in progress.
        self.fill_inbox(node, "bob", 600, 20000)
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

    def test_a_replay_overtaken_by_retention_is_closed_with_1013(self):
        self.check_overtaken_replay({})

    def test_a_replay_overtaken_by_retention_in_redis_is_closed_with_1013(self):
        redis = self.start_redis(cluster=False)
        self.check_overtaken_replay({"state": "redis", "redis": redis.url})

    def check_overtaken_replay(self, opts):
        # helper-45's probe: a client that read slowly while others pushed
        # got seq 1-712 and then 2901-3900 (the rest trimmed meanwhile),
        # with no signal but the jump. It is now closed with 1013 after
        # what it was given, and its reconnect's welcome says too_old.
        node = self.start_node(dict(opts, **{"inbox-max-messages": 100}))
        self.fill_inbox(node, "bob", 90, 60000)  # more than queue and kernel hold
        bob = node.ws(uid="bob", query={"device": "d"}, rcvbuf=4096, timeout=10)
        self.assertEqual((bob.welcome["resumed"], bob.welcome["from"], bob.welcome["to"]),
                         (True, 1, 90))
        for i in range(400):  # trims the messages bob has not read yet
            status, _, _ = node.api_send(["bob"], {"n": 1000 + i})
            self.assertEqual(status, 200)
        seqs = []
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                frame = bob.recv_json(5)
            except (ConnectionClosed, TimeoutError):
                break
            if frame.get("type") == "message":
                seqs.append(frame["seq"])
        self.assertEqual(bob.close_code, 1013, "after %d messages" % len(seqs))
        self.assertTrue(seqs, "the replay wrote nothing before closing")
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "the seqs jumped")
        again = node.ws(uid="bob", query={"device": "d"})
        self.assertEqual((again.welcome["resumed"], again.welcome.get("reason")),
                         (False, "too_old"))

    def _resume_admitted(self, node):
        client = node.ws(uid="bob", query={"device": "d9"}, welcome=False, rcvbuf=4096)
        frame = client.recv_json(2)
        client.close()
        return isinstance(frame, dict) and frame.get("type") == "welcome"


if __name__ == "__main__":
    unittest.main()

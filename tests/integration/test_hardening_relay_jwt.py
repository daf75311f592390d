"""Hardening of the relay and of JWT (issue 13, findings 5, 12 and 13).

Relay: every payload a node reads from its channel ``P:relay:<node>`` is
checked before anything reaches the REGISTRY. The payload (see
adapters/redis_relay.cpp) is

    byte 0   format: 5 unsigned, 6 signed (1-4, the old formats, refused)
    body     CAF binary: destination (str), origin (str), incarnation (u64),
             counter (u64), sent wall time ms (i64), delivery_batch
    MAC      format 6: HMAC-SHA256(cluster-secret, byte 0 + body), 32 bytes

and the tests here build such payloads by hand (``envelope``), capture real
ones from Redis (``ChannelTap``) and publish raw bytes with PUBLISH. Refusals
are counted in ``wscluster_relay_rejected_by_reason_total{reason=...}``.

JWT: ``exp`` / ``nbf`` beyond year 9999 are refused (no overflow later),
``jwt-audience`` / ``jwt-issuer`` are required when set, and a repeated key
refuses the token.
"""

import base64
import hashlib
import hmac
import socket
import struct
import threading
import time
import unittest

from harness import HarnessMixin, free_port, wait_until
from test_relay import LinkProxy
from wsclient import HandshakeError

PREFIX = "wscluster"
HEARTBEAT_MS = 500
NODE_TIMEOUT_MS = 2000
CLUSTER_SECRET = "a-secret-shared-by-n1-and-n2-0123456789"

KIND_MESSAGE, KIND_BROADCAST, KIND_GROUP, KIND_DISCONNECT = range(4)


# -- the relay payload, by hand (CAF 0.17 binary format: integers big-endian,
#    sequence and string sizes as var-bytes) ---------------------------------------------

def _varbyte(n):
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _str(s):
    b = s if isinstance(s, bytes) else s.encode("utf-8")
    return _varbyte(len(b)) + b


def delivery(kind=KIND_MESSAGE, frm="mallory", group="", data='"hi"', ts=None, uids=(),
             durable=False, msg_id="", seqs=(), idem="", except_=(), to_conn=""):
    ts = int(time.time() * 1000) if ts is None else ts
    return (struct.pack(">B", kind) + _str(frm) + _str(group) + _str(data) +
            struct.pack(">q", ts) + _varbyte(len(uids)) + b"".join(_str(u) for u in uids) +
            struct.pack(">B", 1 if durable else 0) + _str(msg_id) +
            _varbyte(len(seqs)) + b"".join(struct.pack(">Q", s) for s in seqs) +
            _str(idem) + _varbyte(len(except_)) + b"".join(_str(c) for c in except_) +
            _str(to_conn))


def envelope(destination, origin, incarnation, counter, items, sent_ms=None, secret=None,
             batch_origin=None):
    sent_ms = int(time.time() * 1000) if sent_ms is None else sent_ms
    body = (_str(destination) + _str(origin) + struct.pack(">QQq", incarnation, counter, sent_ms)
            + _str(origin if batch_origin is None else batch_origin)
            + _varbyte(len(items)) + b"".join(items))
    if secret is None:
        return b"\x05" + body
    signed = b"\x06" + body
    return signed + hmac.new(secret.encode(), signed, hashlib.sha256).digest()


def old_format_batch(origin, items):
    """The format of before issue 13 (byte 1, the batch alone)."""
    return b"\x01" + _str(origin) + _varbyte(len(items)) + b"".join(items)


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def varbyte(self):
        n, shift = 0, 0
        while True:
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    def str(self):
        return self.take(self.varbyte()).decode("utf-8")

    def fmt(self, f):
        return struct.unpack(f, self.take(struct.calcsize(f)))


def decode_envelope(payload, secret=None):
    """Reads a payload as the node writes it; raises ValueError otherwise."""
    fmt = payload[0]
    if fmt not in (5, 6):
        raise ValueError("format byte %d" % fmt)
    body = payload[1:]
    if fmt == 6:
        body, mac = body[:-32], body[-32:]
        if secret is not None:
            want = hmac.new(secret.encode(), payload[:-32], hashlib.sha256).digest()
            if not hmac.compare_digest(mac, want):
                raise ValueError("bad MAC")
    r = _Reader(body)
    env = {"format": fmt, "destination": r.str(), "origin": r.str()}
    env["incarnation"], env["counter"], env["sent_ms"] = r.fmt(">QQq")
    env["batch_origin"] = r.str()
    items = []
    for _ in range(r.varbyte()):
        d = {"kind": r.fmt(">B")[0], "from": r.str(), "group": r.str(), "data": r.str(),
             "ts": r.fmt(">q")[0]}
        d["uids"] = [r.str() for _ in range(r.varbyte())]
        d["durable"] = bool(r.fmt(">B")[0])
        d["msg_id"] = r.str()
        d["seqs"] = [r.fmt(">Q")[0] for _ in range(r.varbyte())]
        d["idem"] = r.str()  # issue 16; empty on the way to receivers
        d["except"] = [r.str() for _ in range(r.varbyte())]  # issue 17
        d["to_conn"] = r.str()
        items.append(d)
    env["items"] = items
    if r.pos != len(body):
        raise ValueError("trailing bytes")
    return env


# -- raw Redis pub/sub ------------------------------------------------------------------

def _resp(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read_raw(f):
    line = f.readline()
    if not line:
        raise OSError("closed")
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        return rest
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_raw(f) for _ in range(n)]
    raise OSError("bad RESP %r" % line)


def publish(redis, channel, payload):
    """PUBLISH raw bytes; returns the number of subscribers that got it."""
    with socket.create_connection((redis.host, redis.port), timeout=5) as s:
        s.sendall(_resp(["PUBLISH", channel, payload]))
        return _read_raw(s.makefile("rb"))


class ChannelTap:
    """SUBSCRIBEs to a channel and keeps every payload published on it (bytes)."""

    def __init__(self, redis, channel):
        self.sock = socket.create_connection((redis.host, redis.port), timeout=5)
        self.sock.sendall(_resp(["SUBSCRIBE", channel]))
        self.file = self.sock.makefile("rb")
        _read_raw(self.file)  # the confirmation
        self.sock.settimeout(None)
        self.payloads = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        try:
            while True:
                msg = _read_raw(self.file)
                if isinstance(msg, list) and len(msg) == 3 and msg[0] == b"message":
                    with self.lock:
                        self.payloads.append(msg[2])
        except (OSError, ValueError):
            pass

    def snapshot(self):
        with self.lock:
            return list(self.payloads)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


def rejected(node, reason):
    return node.metric("wscluster_relay_rejected_by_reason_total", 'reason="%s"' % reason,
                       default=0)


def channel(node_id):
    return "%s:relay:%s" % (PREFIX, node_id)


def wait_subscribed(test, redis, node_id):
    wait_until(lambda: redis.command("PUBSUB", "NUMSUB", channel(node_id))[1] >= 1, 10,
               what="relay subscribed to %s" % channel(node_id))


# -- one node, no cluster-secret --------------------------------------------------------

class UnsignedRelayInputTest(HarnessMixin, unittest.TestCase):
    """Payloads forged by anyone with PUBLISH access (no cluster-secret)."""

    def setUp(self):
        self.redis = self.start_redis()
        self.node = self.start_node({"state": "redis", "redis": self.redis.url,
                                     "node-id": "n1", "heartbeat": "%dms" % HEARTBEAT_MS,
                                     "node-timeout": "%dms" % NODE_TIMEOUT_MS}, name="n1")
        wait_subscribed(self, self.redis, "n1")

    def assertServing(self):
        """The node still works: /healthz, new connections, messages."""
        self.assertTrue(self.node.running())
        self.assertEqual(self.node.http("GET", "/healthz")[0], 200)
        a = self.node.ws("carol")
        b = self.node.ws("dave")
        a.send_json({"type": "send", "id": 7, "to": "dave", "data": "still here"})
        self.reply_to(a, 7)
        frame = b.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual(frame["data"], "still here")

    def messages(self, client, duration):
        got = []
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            try:
                got.append(client.wait_for(lambda f: f.get("type") == "message",
                                           max(0.05, deadline - time.monotonic())))
            except TimeoutError:
                break
        return got

    def test_forged_kind_99_is_dropped_and_the_node_keeps_serving(self):
        # Finding 5: a delivery kind out of range used to encode to an empty
        # string, pop_back() on it, and the REGISTRY died (1011 for everyone
        # after). Now: dropped and counted, the valid neighbour delivered.
        bob = self.node.ws("bob")
        bad = delivery(kind=99, uids=["bob"], data='"boom"')
        ok = delivery(kind=KIND_MESSAGE, uids=["bob"], data='"valid neighbour"')
        self.assertEqual(publish(self.redis, channel("n1"), old_format_batch("n2", [bad, ok])), 1)
        self.assertEqual(publish(self.redis, channel("n1"),
                                 envelope("n1", "n2", 5, 1, [bad, ok])), 1)
        # Other malformed deliveries: a disconnect code out of range, a uid
        # of invalid UTF-8, a payload that is no UTF-8.
        self.assertEqual(publish(self.redis, channel("n1"), envelope("n1", "n2", 5, 2, [
            delivery(kind=KIND_DISCONNECT, uids=["bob"], ts=70000),
            delivery(uids=[b"\xff\xfe"]),
            delivery(uids=["bob"], data=b'"\xc3\x28"')])), 1)
        # Payloads of UTF-8 that are no single JSON value: copied into
        # frames as they are, they would make frames clients cannot parse.
        self.assertEqual(publish(self.redis, channel("n1"), envelope("n1", "n2", 5, 3, [
            delivery(uids=["bob"], data='{"unterminated'),
            delivery(uids=["bob"], data='"a", "b"')])), 1)
        wait_until(lambda: rejected(self.node, "invalid") >= 3, 5,
                   what="invalid deliveries counted")
        self.assertGreaterEqual(rejected(self.node, "version"), 1, "old format not counted")
        got = self.messages(bob, 1.5)
        self.assertEqual([f["data"] for f in got], ["valid neighbour"], got)
        self.assertServing()
        # bob was not disconnected by the out-of-range close code.
        bob.send_json({"type": "ping", "id": "p"})
        self.reply_to(bob, "p")

    def test_unsigned_payloads_still_get_address_time_and_replay_checks(self):
        bob = self.node.ws("bob")
        once = envelope("n1", "n2", 9, 1, [delivery(uids=["bob"], data='"once"')])
        self.assertEqual(publish(self.redis, channel("n1"), once), 1)
        self.assertEqual(publish(self.redis, channel("n1"), once), 1)   # replayed
        older = envelope("n1", "n2", 9, 1, [delivery(uids=["bob"], data='"same counter"')])
        self.assertEqual(publish(self.redis, channel("n1"), older), 1)  # duplicate counter
        elsewhere = envelope("n9", "n2", 9, 2, [delivery(uids=["bob"], data='"for n9"')])
        self.assertEqual(publish(self.redis, channel("n1"), elsewhere), 1)
        old = envelope("n1", "n2", 9, 3, [delivery(uids=["bob"], data='"old"')],
                       sent_ms=int(time.time() * 1000) - 120000)
        self.assertEqual(publish(self.redis, channel("n1"), old), 1)
        future = envelope("n1", "n2", 9, 4, [delivery(uids=["bob"], data='"future"')],
                          sent_ms=int(time.time() * 1000) + 120000)
        self.assertEqual(publish(self.redis, channel("n1"), future), 1)
        extreme = envelope("n1", "n2", 9, 7, [delivery(uids=["bob"], data='"extreme"')],
                           sent_ms=-2 ** 63)
        self.assertEqual(publish(self.redis, channel("n1"), extreme), 1)
        inconsistent = envelope("n1", "n2", 9, 5, [delivery(uids=["bob"], data='"x"')],
                                batch_origin="n3")
        self.assertEqual(publish(self.redis, channel("n1"), inconsistent), 1)
        self.assertEqual(publish(self.redis, channel("n1"), b"\x05garbage"), 1)
        signed = envelope("n1", "n2", 9, 6, [delivery(uids=["bob"], data='"signed"')],
                          secret="whatever")
        self.assertEqual(publish(self.redis, channel("n1"), signed), 1)
        # A new incarnation of the same origin starts its own counter.
        again = envelope("n1", "n2", 10, 1, [delivery(uids=["bob"], data='"new incarnation"')])
        self.assertEqual(publish(self.redis, channel("n1"), again), 1)
        got = self.messages(bob, 2.0)
        self.assertEqual([f["data"] for f in got], ["once", "new incarnation"], got)
        self.assertEqual(rejected(self.node, "replay"), 2)
        self.assertEqual(rejected(self.node, "misaddressed"), 1)
        self.assertEqual(rejected(self.node, "stale"), 3)
        self.assertEqual(rejected(self.node, "malformed"), 2)
        self.assertEqual(rejected(self.node, "auth"), 1)
        self.assertEqual(self.node.metric("wscluster_relay_rejected_total"), 9)
        self.assertServing()


# -- two nodes with cluster-secret, partitioned -----------------------------------------

class SignedRelayReplayTest(HarnessMixin, unittest.TestCase):
    """A signed payload captured from Redis during a partition is worth one
    delivery, to the node it was meant for."""

    def setUp(self):
        self.redis = self.start_redis()
        n2_cluster_port = free_port()
        self.proxy = LinkProxy(n2_cluster_port)
        self.addCleanup(self.proxy.close)
        common = {"state": "redis", "redis": self.redis.url,
                  "heartbeat": "%dms" % HEARTBEAT_MS, "node-timeout": "%dms" % NODE_TIMEOUT_MS,
                  "cluster-secret": CLUSTER_SECRET}
        self.n1 = self.start_node(dict(common, **{"node-id": "n1"}), name="n1")
        self.n2 = self.start_node(dict(common, **{
            "node-id": "n2", "cluster-listen": "127.0.0.1:%d" % n2_cluster_port,
            "cluster-advertise": "127.0.0.1:%d" % self.proxy.port}), name="n2")

        def discovered(node, peer):
            _, _, events = node.http("GET", "/api/events")
            return any(e["event"] == "DISCOVER" and e["node"] == peer for e in events)
        wait_until(lambda: discovered(self.n1, "n2") and discovered(self.n2, "n1"), 15,
                   what="n1 and n2 connected")
        wait_subscribed(self, self.redis, "n1")
        wait_subscribed(self, self.redis, "n2")

    def capture(self, alice, bob):
        """Cuts the link and returns a payload n1 relayed to n2 with a
        message bob received, and that message's data. (bob has no device:
        what was in flight on the dead link is not replayed to him.)"""
        tap = ChannelTap(self.redis, channel("n2"))
        self.addCleanup(tap.close)
        self.proxy.cut()
        deadline = time.monotonic() + 20
        n = 0
        while time.monotonic() < deadline:
            n += 1
            data = "capture-%d" % n
            alice.send_json({"type": "send", "id": n, "to": "bob", "data": data})
            self.reply_to(alice, n)
            try:  # lost while the link is being declared down: the next one
                bob.wait_for(lambda f: f.get("type") == "message" and f.get("data") == data, 3)
            except TimeoutError:
                continue
            for payload in tap.snapshot():
                env = decode_envelope(payload, CLUSTER_SECRET)
                if any(d["data"] == '"%s"' % data for d in env["items"]):
                    tap.close()
                    wait_until(lambda: self.redis.command(
                        "PUBSUB", "NUMSUB", channel("n2"))[1] == 1, 5, what="tap gone")
                    return payload, env, data
            time.sleep(0.2)
        self.fail("no relayed payload captured on %s" % channel("n2"))

    def test_captured_payload_replayed_or_sent_elsewhere_is_dropped(self):
        alice = self.n1.ws("alice")
        bob = self.n2.ws("bob")
        payload, env, data = self.capture(alice, bob)
        # The envelope as documented, signed under cluster-secret.
        self.assertEqual(env["format"], 6)
        self.assertEqual((env["destination"], env["origin"], env["batch_origin"]),
                         ("n2", "n1", "n1"))
        self.assertGreaterEqual(env["counter"], 1)
        self.assertLess(abs(env["sent_ms"] - time.time() * 1000), 60000)
        self.assertTrue(env["incarnation"] > 0)
        time.sleep(0.5)  # nothing else in flight for bob
        bob.collect(0.2)
        bob._pending.clear()
        replays = rejected(self.n2, "replay")

        # Replayed to its destination: dropped, counted.
        self.assertEqual(publish(self.redis, channel("n2"), payload), 1)
        wait_until(lambda: rejected(self.n2, "replay") == replays + 1, 5, what="replay counted")
        self.assertNoFrame(bob, lambda f: f.get("type") == "message", 1.0,
                           "the replayed payload was delivered again")

        # Published to another node where bob is connected too: dropped.
        bob_at_n1 = self.n1.ws("bob")
        self.assertEqual(publish(self.redis, channel("n1"), payload), 1)
        wait_until(lambda: rejected(self.n1, "misaddressed") == 1, 5,
                   what="misaddressed payload counted")
        self.assertNoFrame(bob_at_n1, lambda f: f.get("type") == "message", 1.0,
                           "a payload for n2 was delivered by n1")

        # Tampered (the counter raised): the MAC no longer matches.
        tampered = bytearray(payload)
        counter_at = 1 + 1 + len("n2") + 1 + len("n1") + 8
        tampered[counter_at + 7] ^= 0x40
        auth = rejected(self.n2, "auth")
        self.assertEqual(publish(self.redis, channel("n2"), bytes(tampered)), 1)
        wait_until(lambda: rejected(self.n2, "auth") == auth + 1, 5, what="tampered counted")
        self.assertNoFrame(bob, lambda f: f.get("type") == "message", 0.5,
                           "a tampered payload was delivered")

        # A fresh payload under the secret (as a cluster member would sign it)
        # goes through; one with a kind out of range is dropped, counted.
        fresh = envelope("n2", "n7", 3, 1, [delivery(uids=["bob"], data='"fresh"'),
                                            delivery(kind=99, uids=["bob"])],
                         secret=CLUSTER_SECRET)
        self.assertEqual(publish(self.redis, channel("n2"), fresh), 1)
        frame = bob.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual(frame["data"], "fresh")
        self.assertEqual(rejected(self.n2, "invalid"), 1)
        self.assertEqual(self.n2.http("GET", "/healthz")[0], 200)
        self.n2.ws("erin")


# -- JWT --------------------------------------------------------------------------------

JWT_SECRET = "jwt-secret-for-hardening-tests-0123456789"
AUDIENCE = "chat-app"
ISSUER = "https://id.example"


def b64url(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw_token(payload_text, header_text='{"alg":"HS256","typ":"JWT"}', secret=JWT_SECRET):
    """Signs the payload text as it is (repeated keys included)."""
    signing_input = b64url(header_text) + "." + b64url(payload_text)
    sig = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


class JwtHardeningTest(HarnessMixin, unittest.TestCase):

    def setUp(self):
        self.node = self.start_node({"auth": "jwt", "jwt-secret": JWT_SECRET,
                                     "jwt-audience": AUDIENCE, "jwt-issuer": ISSUER})
        self.exp = int(time.time()) + 300

    def claims(self, exp=None, aud='"%s"' % AUDIENCE, iss='"%s"' % ISSUER, extra=""):
        parts = ['"sub":"alice"', '"exp":%d' % (self.exp if exp is None else exp)]
        if aud is not None:
            parts.append('"aud":' + aud)
        if iss is not None:
            parts.append('"iss":' + iss)
        return "{" + ",".join(parts) + extra + "}"

    def assertRejected(self, token, what):
        try:
            ws = self.node.ws(query={"token": token}, welcome=False)
        except HandshakeError as e:
            self.assertEqual(e.status, 401, "%s: %s %r" % (what, e.status, e.text))
            return
        ws.close()
        self.fail("%s: connected, expected 401" % what)

    def assertAccepted(self, token, what):
        ws = self.node.ws(query={"token": token})
        self.assertEqual(ws.welcome["uid"], "alice", what)
        return ws

    def test_huge_exp_is_401_and_the_node_keeps_serving(self):
        # exp * 1000 overflowed int64 (UB) for these; the connection then
        # closed at once (4003) or the timer misbehaved.
        for exp in (2 ** 63 - 1, 2 ** 63 + 5, 253402300800, 10 ** 15):
            with self.subTest(exp=exp):
                self.assertRejected(raw_token(self.claims(exp=exp)), "exp=%d" % exp)
        self.assertRejected(raw_token(self.claims(extra=',"nbf":%d' % (2 ** 63 + 5))),
                            "nbf beyond int64")
        # The last second of year 9999 is fine, and does not expire at once.
        ws = self.assertAccepted(raw_token(self.claims(exp=253402300799)), "year 9999")
        ws.send_json({"type": "ping", "id": 1})
        self.reply_to(ws, 1)
        time.sleep(0.5)
        ws.send_json({"type": "ping", "id": 2})
        self.reply_to(ws, 2)
        self.assertEqual(self.node.http("GET", "/healthz")[0], 200)

    def test_audience_required_and_mismatched_is_401(self):
        self.assertAccepted(raw_token(self.claims()), "aud string")
        self.assertAccepted(raw_token(self.claims(aud='["other","%s"]' % AUDIENCE)),
                            "aud array that contains it")
        self.assertRejected(raw_token(self.claims(aud=None)), "no aud")
        self.assertRejected(raw_token(self.claims(aud='"other"')), "other aud")
        self.assertRejected(raw_token(self.claims(aud='["other"]')), "aud array without it")
        self.assertRejected(raw_token(self.claims(aud='[]')), "empty aud array")
        self.assertRejected(raw_token(self.claims(aud='{"%s":true}' % AUDIENCE)), "aud object")

    def test_issuer_required_and_mismatched_is_401(self):
        self.assertRejected(raw_token(self.claims(iss=None)), "no iss")
        self.assertRejected(raw_token(self.claims(iss='"https://evil.example"')), "other iss")
        self.assertRejected(raw_token(self.claims(iss='["%s"]' % ISSUER)), "iss array")

    def test_repeated_key_is_401(self):
        # The last value used to win silently: {"sub":"alice",...,"sub":"root"}
        # connected as root.
        self.assertRejected(raw_token(self.claims(extra=',"sub":"root"')), "sub twice")
        self.assertRejected(raw_token(self.claims(extra=',"exp":%d' % (self.exp + 1))),
                            "exp twice")
        self.assertRejected(raw_token(self.claims(extra=',"aud":"other"')), "aud twice")
        self.assertRejected(raw_token(self.claims(),
                                      header_text='{"alg":"HS256","alg":"HS256"}'),
                            "alg twice in the header")
        self.assertAccepted(raw_token(self.claims(extra=',"x":{"sub":"root"}')),
                            "the same key in a nested object")


if __name__ == "__main__":
    unittest.main()

"""Webhooks and the unread hook (issue 16): a small HTTP(S) receiver in the
test gets the events of real nodes.

Every node of a cluster fires each event once (the node whose store
operation flipped the state); the receiver drops repeats of an event `id`
(retries after a failed POST), as a backend should, and counts transitions.
"""

import hashlib
import hmac
import http.server
import json
import os
import ssl
import subprocess
import threading
import time
import unittest

from harness import HarnessMixin, wait_until

SECRET = "webhook-test-secret"
HEARTBEAT_MS = 500
NODE_TIMEOUT_MS = 2000


class Receiver:
    """An HTTP(S) server on 127.0.0.1 that records webhook POSTs.

    ``status`` (a callable) picks each answer's HTTP status; every POST is
    kept with its body, signature check and the time it came. ``hold`` (a
    callable) runs before each answer: a slow backend."""

    def __init__(self, certfile=None, keyfile=None):
        self.lock = threading.Lock()
        self.posts = []  # (time, status answered, body dict, signature ok)
        self.status = lambda: 200
        self.hold = lambda: None
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-Wscluster-Signature", ""), expected)
                status = receiver.status()
                with receiver.lock:
                    receiver.posts.append((time.time(), status, json.loads(raw), signed))
                receiver.hold()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scheme="http", host="127.0.0.1"):
        return "%s://%s:%d/hooks/wscluster" % (scheme, host, self.port)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def accepted(self):
        """Events of 2xx POSTs, each id once, in arrival order."""
        seen, result = set(), []
        with self.lock:
            for _, status, body, _ in self.posts:
                if status // 100 != 2:
                    continue
                for ev in body["events"]:
                    if ev["id"] not in seen:
                        seen.add(ev["id"])
                        result.append(ev)
        return result

    def named(self, name, **fields):
        return [e for e in self.accepted()
                if e["name"] == name and all(e.get(k) == v for k, v in fields.items())]

    def wait(self, name, timeout=10, count=1, **fields):
        wait_until(lambda: len(self.named(name, **fields)) >= count, timeout,
                   what="%d %s event(s) %r" % (count, name, fields))
        return self.named(name, **fields)

    def all_signed(self):
        with self.lock:
            return all(signed for _, _, _, signed in self.posts) and len(self.posts) > 0


class WebhookBase(HarnessMixin, unittest.TestCase):
    def receiver(self, **kwargs):
        r = Receiver(**kwargs)
        self.addCleanup(r.stop)
        return r

    def hook_options(self, receiver, events, **extra):
        opts = {
            "webhook-url": receiver.url(),
            "webhook-secret": SECRET,
            "webhook-events": events,
        }
        opts.update(extra)
        return opts


class ClusterWebhookTest(WebhookBase):
    def test_presence_connections_groups_and_node_lost_on_three_nodes(self):
        rec = self.receiver()
        redis = self.start_redis()
        nodes = []
        for i in range(3):
            opts = self.hook_options(rec, "online,offline,register,logout,join,leave",
                                     **{"node-id": "n%d" % (i + 1), "state": "redis",
                                        "redis": redis.url, "heartbeat": "%dms" % HEARTBEAT_MS,
                                        "node-timeout": "%dms" % NODE_TIMEOUT_MS})
            nodes.append(self.start_node(opts, name="n%d" % (i + 1)))
        n1, n2, n3 = nodes
        wait_until(lambda: len(n1.http("GET", "/api/nodes")[2]) == 3, 10, what="3 nodes")

        # Two connections of alice on two nodes: one online, two registers.
        a1 = n1.ws("alice")
        rec.wait("online", uid="alice")
        a2 = n2.ws("alice")
        regs = rec.wait("register", count=2, uid="alice")
        self.assertEqual({(e["conn"], e["node"]) for e in regs},
                         {(a1.welcome["conn"], "n1"), (a2.welcome["conn"], "n2")})
        status, _, stats = n3.http("GET", "/api/stats")
        self.assertEqual(status, 200)
        self.assertEqual(stats, {"nodes": 3, "connections": stats["connections"], "users": 1})

        # Join and leave, sent by the node that handled them.
        a2.send_json({"type": "join", "id": 1, "group": "team"})
        self.assertEqual(a2.recv_json()["type"], "ack")
        a2.send_json({"type": "leave", "id": 2, "group": "team"})
        self.assertEqual(a2.recv_json()["type"], "ack")
        rec.wait("join", uid="alice", group="team")
        rec.wait("leave", uid="alice", group="team")

        # Last connection gone: one offline (closed), after two logouts.
        a1.close()
        rec.wait("logout", uid="alice", conn=a1.welcome["conn"])
        time.sleep(0.3)
        self.assertEqual(rec.named("offline", uid="alice"), [])
        a2.close()
        off = rec.wait("offline", uid="alice")
        self.assertEqual(off[0]["reason"], "closed")

        # A node dies with the only connections of carol and dave.
        carol = n3.ws("carol")
        dave = n3.ws("dave")
        rec.wait("online", uid="dave")
        wait_until(lambda: n1.http("GET", "/api/stats")[2]["users"] == 2, 5, what="2 users")
        killed = time.time()
        n3.kill()
        for uid in ("carol", "dave"):
            ev = rec.wait("offline", timeout=NODE_TIMEOUT_MS / 1000 + 4, uid=uid)
            self.assertEqual(ev[0]["reason"], "node_lost")
        arrived = max(t for t, _, body, _ in rec.posts
                      for e in body["events"] if e["name"] == "offline" and e["uid"] == "dave")
        self.assertLess(arrived - killed, NODE_TIMEOUT_MS / 1000 + 2 + 0.5)
        del carol, dave
        wait_until(lambda: n1.http("GET", "/api/stats")[2] == {"nodes": 2, "connections": 0,
                                                               "users": 0},
                   5, what="stats after the kill")

        # Exactly once per transition, every POST signed.
        time.sleep(0.5)
        for uid, n in (("alice", 1), ("carol", 1), ("dave", 1)):
            self.assertEqual(len(rec.named("online", uid=uid)), n, uid)
            self.assertEqual(len(rec.named("offline", uid=uid)), n, uid)
        self.assertTrue(rec.all_signed())
        for ev in rec.accepted():
            self.assertIsInstance(ev["id"], str)
        self.assertEqual(n1.metric("wscluster_webhook_events_total", 'result="dropped"'), 0)


class HostileStoreTest(WebhookBase):
    def test_a_uid_that_is_not_utf8_in_redis_does_not_stop_the_node(self):
        # Found by a probe review: a dead node's binding of a uid that is not
        # UTF-8 (written into the shared Redis by someone else) made the
        # WEBHOOK throw when the node that claimed it reported it offline,
        # and the node stopped. The OFFLINE event is not sent for such a
        # name; the node goes on, and a valid uid of the same node is.
        rec = self.receiver()
        redis = self.start_redis()
        node = self.start_node(self.hook_options(
            rec, "online,offline", **{"node-id": "n1", "state": "redis", "redis": redis.url,
                                      "heartbeat": "%dms" % HEARTBEAT_MS,
                                      "node-timeout": "%dms" % NODE_TIMEOUT_MS}))
        now_ms = int(time.time() * 1000)
        p = b"wscluster"
        redis.command("HSET", p + b":{n:ghost}:h", "listen", "127.0.0.1:1", "cluster",
                      "127.0.0.1:1", "incarnation", "7", "connections", "2",
                      "hb", str(now_ms - 60000))
        redis.command("SADD", p + b":nodes", "ghost")
        for uid in (b"\xff\xfeu", b"valid"):
            redis.command("SADD", p + b":{n:ghost}:nb", b"7," + uid + b",ghost.7.1")
            redis.command("HSET", p + b":{u:" + uid + b"}:b", "ghost.7.1", "ghost|7")
        off = rec.wait("offline", timeout=NODE_TIMEOUT_MS / 1000 + 6, uid="valid")
        self.assertEqual(off[0]["reason"], "node_lost")
        time.sleep(0.5)
        self.assertTrue(node.running(), node.log_tail())
        self.assertEqual(node.http("GET", "/healthz")[0], 200)
        self.assertEqual([e["uid"] for e in rec.named("offline")], ["valid"])

class RetryTest(WebhookBase):
    def test_backend_failing_for_20s_loses_nothing(self):
        rec = self.receiver()
        until = time.time() + 20
        rec.status = lambda: 500 if time.time() < until else 200
        node = self.start_node(self.hook_options(rec, "online,offline,register,logout",
                                                 **{"webhook-retry-base": "100ms"}))
        clients = [node.ws("u%d" % i) for i in range(5)]
        for c in clients:
            c.close()
        wait_until(lambda: len(rec.named("offline")) == 5, 40, what="every event after the outage")
        self.assertEqual(len(rec.named("online")), 5)
        self.assertEqual(len(rec.named("register")), 5)
        self.assertEqual(len(rec.named("logout")), 5)
        self.assertGreater(len([p for p in rec.posts if p[1] == 500]), 3)
        self.assertGreater(node.metric("wscluster_webhook_events_total", 'result="retried"'), 0)
        self.assertEqual(node.metric("wscluster_webhook_events_total", 'result="dropped"'), 0)
        self.assertEqual(node.metric("wscluster_webhook_events_total", 'result="sent"'), 20)
        self.assertTrue(rec.all_signed())

    def test_backend_down_longer_than_the_retry_window_drops_with_metric_and_log(self):
        rec = self.receiver()
        rec.status = lambda: 503
        node = self.start_node(self.hook_options(
            rec, "online,offline",
            **{"webhook-retry-base": "100ms", "webhook-retry-window": "1500ms"}))
        c = node.ws("zed")
        c.close()
        wait_until(lambda: node.metric("wscluster_webhook_events_total", 'result="dropped"') == 2,
                   10, what="both events dropped")
        self.assertIn("webhook: dropped", node.log_text())
        rec.status = lambda: 200
        node.ws("zoe")
        rec.wait("online", uid="zoe")
        self.assertEqual(rec.named("online", uid="zed"), [])


class ChurnTest(WebhookBase):
    def test_a_client_churning_connections_does_not_crowd_out_others_events(self):
        # Found by a probe review: one client churning connections (3,487
        # handshakes/s) filled the 100,000-event queue with its presence
        # events, after which others' events were dropped. In a backlog
        # (`webhook-coalesce-from` queued: 200 here) a uid's presence
        # replaces what is queued of it and a logout cancels its queued
        # register. The backend holds its first answer (a slow backend):
        # everything after it queues.
        rec = self.receiver()
        release = threading.Event()
        rec.hold = lambda: release.wait(9)  # within the node's 10 s POST timeout
        node = self.start_node(self.hook_options(rec, "online,offline,register,logout",
                                                 **{"webhook-coalesce-from": 200}))
        self.addCleanup(release.set)
        node.ws("first")
        wait_until(lambda: len(rec.posts) == 1, 5, what="the held POST")

        stop = threading.Event()
        connections = [0] * 4

        def churn(i):
            while not stop.is_set():
                c = node.ws("churn%d" % i)
                c.close()
                node.clients.remove(c)  # thousands: do not keep them
                connections[i] += 1

        churners = [threading.Thread(target=churn, args=(i,), daemon=True) for i in range(4)]
        for t in churners:
            t.start()
        try:
            coalesced = lambda: node.metric("wscluster_webhook_events_total", 'result="coalesced"')
            # Well past the threshold (4 events per churn), so that without
            # coalescing twice the bound below would queue (~40 churns a
            # second under ASan on a busy box: 250 take ~6 s).
            wait_until(lambda: coalesced() > 0 and sum(connections) > 250, 8.5,
                       what="coalesced events and 250 churns")
            node.ws("other")
            time.sleep(0.3)  # more churn behind other's events
        finally:
            stop.set()
            for t in churners:
                t.join(10)
        release.set()
        rec.wait("online", timeout=15, uid="other")
        rec.wait("register", timeout=15, uid="other")

        # The backend sees each churning uid's net change: offline at last.
        def settled():
            names = lambda uid: [e["name"] for e in rec.accepted() if e["uid"] == uid
                                 and e["name"] in ("online", "offline")]
            return all(names("churn%d" % i)[-1:] == ["offline"] for i in range(4))
        wait_until(settled, 15, what="every churning uid offline")
        churned = [e for e in rec.accepted() if e["uid"].startswith("churn")]
        # The backlog stayed at about 200 events (+100 in flight, + the
        # uids' latest states); 4 per churn were made.
        self.assertLess(len(churned), 500)
        self.assertGreater(sum(connections), 250)
        self.assertEqual(node.metric("wscluster_webhook_events_total", 'result="dropped"'), 0)
        for i in range(4):  # every register has its logout, or both were cancelled
            conns = lambda name: sorted(e["conn"] for e in churned
                                        if e["name"] == name and e["uid"] == "churn%d" % i)
            self.assertEqual(conns("register"), conns("logout"))


    def test_a_client_churning_memberships_does_not_crowd_out_others_events(self):
        # Found by a probe (helper-58): 200 clients alternating join and leave
        # (a join of a group already joined is an event too) pushed 92,977
        # other events out of a full queue. In a backlog a membership's
        # latest state replaces what is queued of it, as a uid's presence.
        rec = self.receiver()
        release = threading.Event()
        rec.hold = lambda: release.wait(9)  # within the node's 10 s POST timeout
        node = self.start_node(self.hook_options(rec, "online,join,leave", **{
            "webhook-coalesce-from": 50, "rate-limit": "0"}))
        self.addCleanup(release.set)
        node.ws("first")
        wait_until(lambda: len(rec.posts) == 1, 5, what="the held POST")

        churner = node.ws("churner")
        frames = 600
        for i in range(1, frames + 1):
            churner.send_json({"type": "join" if i % 2 else "leave", "id": i, "group": "g"})
        self.assertEqual(self.reply_to(churner, frames, timeout=20)["type"], "ack")
        other = node.ws("other")
        other.send_json({"type": "join", "id": 1, "group": "h"})
        self.assertEqual(self.reply_to(other, 1)["type"], "ack")
        release.set()
        rec.wait("join", timeout=15, uid="other")
        rec.wait("online", timeout=15, uid="other")

        def churned():
            return [e for e in rec.accepted() if e.get("uid") == "churner"
                    and e["name"] in ("join", "leave")]
        # The backend ends with the membership's latest state: left.
        wait_until(lambda: [e["name"] for e in churned()][-1:] == ["leave"], 15,
                   what="the churner's last leave")
        # Without coalescing all 600 were posted; in a backlog of ~50 queued
        # (+100 in flight) the membership's newest event replaces the older.
        self.assertLess(len(churned()), 300)
        self.assertGreater(node.metric("wscluster_webhook_events_total",
                                       'result="coalesced"'), 0)


class GracefulStopTest(WebhookBase):
    def test_a_stopping_node_sends_the_offline_events_of_its_clients(self):
        rec = self.receiver()
        node = self.start_node(self.hook_options(rec, "online,offline",
                                                 **{"drain-period": "200ms"}))
        node.ws("sam")
        node.ws("sue")
        rec.wait("online", count=2)
        node.stop()
        self.assertEqual(node.returncode, 0)
        self.assertEqual(sorted((e["uid"], e["reason"]) for e in rec.named("offline")),
                         [("sam", "closed"), ("sue", "closed")])


class UnreadTest(WebhookBase):
    def test_unread_once_none_when_read_none_when_one_device_reads(self):
        rec = self.receiver()
        redis = self.start_redis()
        node = self.start_node(self.hook_options(
            rec, "unread", **{"unread-after": "1s", "state": "redis", "redis": redis.url}))

        def send(to, text):
            status, _, body = node.api_send([to], {"text": text}, wait_ms=2000)
            self.assertEqual(status, 200, body)

        def devices(uid, names):
            """Connects each device and confirms seq 1 (a device counts once
            it has a cursor)."""
            send(uid, "hello")
            result = []
            for name in names:
                c = node.ws(uid, query={"device": name})
                msg = c.wait_for(lambda f: f.get("type") == "message", 5)
                c.send_json({"type": "read", "id": "r", "seq": msg["seq"]})
                self.assertEqual(c.recv_json()["type"], "ack")
                result.append(c)
            return result

        # Only device offline: one unread, with the message's msg_id and seq.
        (phone,) = devices("olly", ["phone"])
        phone.close()
        send("olly", "are you there?")
        ev = rec.wait("unread", timeout=5, uid="olly")
        self.assertEqual(ev[0]["seq"], 2)
        self.assertIsNone(ev[0]["from"])
        self.assertTrue(ev[0]["msg_id"])
        self.assertNotIn("group", ev[0])

        # Read in time: none.
        (laptop,) = devices("rita", ["laptop"])
        send("rita", "read me")
        msg = laptop.wait_for(lambda f: f.get("type") == "message" and f.get("seq") == 2, 5)
        laptop.send_json({"type": "read", "id": "r2", "seq": msg["seq"]})

        # Two devices, one reads: none.
        d1, d2 = devices("tess", ["d1", "d2"])
        send("tess", "one of you")
        msg = d2.wait_for(lambda f: f.get("type") == "message" and f.get("seq") == 2, 5)
        d2.send_json({"type": "read", "id": "r3", "seq": msg["seq"]})

        # No device at all (never read): none.
        send("nina", "nobody reads")
        time.sleep(2.5)
        self.assertEqual(len(rec.named("unread", uid="olly")), 1)
        for uid in ("rita", "tess", "nina"):
            self.assertEqual(rec.named("unread", uid=uid), [], uid)


    def test_in_a_backlog_the_newest_unread_of_a_uid_stands_for_the_others(self):
        # Found by a probe (helper-58): durable copies sent faster than the
        # backend took their `unread` events filled the queue, and others'
        # events were dropped. In a backlog a uid's newest unread replaces
        # what is queued of its unread messages.
        rec = self.receiver()
        release = threading.Event()
        rec.hold = lambda: release.wait(9)  # within the node's 10 s POST timeout
        node = self.start_node(self.hook_options(rec, "online,unread", **{
            "unread-after": "1s", "webhook-coalesce-from": 5}))
        self.addCleanup(release.set)
        status, _, body = node.api_send(["olly"], {"n": 0}, wait_ms=2000)
        self.assertEqual(status, 200, body)
        phone = node.ws("olly", query={"device": "phone"})
        msg = phone.wait_for(lambda f: f.get("type") == "message", 5)
        phone.send_json({"type": "read", "id": "r", "seq": msg["seq"]})
        self.assertEqual(phone.recv_json()["type"], "ack")
        phone.close()
        node.ws("first")
        wait_until(lambda: len(rec.posts) == 1, 5, what="the held POST")
        for n in range(1, 61):
            status, _, body = node.api_send(["olly"], {"n": n}, wait_ms=2000)
            self.assertEqual(status, 200, body)
        wait_until(lambda: node.metric("wscluster_webhook_events_total",
                                       'result="coalesced"') > 0, 10,
                   what="coalesced unread events")
        node.ws("other")
        release.set()
        rec.wait("online", timeout=15, uid="other")
        # The newest message's unread is among what the backend got (seq 61:
        # the first message was seq 1), and far fewer than 60 came.
        wait_until(lambda: any(e["seq"] == 61 for e in rec.named("unread", uid="olly")), 15,
                   what="the unread of the newest message")
        self.assertLess(len(rec.named("unread", uid="olly")), 30)
        self.assertEqual(node.metric("wscluster_webhook_events_total", 'result="dropped"'), 0)


class HttpsTest(WebhookBase):
    def make_cert(self):
        folder = self.make_tempdir()
        cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        return cert, key

    def test_https_with_a_self_signed_ca_and_refused_without_it(self):
        cert, key = self.make_cert()
        rec = self.receiver(certfile=cert, keyfile=key)
        opts = self.hook_options(rec, "online", **{"webhook-ca": cert})
        opts["webhook-url"] = rec.url("https", "localhost")
        node = self.start_node(opts)
        node.ws("tls-user")
        rec.wait("online", uid="tls-user")
        self.assertTrue(rec.all_signed())

        # Without the CA the certificate is not trusted: nothing arrives.
        rec2 = self.receiver(certfile=cert, keyfile=key)
        opts2 = self.hook_options(rec2, "online", **{"webhook-retry-window": "2s"})
        opts2["webhook-url"] = rec2.url("https", "127.0.0.1")
        other = self.start_node(opts2)
        other.ws("untrusted")
        wait_until(lambda: "webhook: POST" in other.log_text(), 5, what="a failed POST logged")
        self.assertIn("handshake", other.log_text())
        self.assertEqual(rec2.accepted(), [])


if __name__ == "__main__":
    unittest.main()

"""Cluster acceptance (issue 3): a real redis-server, three real node
processes, real WebSocket clients.

Nodes heartbeat every 500 ms and are declared down after 2 s of silence, so
failure tests stay short.
"""

import json
import os
import signal
import time
import unittest

from harness import HarnessMixin, Node, free_port, redis_is_cluster, run_binary, wait_until

HEARTBEAT_MS = 500
NODE_TIMEOUT_MS = 2000
AUDIT_BINARY = os.environ.get("WSC_AUDIT_BINARY", "build/examples/wsc-audit-node")


class ClusterBase(HarnessMixin, unittest.TestCase):
    nodes_count = 3

    def node_options(self, i, **extra):
        opts = {
            "node-id": "n%d" % i,
            "state": "redis",
            "redis": self.redis.url,
            "heartbeat": "%dms" % HEARTBEAT_MS,
            "node-timeout": "%dms" % NODE_TIMEOUT_MS,
            "client-broadcast": "true",
        }
        opts.update(extra)
        return opts

    def setUp(self):
        self.redis = self.start_redis()
        self.nodes = [self.start_node(self.node_options(i + 1), name="n%d" % (i + 1))
                      for i in range(self.nodes_count)]
        self.wait_mesh(self.nodes)

    def wait_mesh(self, nodes, timeout=15):
        """Waits until every node lists all of `nodes` and has connected to
        each peer (DISCOVER in its /api/events)."""
        ids = {"n%s" % n.name[1:] for n in nodes}

        def meshed():
            for n in nodes:
                status, _, body = n.http("GET", "/api/nodes")
                if status != 200 or {e["id"] for e in body} != ids:
                    return False
                status, _, events = n.http("GET", "/api/events")
                seen = {e["node"] for e in events if e["event"] == "DISCOVER"}
                if seen != ids - {n.name}:
                    return False
            return True

        wait_until(meshed, timeout, what="every node connected to every peer")

    def events(self, node, kind=None):
        status, _, body = node.http("GET", "/api/events")
        self.assertEqual(status, 200)
        return [e for e in body if kind is None or e["event"] == kind]

    def message_data(self, client, count, timeout):
        """The `data` of the first `count` messages `client` gets."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            f = client.recv_json(max(0.1, deadline - time.monotonic()))
            if f.get("type") == "message":
                got.append(f["data"])
        return got

    def bindings_in_redis(self):
        """Every binding value ("node|incarnation") stored in Redis."""
        values = []
        for key in self.redis.command("KEYS", "wscluster:{u:*}:b") or []:
            values += self.redis.command("HVALS", key) or []
        return values


class ClusterDeliveryTest(ClusterBase):
    def test_send_and_broadcast_cross_nodes(self):
        n1, n2, n3 = self.nodes
        alice = n1.ws("alice")
        carol = n3.ws("carol")
        bob2 = n2.ws("bob")
        bob3 = n3.ws("bob")
        alice.send_json({"type": "send", "id": 1, "to": "carol", "data": {"k": 1}})
        self.assertEqual(alice.wait_for(lambda f: f.get("type") == "ack", 5)["id"], 1)
        got = carol.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual((got["from"], got["to"], got["data"]), ("alice", "carol", {"k": 1}))
        # A uid with connections on two nodes gets the message on both.
        alice.send_json({"type": "send", "id": 2, "to": "bob", "data": "two"})
        for c in (bob2, bob3):
            self.assertEqual(c.wait_for(lambda f: f.get("type") == "message", 5)["data"], "two")
        # Client broadcast and API broadcast reach every client on every node.
        alice.send_json({"type": "broadcast", "id": 3, "data": "all"})
        for c in (alice, carol, bob2, bob3):
            f = c.wait_for(lambda f: f.get("type") == "broadcast", 5)
            self.assertEqual((f["from"], f["data"]), ("alice", "all"))
        status, _, body = n2.http("POST", "/api/broadcast", {"data": "api"})
        self.assertEqual((status, body), (200, {"ok": True}))
        for c in (alice, carol, bob2, bob3):
            f = c.wait_for(lambda f: f.get("type") == "broadcast", 5)
            self.assertEqual((f["from"], f["data"]), (None, "api"))

    def test_api_send_on_another_node(self):
        n1, n2, _ = self.nodes
        dave = n1.ws("dave")
        status, _, body = n2.api_send(["dave"], {"via": "n2"})
        self.assertTrue(body.pop("msg_id"))  # durable: its msg_id (issue 16)
        self.assertEqual((status, body), (200, {"ok": True}))
        f = dave.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual((f["from"], f["data"]), (None, {"via": "n2"}))
        # Presence and /api/nodes answer the same on every node.
        for n in self.nodes:
            self.assertEqual(n.presence(["dave", "nobody"]), {"dave": True, "nobody": False})
            status, _, nodes = n.http("GET", "/api/nodes")
            self.assertEqual(sorted(e["id"] for e in nodes), ["n1", "n2", "n3"])
            for e in nodes:
                self.assertEqual(set(e), {"id", "listen", "cluster", "connections",
                                          "last_heartbeat_ms"})

    def test_thousand_messages_arrive_complete_and_in_order(self):
        n1, n2, _ = self.nodes
        sender = n1.ws("sender")
        receiver = n2.ws("receiver")
        count = 1000
        # Stay under the default rate limit (100/s, burst 200): pace the sends.
        for i in range(count):
            sender.send_json({"type": "send", "to": "receiver", "data": i})
            if i % 150 == 149:
                time.sleep(1.6)
        self.assertEqual(self.message_data(receiver, count, 30), list(range(count)))


class ClusterLargeMessagesTest(ClusterBase):
    nodes_count = 2

    def node_options(self, i, **extra):
        big = {"max-message-bytes": 1 << 20, "rate-limit": 0, "volatile-types": "send",
               "send-queue-bytes": 64 << 20,
               # The pause below must not look like a lost node (the
               # heartbeat check and BASP's connection-timeout).
               "node-timeout": "10s"}
        big.update(extra)
        return super().node_options(i, **big)

    def test_a_burst_of_large_messages_crosses_intact_and_in_order(self):
        # 24 x ~900 KB while the receiving node is paused fill the cluster
        # connection's socket: write_through_scribe sends what the socket
        # takes at once and leaves the rest to CAF's stream; later bytes
        # must never overtake (BASP would see garbage and drop the
        # connection, losing messages).
        n1, n2 = self.nodes
        sender = n1.ws("sender")
        receiver = n2.ws("receiver")
        count = 24
        payload = lambda i: ("%04d" % i) * 225000
        os.kill(n2.pid, signal.SIGSTOP)
        try:
            for i in range(count):
                sender.send_json({"type": "send", "id": i, "to": "receiver", "data": payload(i)})
            acks = [sender.wait_for(lambda f, i=i: f.get("id") == i, 10) for i in range(count)]
            time.sleep(0.3)
        finally:
            os.kill(n2.pid, signal.SIGCONT)
        self.assertEqual([a["type"] for a in acks], ["ack"] * count)
        got = self.message_data(receiver, count, 60)
        self.assertEqual(len(got), count)
        for i, data in enumerate(got):
            self.assertEqual(data, payload(i), "message %d" % i)


class ClusterFailureTest(ClusterBase):
    def stop_redis(self, node):
        """Stops Redis; returns its port once `node` reports it unhealthy."""
        port = self.redis.port
        self.redis.stop()
        wait_until(lambda: node.http("GET", "/healthz")[0] == 503, 10,
                   what="/healthz 503 while Redis is down")
        return port

    def restart_redis(self, port, *nodes):
        """An empty Redis on `port`; returns it once every node is healthy."""
        redis = self.start_redis(port=port)
        for n in nodes:
            wait_until(lambda: n.http("GET", "/healthz")[0] == 200, 15,
                       what="/healthz 200 after Redis returned on %s" % n.name)
        return redis

    def test_kill_9_is_detected_once_and_cleaned(self):
        n1, n2, n3 = self.nodes
        n1.ws("alice")
        erin = n3.ws("erin")
        n3.ws("frank")
        erin.send_json({"type": "join", "id": 1, "group": "g"})
        erin.wait_for(lambda f: f.get("type") == "ack", 5)
        self.assertTrue(n1.presence(["erin"])["erin"])
        killed_at = time.monotonic()
        n3.kill()
        limit = (NODE_TIMEOUT_MS + HEARTBEAT_MS) / 1000.0 + 2.0  # + scheduling slack
        for n in (n1, n2):
            wait_until(lambda: any(e["node"] == "n3" and e.get("reason") == "timeout"
                                   for e in self.events(n, "SHUTDOWN")),
                       limit + 5, what="SHUTDOWN(timeout) of n3 on %s" % n.name)
        detected = time.monotonic() - killed_at
        self.assertLessEqual(detected, limit + 1.0, "detection took %.1fs" % detected)
        for n in (n1, n2):
            shutdowns = [e for e in self.events(n, "SHUTDOWN") if e["node"] == "n3"]
            self.assertEqual(len(shutdowns), 1, shutdowns)
            self.assertEqual(n.presence(["erin", "frank", "alice"]),
                             {"erin": False, "frank": False, "alice": True})
            status, _, nodes = n.http("GET", "/api/nodes")
            self.assertEqual(sorted(e["id"] for e in nodes), ["n1", "n2"])
        self.assertFalse(any(v.startswith("n3|") for v in self.bindings_in_redis()))
        # Persistent groups (the default) outlive the node; session groups
        # end with it (test_groups_persistent.SessionGroupsTest).
        self.assertEqual(self.redis.command("SMEMBERS", "wscluster:{g:g}:m"), ["erin"])
        self.assertEqual(self.redis.command("KEYS", "wscluster:*n3*"), [])
        # Exactly one survivor did the cleanup.
        cleaners = [n.name for n in (n1, n2) if "declared down" in n.log_text()]
        self.assertEqual(len(cleaners), 1, cleaners)

    def test_a_second_node_with_a_live_node_id_does_not_start(self):
        # Two live nodes with one id renew one entry and take each other's
        # deliveries: the second is refused. A node restarted right after a
        # crash (its entry still fresh, its heartbeat stopped) starts.
        n1, n2, n3 = self.nodes
        alice = n1.ws("alice")
        twin = run_binary(dict(self.node_options(1), listen="127.0.0.1:%d" % free_port()),
                          timeout=30)
        self.assertNotEqual(twin.returncode, 0, twin.stderr[-2000:])
        self.assertIn("in use by a live node", twin.stdout + twin.stderr)
        n2.ws("bob").send_json({"type": "send", "id": 1, "to": "alice", "data": "still here"})
        self.assertEqual(alice.wait_for(lambda f: f.get("type") == "message", 10)["data"],
                         "still here")
        n1.kill()
        started = time.monotonic()
        again = self.start_node(self.node_options(1), name="n1")
        self.assertLess(time.monotonic() - started, 15)
        again.ws("alice2").send_json({"type": "ping", "id": 1})
        self.assertIn("checking that its node is gone", again.log_text())

    def test_graceful_stop_tells_peers_at_once(self):
        n1, n2, n3 = self.nodes
        client = n2.ws("gina")
        started = time.monotonic()
        n2.signal(signal.SIGTERM)
        bye = client.wait_for(lambda f: f.get("type") == "bye", 5)
        self.assertEqual(bye["reason"], "shutdown")
        client.wait_closed(10)
        self.assertEqual(client.close_code, 1001)
        self.assertEqual(n2.wait(15), 0)
        for n in (n1, n3):
            wait_until(lambda: any(e["node"] == "n2" and e.get("reason") == "graceful"
                                   for e in self.events(n, "SHUTDOWN")),
                       5, what="SHUTDOWN(graceful) of n2 on %s" % n.name)
        # Graceful means no wait for a heartbeat timeout.
        self.assertLess(time.monotonic() - started, NODE_TIMEOUT_MS / 1000.0 + 1.5)
        self.assertFalse(any(v.startswith("n2|") for v in self.bindings_in_redis()))
        self.assertFalse(n1.presence(["gina"])["gina"])

    @unittest.skipIf(redis_is_cluster(), "one redis-server stopped and restarted on its "
                     "port; failover of a Redis Cluster is tested elsewhere")
    def test_redis_outage_and_recovery(self):
        n1, n2, _ = self.nodes
        a = n1.ws("ann")
        b = n1.ws("ben")
        c = n2.ws("cid")
        port = self.stop_redis(n1)
        down_since = time.monotonic()
        # Local delivery goes on; an operation needing Redis says unavailable.
        a.send_json({"type": "send", "id": 1, "to": "ben", "data": "local"})
        reply = a.wait_for(lambda f: f.get("id") == 1, 10)
        got = b.wait_for(lambda f: f.get("type") == "message", 10)
        self.assertEqual(got["data"], "local")
        self.assertIn(reply["type"], ("ack", "error"))
        if reply["type"] == "error":
            self.assertEqual(reply["code"], "unavailable")
        a.send_json({"type": "members", "id": 2, "group": "x"})
        reply = a.wait_for(lambda f: f.get("id") == 2, 10)
        self.assertEqual((reply["type"], reply.get("code")), ("error", "unavailable"))
        time.sleep(max(0.0, 5.0 - (time.monotonic() - down_since)))
        # Redis comes back empty (no persistence): nodes write everything back.
        redis2 = self.restart_redis(port, n1, n2)
        wait_until(lambda: n2.presence(["ann", "ben", "cid"])
                   == {"ann": True, "ben": True, "cid": True}, 10,
                   what="every connected uid written back")
        c.send_json({"type": "send", "id": 3, "to": "ann", "data": "after"})
        self.assertEqual(a.wait_for(lambda f: f.get("type") == "message", 10)["data"], "after")
        self.assertTrue(redis2.command("PING") == "PONG")

    @unittest.skipIf(redis_is_cluster(), "one redis-server stopped and restarted on its port")
    def test_peer_lost_while_redis_is_down(self):
        # A peer's link breaks while Redis is away: DISCOVERY asks the store
        # for the nodes at once, which fails. That failure once ended the
        # DISCOVERY actor (no error handler), and with it the node.
        n1, n2, n3 = self.nodes
        kim = n1.ws("kim")
        lou = n2.ws("lou")
        port = self.stop_redis(n1)
        n3.kill()
        time.sleep(1.5)
        self.assertTrue(n1.running() and n2.running(), "a node stopped")
        self.restart_redis(port, n1, n2)
        wait_until(lambda: n1.presence(["kim", "lou"]) == {"kim": True, "lou": True}, 10,
                   what="the bindings written back")
        self.assertDelivers(kim, lou, "lou", "after")

    def test_lost_store_data_is_written_back(self):
        # Redis loses its data without the connection ever failing (a fast
        # restart without persistence, a FLUSHALL): the next heartbeat sees
        # the node's entry gone and the node writes its bindings back.
        n1, n2, _ = self.nodes
        n1.ws("ivy")
        joe = n2.ws("joe")
        self.assertEqual(self.redis.command("FLUSHALL"), "OK")
        wait_until(lambda: n2.presence(["ivy", "joe"]) == {"ivy": True, "joe": True},
                   5, what="bindings written back after FLUSHALL")
        wait_until(lambda: all(len(n.http("GET", "/api/nodes")[2]) == 3 for n in self.nodes),
                   5, what="node entries back after FLUSHALL")
        status, _, _ = n1.api_send(["joe"], "again")
        self.assertEqual(status, 200)
        self.assertEqual(joe.wait_for(lambda f: f.get("type") == "message", 5)["data"],
                         "again")
        # Nobody died: a store that forgot the nodes is no SHUTDOWN.
        for n in self.nodes:
            self.assertEqual(self.events(n, "SHUTDOWN"), [])


@unittest.skipIf(redis_is_cluster(), "SIGSTOP and SCRIPT FLUSH of one redis-server")
class StoreConnectionTest(ClusterBase):
    """The STORE's connection to a Redis that hangs or forgets our scripts
    (with scheduler-policy=loop it is a non-blocking pipeline on event loop
    0, so a hung Redis must neither stall the loop nor leave requests
    waiting forever)."""
    nodes_count = 2

    def test_hung_redis_times_out_without_stalling_the_node(self):
        n1, n2 = self.nodes
        hana = n1.ws("hana")
        hugo = n2.ws("hugo")
        self.assertDelivers(hana, hugo, "hugo", "before")
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            hana.send_json({"type": "send", "id": 2, "to": "hugo", "data": "stalled"})
            # The node answers HTTP at once meanwhile (nothing waits on Redis
            # on its event loops).
            for _ in range(5):
                t = time.monotonic()
                status, _, _ = n1.http("GET", "/healthz", timeout=2.0)
                self.assertIn(status, (200, 503))
                self.assertLess(time.monotonic() - t, 1.0, "/healthz stalled")
                time.sleep(0.1)
            # The send is answered within the Redis I/O timeout (2 s with
            # request-timeout 5 s), not left to the 5 s request timeout.
            reply = hana.wait_for(lambda f: f.get("id") == 2, 10)
            elapsed = time.monotonic() - started
            self.assertEqual((reply["type"], reply.get("code")), ("error", "unavailable"),
                             reply)
            self.assertLess(elapsed, 4.0, reply)
            wait_until(lambda: n1.http("GET", "/healthz")[0] == 503, 10,
                       what="/healthz 503 while Redis hangs")
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        for n in self.nodes:
            wait_until(lambda: n.http("GET", "/healthz")[0] == 200, 15,
                       what="/healthz 200 after Redis went on, on %s" % n.name)
        hana.send_json({"type": "send", "id": 3, "to": "hugo", "data": "after"})
        self.assertEqual(hana.wait_for(lambda f: f.get("id") == 3, 5)["type"], "ack")
        self.assertEqual(hugo.wait_for(lambda f: f.get("data") == "after", 5)["data"],
                         "after")

    @unittest.skipIf("scheduler-policy=sharing" in os.environ.get("WSC_TEST_NODE_OPTIONS", ""),
                     "the thread STORE notices a closed connection on its next use")
    def test_connection_closed_while_idle_is_replaced_at_once(self):
        n1, n2 = self.nodes
        kim = n1.ws("kim")
        lee = n2.ws("lee")
        # Redis drops every client connection (a restart, an idle timeout, a
        # proxy): the STORE watches its socket while idle, reconnects within
        # its retry interval, and the next send finds a working connection.
        self.assertGreaterEqual(self.redis.command("CLIENT", "KILL", "TYPE", "normal"), 1)
        time.sleep(1.0)
        kim.send_json({"type": "send", "id": 1, "to": "lee", "data": "after kill"})
        reply = kim.wait_for(lambda f: f.get("id") == 1, 5)
        self.assertEqual(reply["type"], "ack", reply)
        self.assertEqual(lee.wait_for(lambda f: f.get("type") == "message", 5)["data"],
                         "after kill")

    def test_lost_scripts_are_reloaded(self):
        n1, n2 = self.nodes
        ivy = n1.ws("ivy")
        self.assertEqual(self.redis.command("SCRIPT", "FLUSH"), "OK")
        # Every write is a script: a new binding and a durable send run
        # EVALSHA, get NOSCRIPT, and run again after the scripts are loaded.
        jan = n2.ws("jan")
        jan.send_json({"type": "send", "id": 1, "to": "ivy", "data": "reloaded"})
        self.assertEqual(jan.wait_for(lambda f: f.get("id") == 1, 5)["type"], "ack")
        got = ivy.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual((got["data"], got["seq"]), ("reloaded", 1))
        self.assertTrue(n1.presence(["jan"])["jan"])
        self.assertIn("NOSCRIPT", n2.log_text())


class ClusterEventsTest(ClusterBase):
    nodes_count = 0

    def test_event_actors_see_discover_shutdown_register_logout(self):
        audit_nodes = [self.start_node(self.node_options(i), name="n%d" % i,
                                       binary=self.audit_binary())
                       for i in (1, 2)]
        self.wait_mesh(audit_nodes)
        n1, n2 = audit_nodes
        c = n1.ws("hana")
        c.close()
        n2.signal(signal.SIGTERM)
        self.assertEqual(n2.wait(15), 0)

        def audit_lines(node):
            lines = []
            for line in node.log_text().splitlines():
                if line.startswith("{"):
                    lines.append(json.loads(line))
            return lines

        wait_until(lambda: any(e["event"] == "SHUTDOWN" for e in audit_lines(n1)), 5,
                   what="SHUTDOWN seen by the event actor of n1")
        lines = audit_lines(n1)
        kinds = [(e["event"], e.get("node"), e.get("uid"), e.get("reason")) for e in lines]
        self.assertIn(("DISCOVER", "n2", None, None), kinds)
        self.assertIn(("REGISTER", "n1", "hana", None), kinds)
        wait_until(lambda: ("LOGOUT", "n1", "hana", None) in
                   [(e["event"], e.get("node"), e.get("uid"), e.get("reason"))
                    for e in audit_lines(n1)], 5, what="LOGOUT of hana")
        self.assertIn(("SHUTDOWN", "n2", None, "graceful"), kinds)
        self.assertEqual(sum(1 for k in kinds if k[0] == "SHUTDOWN"), 1)
        self.assertIn(("DISCOVER", "n1", None, None),
                      [(e["event"], e.get("node"), e.get("uid"), e.get("reason"))
                       for e in audit_lines(n2)])

    def audit_binary(self):
        path = AUDIT_BINARY
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(__file__), "..", "..", path)
        return os.path.abspath(path)


if __name__ == "__main__":
    unittest.main()

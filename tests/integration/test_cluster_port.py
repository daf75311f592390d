"""Strangers on `cluster-listen` (the BASP port between nodes).

* A connection that sends no handshake is closed after `node-timeout`; one
  address holds at most 8 such connections (a newcomer displaces its
  oldest), so idle connections cannot take a node's descriptors and a real
  peer still gets in. A first message that is not the client's handshake
  with a payload (a valid heartbeat, a server's handshake without payload,
  which crashed CAF) closes the connection.
* With mutual TLS a silent connection costs no CPU (CAF's openssl module
  polled it for writing in a busy loop: one core per node).
* Out of descriptors, the cluster port sheds new connections instead of
  retrying accept() in a busy loop.

Only 127.0.0.0/8 is used.
"""

import os
import re
import shutil
import socket
import struct
import time
import unittest

from harness import HarnessMixin, cpu_seconds, fd_limited_binary, wait_until
from test_security import make_pki

#: Connections without a handshake one address may hold (net/pending_peers.hpp).
PER_ADDRESS = 8


def cluster_port(node):
    return int(wait_until(lambda: re.search(r"cluster=127\.0\.0\.1:(\d+)", node.log_text()),
                          10, what="the node's cluster address in its log").group(1))


def closed_by_peer(sock, timeout=0.05):
    """Whether the node closed `sock` (EOF or reset), after what it sent (a
    plain node sends its BASP handshake first)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def cpu_share(pid, seconds):
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


class ClusterPortMixin(HarnessMixin):
    NODE_TIMEOUT = "4s"
    TLS = False

    def setUp(self):
        if self.TLS and shutil.which("openssl") is None:
            self.fail("the openssl command is needed to make test certificates")
        self.redis = self.start_redis()
        self.pki = make_pki(self.make_tempdir()) if self.TLS else None

    def node_options(self, node_id, node_timeout=None):
        opts = {"node-id": node_id, "state": "redis", "redis": self.redis.url,
                "heartbeat": "500ms", "node-timeout": node_timeout or self.NODE_TIMEOUT,
                "cluster-listen": "127.0.0.1:0"}
        if self.TLS:
            opts.update({"cluster-tls-cert": os.path.join(self.pki, node_id + ".pem"),
                         "cluster-tls-key": os.path.join(self.pki, node_id + ".key"),
                         "cluster-tls-ca": os.path.join(self.pki, "ca1.pem")})
        return opts

    def silent_connections(self, port, count, source="127.0.0.1"):
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((source, 0))
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))
            socks.append(sock)
        return socks

    def delivered(self, frm, to, uid):
        rx = to.ws(uid)
        tx = frm.ws("sender-" + uid)

        def once():
            tx.send_json({"type": "send", "to": uid, "data": "across"})
            return [f for f in rx.collect(0.3) if f.get("type") == "message"]

        return wait_until(once, 15, interval=0.2, what="a delivery from %s to %s" % (frm.name, to.name))

    def test_silent_connections_are_bounded_per_address_and_timed_out(self):
        n1 = self.start_node(self.node_options("n1"), name="n1")
        port = cluster_port(n1)
        socks = self.silent_connections(port, 3 * PER_ADDRESS)
        open_ = wait_until(lambda: (lambda o: o if len(o) <= PER_ADDRESS else None)(
            [s for s in socks if not closed_by_peer(s)]), 3,
            what="at most %d silent connections from one address left open" % PER_ADDRESS)
        # The newest stay; after node-timeout (4 s) they are gone too.
        self.assertEqual(open_, socks[-PER_ADDRESS:])
        wait_until(lambda: all(closed_by_peer(s) for s in open_), 8,
                   what="silent connections closed after node-timeout")

    def test_a_peer_joins_while_strangers_hold_connections(self):
        # Of two nodes the one with the smaller id dials: n1 dials n2.
        opts = lambda node_id: self.node_options(node_id, node_timeout="10s")
        n2 = self.start_node(opts("n2"), name="n2")
        port = cluster_port(n2)
        strangers = self.silent_connections(port, PER_ADDRESS)
        n1 = self.start_node(opts("n1"), name="n1")
        self.assertTrue(self.delivered(n2, n1, "bob"))
        self.assertTrue(self.delivered(n1, n2, "carol"))
        # n1's connection displaced the oldest stranger (all from 127.0.0.1),
        # long before the strangers' 10 s were up.
        self.assertTrue(closed_by_peer(strangers[0]), "no stranger was displaced")

class PlainClusterPortTest(ClusterPortMixin, unittest.TestCase):

    def test_one_address_opens_at_most_a_burst_of_connections(self):
        # 10 a second, 100 at once (net/cluster_guard.hpp): each accepted
        # connection costs a TLS node a key exchange and a signature. A
        # plain node greets an accepted connection with its BASP handshake
        # (then closes all but 8 of them: they send nothing); one refused
        # at accept is closed without a word.
        n1 = self.start_node(self.node_options("n1"), name="n1")
        port = cluster_port(n1)
        socks = self.silent_connections(port, 160, source="127.0.3.1")

        def greeted(sock):
            sock.settimeout(2)
            try:
                return len(sock.recv(65536)) > 0
            except OSError:
                return False

        accepted = sum(1 for sock in socks if greeted(sock))
        self.assertGreaterEqual(accepted, 90)
        self.assertLessEqual(accepted, 130, "one address opened %d of 160 connections "
                             "at once" % accepted)
        # Other addresses are not affected.
        self.assertTrue(greeted(self.silent_connections(port, 1, source="127.0.3.2")[0]))

    def test_a_first_message_other_than_a_clients_handshake_closes_the_connection(self):
        # A valid heartbeat (no payload), a server's handshake without
        # payload (CAF 0.17.6 dereferences the missing payload: the node
        # crashed, helper-49) or with one, a client's handshake without
        # payload: each as the first message of a connection.
        n1 = self.start_node(self.node_options("n1"), name="n1")
        port = cluster_port(n1)

        def header(op, payload_len):
            return struct.pack(">BBBBIQQQ", op, 0, 0, 0, payload_len, 0xdeadbeef, 7, 9)

        firsts = [header(6, 0), header(0, 0), header(0, 8) + os.urandom(8), header(1, 0)]
        for first in firsts:
            socks = self.silent_connections(port, 2)
            for sock in socks:
                sock.sendall(first)
            wait_until(lambda: all(closed_by_peer(s) for s in socks), 3,
                       what="connections that began with %r closed" % first[:8])
            self.assertTrue(n1.running(), "the node died of %r" % first[:8])
        self.assertEqual(n1.http("GET", "/healthz")[0], 200)

    def test_out_of_descriptors_the_cluster_port_does_not_spin(self):
        if os.environ.get("ASAN_OPTIONS") or os.environ.get("UBSAN_OPTIONS"):
            self.skipTest("descriptor exhaustion breaks the sanitizer runtime")
        wrapper = fd_limited_binary(self.make_tempdir(), 96)
        opts = dict(self.node_options("n1"), **{"node-timeout": "10s", "heartbeat": "1s"})
        n1 = self.start_node(opts, name="n1", binary=wrapper)
        port = cluster_port(n1)
        # From 20 addresses, 6 each: more than the node has descriptors for.
        strangers = []
        for i in range(20):
            strangers += self.silent_connections(port, 6, source="127.0.0.%d" % (10 + i))
        time.sleep(0.5)
        share = cpu_share(n1.pid, 2.0)
        self.assertLess(share, 0.3, "node used %.2f cores while out of descriptors" % share)
        self.assertIn("no file descriptor left: accepting paused", n1.log_text())
        # Once they are gone the port accepts at full speed again: each new
        # connection gets the node's BASP handshake at once.
        for sock in strangers:
            sock.close()
        time.sleep(1.5)
        fresh = [self.silent_connections(port, 1, source="127.0.1.%d" % (10 + i))[0]
                 for i in range(20)]
        deadline = time.monotonic() + 3
        for sock in fresh:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.assertTrue(sock.recv(1), "connection closed instead of greeted")
            except socket.timeout:
                self.fail("the cluster port did not greet 20 new connections within 3 s "
                          "after the descriptors came back")


class TlsClusterPortTest(ClusterPortMixin, unittest.TestCase):
    TLS = True

    def test_a_silent_connection_costs_no_cpu(self):
        n1 = self.start_node(self.node_options("n1"), name="n1")
        port = cluster_port(n1)
        self.silent_connections(port, 1)
        time.sleep(0.3)
        share = cpu_share(n1.pid, 1.5)
        self.assertLess(share, 0.3, "node used %.2f cores for one silent TLS connection" % share)

    def test_a_large_message_crosses_tls_whole(self):
        # 3 MB: many TLS records, partial writes and reads beyond one record.
        opts = lambda node_id: dict(self.node_options(node_id), **{"max-message-bytes": "4194304",
                                                                  "max-fanout-bytes": "8388608"})
        n1 = self.start_node(opts("n1"), name="n1")
        n2 = self.start_node(opts("n2"), name="n2")
        self.assertTrue(self.delivered(n1, n2, "bob"))
        rx = n2.ws("dave")
        tx = n1.ws("erin")
        payload = "".join(chr(0x61 + (i * 7) % 26) for i in range(3 * 1000 * 1000))
        tx.send_json({"type": "send", "id": 1, "to": "dave", "data": payload})
        frame = rx.wait_for(lambda f: f.get("type") == "message", 15)
        self.assertEqual(frame["data"], payload)


if __name__ == "__main__":
    unittest.main()

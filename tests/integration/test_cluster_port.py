"""Strangers on `cluster-listen` (the BASP port between nodes).

* A connection that sends no handshake is closed after `node-timeout`; one
  address holds at most 8 such connections (a newcomer displaces its
  oldest), so idle connections cannot take a node's descriptors and a real
  peer still gets in.
* With mutual TLS a silent connection costs no CPU (CAF's openssl module
  polled it for writing in a busy loop: one core per node).
* Out of descriptors, the cluster port sheds new connections instead of
  retrying accept() in a busy loop.

Only 127.0.0.0/8 is used.
"""

import os
import re
import socket
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
    NODE_TIMEOUT = "2s"
    TLS = False

    def setUp(self):
        self.redis = self.start_redis()
        self.pki = make_pki(self.make_tempdir()) if self.TLS else None

    def node_options(self, node_id):
        opts = {"node-id": node_id, "state": "redis", "redis": self.redis.url,
                "heartbeat": "500ms", "node-timeout": self.NODE_TIMEOUT,
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
        time.sleep(0.5)
        open_ = [s for s in socks if not closed_by_peer(s)]
        self.assertEqual(len(open_), PER_ADDRESS,
                         "silent connections from one address left open")
        # The newest stay; after node-timeout they are gone too.
        self.assertEqual(open_, socks[-PER_ADDRESS:])
        wait_until(lambda: all(closed_by_peer(s) for s in open_), 6,
                   what="silent connections closed after node-timeout (2s)")

    def test_a_peer_joins_while_strangers_hold_connections(self):
        n1 = self.start_node(self.node_options("n1"), name="n1")
        port = cluster_port(n1)
        self.silent_connections(port, PER_ADDRESS)
        n2 = self.start_node(self.node_options("n2"), name="n2")
        self.assertTrue(self.delivered(n2, n1, "bob"))
        self.assertTrue(self.delivered(n1, n2, "carol"))


class PlainClusterPortTest(ClusterPortMixin, unittest.TestCase):

    def test_out_of_descriptors_the_cluster_port_does_not_spin(self):
        if os.environ.get("ASAN_OPTIONS") or os.environ.get("UBSAN_OPTIONS"):
            self.skipTest("descriptor exhaustion breaks the sanitizer runtime")
        wrapper = fd_limited_binary(self.make_tempdir(), 96)
        opts = dict(self.node_options("n1"), **{"node-timeout": "10s", "heartbeat": "1s"})
        n1 = self.start_node(opts, name="n1", binary=wrapper)
        port = cluster_port(n1)
        # From 20 addresses, 6 each: more than the node has descriptors for.
        for i in range(20):
            self.silent_connections(port, 6, source="127.0.0.%d" % (10 + i))
        time.sleep(0.5)
        share = cpu_share(n1.pid, 2.0)
        self.assertLess(share, 0.3, "node used %.2f cores while out of descriptors" % share)
        self.assertIn("no file descriptor left", n1.log_text())


class TlsClusterPortTest(ClusterPortMixin, unittest.TestCase):
    TLS = True

    def test_a_silent_connection_costs_no_cpu(self):
        n1 = self.start_node(self.node_options("n1"), name="n1")
        port = cluster_port(n1)
        self.silent_connections(port, 1)
        time.sleep(0.3)
        share = cpu_share(n1.pid, 1.5)
        self.assertLess(share, 0.3, "node used %.2f cores for one silent TLS connection" % share)


if __name__ == "__main__":
    unittest.main()

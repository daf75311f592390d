"""A client that never reads is closed once its send queue overflows
(--send-queue-limit), while a normal reader on the same node keeps getting
every message, in order. The other direction: a node reads at most a few
frames of a client ahead of their answers.

Run: /usr/bin/python3 -m unittest tests/integration/test_slow_reader.py
"""

import os
import signal
import socket
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



def server_sockets(node_port, client_port):
    """(state, bytes not yet acknowledged) of each of the node's sockets to
    ``client_port`` on 127.0.0.1, from /proc/net/tcp."""
    found = []
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if (int(local.split(":")[1], 16) == node_port
                    and int(remote.split(":")[1], 16) == client_port):
                found.append((state, int(fields[4].split(":")[0], 16)))
    return found


class KernelBytesTest(HarnessMixin, unittest.TestCase):
    """What the kernel holds for a client that reads nothing is bounded too,
    and does not outlive the connection (helper-44's probe: 3.9 MB per
    socket, kept in FIN-WAIT-1 after the node closed it, outside every
    budget: 554 MB in 200 closed sockets of one address)."""

    def flood_until_closed(self, node):
        """Pushes 60 KB messages to a client that reads nothing until the
        node closes it; returns the most bytes the kernel held for it and
        the client's port."""
        slow = node.ws(uid="slow", rcvbuf=4096, timeout=10)
        client_port = slow.sock.getsockname()[1]
        held = 0
        deadline = time.monotonic() + PUSH_TIME_LIMIT
        for i in range(200):
            if time.monotonic() > deadline or not node.presence(["slow"])["slow"]:
                break
            status, _, body = node.api_send(["slow"], {"i": i, "pad": PAD})
            self.assertEqual(status, 200, body)
            held = max([held] + [q for _, q in server_sockets(node.port, client_port)])
        wait_until(lambda: not node.presence(["slow"])["slow"], 10, 0.1,
                   "the node to close the reader past send-queue-bytes")
        return held, client_port

    def assert_nothing_left(self, node, client_port):
        # Closed for reading nothing (1008): reset, nothing left behind.
        wait_until(lambda: all(q == 0 for _, q in server_sockets(node.port, client_port)),
                   5, 0.1, "the closed socket to drop its unsent bytes")
        status, _, body = node.http("GET", "/healthz")
        self.assertEqual(status, 200, body)

    def test_a_non_reader_holds_little_in_the_kernel_and_nothing_once_closed(self):
        node = self.start_node()
        held, client_port = self.flood_until_closed(node)
        # socket-send-buffer 262144: Linux doubles it (capped by wmem_max);
        # the kernel's autotuning took ~4 MB.
        self.assertLess(held, 1000000, "bytes the kernel held for the client")
        self.assert_nothing_left(node, client_port)

    def test_with_autotuned_buffers_a_closed_socket_keeps_nothing_either(self):
        node = self.start_node({"socket-send-buffer": 0})
        held, client_port = self.flood_until_closed(node)
        self.assertGreater(held, 1000000, "autotuning should have let the kernel hold more")
        self.assert_nothing_left(node, client_port)

    def test_a_peer_that_closes_and_reads_nothing_leaves_nothing_for_long(self):
        # The cheapest way to park bytes: a close frame, then no reading.
        # The node answers it into the kernel and closes; without a bound
        # the kernel kept the unread bytes ~50 s (zero-window probes).
        node = self.start_node()
        quiet = node.ws(uid="quiet", rcvbuf=4096, timeout=10)
        client_port = quiet.sock.getsockname()[1]
        for i in range(4):
            status, _, body = node.api_send(["quiet"], {"i": i, "pad": PAD})
            self.assertEqual(status, 200, body)
        wait_until(lambda: any(q > 200000 for _, q in server_sockets(node.port, client_port)),
                   5, 0.05, "the kernel to hold what the client does not read")
        quiet.send_close(1000)
        wait_until(lambda: not node.presence(["quiet"])["quiet"], 5, 0.05,
                   "the node to answer the close")
        started = time.monotonic()
        wait_until(lambda: all(q == 0 for _, q in server_sockets(node.port, client_port)),
                   8, 0.1, "the closed socket to drop the bytes its peer does not take")
        self.assertLess(time.monotonic() - started, 8)

    def silent_http_client(self, node):
        """A plain TCP client of the node with a tiny receive buffer that
        reads nothing; returns it and its port."""
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect((node.host, node.port))
        self.addCleanup(client.close)
        return client, client.getsockname()[1]

    def test_an_http_client_that_reads_nothing_leaves_nothing_for_long(self):
        # The same over plain HTTP: answers the client never took stayed in
        # the kernel after the node closed the socket.
        node = self.start_node()
        client, client_port = self.silent_http_client(node)
        # Pipelined answers of ~6 KB each that nobody reads; the last one
        # asks the node to close.
        request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        client.sendall(request * 20 + request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        wait_until(lambda: any(q > 20000 for _, q in server_sockets(node.port, client_port)),
                   5, 0.05, "the kernel to hold answers the client does not read")
        # Answers asked for before the end get 10 s without progress.
        wait_until(lambda: all(q == 0 for _, q in server_sockets(node.port, client_port)),
                   25, 0.1, "the closed socket to drop the answers its peer does not take")

    def test_a_pipelining_http_client_that_reads_nothing_is_reset(self):
        # Keep-alive: the answers fill the socket, the write meets its
        # deadline (10 s) and Beast closes the socket itself: it must reset.
        node = self.start_node()
        client, client_port = self.silent_http_client(node)
        client.settimeout(5)
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
        wait_until(lambda: any(q > 200000 for _, q in server_sockets(node.port, client_port)),
                   10, 0.05, "the kernel to fill with answers the client does not read")
        wait_until(lambda: all(q == 0 for _, q in server_sockets(node.port, client_port)),
                   20, 0.1, "the socket to be reset at the write deadline")


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

"""Hardening of the network front (issue 13): one test per defence, each
written so that it fails when its defence is removed.

* F10 static files: a target without a leading ``/`` is not appended to
  web-root (``GET -secret/x`` read ``<web-root>-secret/x``); a symlink inside
  web-root that leads out of it is not followed (a symlink that stays inside
  still is).
* F6 ``--send-queue-bytes``: a client that never reads is closed with 1008
  once its queued bytes pass the budget, while its queued frames stay far
  under ``--send-queue-limit``; a reader on the same node keeps receiving.
* F7 ``--max-connections-per-uid`` / ``--max-connections-per-address``: the
  connection over the cap gets HTTP 503 (counted as a rejected handshake),
  others are not disturbed, and a slot comes back when a connection closes.
* ``--handshake-rate-per-address``: past its burst, one address's
  handshakes get HTTP 503 with Retry-After until its rate refills; other
  addresses and its open connections are not disturbed.
* F8 (info): past ``max-connections`` + 1024 open sockets (WebSockets
  plus sockets still in the HTTP phase) a new socket is closed at once,
  instead of waiting for ``handshake-timeout``.
* F13 (last item): a connection whose CONNECTION actor dies while the
  session has paused its reads (16 frames unanswered) is closed with 1011
  and frees its slot. Nothing in the stock binary can kill a CONNECTION
  actor from outside, so this test builds a small node against the
  installed package (like test_embedding.py) whose ``kill.*`` behaviour
  kills the connection that sent the frame; it is skipped when there is no
  CMake build directory or no cmake/ninja.

Only 127.0.0.1 is used; every wait is bounded.

Run: WSC_BINARY=build/wscluster python3 -m unittest test_hardening_net -v
"""

import fcntl
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import REPO_ROOT, HarnessMixin, binary_path, rss_kb, wait_until  # noqa: E402
from test_slow_reader import Reader  # noqa: E402
from wsclient import OP_PING, OP_PONG, ConnectionClosed, HandshakeError, encode_frame  # noqa: E402

REJECTED_503 = ('wscluster_handshakes_total', 'result="rejected",status="503"')


def raw_get(node, target, timeout=5.0):
    """Sends ``GET <target> HTTP/1.1`` as is on a fresh socket; returns
    ``(status, body bytes)`` of the answer (read until the server closes)."""
    with socket.create_connection((node.host, node.port), timeout=timeout) as s:
        s.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Connection: close\r\n\r\n")
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2:
        raise AssertionError("no HTTP answer to GET %s: %r" % (target, data[:200]))
    return int(status_line[1]), body


VALID_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample: 16 bytes


def upgrade_status(node, uid, key_lines=(b"Sec-WebSocket-Key: " + VALID_KEY,),
                   source=None):
    """The status line of a WebSocket handshake for `uid` with the given
    Sec-WebSocket-Key header lines, sent by hand (from `source`)."""
    with socket.create_connection((node.host, node.port), timeout=5,
                                  source_address=(source, 0) if source else None) as s:
        s.sendall(b"GET /ws?uid=" + uid.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                  b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  + b"".join(line + b"\r\n" for line in key_lines)
                  + b"Sec-WebSocket-Version: 13\r\n\r\n")
        return s.recv(64).split(b"\r\n")[0]


class WebSocketKeyTest(HarnessMixin, unittest.TestCase):
    """RFC 6455 4.2.1: the handshake carries one Sec-WebSocket-Key, the
    base64 encoding of 16 bytes; anything else is answered 400 (Beast alone
    checked only that one was there and not longer than 24 characters)."""

    def test_a_key_that_is_not_16_bytes_in_base64_or_twice_is_refused(self):
        node = self.start_node()
        kept = node.ws("kept")
        bad = {
            "short": [b"Sec-WebSocket-Key: short"],
            "no padding": [b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"],
            "not base64": [b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q=="],
            "17 bytes": [b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=A"],
            "twice": [b"Sec-WebSocket-Key: " + VALID_KEY] * 2,
        }
        for name, lines in bad.items():
            with self.subTest(name):
                self.assertIn(b" 400 ", upgrade_status(node, "bad", lines))
        self.assertIn(b" 101 ", upgrade_status(node, "good"))
        kept.send_json({"type": "ping", "id": "alive"})
        self.assertEqual(self.reply_to(kept, "alive")["type"], "pong")


class StaticFilesTest(HarnessMixin, unittest.TestCase):
    """F10: files outside web-root are never served."""

    SECRET = b"the-secret-outside-web-root"

    def setUp(self):
        top = self.make_tempdir()
        self.web = os.path.join(top, "web")
        shutil.copytree(os.path.join(REPO_ROOT, "web"), self.web, symlinks=False)
        # A sibling whose name extends web-root's: `<web-root>-secret/x`.
        os.makedirs(self.web + "-secret")
        with open(os.path.join(self.web + "-secret", "x"), "wb") as f:
            f.write(self.SECRET)
        with open(os.path.join(top, "outside.txt"), "wb") as f:
            f.write(self.SECRET)
        # Symlinks inside web-root: out of it (a file, a folder), and one
        # that stays inside (still served).
        os.symlink(os.path.join(top, "outside.txt"), os.path.join(self.web, "leak.txt"))
        os.symlink(self.web + "-secret", os.path.join(self.web, "leakdir"))
        with open(os.path.join(self.web, "real.txt"), "wb") as f:
            f.write(b"inside")
        os.symlink(os.path.join(self.web, "real.txt"), os.path.join(self.web, "alias.txt"))
        self.node = self.start_node({"web-root": self.web})

    def assertNotServed(self, target):
        status, body = raw_get(self.node, target)
        self.assertNotIn(self.SECRET, body, "GET %s served a file outside web-root" % target)
        self.assertEqual(status, 404, "GET %s -> %d %r" % (target, status, body[:200]))

    def test_target_without_leading_slash_is_not_appended_to_web_root(self):
        self.assertNotServed("-secret/x")

    def test_symlinks_out_of_web_root_are_not_followed(self):
        self.assertNotServed("/leak.txt")
        self.assertNotServed("/leakdir/x")

    def test_files_and_symlinks_inside_web_root_are_still_served(self):
        status, body = raw_get(self.node, "/")
        self.assertEqual(status, 200)
        self.assertIn(b"<html", body.lower())
        self.assertEqual(raw_get(self.node, "/real.txt"), (200, b"inside"))
        self.assertEqual(raw_get(self.node, "/alias.txt"), (200, b"inside"))


class SendQueueBytesTest(HarnessMixin, unittest.TestCase):
    """F6: the send queue is bounded in bytes, not only in frames."""

    QUEUE_LIMIT = 1000        # frames: never reached below
    MAX_PUSHES = 900          # < QUEUE_LIMIT: a frame count alone never closes
    PAD = "y" * 30000         # ~30 KB per message: 900 of them are ~27 MB

    def test_reader_that_never_reads_is_closed_past_the_byte_budget(self):
        node = self.start_node({"send-queue-limit": self.QUEUE_LIMIT,
                                "send-queue-bytes": 65536})
        slow = node.ws(uid="slow", rcvbuf=4096, timeout=10)
        fast = node.ws(uid="fast", timeout=10)
        reader = Reader(fast)
        reader.start()
        self.addCleanup(reader.stop)
        overflows_before = node.metric("wscluster_queue_overflows_total")

        pushed = sent_fast = 0
        slow_gone = False
        deadline = time.monotonic() + 60
        while pushed < self.MAX_PUSHES and time.monotonic() < deadline:
            status, _, body = node.api_send(["slow"], {"i": pushed, "pad": self.PAD})
            self.assertEqual(status, 200, body)
            pushed += 1
            if pushed % 5 == 0:
                status, _, body = node.api_send(["fast"], {"n": sent_fast})
                self.assertEqual(status, 200, body)
                sent_fast += 1
            if pushed % 10 == 0 and not node.presence(["slow"])["slow"]:
                slow_gone = True
                break
        if not slow_gone:
            try:
                wait_until(lambda: not node.presence(["slow"])["slow"], 5, 0.1)
                slow_gone = True
            except AssertionError:
                pass
        self.assertTrue(slow_gone, "after %d messages of 30 KB (fewer than send-queue-limit "
                        "%d) the reader that never reads is still online: send-queue-bytes "
                        "is not enforced" % (pushed, self.QUEUE_LIMIT))
        self.assertGreater(node.metric("wscluster_queue_overflows_total"), overflows_before)

        # The reader got everything, in order, and is still open.
        status, _, _ = node.api_send(["fast"], {"n": sent_fast})
        self.assertEqual(status, 200)
        sent_fast += 1
        wait_until(lambda: len(reader.message_numbers()) >= sent_fast or reader.error, 10, 0.05,
                   "the reader to receive all %d messages" % sent_fast)
        self.assertIsNone(reader.error, "the reader lost its connection: %r" % reader.error)
        self.assertEqual(reader.message_numbers(), list(range(sent_fast)))
        reader.stop()
        fast.send_json({"type": "ping", "id": "still-here"})
        self.assertEqual(self.reply_to(fast, "still-here")["type"], "pong")

        code = slow.wait_closed(20)
        if slow.close_frame_received:
            self.assertEqual(code, 1008, "closed with 1008 (policy)")
        wait_until(lambda: node.metric("wscluster_connections") == 1, 10,
                   what="the closed reader's slot to be free")


class QuotaMixin:

    def try_ws(self, uid):
        """A client, or the HandshakeError of a refused handshake."""
        try:
            return self.node.ws(uid)
        except HandshakeError as e:
            return e

    def assertRefused(self, uid, reason):
        before = self.node.metric(*REJECTED_503)
        with self.assertRaises(HandshakeError, msg="connection of %s over the cap" % uid) as cm:
            self.node.ws(uid, welcome=False)
        self.assertEqual(cm.exception.status, 503, cm.exception.text)
        self.assertIn(reason, cm.exception.text)
        self.assertEqual(self.node.metric(*REJECTED_503), before + 1,
                         "the refusal is counted as a rejected handshake")

    def assertComesBack(self, uid):
        def accepted():
            result = self.try_ws(uid)
            if isinstance(result, HandshakeError):
                if result.status != 503:
                    raise result
                return None
            return result
        return wait_until(accepted, 10, interval=0.1,
                          what="a connection of %s once a slot is free" % uid)

    def assertAlive(self, clients):
        for i, c in enumerate(clients):
            c.send_json({"type": "ping", "id": "alive-%d" % i})
            self.assertEqual(self.reply_to(c, "alive-%d" % i)["type"], "pong")


class PerUidCapTest(QuotaMixin, HarnessMixin, unittest.TestCase):
    """F7: --max-connections-per-uid."""

    def setUp(self):
        self.node = self.start_node({"max-connections-per-uid": 3})

    def test_fourth_connection_of_one_uid_gets_503_until_one_closes(self):
        alices = [self.node.ws("alice") for _ in range(3)]
        self.assertRefused("alice", "of this uid")
        # Another uid is not affected, and HTTP still works.
        bob = self.node.ws("bob")
        self.assertEqual(self.node.http("GET", "/healthz")[0], 200)
        self.assertAlive(alices + [bob])
        alices[0].close()
        again = self.assertComesBack("alice")
        self.assertEqual(again.welcome["uid"], "alice")
        self.assertRefused("alice", "of this uid")
        self.assertAlive(alices[1:] + [again, bob])
        self.assertEqual(self.node.metric("wscluster_connections"), 4)


class PerAddressCapTest(QuotaMixin, HarnessMixin, unittest.TestCase):
    """F7: --max-connections-per-address (every test client is 127.0.0.1)."""

    def setUp(self):
        self.node = self.start_node({"max-connections-per-address": 3})

    def test_fourth_connection_from_one_address_gets_503_until_one_closes(self):
        clients = [self.node.ws("u%d" % i) for i in range(3)]
        self.assertRefused("u3", "from this address")
        self.assertRefused("u0", "from this address")
        # The HTTP API is not a WebSocket: still served.
        self.assertEqual(self.node.http("GET", "/healthz")[0], 200)
        self.assertAlive(clients)
        clients[1].close()
        late = self.assertComesBack("u4")
        self.assertEqual(late.welcome["uid"], "u4")
        self.assertRefused("u5", "from this address")
        self.assertAlive([clients[0], clients[2], late])


class HandshakeRateTest(QuotaMixin, HarnessMixin, unittest.TestCase):
    """--handshake-rate-per-address: one address churning connections is
    refused (HTTP 503, Retry-After) once it has spent ten seconds' worth of
    its rate; others are served and its open connections stay."""

    def setUp(self):
        self.node = self.start_node({"handshake-rate-per-address": 2})

    def test_an_address_past_its_burst_is_refused_until_its_rate_refills(self):
        kept = self.node.ws("kept")
        # A burst of ten seconds' worth (20, of which `kept` took one); the
        # rate refills one every 0.5 s, so the loop may win a token or two.
        for i in range(19):
            self.node.ws("churn%d" % i).close()
        refused = None
        for i in range(4):
            result = self.try_ws("over%d" % i)
            if isinstance(result, HandshakeError):
                refused = result
                break
            result.close()
        self.assertIsNotNone(refused, "handshakes past the burst were accepted")
        self.assertEqual(refused.status, 503, refused.text)
        self.assertIn("too many handshakes from this address", refused.text)
        self.assertEqual(refused.headers.get("retry-after"), "1")
        # Another address is served, the open connection stays, and the
        # address gets handshakes again at its rate.
        self.assertIn(b" 101 ", upgrade_status(self.node, "other", source="127.0.0.2"))
        self.assertAlive([kept])
        back = self.assertComesBack("back")
        self.assertEqual(back.welcome["uid"], "back")
        self.assertAlive([kept, back])


class RawSocketPerAddressTest(HarnessMixin, unittest.TestCase):
    """Sockets that are no WebSocket (yet) count per client address too."""

    def test_one_address_cannot_hold_every_raw_socket(self):
        # helper-31's probe: 2,100 idle sockets from one address took every
        # descriptor of a node and starved everyone else.
        node = self.start_node({"max-connections-per-address": 5,
                                "handshake-timeout": "30s"})

        def raw():
            return socket.create_connection((node.host, node.port), timeout=5,
                                            source_address=("127.0.0.2", 0))

        def healthz_from_127_0_0_2():
            with raw() as s:
                s.settimeout(3)
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                try:
                    return s.recv(64).startswith(b"HTTP/1.1 200")
                except (ConnectionResetError, TimeoutError, socket.timeout):
                    return False

        idle = [raw() for _ in range(5)]
        self.addCleanup(lambda: [s.close() for s in idle])
        time.sleep(0.3)  # all five accepted
        self.assertFalse(healthz_from_127_0_0_2(), "a sixth socket was served")
        # Other addresses are served, WebSockets included.
        alice = node.ws("alice")
        self.assertEqual(node.http("GET", "/healthz")[0], 200)
        # The address gets its slots back when its sockets close.
        for s in idle:
            s.close()
        wait_until(healthz_from_127_0_0_2, 5, what="127.0.0.2 served again")
        alice.send_json({"type": "ping", "id": 1})
        self.reply_to(alice, 1)


class RawSocketBoundTest(HarnessMixin, unittest.TestCase):
    """F8: raw sockets that never send a request are bounded."""

    MARGIN = 1024   # accept_margin in net/listener.cpp

    def test_sockets_past_max_connections_plus_margin_are_closed_at_once(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        needed = self.MARGIN + 200
        if soft < needed:
            if hard != resource.RLIM_INFINITY and hard < needed:
                self.skipTest("needs %d file descriptors" % needed)
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        node = self.start_node({"max-connections": 1, "handshake-timeout": "30s",
                                "max-connections-per-address": 0})
        client = node.ws("alice")
        idle = []
        self.addCleanup(lambda: [s.close() for s in idle])
        # max-connections (1, taken) + margin: these are all accepted.
        for _ in range(self.MARGIN - 1):
            idle.append(socket.create_connection((node.host, node.port), timeout=5))

        def refused_at_once():
            s = socket.create_connection((node.host, node.port), timeout=5)
            idle.append(s)
            s.settimeout(3)
            try:
                return s.recv(1) == b""
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
        # The last accepted ones may still be on their way to their sessions.
        wait_until(refused_at_once, 10, interval=0.1,
                   what="a socket over max-connections + margin to be closed at once")
        # The WebSocket already open is not disturbed; once the idle sockets
        # go, HTTP is served again.
        client.send_json({"type": "ping", "id": "p"})
        self.assertEqual(self.reply_to(client, "p")["type"], "pong")
        for s in idle:
            s.close()
        idle.clear()
        wait_until(lambda: node.http("GET", "/healthz", timeout=2)[0] == 200, 10,
                   what="/healthz once the idle sockets closed")


# -- a node whose behaviour kills CONNECTION actors ----------------------------------------

KILLER_CMAKE = """cmake_minimum_required(VERSION 3.18)
project(wsc_hardening_net LANGUAGES CXX)
find_package(wscluster 0.1 REQUIRED)
add_executable(wsc-killer-node node.cpp)
target_link_libraries(wsc-killer-node PRIVATE wscluster::wsc)
"""

KILLER_NODE = r"""// `kill.*` kills the CONNECTION actor of the frame's sender (what an
// exception inside that actor would do), then answers.
#include "app/node.hpp"
#include "app/run.hpp"

#include <caf/all.hpp>

namespace {

struct killer_state {
  static inline const char* name = "killer";
};

wsc::behaviour_actor::behavior_type
killer(wsc::behaviour_actor::stateful_pointer<killer_state> self) {
  return {
      [self](wsc::atom::frame, wsc::frame_context& ctx,
             wsc::json_ptr&) -> caf::result<wsc::json_ptr> {
        self->send_exit(ctx.connection, caf::exit_reason::kill);
        return wsc::json_ptr{};
      },
  };
}

} // namespace

int main(int argc, char** argv) {
  wsc::node_customization custom;
  custom.started = [](caf::actor_system&, wsc::node& node) {
    node.spawn_behaviour("kill.*", killer);
  };
  return wsc::run_node(argc, argv, custom);
}
"""

BUILD_TIMEOUT = 300
_killer = {}


def _build_dir():
    path = os.environ.get("WSC_BUILD_DIR") or os.path.dirname(binary_path())
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def _run(cmd, cwd, timeout):
    proc = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, errors="replace", timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s\n%s" % (" ".join(cmd), proc.returncode,
                                                      proc.stdout[-4000:], proc.stderr[-4000:]))


def _install(prefix, work):
    """``cmake --install`` under the tree's build lock (others may be
    rebuilding the tree): waits for it at most BUILD_TIMEOUT s."""
    with open("/tmp/wsc-build.lock", "a") as lock:
        deadline = time.monotonic() + BUILD_TIMEOUT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the build lock stayed taken")
                time.sleep(1)
        try:
            _run(["cmake", "--install", _build_dir(), "--prefix", prefix], work, 120)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def killer_binary():
    if "binary" in _killer:
        return _killer["binary"]
    if "skip" in _killer:
        raise unittest.SkipTest(_killer["skip"])
    if not os.path.isfile(os.path.join(_build_dir(), "cmake_install.cmake")):
        _killer["skip"] = "no CMake build directory at %s" % _build_dir()
    elif not shutil.which("cmake") or not shutil.which("ninja"):
        _killer["skip"] = "cmake and ninja are needed"
    if "skip" in _killer:
        raise unittest.SkipTest(_killer["skip"])
    work = tempfile.mkdtemp(prefix="wsc-killer-")
    _killer["work"] = work
    prefix = os.path.join(work, "prefix")
    _install(prefix, work)
    project = os.path.join(work, "project")
    os.makedirs(project)
    with open(os.path.join(project, "CMakeLists.txt"), "w") as f:
        f.write(KILLER_CMAKE)
    with open(os.path.join(project, "node.cpp"), "w") as f:
        f.write(KILLER_NODE)
    configure = ["cmake", "-S", project, "-B", os.path.join(work, "build"), "-G", "Ninja",
                 "-DCMAKE_PREFIX_PATH=" + prefix, "-DCMAKE_BUILD_TYPE=",
                 "-DCMAKE_CXX_FLAGS=-O0"]
    if shutil.which("ld.lld"):
        configure.append("-DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld")
    _run(configure, work, 120)
    _run(["cmake", "--build", os.path.join(work, "build")], work, BUILD_TIMEOUT)
    _killer["binary"] = os.path.join(work, "build", "wsc-killer-node")
    return _killer["binary"]


def tearDownModule():
    if "work" in _killer and os.environ.get("WSC_KEEP_LOGS", "") in ("", "0"):
        shutil.rmtree(_killer["work"], ignore_errors=True)


class PingFloodTest(HarnessMixin, unittest.TestCase):
    """A client that sends pings and never reads the pongs: RFC 6455 5.5.3
    lets the server answer only the latest of the pings it has not answered
    yet, so the pongs it holds are bounded (net/websocket_session.cpp,
    max_queued_pongs), not one per ping."""

    PINGS = 100000  # 125-byte payloads: ~25 MB of queued pongs if unbounded

    def test_pongs_for_a_client_that_does_not_read_are_bounded(self):
        # Without rate-limit: pings count toward it (ControlFrameRateTest).
        node = self.start_node({"rate-limit": "0"})
        other = node.ws("other")
        flood = node.ws("flood", rcvbuf=4096, timeout=30)
        before = rss_kb(node.pid)
        pad = b"p" * 115
        batch = 1000
        for start in range(0, self.PINGS, batch):
            flood.sock.sendall(b"".join(
                encode_frame(True, 0, OP_PING, b"%09d" % i + pad)
                for i in range(start, start + batch)))
        last = b"%09d" % (self.PINGS - 1) + pad
        # The node has read every ping when it answers a frame sent after them.
        flood.send_json({"type": "ping", "id": "after"})
        other.send_json({"type": "ping", "id": "o"})
        self.assertEqual(self.reply_to(other, "o")["type"], "pong")
        time.sleep(0.5)
        grown_mb = (rss_kb(node.pid) - before) / 1024.0
        if not os.environ.get("ASAN_OPTIONS"):  # ASan's quarantine keeps freed memory
            self.assertLess(grown_mb, 10, "the node grew by %.1f MB answering %d pings that "
                            "were never read: a pong per ping is queued" % (grown_mb, self.PINGS))
        # Read now: pongs (fewer than pings), the last with the last payload,
        # then the answer to the frame sent after them.
        pongs = 0
        got_last = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            f = flood.recv_frame(timeout=10)
            if f.opcode == OP_PONG:
                pongs += 1
                got_last = got_last or f.payload == last
            elif f.opcode != OP_PING and b'"after"' in f.payload:
                break
        self.assertTrue(got_last, "the newest ping was answered")
        # What the kernel's socket buffers held (up to ~4 MB of pongs on
        # loopback) plus the few queued: far fewer than one per ping.
        self.assertLess(pongs, self.PINGS // 2, "a pong per ping was queued")
        other.send_json({"type": "ping", "id": "o2"})
        self.assertEqual(self.reply_to(other, "o2")["type"], "pong")


class ClosingHandshakeTest(HarnessMixin, unittest.TestCase):
    """RFC 6455 7.1.1: once both close frames are through, the server closes
    the TCP connection first. A client that keeps its socket open must not
    hold the server's connection (nor a draining node) until the close
    deadline (1 s after the client's close, 3 s after the server's)."""

    def assertGoneSoon(self, node):
        started = time.monotonic()
        wait_until(lambda: node.metric("wscluster_connections") == 0, 5,
                   interval=0.02, what="the connection to be gone")
        self.assertLess(time.monotonic() - started, 0.8,
                        "the server held the connection after the closing handshake")

    def test_server_closes_tcp_when_both_close_frames_are_through(self):
        node = self.start_node({})
        # The server closes; the client echoes (wsclient does) and keeps
        # its socket open.
        zoe = node.ws("zoe")
        status, _, body = node.http("POST", "/api/disconnect", {"uid": "zoe"})
        self.assertEqual(status, 200, body)
        zoe.wait_closed(5)
        self.assertTrue(zoe.close_frame_received)
        self.assertGoneSoon(node)
        self.assertTrue(zoe.wait_eof(2))
        # The client closes; the server echoes.
        ann = node.ws("ann")
        ann.send_close(1000, "bye")
        ann.wait_closed(5)
        self.assertEqual(ann.close_code, 1000)
        self.assertGoneSoon(node)
        self.assertTrue(ann.wait_eof(2))


class DeadActorTest(HarnessMixin, unittest.TestCase):
    """F13: a session whose CONNECTION actor dies frees its slot, also when
    it had paused its reads (16 frames unanswered)."""

    def test_session_of_a_dead_actor_with_paused_reads_is_closed_and_freed(self):
        node = self.start_node({"max-connections": 2}, binary=killer_binary())
        other = node.ws("other")
        victim = node.ws("victim")
        victim.send_json({"type": "kill.now", "id": "k"})
        # Nobody answers these: after 16 unanswered frames the session
        # pauses its reads (sent at once, before the kill is known).
        try:
            for i in range(20):
                victim.send_json({"type": "ping", "id": i}, timeout=2)
        except (ConnectionClosed, OSError):
            pass  # already closed by the node: fine
        code = victim.wait_closed(10)
        if victim.close_frame_received:
            self.assertEqual(code, 1011, "a dead connection actor closes with 1011")
        # The slot comes back: the connection gauge drops and a new
        # connection is admitted under max-connections=2.
        wait_until(lambda: node.metric("wscluster_connections") == 1, 10,
                   what="the dead connection's slot to be free")
        again = node.ws("victim")
        again.send_json({"type": "ping", "id": "p"})
        self.assertEqual(self.reply_to(again, "p")["type"], "pong")
        other.send_json({"type": "ping", "id": "o"})
        self.assertEqual(self.reply_to(other, "o")["type"], "pong")

    def test_session_of_a_dead_actor_is_closed_without_pause(self):
        node = self.start_node({}, binary=killer_binary())
        victim = node.ws("victim")
        victim.send_json({"type": "kill.now", "id": "k"})
        code = victim.wait_closed(10)
        if victim.close_frame_received:
            self.assertEqual(code, 1011)
        wait_until(lambda: node.metric("wscluster_connections") == 0, 10,
                   what="the dead connection's slot to be free")


if __name__ == "__main__":
    unittest.main()

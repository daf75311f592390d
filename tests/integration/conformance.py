"""RFC 6455 conformance harness: hand-made frames, exact expected outcomes.

It checks the invariants that Autobahn|Testsuite's categories 1-7 and 10
cover, plus a few opening-handshake rules, against any server reachable on
127.0.0.1.  Standard library only; frames are written with
:func:`wsclient.encode_frame` so that every bit can be wrong on purpose.

Two kinds of target are known:

* ``echo`` - an echo server (the reference: Beast's own
  ``websocket_server_async`` example from Debian's ``libboost1.81-doc``,
  built by :func:`build_reference`).  A message is answered by the same
  message.
* ``wscluster`` - a wscluster node.  It has no echo, so every probe message
  is the JSON frame ``{"type":"ping","id":TEXT}`` and the answer is
  ``{"type":"pong","id":TEXT}`` (a message too short to hold that JSON is
  sent as non-JSON text of the exact length, answered by a ``bad_json``
  error).  The node's first frame, ``welcome``, is read after the handshake.

Every case says exactly what must happen: which replies (and pongs) arrive,
in order, and then either that the connection stays usable or that the
server closes it with one exact close code and then closes TCP.  Anything
else - another code, a reply that should not come, a missing close frame, a
timeout - is a failure.

Where Beast (and so both targets) and the RFC's wording differ, the case
expects what Beast does and its ``note`` says why that is allowed; see
``docs/security.md``:

* invalid UTF-8 in a close frame's reason: Beast fails the connection with
  1002, not 1007.  RFC 6455 8.1 only says "Fail the WebSocket Connection";
  7.4.1 defines 1007 for message data.  Autobahn 7.5.1 accepts 1002 or 1007.
* close codes >= 5000: Beast accepts and echoes them.  RFC 6455 7.4.2 defines
  no meaning above 4999 and no duty to reject them; Autobahn 7.13.x is
  informational ("actual events are undefined by the spec").
* close code 1014 (registered after RFC 6455) is refused with 1002 like the
  reserved 1004-1006 and 1015; 1012 and 1013 are accepted.
* a close frame without payload is answered with code 1000 (RFC 5.5.1: the
  echo is "typically" the received code; there is none to echo).
* a 64-bit length with the most significant bit set, or a length above the
  message limit: 1009 (Beast compares the length with its limit first).  The
  RFC (5.2) only says the bit MUST be 0.
* a length in a longer form than needed (e.g. 16-bit length < 126): 1002.
  RFC 5.2 says "the minimal number of bytes MUST be used".

Run it by hand::

    python3 tests/integration/conformance.py --target echo --port 9001
    python3 tests/integration/conformance.py --target wscluster --port 8080 -v
    python3 tests/integration/conformance.py --build-reference build/conformance-ref
"""

import argparse
import glob
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from wsclient import (  # noqa: E402
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, ConnectionClosed,
    HandshakeError, WebSocket, encode_frame, mask_payload)

HOST = "127.0.0.1"
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# How long a case waits for what must come (answer, pong, close, EOF), and
# how long it listens to be sure nothing comes.
REPLY_TIMEOUT = 5.0
SILENCE = 0.3

# -- the reference server ------------------------------------------------------

REFERENCE_SOURCES = (
    "/usr/share/doc/libboost1.81-doc/examples/libs/beast/example/websocket/server/"
    "async/websocket_server_async.cpp",
)
REFERENCE_PACKAGE = "libboost1.81-doc"


def find_reference_source():
    for path in REFERENCE_SOURCES:
        if os.path.isfile(path):
            return path
    hits = glob.glob("/usr/share/doc/libboost1.8*-doc/examples/libs/beast/example/websocket/"
                     "server/async/websocket_server_async.cpp")
    return hits[0] if hits else None


def build_reference(out_dir=None, timeout=600):
    """Build Beast's async echo example (cached); return the binary's path.

    The source comes from Debian's ``libboost1.81-doc``.  When it is missing
    and we are root with apt-get, the package is installed (bounded in time);
    otherwise a RuntimeError says what to install.
    """
    out_dir = out_dir or os.path.join(REPO_ROOT, "build", "conformance-ref")
    source = find_reference_source()
    if source is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", REFERENCE_PACKAGE],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout, env=env, check=False)
        source = find_reference_source()
    if source is None:
        raise RuntimeError("reference server source not found: install %s "
                           "(apt-get install -y %s)" % (REFERENCE_PACKAGE, REFERENCE_PACKAGE))
    os.makedirs(out_dir, exist_ok=True)
    binary = os.path.join(out_dir, "websocket-server-async")
    if os.path.isfile(binary) and os.path.getmtime(binary) >= os.path.getmtime(source):
        return binary
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler to build the reference server")
    fd, tmp = tempfile.mkstemp(prefix=".ref-", dir=out_dir)
    os.close(fd)
    try:
        proc = subprocess.run([compiler, "-std=c++17", "-O1", "-I/usr/include", "-pthread",
                               "-o", tmp, source],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError("building the reference server failed:\n" + proc.stderr[-4000:])
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)  # atomic: a concurrent build never sees half a file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary


class ReferenceServer:
    """Runs the reference echo server on a free 127.0.0.1 port."""

    def __init__(self, binary, port):
        self.binary = binary
        self.port = port
        self.proc = None

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen([self.binary, HOST, str(self.port), "1"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("reference server exited with %s" % self.proc.returncode)
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("reference server did not listen on %d" % self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# -- targets -----------------------------------------------------------------------

class CaseFailure(AssertionError):
    pass


class Target:
    """How to talk to one server under test."""

    kind = None
    # Bound of every wait for something that must come.
    timeout = REPLY_TIMEOUT
    # True when answers are produced asynchronously (wscluster: by an actor),
    # so an answer to a message that was followed at once by a frame that
    # fails or closes the connection may legitimately be lost: RFC 6455 7.1.7
    # fails the connection at once, and 5.5.1 forbids data frames after the
    # server's close frame.  When it does arrive it must still be right.
    async_answers = False

    def __init__(self, host, port, path="/ws", query=None):
        self.host, self.port, self.path, self.query = host, port, path, query

    def connect(self, headers=None, timeout=None):
        ws = WebSocket(self.host, self.port, self.path, self.query, headers,
                       self.timeout if timeout is None else timeout)
        self.after_connect(ws)
        return ws

    def after_connect(self, ws):
        pass

    # A probe is (frame payload bytes, what the answer must be).
    def probe(self, text):
        """A message carrying ``text`` (str) that the server answers."""
        raise NotImplementedError

    def probe_raw(self, raw):
        """``(message bytes, offset)``: ``raw`` embedded at ``offset``; for
        invalid bytes no answer is expected, so none is described."""
        raise NotImplementedError

    def probe_of_length(self, n, fill="*"):
        """A message of exactly ``n`` bytes that the server answers."""
        raise NotImplementedError

    def check_answer(self, probe, opcode_sent, opcode, payload):
        raise NotImplementedError


class EchoTarget(Target):
    kind = "echo"

    def probe(self, text):
        data = text.encode("utf-8")
        return data, ("echo", data)

    def probe_raw(self, raw):
        return raw, 0

    def probe_of_length(self, n, fill="*"):
        data = (fill * n).encode("ascii")
        return data, ("echo", data)

    def check_answer(self, expected, opcode_sent, opcode, payload):
        _, data = expected
        if opcode != opcode_sent:
            raise CaseFailure("echo came back with opcode 0x%x, sent 0x%x" % (opcode, opcode_sent))
        if payload != data:
            raise CaseFailure("echo differs: sent %d bytes %r..., got %d bytes %r..."
                              % (len(data), data[:40], len(payload), payload[:40]))


class WsclusterTarget(Target):
    kind = "wscluster"
    async_answers = True
    PREFIX = b'{"type":"ping","id":"'
    SUFFIX = b'"}'

    def after_connect(self, ws):
        op, payload = ws.recv(self.timeout)
        try:
            frame = json.loads(payload.decode("utf-8"))
        except ValueError:
            frame = None
        if op != OP_TEXT or not isinstance(frame, dict) or frame.get("type") != "welcome":
            raise CaseFailure("first frame is not a welcome: %r" % payload[:200])

    def probe(self, text):
        inner = json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8")
        return self.PREFIX + inner + self.SUFFIX, ("pong", text)

    def probe_raw(self, raw):
        return self.PREFIX + raw + self.SUFFIX, len(self.PREFIX)

    def probe_of_length(self, n, fill="*"):
        overhead = len(self.PREFIX) + len(self.SUFFIX)
        if n < overhead:
            # Not JSON at all: answered with a bad_json error.
            return (fill * n).encode("ascii"), ("bad_json", None)
        text = fill * (n - overhead)
        return self.PREFIX + text.encode("ascii") + self.SUFFIX, ("pong", text)

    def check_answer(self, expected, opcode_sent, opcode, payload):
        kind, text = expected
        if opcode != OP_TEXT:
            raise CaseFailure("answer has opcode 0x%x, expected a text frame" % opcode)
        try:
            frame = json.loads(payload.decode("utf-8"))
        except ValueError:
            raise CaseFailure("answer is not JSON: %r" % payload[:200]) from None
        if kind == "bad_json":
            if frame.get("type") != "error" or frame.get("code") != "bad_json":
                raise CaseFailure("expected a bad_json error, got %r" % (frame,))
            return
        if frame.get("type") != "pong" or frame.get("id") != text:
            got = frame.get("id")
            raise CaseFailure("expected pong with the %d-char id, got type=%r id=%r"
                              % (len(text), frame.get("type"),
                                 got[:60] if isinstance(got, str) else got))


# -- what a case can expect --------------------------------------------------------------

def _read_frame(ws, timeout):
    """The next raw frame, or ``None`` at EOF.  TimeoutError propagates."""
    try:
        return ws.recv_frame(timeout)
    except ConnectionClosed:
        return None


def _assemble(ws, first, deadline):
    """Reassemble a (possibly fragmented) server message starting at ``first``."""
    if first.rsv or first.masked:
        raise CaseFailure("server frame with RSV=%d masked=%s" % (first.rsv, first.masked))
    opcode, parts, f = first.opcode, [first.payload], first
    while not f.fin:
        f = _read_frame(ws, max(0.01, deadline - time.monotonic()))
        if f is None:
            raise CaseFailure("EOF inside a fragmented server message")
        if f.opcode in (OP_PING, OP_PONG):
            raise CaseFailure("control frame inside a server message (not expected here)")
        if f.opcode != OP_CONT:
            raise CaseFailure("server interleaved opcode 0x%x in a fragmented message" % f.opcode)
        parts.append(f.payload)
    return opcode, b"".join(parts)


def _describe(f):
    if f is None:
        return "EOF"
    if f.opcode == OP_CLOSE:
        return "close %r" % (_close_code(f.payload),)
    return "frame opcode=0x%x fin=%s %d bytes %r" % (f.opcode, f.fin, len(f.payload), f.payload[:60])


def _close_code(payload):
    if len(payload) == 0:
        return 1005
    if len(payload) == 1:
        return "1-byte close payload"
    return struct.unpack("!H", payload[:2])[0]


class Session:
    """One connection of one case, with the expectations as methods."""

    def __init__(self, target, ws):
        self.t = target
        self.ws = ws
        self._pushed = None
        # Close codes this case expected, in order (for harness self-checks).
        self.expected_closes = []

    def _next(self, timeout):
        if self._pushed is not None:
            f, self._pushed = self._pushed, None
            return f
        return _read_frame(self.ws, timeout)

    # sending
    def frame(self, fin, rsv, opcode, payload, mask=True):
        self.raw(encode_frame(fin, rsv, opcode, payload, mask))

    def raw(self, data):
        try:
            self.ws.send_raw(data, timeout=self.t.timeout)
        except ConnectionClosed:
            pass  # the server may already have failed the connection: read what it said

    def message(self, text, opcode=OP_TEXT):
        data, expected = self.t.probe(text)
        self.frame(True, 0, opcode, data)
        return (expected, opcode)

    # expecting
    def expect_answer(self, probe, timeout=None, may_be_lost=False):
        """The next frame is the answer to ``probe``.  With ``may_be_lost``
        and an asynchronous target, a close frame instead is left for the
        next expectation (the answer was overtaken by the close)."""
        timeout = self.t.timeout if timeout is None else timeout
        expected, opcode_sent = probe
        deadline = time.monotonic() + timeout
        try:
            f = self._next(timeout)
        except TimeoutError:
            raise CaseFailure("no answer within %.1fs" % timeout) from None
        if may_be_lost and self.t.async_answers and f is not None and f.opcode == OP_CLOSE:
            self._pushed = f
            return
        if f is None or f.opcode not in (OP_TEXT, OP_BINARY):
            raise CaseFailure("expected an answer message, got %s" % _describe(f))
        opcode, payload = _assemble(self.ws, f, deadline)
        self.t.check_answer(expected, opcode_sent, opcode, payload)

    def expect_pong(self, payload, timeout=None):
        timeout = self.t.timeout if timeout is None else timeout
        try:
            f = self._next(timeout)
        except TimeoutError:
            raise CaseFailure("no pong within %.1fs" % timeout) from None
        if f is None or f.opcode != OP_PONG:
            raise CaseFailure("expected a pong, got %s" % _describe(f))
        if not f.fin or f.rsv or f.masked:
            raise CaseFailure("malformed pong fin=%s rsv=%s masked=%s" % (f.fin, f.rsv, f.masked))
        if f.payload != payload:
            raise CaseFailure("pong payload %r differs from ping payload %r"
                              % (f.payload[:40], payload[:40]))

    def expect_nothing(self, duration=SILENCE):
        try:
            f = self._next(duration)
        except TimeoutError:
            return
        raise CaseFailure("expected nothing, got %s" % _describe(f))

    def expect_alive(self):
        """The connection still works: a probe is answered."""
        self.expect_answer(self.message("alive?"))

    def expect_close(self, code, timeout=None, echo=True):
        """The next frame is a close with ``code`` and then TCP ends."""
        timeout = self.t.timeout if timeout is None else timeout
        self.expected_closes.append(code)
        try:
            f = self._next(timeout)
        except TimeoutError:
            raise CaseFailure("expected close %s, the connection stayed open %.1fs"
                              % (code, timeout)) from None
        if f is None:
            raise CaseFailure("expected close %s, got EOF without a close frame" % code)
        if f.opcode != OP_CLOSE:
            raise CaseFailure("expected close %s, got %s" % (code, _describe(f)))
        got = _close_code(f.payload)
        if got != code:
            raise CaseFailure("expected close code %s, got %s (reason %r)"
                              % (code, got, f.payload[2:80]))
        if len(f.payload) > 2:
            try:
                f.payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise CaseFailure("server's close reason is not UTF-8") from None
        if echo:
            try:
                self.ws.send_raw(encode_frame(True, 0, OP_CLOSE, f.payload[:2]), timeout=1.0)
            except (ConnectionClosed, OSError, TimeoutError):
                pass
        self.expect_eof()

    def expect_eof(self, timeout=None):
        """After the closing handshake the server closes TCP (RFC 7.1.1)."""
        timeout = self.t.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                f = _read_frame(self.ws, max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                raise CaseFailure("server did not close TCP within %.1fs" % timeout) from None
            if f is None:
                return
            raise CaseFailure("frame after the close frame: %s" % _describe(f))


# -- the cases ------------------------------------------------------------------------------

class Case:
    """``echoes_close``: the case's close code is the server echoing the
    client's own code, not the server failing the connection."""

    def __init__(self, cid, title, run, note=None, kinds=None, echoes_close=False):
        self.cid, self.title, self.run, self.note, self.kinds = cid, title, run, note, kinds
        self.echoes_close = echoes_close


CASES = []


def case(cid, title, note=None, kinds=None, echoes_close=False):
    def register(fn):
        CASES.append(Case(cid, title, fn, note, kinds, echoes_close))
        return fn
    return register


def _cases_ping_payload_case(cid, title, payload):
    @case(cid, title)
    def _(s):
        s.frame(True, 0, OP_PING, payload)
        s.expect_pong(payload)
        s.expect_alive()


def _size_case(cid, n, opcode, chop=None):
    kind = "text" if opcode == OP_TEXT else "binary"
    title = "%s message of %d bytes%s" % (kind, n, " written in %d-byte chunks" % chop if chop else "")

    @case(cid, title)
    def _(s):
        data, expected = s.t.probe_of_length(n)
        wire = encode_frame(True, 0, opcode, data)
        if chop:
            for i in range(0, len(wire), chop):
                s.raw(wire[i:i + chop])
                time.sleep(0.0005)
        else:
            s.raw(wire)
        s.expect_answer((expected, opcode))


# Category 1: framing and lengths (7-bit, 16-bit, 64-bit).
for _i, _n in enumerate((0, 125, 126, 127, 128, 65535, 65536)):
    _size_case("1.1.%d" % (_i + 1), _n, OP_TEXT)
    _size_case("1.2.%d" % (_i + 1), _n, OP_BINARY)
_size_case("1.1.8", 65536, OP_TEXT, chop=997)
_size_case("1.2.8", 65536, OP_BINARY, chop=997)
_size_case("1.3.1", 262144, OP_TEXT)


@case("1.4.1", "16-bit length form used for a 10-byte payload (not minimal)",
      note="RFC 5.2: the minimal number of bytes MUST be used; Beast fails with 1002")
def _(s):
    s.raw(bytes([0x81, 0x80 | 126]) + struct.pack("!H", 10) + b"\0\0\0\0" + b"x" * 10)
    s.expect_close(1002)


@case("1.4.2", "64-bit length with the most significant bit set",
      note="RFC 5.2: the MSB MUST be 0; Beast checks the length against its message "
           "limit first and fails with 1009")
def _(s):
    s.raw(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\0\0\0\0")
    s.expect_close(1009)


@case("1.4.3", "unmasked text frame from the client")
def _(s):
    data, _ = s.t.probe("unmasked")
    s.frame(True, 0, OP_TEXT, data, mask=False)
    s.expect_close(1002)


@case("1.4.4", "unmasked ping from the client")
def _(s):
    s.frame(True, 0, OP_PING, b"x", mask=False)
    s.expect_close(1002)


@case("1.4.5", "unmasked close from the client")
def _(s):
    s.frame(True, 0, OP_CLOSE, struct.pack("!H", 1000), mask=False)
    s.expect_close(1002)


# Category 2: pings and pongs.
_cases_ping_payload_case("2.1", "ping without payload", b"")
_cases_ping_payload_case("2.2", "ping with a text payload", b"Hello, world!")
_cases_ping_payload_case("2.3", "ping with a binary payload", bytes([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff]))
_cases_ping_payload_case("2.4", "ping with a 125-byte payload", bytes(range(125)))


@case("2.5", "ping with a 126-byte payload (control frame too long)")
def _(s):
    s.frame(True, 0, OP_PING, b"\xfe" * 126)
    s.expect_close(1002)


@case("2.6", "ping with a 125-byte payload written one byte at a time")
def _(s):
    payload = b"\xfe" * 125
    wire = encode_frame(True, 0, OP_PING, payload)
    for i in range(0, len(wire), 4):
        s.raw(wire[i:i + 4])
        time.sleep(0.001)
    s.expect_pong(payload)


@case("2.7", "unsolicited pong without payload is ignored")
def _(s):
    s.frame(True, 0, OP_PONG, b"")
    s.expect_nothing()
    s.expect_alive()


@case("2.8", "unsolicited pong with payload is ignored")
def _(s):
    s.frame(True, 0, OP_PONG, b"unsolicited pong payload")
    s.expect_nothing()
    s.expect_alive()


@case("2.9", "unsolicited pong, then ping: one pong with the ping's payload")
def _(s):
    s.frame(True, 0, OP_PONG, b"unsolicited pong payload")
    s.frame(True, 0, OP_PING, b"ping payload")
    s.expect_pong(b"ping payload")
    s.expect_nothing()


@case("2.10", "ten pings in one write: ten pongs in order")
def _(s):
    s.raw(b"".join(encode_frame(True, 0, OP_PING, b"payload-%d" % i) for i in range(10)))
    for i in range(10):
        s.expect_pong(b"payload-%d" % i)


@case("2.11", "ping with payload between two probes")
def _(s):
    s.expect_answer(s.message("before"))
    s.frame(True, 0, OP_PING, b"between")
    s.expect_pong(b"between")
    s.expect_answer(s.message("after"))


# Category 3: reserved bits.
def _rsv_case(cid, title, rsv, opcode, before=False, after_ping=False):
    @case(cid, title)
    def _(s):
        if before:
            probe = s.message("Hello")
        if opcode in (OP_TEXT, OP_BINARY):
            payload, _ = s.t.probe("Hello")
        elif opcode == OP_CLOSE:
            payload = struct.pack("!H", 1000)
        else:
            payload = b"Hello"
        wire = encode_frame(True, rsv, opcode, payload)
        if after_ping:
            wire += encode_frame(True, 0, OP_PING, b"must not be answered")
        s.raw(wire)
        if before:
            s.expect_answer(probe, may_be_lost=True)
        s.expect_close(1002)


_rsv_case("3.1", "text frame with RSV1 (no extension negotiated)", 4, OP_TEXT)
_rsv_case("3.2", "text frame with RSV2 after a valid message", 2, OP_TEXT, before=True)
_rsv_case("3.3", "text frame with RSV3, then a ping that must go unanswered", 1, OP_TEXT,
          before=True, after_ping=True)
_rsv_case("3.4", "text frame with RSV1+RSV2", 6, OP_TEXT)
_rsv_case("3.5", "binary frame with RSV1+RSV3", 5, OP_BINARY)
_rsv_case("3.6", "ping with RSV2+RSV3", 3, OP_PING)
_rsv_case("3.7", "close with all RSV bits", 7, OP_CLOSE)


@case("3.8", "continuation frame with RSV1")
def _(s):
    data, _ = s.t.probe("fragmented")
    s.raw(encode_frame(False, 0, OP_TEXT, data[:5]) + encode_frame(True, 4, OP_CONT, data[5:]))
    s.expect_close(1002)


# Category 4: reserved opcodes.
def _opcode_case(cid, opcode, before=False):
    kind = "non-control" if opcode < 8 else "control"
    title = "reserved %s opcode 0x%X%s" % (kind, opcode, " after a valid message, then a ping"
                                           if before else "")

    @case(cid, title)
    def _(s):
        if before:
            probe = s.message("Hello")
        wire = encode_frame(True, 0, opcode, b"reserved opcode payload")
        if before:
            wire += encode_frame(True, 0, OP_PING, b"must not be answered")
        s.raw(wire)
        if before:
            s.expect_answer(probe, may_be_lost=True)
        s.expect_close(1002)


for _i, _op in enumerate((3, 4, 5, 6, 7)):
    _opcode_case("4.1.%d" % (_i + 1), _op, before=_i % 2 == 1)
for _i, _op in enumerate((0xB, 0xC, 0xD, 0xE, 0xF)):
    _opcode_case("4.2.%d" % (_i + 1), _op, before=_i % 2 == 1)


# Category 5: fragmentation.
@case("5.1", "ping in two fragments")
def _(s):
    s.raw(encode_frame(False, 0, OP_PING, b"frag1") + encode_frame(True, 0, OP_CONT, b"frag2"))
    s.expect_close(1002)


@case("5.2", "pong in two fragments")
def _(s):
    s.raw(encode_frame(False, 0, OP_PONG, b"frag1") + encode_frame(True, 0, OP_CONT, b"frag2"))
    s.expect_close(1002)


def _fragmented(s, text, pieces, opcode=OP_TEXT, interleave=None, delay=0.0):
    """Send ``text`` as a message in ``pieces`` fragments (by bytes);
    ``interleave(i)`` may return extra frames written after fragment i."""
    data, expected = s.t.probe(text)
    step = max(1, -(-len(data) // pieces))
    chunks = [data[i:i + step] for i in range(0, len(data), step)]
    for i, chunk in enumerate(chunks):
        fin = i == len(chunks) - 1
        wire = encode_frame(fin, 0, opcode if i == 0 else OP_CONT, chunk)
        if interleave and not fin:
            wire += interleave(i)
        s.raw(wire)
        if delay:
            time.sleep(delay)
    return (expected, opcode)


@case("5.3", "text message in two fragments, one write")
def _(s):
    s.expect_answer(_fragmented(s, "fragment1fragment2", 2))


@case("5.4", "text message in two fragments, written apart")
def _(s):
    s.expect_answer(_fragmented(s, "fragment1fragment2", 2, delay=0.05))


@case("5.5", "binary message in 8 fragments")
def _(s):
    s.expect_answer(_fragmented(s, "binary-fragmented-in-eight", 8, opcode=OP_BINARY))


@case("5.6", "text in two fragments with a ping between them")
def _(s):
    probe = _fragmented(s, "fragment1fragment2", 2,
                        interleave=lambda i: encode_frame(True, 0, OP_PING, b"in between"))
    s.expect_pong(b"in between")
    s.expect_answer(probe)


@case("5.7", "text in three fragments with a ping after each of the first two, written apart")
def _(s):
    probe = _fragmented(s, "fragment1fragment2fragment3", 3,
                        interleave=lambda i: encode_frame(True, 0, OP_PING, b"ping-%d" % i),
                        delay=0.05)
    s.expect_pong(b"ping-0")
    s.expect_pong(b"ping-1")
    s.expect_answer(probe)


@case("5.8", "text message whose first fragment is empty and a middle one is empty")
def _(s):
    data, expected = s.t.probe("empty-fragments")
    s.raw(encode_frame(False, 0, OP_TEXT, b"") + encode_frame(False, 0, OP_CONT, data[:6])
          + encode_frame(False, 0, OP_CONT, b"") + encode_frame(True, 0, OP_CONT, data[6:]))
    s.expect_answer((expected, OP_TEXT))


@case("5.9", "continuation (FIN) without a message to continue")
def _(s):
    s.frame(True, 0, OP_CONT, b"non-continuation payload")
    s.expect_close(1002)


@case("5.10", "continuation (not FIN) without a message to continue")
def _(s):
    s.frame(False, 0, OP_CONT, b"non-continuation payload")
    s.expect_close(1002)


@case("5.11", "continuation without start after a complete message")
def _(s):
    probe = s.message("complete")
    s.frame(True, 0, OP_CONT, b"dangling continuation")
    s.expect_answer(probe, may_be_lost=True)
    s.expect_close(1002)


@case("5.12", "new text frame while a fragmented message is open")
def _(s):
    data, _ = s.t.probe("fragment1")
    s.raw(encode_frame(False, 0, OP_TEXT, data[:4]) + encode_frame(True, 0, OP_TEXT, data))
    s.expect_close(1002)


@case("5.13", "new binary frame (not FIN) while a fragmented text message is open")
def _(s):
    data, _ = s.t.probe("fragment1")
    s.raw(encode_frame(False, 0, OP_TEXT, data[:4]) + encode_frame(False, 0, OP_BINARY, data))
    s.expect_close(1002)


@case("5.14", "complete fragmented message, then a dangling continuation")
def _(s):
    probe = _fragmented(s, "fragment1fragment2", 2)
    s.frame(False, 0, OP_CONT, b"fragment3")
    s.expect_answer(probe, may_be_lost=True)
    s.expect_close(1002)


@case("5.15", "close frame in the middle of a fragmented message is answered")
def _(s):
    data, _ = s.t.probe("fragment1fragment2")
    s.raw(encode_frame(False, 0, OP_TEXT, data[:5])
          + encode_frame(True, 0, OP_CLOSE, struct.pack("!H", 1000))
          + encode_frame(True, 0, OP_CONT, data[5:]))
    s.expect_close(1000)


# Category 6: UTF-8 handling.
VALID_UTF8 = [
    ("6.1.1", "empty text message", ""),
    ("6.2.1", "Greek 'kosme'", "\u03ba\u1f79\u03c3\u03bc\u03b5"),
    ("6.2.2", "mixed scripts and emoji", "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!! \U0001F600"),
    ("6.5.1", "first 2-byte sequence U+0080", "\u0080"),
    ("6.5.2", "first 3-byte sequence U+0800", "\u0800"),
    ("6.5.3", "first 4-byte sequence U+10000", "\U00010000"),
    ("6.5.4", "last 2-byte sequence U+07FF", "\u07ff"),
    ("6.5.5", "last 3-byte sequence U+FFFF", "\uffff"),
    ("6.5.6", "last code point U+10FFFF", "\U0010ffff"),
    ("6.5.7", "U+D7FF (before the surrogates)", "\ud7ff"),
    ("6.5.8", "U+E000 (after the surrogates)", "\ue000"),
    ("6.5.9", "U+FFFD", "\ufffd"),
    ("6.5.10", "non-characters U+FFFE U+FDD0 U+1FFFF", "\ufffe\ufdd0\U0001ffff"),
]

INVALID_UTF8 = [
    ("6.3.1", "surrogate U+D800 inside valid text",
     b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
    ("6.6.1", "lone continuation byte 0x80", b"\x80"),
    ("6.6.2", "lone continuation byte 0xBF", b"\xbf"),
    ("6.6.3", "2-byte start without continuation", b"\xc3 "),
    ("6.6.4", "0xFE", b"\xfe"),
    ("6.6.5", "0xFF", b"\xff"),
    ("6.6.6", "overlong '/' (2 bytes)", b"\xc0\xaf"),
    ("6.6.7", "overlong '/' (3 bytes)", b"\xe0\x80\xaf"),
    ("6.6.8", "overlong '/' (4 bytes)", b"\xf0\x80\x80\xaf"),
    ("6.6.9", "overlong NUL (2 bytes)", b"\xc0\x80"),
    ("6.6.10", "5-byte sequence", b"\xf8\x88\x80\x80\xaf"),
    ("6.6.11", "6-byte sequence", b"\xfc\x84\x80\x80\x80\xaf"),
    ("6.6.12", "code point above U+10FFFF", b"\xf4\x90\x80\x80"),
    ("6.6.13", "surrogate U+DFFF", b"\xed\xbf\xbf"),
    ("6.6.14", "surrogate pair encoded as two 3-byte sequences", b"\xed\xa0\x80\xed\xb0\x80"),
    ("6.6.15", "3-byte sequence missing its last byte, then ASCII", b"\xe1\xbd" + b"x"),
]

TRUNCATED_AT_END = [
    ("6.3.2", "message ends inside a 2-byte sequence", b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce"),
    ("6.3.3", "message ends inside a 4-byte sequence", b"ok\xf0\x9f\x98"),
]


def _valid_utf8_case(cid, title, text):
    @case(cid, "valid UTF-8: " + title)
    def _(s):
        s.expect_answer(s.message(text))


def _invalid_utf8_case(cid, title, raw):
    @case(cid, "invalid UTF-8: " + title)
    def _(s):
        data, _ = s.t.probe_raw(raw)
        s.frame(True, 0, OP_TEXT, data)
        s.expect_close(1007)


for _cid, _title, _text in VALID_UTF8:
    _valid_utf8_case(_cid, _title, _text)
for _cid, _title, _raw in INVALID_UTF8:
    _invalid_utf8_case(_cid, _title, _raw)


def _truncated_case(cid, title, raw):
    @case(cid, "invalid UTF-8: " + title)
    def _(s):
        data, offset = s.t.probe_raw(raw)
        # The message must end right after the raw bytes: cut what follows.
        s.frame(True, 0, OP_TEXT, data[:offset + len(raw)])
        s.expect_close(1007)


for _cid, _title, _raw in TRUNCATED_AT_END:
    _truncated_case(_cid, _title, _raw)


@case("6.7.1", "valid UTF-8 split inside every multi-byte sequence across fragments")
def _(s):
    text = "\u03ba\u1f79\u03c3\u03bc\u03b5 \U0001F600 \u0800"
    data, expected = s.t.probe(text)
    # One fragment per byte: every code point is split at every position.
    wire = b"".join(encode_frame(i == len(data) - 1, 0, OP_TEXT if i == 0 else OP_CONT,
                                 data[i:i + 1]) for i in range(len(data)))
    s.raw(wire)
    s.expect_answer((expected, OP_TEXT))


@case("6.7.2", "invalid UTF-8 that only shows across a fragment boundary")
def _(s):
    raw = b"\xce\xba\xed"          # ... then \xa0\x80 in the next fragment: U+D800
    data, offset = s.t.probe_raw(raw + b"\xa0\x80")
    cut = offset + len(raw)
    s.raw(encode_frame(False, 0, OP_TEXT, data[:cut]) + encode_frame(True, 0, OP_CONT, data[cut:]))
    s.expect_close(1007)


@case("6.7.3", "fail fast: invalid fragment closes before the message ends")
def _(s):
    data, offset = s.t.probe_raw(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80" + b"x" * 10)
    cut = offset + 10   # first fragment valid, second starts with more valid bytes then invalid
    s.frame(False, 0, OP_TEXT, data[:cut])
    s.frame(False, 0, OP_CONT, data[cut:])
    # No final fragment is sent: the close must come anyway.
    s.expect_close(1007)


@case("6.7.4", "fail fast: invalid bytes inside an incomplete frame")
def _(s):
    data, offset = s.t.probe_raw(b"\xce\xba\xf4\x90\x80\x80" + b"x" * 200)
    wire = encode_frame(True, 0, OP_TEXT, data)
    # Write the header and the payload up to just after the invalid bytes only.
    header = len(wire) - len(data)
    s.raw(wire[:header + offset + 6])
    s.expect_close(1007)


@case("6.8.1", "invalid UTF-8 in a binary message is fine")
def _(s):
    if s.t.kind == "echo":
        data = b"\xff\xfe\xed\xa0\x80\xc0\xaf"
        s.frame(True, 0, OP_BINARY, data)
        s.expect_answer((("echo", data), OP_BINARY))
    else:
        # wscluster answers any non-JSON message with bad_json; the point is
        # that the connection is not failed with 1007.
        s.frame(True, 0, OP_BINARY, b"\xff\xfe\xed\xa0\x80\xc0\xaf")
        s.expect_answer((("bad_json", None), OP_BINARY))
        s.expect_alive()


# Category 7: the closing handshake.
@case("7.1.1", "probe, then close 1000: answer, then close 1000 echoed",
      note="an asynchronous server (wscluster) may answer the close before the probe and "
           "then must not send the answer (RFC 5.5.1); the echo server always answers first")
def _(s):
    probe = s.message("Hello World!")
    s.frame(True, 0, OP_CLOSE, struct.pack("!H", 1000))
    s.expect_answer(probe, may_be_lost=True)
    s.expect_close(1000, echo=False)


@case("7.1.2", "two close frames: one close answered")
def _(s):
    s.raw(encode_frame(True, 0, OP_CLOSE, struct.pack("!H", 1000)) * 2)
    s.expect_close(1000, echo=False)


@case("7.1.3", "close, then ping: no pong after the close")
def _(s):
    s.raw(encode_frame(True, 0, OP_CLOSE, struct.pack("!H", 1000))
          + encode_frame(True, 0, OP_PING, b"after close"))
    s.expect_close(1000, echo=False)


@case("7.1.4", "close, then a message: no answer after the close")
def _(s):
    data, _ = s.t.probe("after close")
    s.raw(encode_frame(True, 0, OP_CLOSE, struct.pack("!H", 1000))
          + encode_frame(True, 0, OP_TEXT, data))
    s.expect_close(1000, echo=False)


@case("7.3.1", "close without payload is answered with 1000",
      note="RFC 5.5.1 only says the echo is typically the received code; there is none")
def _(s):
    s.frame(True, 0, OP_CLOSE, b"")
    s.expect_close(1000, echo=False)


@case("7.3.2", "close with a 1-byte payload")
def _(s):
    s.frame(True, 0, OP_CLOSE, b"\x03")
    s.expect_close(1002)


@case("7.3.3", "close 1000 without reason")
def _(s):
    s.frame(True, 0, OP_CLOSE, struct.pack("!H", 1000))
    s.expect_close(1000, echo=False)


@case("7.3.4", "close 1000 with a reason")
def _(s):
    s.frame(True, 0, OP_CLOSE, struct.pack("!H", 1000) + b"Hello World!")
    s.expect_close(1000, echo=False)


@case("7.3.5", "close 1000 with a 123-byte reason (125-byte payload)")
def _(s):
    s.frame(True, 0, OP_CLOSE, struct.pack("!H", 1000) + b"*" * 123)
    s.expect_close(1000, echo=False)


@case("7.3.6", "close 1000 with a 124-byte reason (control frame too long)")
def _(s):
    s.frame(True, 0, OP_CLOSE, struct.pack("!H", 1000) + b"*" * 124)
    s.expect_close(1002)


@case("7.5.1", "close with a reason that is not UTF-8",
      note="Beast answers 1002; RFC 8.1 only requires failing the connection "
           "(Autobahn 7.5.1 accepts 1002 or 1007)")
def _(s):
    s.frame(True, 0, OP_CLOSE, struct.pack("!H", 1000) + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80")
    s.expect_close(1002)


def _close_code_case(cid, code, expect, note=None):
    title = "close code %d: %s" % (code, "echoed" if expect == code else "refused with %d" % expect)

    @case(cid, title, note=note, echoes_close=expect == code)
    def _(s):
        s.frame(True, 0, OP_CLOSE, struct.pack("!H", code) + b"reason")
        s.expect_close(expect, echo=False)


for _i, _code in enumerate((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                            3000, 3999, 4000, 4001, 4003, 4999)):
    _close_code_case("7.7.%d" % (_i + 1), _code, _code)
for _i, _code in enumerate((0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 1100, 2000, 2999)):
    _close_code_case("7.9.%d" % (_i + 1), _code, 1002,
                     note="registered by IANA after RFC 6455; Beast treats it as reserved"
                     if _code == 1014 else None)
_close_code_case("7.13.1", 5000, 5000,
                 note="undefined by RFC 6455 7.4.2; Beast accepts and echoes codes >= 5000")
_close_code_case("7.13.2", 65535, 65535,
                 note="undefined by RFC 6455 7.4.2; Beast accepts and echoes codes >= 5000")


# Category 10: auto-fragmented large message.
@case("10.1.1", "65536-byte text message in 1300-byte fragments")
def _(s):
    data, expected = s.t.probe_of_length(65536)
    wire = b"".join(encode_frame(i + 1300 >= len(data), 0, OP_TEXT if i == 0 else OP_CONT,
                                 data[i:i + 1300]) for i in range(0, len(data), 1300))
    s.raw(wire)
    s.expect_answer((expected, OP_TEXT))


# Opening handshake (RFC 6455 4.2).
class HandshakeCase(Case):
    pass


HANDSHAKE_CASES = []


def handshake_case(cid, title):
    def register(fn):
        HANDSHAKE_CASES.append(HandshakeCase(cid, title, fn))
        return fn
    return register


@handshake_case("H.1", "permessage-deflate offered: not accepted (no Sec-WebSocket-Extensions)")
def _(t):
    ws = t.connect(headers={"Sec-WebSocket-Extensions":
                            "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame"})
    try:
        ext = ws.handshake_headers.get("sec-websocket-extensions")
        if ext:
            raise CaseFailure("server accepted extensions: %r" % ext)
        s = Session(t, ws)
        # With no extension, RSV1 must still be refused.
        data, _ = t.probe("compressed?")
        s.frame(True, 4, OP_TEXT, data)
        s.expect_close(1002)
    finally:
        ws._abort()


@handshake_case("H.2", "Sec-WebSocket-Version 8: 426 naming version 13")
def _(t):
    try:
        ws = t.connect(headers={"Sec-WebSocket-Version": "8"})
    except HandshakeError as e:
        if e.status != 426:
            raise CaseFailure("expected HTTP 426, got %s" % e.status) from None
        if "13" not in e.headers.get("sec-websocket-version", ""):
            raise CaseFailure("426 without Sec-WebSocket-Version: 13: %r" % e.headers) from None
        return
    ws._abort()
    raise CaseFailure("handshake with version 8 was accepted")


@handshake_case("H.3", "missing Sec-WebSocket-Key: 400")
def _(t):
    # A header the client writes by itself is replaced; an empty key is the
    # nearest to "missing" that goes through WebSocket(); send by hand.
    with socket.create_connection((t.host, t.port), timeout=t.timeout) as sock:
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (t.path, t.host, t.port))
        sock.sendall(req.encode())
        head = b""
        deadline = time.monotonic() + t.timeout
        while b"\r\n" not in head and time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        parts = head.split(b" ", 2)
        if len(parts) < 2 or parts[1] != b"400":
            raise CaseFailure("expected HTTP 400, got %r" % head[:80])


@handshake_case("H.4", "subprotocol offered but not supported: 101 without Sec-WebSocket-Protocol")
def _(t):
    ws = t.connect(headers={"Sec-WebSocket-Protocol": "chat, superchat"})
    try:
        proto = ws.handshake_headers.get("sec-websocket-protocol")
        if proto:
            raise CaseFailure("server selected a subprotocol it was not built for: %r" % proto)
        Session(t, ws).expect_alive()
    finally:
        ws._abort()


# -- running -----------------------------------------------------------------------------

class Result:
    def __init__(self, case, ok, detail="", seconds=0.0, expected_closes=()):
        self.case, self.ok, self.detail, self.seconds = case, ok, detail, seconds
        self.expected_closes = list(expected_closes)

    def __repr__(self):
        return "%s %-7s %s%s" % ("PASS" if self.ok else "FAIL", self.case.cid, self.case.title,
                                 "" if self.ok else "\n        -> " + self.detail)


def run_case(target, c):
    start = time.monotonic()
    session = None
    try:
        if isinstance(c, HandshakeCase):
            c.run(target)
        else:
            ws = target.connect()
            try:
                session = Session(target, ws)
                c.run(session)
            finally:
                ws._abort()
        return Result(c, True, seconds=time.monotonic() - start,
                      expected_closes=session.expected_closes if session else ())
    except (CaseFailure, HandshakeError, OSError, TimeoutError, ConnectionClosed) as e:
        return Result(c, False, "%s: %s" % (type(e).__name__, e), time.monotonic() - start,
                      session.expected_closes if session else ())


def selected_cases(target, pattern=None):
    out = []
    for c in CASES + HANDSHAKE_CASES:
        if c.kinds and target.kind not in c.kinds:
            continue
        if pattern and not (c.cid.startswith(pattern) or pattern in c.title):
            continue
        out.append(c)
    return out


def run_all(target, pattern=None, verbose=False, stream=None):
    results = []
    for c in selected_cases(target, pattern):
        r = run_case(target, c)
        results.append(r)
        if stream is not None and (verbose or not r.ok):
            stream.write("%r\n" % r)
    return results


def summary(results):
    failed = [r for r in results if not r.ok]
    return "conformance: %d cases, %d failures" % (len(results), len(failed))


def make_target(kind, host, port, path="/ws", query=None, timeout=None):
    if kind == "echo":
        target = EchoTarget(host, port, path or "/", query)
    elif kind == "wscluster":
        target = WsclusterTarget(host, port, path, query)
    else:
        raise ValueError("unknown target kind %r" % kind)
    if timeout is not None:
        target.timeout = timeout
    return target


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=("echo", "wscluster"), default="wscluster")
    ap.add_argument("--host", default=HOST)
    ap.add_argument("--port", type=int)
    ap.add_argument("--path", default=None)
    ap.add_argument("-k", "--pattern", help="only cases whose id starts with / title contains this")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--build-reference", metavar="DIR", help="build the reference server and exit")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--timeout", type=float, default=None, help="bound of each wait (s)")
    args = ap.parse_args(argv)
    if args.build_reference:
        print(build_reference(args.build_reference))
        return 0
    if args.list:
        for c in CASES + HANDSHAKE_CASES:
            print("%-7s %s%s" % (c.cid, c.title, "  [%s]" % c.note if c.note else ""))
        return 0
    if args.port is None:
        ap.error("--port is required")
    path = args.path if args.path is not None else ("/" if args.target == "echo" else "/ws")
    target = make_target(args.target, args.host, args.port, path, timeout=args.timeout)
    results = run_all(target, args.pattern, args.verbose, sys.stdout)
    print(summary(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

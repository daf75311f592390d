"""A small synchronous WebSocket client (RFC 6455) built on ``socket`` only.

It is deliberately low level so that it can serve both the wscluster
integration tests and, later, an RFC 6455 conformance harness:

* the opening handshake is written by hand (custom path, query, headers); a
  rejected handshake raises :class:`HandshakeError` carrying the HTTP status,
  headers and body the server answered before the upgrade;
* every frame can be sent raw (:meth:`WebSocket.send_frame` with any FIN, RSV,
  opcode, payload, with or without a mask) and received raw
  (:meth:`WebSocket.recv_frame`);
* :meth:`WebSocket.recv` returns whole messages ``(opcode, payload)``,
  reassembling fragments and checking what the server sent against the RFC
  (unmasked frames, no RSV bits, control frames <= 125 bytes and not
  fragmented, valid UTF-8 in text messages); ping and pong frames are returned
  to the caller as they arrive;
* :meth:`WebSocket.recv_json` / :meth:`WebSocket.wait_for` work at the JSON
  level: they answer pings with pongs, skip pongs, and ``wait_for`` keeps the
  frames that did not match so a later call still sees them;
* when the server closes, :attr:`WebSocket.close_code` and
  :attr:`WebSocket.close_reason` hold what it said and every further read
  raises :class:`ConnectionClosed`.  An EOF or a TCP reset without a close
  frame also counts as closed; ``close_code`` is then 1006 (the RFC's
  "abnormal closure", never sent on the wire) and
  :attr:`WebSocket.close_frame_received` is False.

Every blocking call is bounded by a timeout (the ``timeout`` given to the
constructor unless a call says otherwise); running out raises
:class:`TimeoutError` and leaves the connection usable (a partly received
frame stays buffered).
"""

import base64
import collections
import hashlib
import json
import os
import socket
import struct
import time
import urllib.parse

__all__ = [
    "OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG",
    "WebSocketError", "HandshakeError", "ProtocolError", "ConnectionClosed",
    "Frame", "WebSocket", "connect", "encode_frame", "mask_payload",
    "parse_close_payload",
]

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
_DATA_OPCODES = (OP_CONT, OP_TEXT, OP_BINARY)
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Close code reported locally when the connection ended without a close
# frame (EOF or reset).  RFC 6455 7.4.1: never sent on the wire.
CLOSE_ABNORMAL = 1006
# Close code reported locally when a close frame carried no status code.
CLOSE_NO_STATUS = 1005

_MAX_HANDSHAKE_BYTES = 64 * 1024
_MAX_REJECT_BODY_BYTES = 1024 * 1024


class WebSocketError(Exception):
    """Base class of the errors raised by this module."""


class HandshakeError(WebSocketError):
    """The server answered the opening handshake with something else than 101.

    ``status`` is the HTTP status code (int), ``headers`` a dict with
    lower-case names, ``body`` the raw body bytes (``text`` decodes it).
    ``status`` is None when the answer was not HTTP at all.
    """

    def __init__(self, message, status=None, headers=None, body=b""):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body.decode("utf-8"))


class ProtocolError(WebSocketError):
    """The server sent something RFC 6455 forbids (or that cannot be parsed)."""


class ConnectionClosed(WebSocketError):
    """The connection is closed; ``code``/``reason`` are what the server said.

    ``code`` is 1006 and ``frame_received`` False when the TCP connection
    ended (EOF or reset) without a close frame.
    """

    def __init__(self, code, reason="", frame_received=True):
        if frame_received:
            msg = "connection closed by server: code=%s reason=%r" % (code, reason)
        else:
            msg = "connection closed without a close frame (EOF or reset)"
        super().__init__(msg)
        self.code = code
        self.reason = reason
        self.frame_received = frame_received


Frame = collections.namedtuple("Frame", "fin rsv opcode payload masked")
Frame.__doc__ = """One frame off the wire.

``rsv`` is the 3-bit RSV field as an int (RSV1 = 4, RSV2 = 2, RSV3 = 1),
``masked`` tells whether the frame carried a mask (a server must not mask),
``payload`` is already unmasked.
"""


# -- framing helpers ---------------------------------------------------------

def mask_payload(payload, key):
    """XOR ``payload`` with the 4-byte ``key`` (masking and unmasking alike)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(n, "little")


def encode_frame(fin, rsv, opcode, payload, mask=True, mask_key=None):
    """Encode one frame.

    ``rsv`` is the 3-bit RSV field (0..7), ``opcode`` 0..15.  With ``mask``
    True a mask key is drawn at random unless ``mask_key`` (4 bytes) is
    given.  Lengths use the 7-bit, 16-bit or 64-bit form as RFC 6455 5.2
    requires (the shortest one).  Nothing is validated beyond what the wire
    format can carry, so that conformance tests can send invalid frames.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    payload = bytes(payload)
    if not 0 <= rsv <= 7 or not 0 <= opcode <= 15:
        raise ValueError("rsv must be 0..7 and opcode 0..15")
    head = bytearray()
    head.append((0x80 if fin else 0) | (rsv << 4) | opcode)
    mask_bit = 0x80 if mask else 0
    n = len(payload)
    if n <= 125:
        head.append(mask_bit | n)
    elif n <= 0xFFFF:
        head.append(mask_bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", n)
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        if len(key) != 4:
            raise ValueError("mask_key must be 4 bytes")
        head += key
        payload = mask_payload(payload, key)
    return bytes(head) + payload


def parse_close_payload(payload):
    """Return ``(code, reason)`` of a close frame's payload.

    An empty payload gives ``(1005, "")`` (RFC 6455 7.1.5).  A one-byte
    payload or a reason that is not UTF-8 raises :class:`ProtocolError`.
    """
    if len(payload) == 0:
        return CLOSE_NO_STATUS, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a 1-byte payload")
    (code,) = struct.unpack("!H", payload[:2])
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not valid UTF-8") from None
    return code, reason


def _build_target(path, query):
    if query is None or query == "" or query == {}:
        return path
    if isinstance(query, str):
        q = query.lstrip("?")
    else:
        q = urllib.parse.urlencode(query, doseq=True)
    return path + ("&" if "?" in path else "?") + q


def _header_items(headers):
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers)


def _parse_http_head(raw):
    """Parse a status line plus header block into (status, reason, headers)."""
    text = raw.decode("iso-8859-1")
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise HandshakeError("not an HTTP response: %r" % lines[0][:200])
    try:
        status = int(parts[1])
    except ValueError:
        raise HandshakeError("bad HTTP status line: %r" % lines[0][:200]) from None
    reason = parts[2] if len(parts) > 2 else ""
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError("bad HTTP header line: %r" % line[:200], status)
        name = name.strip().lower()
        value = value.strip()
        headers[name] = headers[name] + ", " + value if name in headers else value
    return status, reason, headers


# -- the client --------------------------------------------------------------

class WebSocket:
    """A client connection.  Usually made with :func:`connect`.

    ``timeout`` (seconds) bounds the TCP connect, the handshake and, unless a
    call gives its own, every read and write.
    """

    def __init__(self, host, port, path="/ws", query=None, headers=None,
                 timeout=5.0, rcvbuf=None, connect=True, source=None):
        self.host = host
        self.port = port
        self.source = source                # local address to connect from
        self.path = path
        self.query = query
        self.extra_headers = _header_items(headers)
        self.timeout = timeout
        self.rcvbuf = rcvbuf
        self.sock = None
        # Response of the handshake (status, lower-case headers).
        self.handshake_status = None
        self.handshake_headers = {}
        # Close state.
        self.closed = False                 # no more reads possible
        self.close_code = None
        self.close_reason = None
        self.close_frame_received = False
        self.close_sent = False
        self.reset = False                  # ended by ECONNRESET/EPIPE
        # Buffers.
        self._buf = bytearray()
        self._frag_opcode = None
        self._frag_parts = []
        self._pending = collections.deque()  # JSON frames kept by wait_for
        self.recent = collections.deque(maxlen=20)  # last frames, for messages
        if connect:
            self.connect()

    # -- handshake ----------------------------------------------------------

    def connect(self):
        """Open TCP and run the opening handshake.

        Raises :class:`HandshakeError` (with status, headers and body) when
        the server answers something else than a valid 101.
        """
        deadline = time.monotonic() + self.timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.rcvbuf is not None:
                # Before connect(), so the advertised window is small too.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            if self.source is not None:
                sock.bind((self.source, 0))
            sock.settimeout(self.timeout)
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        target = _build_target(self.path, self.query)
        names = {name.lower() for name, _ in self.extra_headers}
        lines = ["GET %s HTTP/1.1" % target]
        if "host" not in names:
            lines.append("Host: %s:%d" % (self.host, self.port))
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
        if "sec-websocket-key" not in names:
            lines.append("Sec-WebSocket-Key: " + key)
        if "sec-websocket-version" not in names:
            lines.append("Sec-WebSocket-Version: 13")
        for name, value in self.extra_headers:
            lines.append("%s: %s" % (name, value))
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        try:
            self._sendall(request, deadline)
            head = self._read_http_head(deadline)
            status, _, headers = _parse_http_head(head)
            self.handshake_status, self.handshake_headers = status, headers
            if status != 101:
                body = self._read_http_body(headers, deadline)
                raise HandshakeError("handshake rejected: HTTP %d" % status,
                                     status, headers, body)
            expected = base64.b64encode(
                hashlib.sha1((key + _GUID).encode("ascii")).digest()).decode("ascii")
            if "sec-websocket-key" not in names and headers.get("sec-websocket-accept") != expected:
                raise HandshakeError("bad Sec-WebSocket-Accept: %r"
                                     % headers.get("sec-websocket-accept"), status, headers)
            if headers.get("upgrade", "").lower() != "websocket":
                raise HandshakeError("101 without 'Upgrade: websocket'", status, headers)
        except BaseException:
            self._abort()
            raise
        return self

    def _read_http_head(self, deadline):
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self._buf[:end])
                del self._buf[:end + 4]
                return head
            if len(self._buf) > _MAX_HANDSHAKE_BYTES:
                raise HandshakeError("HTTP response head too large")
            if not self._fill(deadline):
                raise HandshakeError("connection closed during the handshake (got %r)"
                                     % bytes(self._buf[:200]))

    def _read_http_body(self, headers, deadline):
        """Body of a rejected handshake: Content-Length, chunked, or to EOF."""
        try:
            if "content-length" in headers:
                n = int(headers["content-length"])
                while len(self._buf) < n and self._fill(deadline):
                    pass
                return bytes(self._buf[:n])
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return self._read_chunked(deadline)
            while len(self._buf) < _MAX_REJECT_BODY_BYTES and self._fill(deadline):
                pass
            return bytes(self._buf)
        except (TimeoutError, OSError):
            return bytes(self._buf)

    def _read_chunked(self, deadline):
        body = bytearray()
        while True:
            while b"\r\n" not in self._buf:
                if not self._fill(deadline):
                    return bytes(body)
            line, _, rest = bytes(self._buf).partition(b"\r\n")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            self._buf[:] = rest
            if size == 0:
                return bytes(body)
            while len(self._buf) < size + 2:
                if not self._fill(deadline):
                    return bytes(body + self._buf)
            body += self._buf[:size]
            del self._buf[:size + 2]

    # -- low-level I/O ------------------------------------------------------

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _fill(self, deadline):
        """Read more bytes into the buffer.  False on EOF; TimeoutError at deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data from the server")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            raise TimeoutError("timed out waiting for data from the server") from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            self.reset = True
            return False
        if not chunk:
            return False
        self._buf += chunk
        return True

    def _sendall(self, data, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out sending to the server")
        self.sock.settimeout(remaining)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise TimeoutError("timed out sending to the server (is it reading?)") from None

    def _mark_eof(self):
        """The TCP stream ended without a close frame."""
        if not self.closed:
            self.closed = True
            self.close_code = CLOSE_ABNORMAL
            self.close_reason = ""
            self.close_frame_received = False

    def _abort(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass

    # -- sending ------------------------------------------------------------

    def send_raw(self, data, timeout=None):
        """Write raw bytes to the socket (for conformance tests).

        Raises :class:`ConnectionClosed` when the server has gone (EPIPE or
        reset); what it sent before stays readable.
        """
        try:
            self._sendall(data, self._deadline(timeout))
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
            self.reset = True
            raise ConnectionClosed(self.close_code or CLOSE_ABNORMAL, "send failed: %s" % e,
                                   frame_received=self.close_frame_received) from None

    def send_frame(self, fin, rsv, opcode, payload, mask=True, mask_key=None, timeout=None):
        """Send one frame exactly as described (no validation)."""
        self.send_raw(encode_frame(fin, rsv, opcode, payload, mask, mask_key), timeout)

    def send_message(self, opcode, payload, fragment_size=None, timeout=None):
        """Send a whole message, split in frames of ``fragment_size`` bytes if given."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if not fragment_size or len(payload) <= fragment_size:
            self.send_frame(True, 0, opcode, payload, timeout=timeout)
            return
        chunks = [payload[i:i + fragment_size] for i in range(0, len(payload), fragment_size)]
        data = b"".join(
            encode_frame(i == len(chunks) - 1, 0, opcode if i == 0 else OP_CONT, chunk)
            for i, chunk in enumerate(chunks))
        self.send_raw(data, timeout)

    def send_text(self, text, fragment_size=None, timeout=None):
        self.send_message(OP_TEXT, text.encode("utf-8"), fragment_size, timeout)

    def send_binary(self, data, fragment_size=None, timeout=None):
        self.send_message(OP_BINARY, bytes(data), fragment_size, timeout)

    def send_json(self, obj, fragment_size=None, timeout=None):
        self.send_text(json.dumps(obj, separators=(",", ":")), fragment_size, timeout)

    def ping(self, payload=b"", timeout=None):
        self.send_frame(True, 0, OP_PING, payload, timeout=timeout)

    def pong(self, payload=b"", timeout=None):
        self.send_frame(True, 0, OP_PONG, payload, timeout=timeout)

    def send_close(self, code=1000, reason="", timeout=None):
        """Send a close frame (``code=None`` sends an empty one)."""
        payload = b"" if code is None else struct.pack("!H", code) + reason.encode("utf-8")
        self.close_sent = True
        self.send_frame(True, 0, OP_CLOSE, payload, timeout=timeout)

    # -- receiving ----------------------------------------------------------

    def _parse_frame(self):
        """Take one complete frame off the buffer, or None if incomplete."""
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            (n,) = struct.unpack_from("!H", buf, 2)
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            (n,) = struct.unpack_from("!Q", buf, 2)
            if n >> 63:
                raise ProtocolError("64-bit length with the most significant bit set")
            pos = 10
        key = None
        if masked:
            if len(buf) < pos + 4:
                return None
            key = bytes(buf[pos:pos + 4])
            pos += 4
        if len(buf) < pos + n:
            return None
        payload = bytes(buf[pos:pos + n])
        del buf[:pos + n]
        if masked:
            payload = mask_payload(payload, key)
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 0x7, b0 & 0x0F, payload, masked)

    def recv_frame(self, timeout=None):
        """Return the next raw :class:`Frame`, unvalidated.

        Raises :class:`ConnectionClosed` on EOF/reset (or when already
        closed), :class:`TimeoutError` when nothing complete arrives in time.
        Close frames are returned like any other frame; they do not change
        the connection state (use :meth:`recv` for that).
        """
        if self.closed:
            raise ConnectionClosed(self.close_code, self.close_reason, self.close_frame_received)
        deadline = self._deadline(timeout)
        while True:
            frame = self._parse_frame()
            if frame is not None:
                self.recent.append(frame)
                return frame
            if not self._fill(deadline):
                self._mark_eof()
                raise ConnectionClosed(self.close_code, self.close_reason, False)

    def _check_frame(self, f):
        if f.masked:
            raise ProtocolError("server sent a masked frame")
        if f.rsv:
            raise ProtocolError("server set RSV bits %d without an extension" % f.rsv)
        if f.opcode not in _CONTROL_OPCODES and f.opcode not in _DATA_OPCODES:
            raise ProtocolError("reserved opcode 0x%x" % f.opcode)
        if f.opcode in _CONTROL_OPCODES:
            if not f.fin:
                raise ProtocolError("fragmented control frame")
            if len(f.payload) > 125:
                raise ProtocolError("control frame payload of %d bytes" % len(f.payload))

    def _handle_close_frame(self, payload):
        code, reason = parse_close_payload(payload)
        self.closed = True
        self.close_code, self.close_reason = code, reason
        self.close_frame_received = True
        if not self.close_sent:
            # RFC 6455 5.5.1: answer with a close frame, echoing the code.
            try:
                echo = b"" if code == CLOSE_NO_STATUS else struct.pack("!H", code)
                self.close_sent = True
                self._sendall(encode_frame(True, 0, OP_CLOSE, echo), time.monotonic() + 1.0)
            except (OSError, TimeoutError):
                pass
        raise ConnectionClosed(code, reason, True)

    def recv(self, timeout=None):
        """Return the next message or control frame as ``(opcode, payload)``.

        Data messages are reassembled (opcode OP_TEXT or OP_BINARY); text is
        checked to be UTF-8 but returned as bytes.  Ping and pong frames are
        returned as they come (also between fragments).  A close frame sets
        ``close_code``/``close_reason``, is answered with a close frame and
        raises :class:`ConnectionClosed`, as do EOF and reset.
        """
        deadline = self._deadline(timeout)
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            self._check_frame(f)
            if f.opcode == OP_CLOSE:
                self._handle_close_frame(f.payload)
            if f.opcode in (OP_PING, OP_PONG):
                return f.opcode, f.payload
            if f.opcode == OP_CONT:
                if self._frag_opcode is None:
                    raise ProtocolError("continuation frame without a message to continue")
                self._frag_parts.append(f.payload)
                if not f.fin:
                    continue
                opcode, payload = self._frag_opcode, b"".join(self._frag_parts)
                self._frag_opcode, self._frag_parts = None, []
            else:
                if self._frag_opcode is not None:
                    raise ProtocolError("new data frame inside a fragmented message")
                if not f.fin:
                    self._frag_opcode, self._frag_parts = f.opcode, [f.payload]
                    continue
                opcode, payload = f.opcode, f.payload
            if opcode == OP_TEXT:
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise ProtocolError("text message is not valid UTF-8") from None
            return opcode, payload

    def recv_json(self, timeout=None):
        """Return the next JSON text message as a Python object.

        Pings are answered with pongs, pongs are skipped.  Frames kept by an
        earlier :meth:`wait_for` come first.  A binary message or text that
        is not JSON raises :class:`ProtocolError`.
        """
        if self._pending:
            return self._pending.popleft()
        deadline = self._deadline(timeout)
        while True:
            opcode, payload = self.recv(max(0.0, deadline - time.monotonic()))
            if opcode == OP_PING:
                try:
                    self.pong(payload, timeout=1.0)
                except (ConnectionClosed, TimeoutError):
                    pass
                continue
            if opcode == OP_PONG:
                continue
            if opcode != OP_TEXT:
                raise ProtocolError("expected a JSON text message, got opcode 0x%x (%d bytes)"
                                    % (opcode, len(payload)))
            text = payload.decode("utf-8")
            try:
                return json.loads(text)
            except ValueError:
                raise ProtocolError("text message is not JSON: %r" % text[:200]) from None

    def wait_for(self, predicate, timeout=None, what=None):
        """Return the first JSON frame for which ``predicate(frame)`` is true.

        Non-matching frames are kept, in order, for later ``recv_json`` /
        ``wait_for`` calls.  Raises :class:`TimeoutError` listing what was
        seen, or :class:`ConnectionClosed`.
        """
        for i, frame in enumerate(self._pending):
            if predicate(frame):
                del self._pending[i]
                return frame
        deadline = self._deadline(timeout)
        seen = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError()
                frame = self._recv_json_wire(remaining)
            except TimeoutError:
                self._pending.extend(seen)
                raise TimeoutError("timed out waiting for %s; unmatched frames received: %s"
                                   % (what or "a matching frame", _short(seen))) from None
            except BaseException:
                self._pending.extend(seen)
                raise
            if predicate(frame):
                self._pending.extend(seen)
                return frame
            seen.append(frame)
            if len(seen) > 100000:
                raise WebSocketError("wait_for: more than 100000 unmatched frames")

    def _recv_json_wire(self, timeout):
        # Like recv_json but never consults the pending queue.
        saved, self._pending = self._pending, collections.deque()
        try:
            return self.recv_json(timeout)
        finally:
            self._pending = saved

    def collect(self, duration):
        """Return every JSON frame that arrives within ``duration`` seconds.

        Includes frames kept by ``wait_for``.  Stops early, without raising,
        when the connection closes.
        """
        frames = list(self._pending)
        self._pending.clear()
        deadline = time.monotonic() + duration
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return frames
            try:
                frames.append(self.recv_json(remaining))
            except TimeoutError:
                return frames
            except ConnectionClosed:
                return frames

    def wait_closed(self, timeout=None, max_frames=1000000):
        """Read (and discard) until the server closes; return ``close_code``.

        Returns 1006 when the connection ended without a close frame.
        Raises :class:`TimeoutError` if it is still open at the deadline.
        """
        deadline = self._deadline(timeout)
        for _ in range(max_frames):
            if self.closed:
                return self.close_code
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                opcode, payload = self.recv(remaining)
            except ConnectionClosed:
                return self.close_code
            except TimeoutError:
                break
            if opcode == OP_PING:
                try:
                    self.pong(payload, timeout=1.0)
                except (ConnectionClosed, TimeoutError):
                    pass
        if self.closed:
            return self.close_code
        raise TimeoutError("connection still open after %.1fs" % (
            (self.timeout if timeout is None else timeout)))

    def wait_eof(self, timeout=None):
        """After a close frame: True when the server then closed TCP in time."""
        deadline = self._deadline(timeout)
        self._buf.clear()
        try:
            while self._fill(deadline):
                self._buf.clear()
        except TimeoutError:
            return False
        except OSError:
            return True
        return True

    # -- closing ------------------------------------------------------------

    def close(self, code=1000, reason="", timeout=1.0):
        """Close politely (bounded by ``timeout``), then close the socket.

        Never raises because the server is already gone.
        """
        if self.sock is None:
            return
        try:
            if not self.closed and not self.close_sent:
                self.send_close(code, reason, timeout=timeout)
                self.wait_closed(timeout)
        except (WebSocketError, OSError, TimeoutError):
            pass
        finally:
            self._abort()
            self.closed = True
            if self.close_code is None:
                self.close_code = CLOSE_ABNORMAL
                self.close_reason = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return "<WebSocket %s:%s%s %s>" % (self.host, self.port, self.path,
                                            "closed(%s)" % self.close_code if self.closed else "open")


def _short(frames, limit=10):
    text = ", ".join(json.dumps(f)[:200] for f in frames[-limit:])
    if len(frames) > limit:
        text = "(%d earlier) " % (len(frames) - limit) + text
    return "[" + text + "]"


def connect(host, port, path="/ws", query=None, headers=None, timeout=5.0, rcvbuf=None):
    """Open a WebSocket connection; see :class:`WebSocket`."""
    return WebSocket(host, port, path, query, headers, timeout, rcvbuf)

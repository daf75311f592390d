"""A minimal asyncio WebSocket client (RFC 6455), standard library only.

Enough for the fault suite: a client handshake on ``ws://127.0.0.1:<port>``,
masked text frames out, text/close/ping frames in (pings answered with
pongs), a bounded handshake, and a way to stop reading (for the slow-reader
scenario): simply stop calling :meth:`WSConn.recv` - with a small
``rcvbuf`` and a small stream ``limit`` the kernel window closes quickly.
"""

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Closed(Exception):
    """The connection is gone: ``code`` is the peer's close code (None when
    the TCP connection broke without a close frame)."""

    def __init__(self, code=None, reason="", how="close"):
        super().__init__("closed (%s %s %s)" % (how, code, reason))
        self.code = code
        self.reason = reason
        self.how = how


class HandshakeFailed(Exception):
    pass


def _mask(payload, key):
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def _frame(opcode, payload):
    head = bytearray([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head.append(0x80 | n)
    elif n < 65536:
        head.append(0x80 | 126)
        head += struct.pack("!H", n)
    else:
        head.append(0x80 | 127)
        head += struct.pack("!Q", n)
    key = os.urandom(4)
    return bytes(head) + key + _mask(payload, key)


class WSConn:
    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.closed = None  # Closed once known
        self.close_sent = False

    # -- sending -----------------------------------------------------------

    def send_json(self, obj):
        """Queues one text frame (no await: the transport buffers it).
        Raises Closed when the connection is already known to be gone."""
        if self.closed is not None:
            raise self.closed
        if self.writer.is_closing():
            self.closed = Closed(None, "transport closing", "eof")
            raise self.closed
        self.writer.write(_frame(0x1, json.dumps(obj, separators=(",", ":")).encode()))

    def send_close(self, code=1000, reason=""):
        if self.close_sent or self.writer.is_closing():
            return
        self.close_sent = True
        try:
            self.writer.write(_frame(0x8, struct.pack("!H", code) + reason.encode()[:100]))
        except (OSError, RuntimeError):
            pass

    def abort(self):
        """Drops the TCP connection at once."""
        try:
            self.writer.transport.abort()
        except (OSError, RuntimeError, AttributeError):
            pass

    async def close(self, code=1000, timeout=1.0):
        self.send_close(code)
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), timeout)
        except (OSError, asyncio.TimeoutError, RuntimeError):
            self.abort()
        except Exception:  # noqa: BLE001 - a closing socket may raise anything
            self.abort()

    # -- receiving ---------------------------------------------------------

    async def recv(self):
        """The next text frame as a str; answers pings; raises Closed."""
        if self.closed is not None:
            raise self.closed
        parts = []
        try:
            while True:
                b0, b1 = await self.reader.readexactly(2)
                fin, opcode = b0 & 0x80, b0 & 0x0F
                n = b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
                key = await self.reader.readexactly(4) if b1 & 0x80 else None
                payload = await self.reader.readexactly(n) if n else b""
                if key:
                    payload = _mask(payload, key)
                if opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    reason = payload[2:].decode("utf-8", "replace")
                    self.send_close(code if code not in (1005, 1006) else 1000)
                    self.closed = Closed(code, reason, "close")
                    self.abort_later()
                    raise self.closed
                if opcode == 0x9:
                    if not self.writer.is_closing():
                        self.writer.write(_frame(0xA, payload))
                    continue
                if opcode == 0xA:
                    continue
                parts.append(payload)
                if fin:
                    return b"".join(parts).decode("utf-8")
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            self.closed = Closed(None, repr(e), "eof")
            self.abort()
            raise self.closed from None

    def abort_later(self):
        asyncio.get_running_loop().call_later(0.5, self.abort)


async def connect(host, port, path="/ws", query=None, timeout=3.0, rcvbuf=None, limit=2 ** 16):
    """Opens a WebSocket; returns WSConn. Raises HandshakeFailed / OSError /
    asyncio.TimeoutError. ``query`` is a ready query string."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
    except BaseException:
        sock.close()
        raise
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        target = path + ("?" + query if query else "")
        writer.write(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n" % (target, host, port, key)).encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            raise HandshakeFailed(lines[0])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != want:
            raise HandshakeFailed("bad Sec-WebSocket-Accept")
    except BaseException:
        writer.transport.abort()
        raise
    return WSConn(reader, writer)


async def http_get(host, port, path, timeout=1.0):
    """(status, parsed JSON body or text) of one HTTP/1.1 GET."""
    async def go():
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
                          % (path, host, port)).encode())
            raw = await reader.read()
        finally:
            writer.transport.abort()
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if b"transfer-encoding: chunked" in head.lower():
            out, rest = b"", body
            while rest:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                out += rest[:size]
                rest = rest[size + 2:]
            body = out
        text = body.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text
    return await asyncio.wait_for(go(), timeout)

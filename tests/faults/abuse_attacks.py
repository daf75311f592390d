"""Building blocks of the abuse soak (``abuse.py``): a raw async HTTP client,
forged relay payloads in CAF 0.17's binary format, a forged BASP header, and
the invalid-name probes. Standard library only; only 127.0.0.1.
"""

import asyncio
import json
import os
import random
import struct

# -- HTTP ------------------------------------------------------------------------


async def http(host, port, method, path, body=None, headers=None, timeout=5.0,
               upgrade=False, max_bytes=1 << 20):
    """One HTTP/1.1 request on a fresh connection: ``(status, text)``.
    ``status`` is None when the connection closed without a status line (an
    empty reply). ``body``: bytes, str or a JSON-able object."""
    async def go():
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 16)
        try:
            data = b""
            if body is not None:
                if isinstance(body, bytes):
                    data = body
                elif isinstance(body, str):
                    data = body.encode()
                else:
                    data = json.dumps(body, separators=(",", ":")).encode()
            lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%d" % (host, port),
                     "Connection: close"]
            if upgrade:
                lines += ["Upgrade: websocket", "Connection: Upgrade",
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                          "Sec-WebSocket-Version: 13"]
                lines.remove("Connection: close")
            if body is not None:
                lines += ["Content-Type: application/json", "Content-Length: %d" % len(data)]
            for k, v in (headers or {}).items():
                lines.append("%s: %s" % (k, v))
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
            raw = b""
            while len(raw) < max_bytes:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                raw += chunk
                if upgrade and b"\r\n\r\n" in raw:
                    break  # the status of the upgrade answer is enough
        finally:
            writer.transport.abort()
        head, _, rest = raw.partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            return None, raw[:200].decode("latin-1")
        try:
            return int(parts[1]), rest.decode("utf-8", "replace")
        except ValueError:
            return None, raw[:200].decode("latin-1")
    return await asyncio.wait_for(go(), timeout)


async def metrics(host, port, timeout=3.0):
    """``{sample: value}`` of GET /metrics, or None."""
    try:
        status, text = await http(host, port, "GET", "/metrics", timeout=timeout)
    except (OSError, asyncio.TimeoutError, ValueError):
        return None
    if status != 200:
        return None
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


# -- CAF 0.17 binary format (caf::binary_serializer) -------------------------------


def _varbyte(n):
    out = bytearray()
    n &= 0xFFFFFFFF
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n & 0x7F)
    return bytes(out)


def _str(b):
    b = b if isinstance(b, bytes) else b.encode()
    return _varbyte(len(b)) + b


def caf_delivery(kind, uids, data=b'{"forged":true}', sender=b"", group=b"", ts=0,
                 durable=False, msg_id=b"", seqs=(), idem=b""):
    """One ``wsc::delivery`` (protocol/messages.hpp) as CAF serializes it:
    kind (uint8), from, group, data, ts (int64, network order), uids,
    durable (uint8), msg_id, seqs (uint64, network order), idem."""
    out = bytes([kind & 0xFF]) + _str(sender) + _str(group) + _str(data)
    out += struct.pack("!q", ts)
    out += _varbyte(len(uids)) + b"".join(_str(u) for u in uids)
    out += bytes([1 if durable else 0]) + _str(msg_id)
    out += _varbyte(len(seqs)) + b"".join(struct.pack("!Q", s) for s in seqs)
    out += _str(idem)
    return out


def relay_payload(items, origin=b"n9", fmt=1):
    """A relay message without cluster-secret: format byte 1, then a
    ``delivery_batch`` {origin, items}."""
    return bytes([fmt]) + _str(origin) + _varbyte(len(items)) + b"".join(items)


def relay_envelope(destination, items, origin=b"n9", incarnation=None, counter=1,
                   sent_ms=None, fmt=3):
    """A relay message in the enveloped format (adapters/redis_relay.cpp,
    format 3 = unsigned): destination, origin, origin incarnation (u64),
    counter (u64), wall time (i64 ms), then the delivery_batch."""
    import time
    inc = incarnation if incarnation is not None else random.getrandbits(63)
    ms = sent_ms if sent_ms is not None else int(time.time() * 1000)
    return (bytes([fmt]) + _str(destination) + _str(origin) + struct.pack("!QQq", inc, counter, ms)
            + _str(origin) + _varbyte(len(items)) + b"".join(items))


def relay_garbage(rng, destination, counter):
    """[(label, payload)] of one round of garbage for a relay channel: the
    legacy format (1: the batch alone) and the enveloped one (3), with
    deliveries that a node must refuse (kind out of range, invalid UTF-8)."""
    dest = destination.encode()
    return [
        ("v3_kind_99", relay_envelope(dest, [caf_delivery(99, [b"xvictim"])], counter=counter)),
        ("v3_bad_utf8_uid", relay_envelope(dest, [caf_delivery(0, [b"\xff\xfe"])],
                                           counter=counter + 1)),
        ("v3_kind_200", relay_envelope(dest, [caf_delivery(200, [b"xvictim"], ts=1000)],
                                       counter=counter + 2)),
        ("v3_huge_count", b"\x03" + _str(dest) + _str(b"n9") + struct.pack("!QQq", 1, counter, 0)
         + _str(b"n9") + _varbyte(1 << 28)),
        ("v3_random", b"\x03" + os.urandom(rng.randint(1, 300))),
        ("v3_misaddressed_kind_99", relay_envelope(b"n-other", [caf_delivery(99, [b"x"])],
                                                   counter=counter + 3)),
        ("random", os.urandom(rng.randint(1, 2048))),
        ("plain_random", b"\x01" + os.urandom(rng.randint(1, 300))),
        ("signed_random", b"\x02" + os.urandom(rng.randint(1, 100))),
        ("empty", b""),
        ("kind_99", relay_payload([caf_delivery(99, [b"xvictim"])])),
        ("kind_200_disconnect_code", relay_payload([caf_delivery(200, [b"xvictim"], ts=1000)])),
        ("bad_utf8_uid", relay_payload([caf_delivery(0, [b"\xff\xfe"])])),
        ("huge_count", b"\x01" + _str(b"n9") + _varbyte(1 << 28)),
        ("truncated", relay_payload([caf_delivery(99, [b"xvictim"])])[:-5]),
    ]


# -- BASP (CAF 0.17 node-to-node protocol) ---------------------------------------


def basp_big_header(payload_len=64 << 20):
    """A client_handshake header (32 bytes, network order) claiming a
    ``payload_len`` body: operation, 2 padding bytes, flags, payload_len,
    operation_data (BASP version 3), source and destination actor."""
    return struct.pack("!BBBBIQQQ", 1, 0, 0, 0, payload_len, 3, 0, 0)


def cluster_garbage(rng, size, max_claim=64 << 20):
    """``size`` random bytes for a node's cluster port. When they start like
    a BASP header (operation 0..15), the claimed payload_len (bytes 4..7) is
    cut to at most ``max_claim``: CAF 0.17 allocates the claimed payload
    before any check, and a random claim of up to 4 GiB would take this
    machine down instead of only failing the soak (``basp_big_header`` is the
    deliberate probe of that)."""
    data = bytearray(os.urandom(size))
    if size >= 8 and data[0] < 16:
        struct.pack_into("!I", data, 4, rng.randint(0, max_claim))
    return bytes(data)


# -- invalid names -------------------------------------------------------------------

LONG = "x" * 200


def http_name_probes():
    """[(label, method, path, body, upgrade)]: every one must be answered 400."""
    return [
        ("ws_uid_ff", "GET", "/ws?uid=%FF", None, True),
        ("ws_uid_c328", "GET", "/ws?uid=%C3%28", None, True),
        ("ws_uid_overlong", "GET", "/ws?uid=%C0%AF", None, True),
        ("ws_uid_surrogate", "GET", "/ws?uid=%ED%A0%80", None, True),
        ("ws_device_bad", "GET", "/ws?uid=xnok&device=%C3%28", None, True),
        ("ws_uid_long", "GET", "/ws?uid=" + LONG, None, True),
        ("api_members_ff", "GET", "/api/groups/%FF/members", None, False),
        ("api_members_comma", "GET", "/api/groups/a%2Cb/members", None, False),
        ("api_presence_c328", "GET", "/api/presence?uids=%C3%28", None, False),
        ("api_presence_ff", "GET", "/api/presence?uids=ok,%FF", None, False),
        ("api_send_raw_ff", "POST", "/api/send", b'{"to":["x\xff"],"data":1}', False),
        ("api_send_surrogate", "POST", "/api/send", b'{"to":["\\ud800"],"data":1}', False),
        ("api_publish_comma", "POST", "/api/publish", {"group": "a,b", "data": 1}, False),
        ("api_publish_surrogate", "POST", "/api/publish", b'{"group":"\\udcff","data":1}',
         False),
        ("api_disconnect_ctl", "POST", "/api/disconnect", {"uid": "\u0001x"}, False),
    ]


def frame_name_probes():
    """[(label, frame)]: every one must be answered error ``bad_frame``."""
    return [
        ("join_space", {"type": "join", "group": "bad group"}),
        ("join_surrogate", {"type": "join", "group": "\ud800"}),
        ("join_long", {"type": "join", "group": LONG}),
        ("send_comma", {"type": "send", "to": "a,b", "data": 1}),
        ("send_ctl", {"type": "send", "to": ["xnok", "\u0001"], "data": 1}),
        ("send_surrogate", {"type": "send", "to": "\udcff", "data": 1}),
        ("publish_long", {"type": "publish", "group": LONG, "data": 1}),
        ("presence_surrogate", {"type": "presence", "uids": ["\udfff"]}),
        ("members_del", {"type": "members", "group": "\u007f"}),
        ("leave_surrogate", {"type": "leave", "group": "a\ud801b"}),
    ]


def json_ascii(obj):
    """JSON text with every non-ASCII character escaped (lone surrogates
    stay ``\\udXXX`` escapes: valid UTF-8 on the wire, not a valid name)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


def pick(rng, seq):
    return seq[rng.randrange(len(seq))]


__all__ = ["http", "metrics", "caf_delivery", "relay_payload", "relay_garbage",
           "relay_envelope", "basp_big_header", "cluster_garbage", "http_name_probes", "frame_name_probes", "json_ascii",
           "pick", "random"]

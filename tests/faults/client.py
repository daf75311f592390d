"""Simulated IM clients of the fault suite (asyncio, standard library only).

Each :class:`SimClient` is one uid with one device. It

* sends durable ``send`` frames in its conversations, stop-and-wait per
  conversation: the next message of a conversation goes out only after the
  previous one was acknowledged; a message whose ack does not come (error,
  timeout, connection lost) is sent again with the same counter and the next
  ``attempt`` number;
* reconnects with jittered exponential backoff to the next node of its URL
  list, honouring ``bye.reconnect_after_ms``;
* de-duplicates what it receives by ``msg_id``, tracks the highest
  contiguous ``seq`` and confirms it with ``read`` about once a second;
* keeps the connection alive with ``ping`` and declares it dead when nothing
  arrives for ``dead_after`` seconds (a hung node);
* reconnects (resumes) when a ``seq`` gap does not fill within
  ``gap_resync`` seconds: a message stored by a node that died before
  routing it is only in the inbox.

Everything it sees is recorded for the checker (``checker.py``).
"""

import asyncio
import json
import random
import time
import urllib.parse

from wsaio import Closed, HandshakeFailed, connect


def now():
    return time.monotonic()


class Conv:
    __slots__ = ("cid", "to", "rate", "next_n", "pending", "next_t", "active", "pad")

    def __init__(self, cid, to, rate, active=True, pad=0):
        self.cid = cid
        self.to = list(to)
        self.rate = rate
        self.next_n = 1
        self.pending = None  # dict(n, attempt, sent_t, retry_t, first_t)
        self.next_t = 0.0
        self.active = active
        self.pad = pad


class Conn:
    """One WebSocket connection of a client (for the record)."""
    __slots__ = ("no", "port", "t_start", "t_open", "node", "resumed", "frm", "to", "reason",
                 "t_caught", "t_close", "close_code", "cause", "ws")

    def __init__(self, no, port, t_start):
        self.no = no
        self.port = port
        self.t_start = t_start
        self.t_open = None
        self.node = None
        self.resumed = None
        self.frm = None
        self.to = None
        self.reason = None
        self.t_caught = None
        self.t_close = None
        self.close_code = None
        self.cause = None
        self.ws = None

    def summary(self):
        return {k: getattr(self, k) for k in self.__slots__ if k != "ws"}


class Fleet:
    """The clients of one scenario and the bookkeeping they share."""

    def __init__(self, addrs, cfg, rng):
        self.addrs = list(addrs)  # (host, port) of every node
        self.cfg = cfg
        self.rng = rng
        self.clients = {}
        self.sending = False
        self.storm = False          # reconnect at once, no jitter (scenario 6)
        self.attempted = {}         # key -> recipients
        self.acked = {}             # key -> (ack time, recipients)
        self.received = {}          # recipient uid -> set of keys
        self.outstanding = set()    # (recipient, key) acked, not yet received
        self.tick_task = None
        self.stopping = False
        self.deadline = None

    # -- setup -----------------------------------------------------------

    def build(self, count, convs_per_client=2, rate=2.0, pad=0):
        uids = ["u%03d" % i for i in range(count)]
        for i, uid in enumerate(uids):
            order = [self.addrs[(i + k) % len(self.addrs)] for k in range(len(self.addrs))]
            c = SimClient(self, uid, order)
            others = [u for u in uids if u != uid]
            for k in range(convs_per_client):
                to = [self.rng.choice(others)]
                if k == 1 and i % 5 == 0:  # some conversations have two receivers
                    to.append(self.rng.choice([u for u in others if u != to[0]]))
                c.convs.append(Conv("%s.%d" % (uid, k), to, rate / convs_per_client, pad=pad))
            self.clients[uid] = c
        return self

    def add_conv(self, sender, to, rate, active=False, pad=0):
        c = self.clients[sender]
        conv = Conv("%s.%d" % (sender, len(c.convs)), to, rate, active, pad)
        c.convs.append(conv)
        return conv

    # -- bookkeeping -------------------------------------------------------

    def on_attempt(self, key, to):
        self.attempted.setdefault(key, list(to))

    def on_ack(self, key, t):
        if key in self.acked:
            return
        to = self.attempted[key]
        self.acked[key] = (t, to)
        for r in to:
            if key not in self.received.get(r, ()):
                self.outstanding.add((r, key))

    def on_receive(self, uid, key):
        got = self.received.setdefault(uid, set())
        if key not in got:
            got.add(key)
            self.outstanding.discard((uid, key))
            return True
        return False

    # -- running -----------------------------------------------------------

    async def start(self, stagger=1.5):
        """Connects every client (spread over ``stagger`` s) and starts the
        ticker. Returns when all are connected (bounded)."""
        self.tick_task = asyncio.ensure_future(self._ticker())
        n = len(self.clients)
        for i, c in enumerate(self.clients.values()):
            c.task = asyncio.ensure_future(c.run())
            if n > 1:
                await asyncio.sleep(stagger / n)
        await self.wait(lambda: all(c.connected for c in self.clients.values()), 20.0)

    async def wait(self, predicate, timeout, step=0.1):
        t = now()
        while now() - t < timeout:
            if predicate():
                return True
            await asyncio.sleep(step)
        return predicate()

    async def _ticker(self):
        cfg = self.cfg
        while not self.stopping:
            t = now()
            for c in self.clients.values():
                try:
                    c.tick(t, cfg)
                except Exception as e:  # noqa: BLE001 - recorded, never kills the ticker
                    c.errors.append((t, "tick: %r" % (e,)))
            await asyncio.sleep(0.05)

    async def stop(self):
        self.stopping = True
        for c in self.clients.values():
            c.stopped = True
            c.drop("stop", close=True)
        tasks = [c.task for c in self.clients.values() if c.task] + (
            [self.tick_task] if self.tick_task else [])
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=5.0)
            for p in pending:
                p.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)

    def by_node(self):
        out = {}
        for c in self.clients.values():
            if c.connected and c.conn is not None:
                out.setdefault(c.conn.node, []).append(c.uid)
        return out


class SimClient:
    def __init__(self, fleet, uid, addrs, device="d1"):
        self.fleet = fleet
        self.uid = uid
        self.device = device
        self.addrs = addrs
        self.port_i = 0
        self.convs = []
        self.conv_i = 0
        self.task = None
        self.stopped = False
        # connection
        self.conn = None
        self.conns = []
        self.connected = False
        self.failures = 0
        self.bye_after = None
        self.cause = None
        self.last_rx = 0.0
        self.last_ping = 0.0
        self.ping_no = 0
        self.read_no = 0
        # receiving
        self.contig = 0
        self.above = set()
        self.gap_since = None
        self.gap_at = None
        self.last_read = 0
        self.last_read_t = 0.0
        self.msg_ids = set()
        self.rx = []          # (t, seq, msg_id, sender, conv, n, attempt, replay, conn no, from ok)
        self.bad = []         # frames that are not what was sent
        # sending
        self.acks = []        # (t, key, attempt, latency)
        self.send_fail = []   # (t, conv, n, why)
        self.errors = []      # (t, text)
        self.gap_resyncs = []  # (t, missing seq)
        self.too_old = []     # (t, welcome)
        self.cursor_ahead = []  # (t, contig, welcome)
        # slow reader
        self.paused = False
        self.resume = asyncio.Event()
        self.slow_rcvbuf = None
        self.final_requested = False
        self.tx_count = 0
        # Half the clients resume with since=<highest contiguous seq> (an app
        # with local storage), the others rely on the device cursor.
        self.use_since = int(uid[1:]) % 2 == 0 if uid[1:].isdigit() else False

    # -- connection loop ---------------------------------------------------

    def url_query(self):
        q = {"uid": self.uid, "device": self.device}
        if self.use_since and self.contig > 0:
            q["since"] = str(self.contig)
        return urllib.parse.urlencode(q)

    def backoff(self):
        k = self.failures
        if self.bye_after is not None:
            d = self.bye_after / 1000.0
            self.bye_after = None
            return d
        if self.cause in ("gap_resync", "final"):
            return 0.0
        if self.fleet.storm and k == 0:
            return 0.0
        return random.uniform(0.0, min(2.0, 0.2 * (2 ** k)))

    async def run(self):
        cfg = self.fleet.cfg
        deadline_guard = 100000
        while not self.stopped and deadline_guard > 0:
            deadline_guard -= 1
            host, port = self.addrs[self.port_i % len(self.addrs)]
            conn = Conn(len(self.conns) + 1, port, now())
            self.conns.append(conn)
            self.cause = None
            try:
                ws = await connect(host, port, query=self.url_query(), timeout=cfg["handshake_timeout"],
                                   rcvbuf=self.slow_rcvbuf, limit=4096 if self.slow_rcvbuf else 2 ** 16)
                conn.ws = ws
                first = await asyncio.wait_for(ws.recv(), cfg["handshake_timeout"])
                welcome = json.loads(first)
                if welcome.get("type") != "welcome":
                    raise HandshakeFailed("first frame %r" % first[:200])
            except (OSError, asyncio.TimeoutError, HandshakeFailed, Closed, ValueError) as e:
                conn.t_close = now()
                conn.cause = "connect_failed: %s" % (type(e).__name__,)
                if conn.ws is not None:
                    conn.ws.abort()
                    conn.ws = None
                self.failures += 1
                self.port_i += 1
                if self.stopped:
                    break
                await asyncio.sleep(self.backoff())
                continue
            self.on_welcome(conn, welcome)
            if self.stopped:
                ws.send_close(1000)
                ws.abort_later()
                break
            try:
                await self.read_loop(ws)
            except Closed as e:
                conn.close_code = e.code
                conn.cause = self.cause or ("close %s" % e.code if e.code else "eof")
            except Exception as e:  # noqa: BLE001 - a client bug must not stop the run
                self.errors.append((now(), "read: %r" % (e,)))
                conn.cause = "client_error"
                ws.abort()
            conn.t_close = now()
            conn.ws = None
            self.connected = False
            if self.stopped:
                break
            # Resumes go to the next node: the one it was on may be gone.
            self.port_i += 1
            if conn.close_code == 1008 or not conn.t_caught:
                self.failures += 1
            else:
                self.failures = 0
            await asyncio.sleep(self.backoff())

    def on_welcome(self, conn, w):
        t = now()
        self.conn = conn
        conn.t_open = t
        conn.node = w.get("node")
        conn.resumed = w.get("resumed")
        conn.frm = w.get("from")
        conn.to = w.get("to")
        conn.reason = w.get("reason")
        self.connected = True
        self.last_rx = t
        self.gap_since = None
        if conn.resumed is True and isinstance(conn.frm, int) and conn.frm > self.contig + 1:
            # The device's cursor is past what this client confirmed.
            self.cursor_ahead.append((t, self.contig, dict(w)))
        if conn.resumed is False and conn.reason == "too_old":
            self.too_old.append((t, dict(w)))
            if isinstance(conn.frm, int) and conn.frm - 1 > self.contig:
                # Retention dropped part of the range: the checker counts it.
                self.contig = conn.frm - 1
                self.advance()
        if conn.resumed is False and conn.reason != "too_old":
            pass  # no replay (state store unreachable): resynced by tick()
        self.check_caught(t)
        # Everything not acknowledged goes out again, same counter.
        for conv in self.convs:
            if conv.pending is not None:
                self.transmit(conv, t, resend=True, why="reconnect")

    async def read_loop(self, ws):
        while True:
            if self.paused:
                await self.resume.wait()
            text = await ws.recv()
            self.last_rx = now()
            try:
                frame = json.loads(text)
            except ValueError:
                self.bad.append((now(), "not json", text[:200]))
                continue
            self.on_frame(frame)

    def drop(self, cause, close=False):
        """Ends the current connection (the run loop reconnects)."""
        conn = self.conn
        if conn is None or conn.ws is None or not self.connected:
            return
        self.cause = cause
        self.connected = False
        ws = conn.ws
        if close:
            ws.send_close(1000)
            asyncio.get_running_loop().call_later(0.3, ws.abort)
        else:
            ws.abort()

    # -- frames in ----------------------------------------------------------

    def on_frame(self, f):
        t = now()
        kind = f.get("type")
        if kind == "message":
            self.on_message(f, t)
        elif kind == "ack":
            self.on_ack(f, t)
        elif kind == "error":
            self.on_error(f, t)
        elif kind == "bye":
            ms = f.get("reconnect_after_ms")
            self.bye_after = ms if isinstance(ms, (int, float)) else 0
            self.cause = "bye"
        elif kind == "pong":
            pass
        else:
            self.bad.append((t, "unexpected frame", json.dumps(f)[:200]))

    def on_message(self, f, t):
        data = f.get("data")
        seq = f.get("seq")
        msg_id = f.get("msg_id")
        conn = self.conn
        if not isinstance(data, dict) or "sender" not in data:
            self.bad.append((t, "foreign message", json.dumps(f)[:200]))
            return
        key = (data.get("sender"), data.get("conv"), data.get("n"))
        replay = bool(isinstance(seq, int) and conn is not None and conn.resumed
                      and isinstance(conn.to, int) and seq <= conn.to)
        from_ok = f.get("from") == data.get("sender") and f.get("to") == self.uid
        self.rx.append((t, seq, msg_id, key[0], key[1], key[2], data.get("attempt"), replay,
                        conn.no if conn else 0, from_ok,
                        int(time.time() * 1000) - (data.get("sent_ms") or 0)))
        if msg_id is not None:
            self.msg_ids.add(msg_id)
        if msg_id is not None:
            self.fleet.on_receive(self.uid, key)
        if isinstance(seq, int) and seq > self.contig:
            self.above.add(seq)
            self.advance()
        self.check_caught(t)

    def advance(self):
        while self.contig + 1 in self.above:
            self.contig += 1
            self.above.discard(self.contig)
        if self.above:
            if self.gap_at != self.contig + 1:
                self.gap_at = self.contig + 1
                self.gap_since = now()
        else:
            self.gap_at = None
            self.gap_since = None

    def check_caught(self, t):
        conn = self.conn
        if conn is None or conn.t_caught is not None:
            return
        if conn.resumed is not True and conn.reason != "too_old":
            return
        if not isinstance(conn.to, int) or self.contig >= conn.to:
            conn.t_caught = t
            self.failures = 0

    def on_ack(self, f, t):
        fid = f.get("id")
        if not isinstance(fid, str) or not fid.startswith("m|"):
            return
        _, cid, n, attempt = fid.split("|")
        n = int(n)
        for conv in self.convs:
            if conv.cid == cid and conv.pending is not None and conv.pending["n"] == n:
                key = (self.uid, cid, n)
                self.acks.append((t, key, int(attempt), t - conv.pending["first_t"]))
                self.fleet.on_ack(key, t)
                conv.pending = None
                return

    def on_error(self, f, t):
        fid = f.get("id")
        code = f.get("code")
        if isinstance(fid, str) and fid.startswith("m|"):
            _, cid, n, attempt = fid.split("|")
            for conv in self.convs:
                p = conv.pending
                if conv.cid == cid and p is not None and p["n"] == int(n) and p["attempt"] == int(attempt):
                    self.send_fail.append((t, cid, p["n"], "error %s" % code))
                    p["retry_t"] = t + random.uniform(0.3, 0.8)
                    return
        else:
            self.errors.append((t, "error %s: %s" % (code, f.get("message"))))

    # -- frames out -----------------------------------------------------------

    def send(self, obj):
        conn = self.conn
        if conn is None or conn.ws is None or not self.connected:
            return False
        try:
            conn.ws.send_json(obj)
            return True
        except Closed:
            return False
        except (OSError, RuntimeError) as e:
            self.errors.append((now(), "send: %r" % (e,)))
            return False

    def transmit(self, conv, t, resend=False, why=""):
        p = conv.pending
        if resend:
            p["attempt"] += 1
            self.send_fail.append((t, conv.cid, p["n"], why))
        p["sent_t"] = t
        p["retry_t"] = None
        key = (self.uid, conv.cid, p["n"])
        self.fleet.on_attempt(key, conv.to)
        self.tx_count += 1
        data = {"sender": self.uid, "conv": conv.cid, "n": p["n"], "attempt": p["attempt"],
                "sent_ms": int(time.time() * 1000)}
        if conv.pad:
            data["pad"] = "x" * conv.pad
        to = conv.to[0] if len(conv.to) == 1 else conv.to
        self.send({"type": "send", "id": "m|%s|%d|%d" % (conv.cid, p["n"], p["attempt"]),
                   "to": to, "data": data})

    def tick(self, t, cfg):
        if self.paused or self.stopped:
            return
        if not self.connected:
            return
        # A hung node: nothing at all for dead_after seconds.
        if t - self.last_rx > cfg["dead_after"]:
            self.drop("dead_timeout")
            return
        if t - self.last_rx > cfg["ping_every"] and t - self.last_ping > cfg["ping_every"]:
            self.ping_no += 1
            self.last_ping = t
            self.send({"type": "ping", "id": "p|%d" % self.ping_no})
        conn = self.conn
        # A welcome without a replay (store unreachable at connect): resume later.
        if conn is not None and conn.resumed is not True and conn.reason != "too_old" \
                and t - conn.t_open > cfg["gap_resync"]:
            self.gap_resyncs.append((t, "no_replay:%s" % conn.reason))
            self.drop("gap_resync")
            return
        if self.gap_since is not None and t - self.gap_since > cfg["gap_resync"]:
            self.gap_resyncs.append((t, self.gap_at))
            self.drop("gap_resync")
            return
        if self.contig > self.last_read and t - self.last_read_t > cfg["read_every"]:
            self.read_no += 1
            self.last_read = self.contig
            self.last_read_t = t
            self.send({"type": "read", "id": "r|%d" % self.read_no, "seq": self.contig})
        # Sends: retries first, then new messages (one pending per conversation).
        for conv in self.convs:
            p = conv.pending
            if p is not None:
                if p["retry_t"] is not None and t >= p["retry_t"]:
                    self.transmit(conv, t, resend=True, why="retry")
                elif p["retry_t"] is None and t - p["sent_t"] > cfg["ack_timeout"]:
                    self.transmit(conv, t, resend=True, why="ack_timeout")
                continue
            if not (self.fleet.sending and conv.active) or conv.rate <= 0:
                continue
            if conv.next_t == 0.0 or conv.next_t < t - 1.0:
                conv.next_t = t + random.expovariate(conv.rate)
                continue
            if t >= conv.next_t:
                conv.next_t += random.expovariate(conv.rate)
                conv.pending = {"n": conv.next_n, "attempt": 1, "sent_t": t, "retry_t": None,
                                "first_t": t}
                conv.next_n += 1
                self.transmit(conv, t)

    # -- slow reader ------------------------------------------------------------

    def pause(self):
        self.paused = True
        self.resume.clear()

    def unpause(self):
        self.paused = False
        self.last_rx = now()
        self.resume.set()

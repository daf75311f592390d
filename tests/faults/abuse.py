#!/usr/bin/python3
"""wscluster abuse soak (issue 13, acceptance 2).

A 2-node cluster (state=redis, a redis-server on a free port, nodes on free
127.0.0.1 ports) where legitimate clients keep chatting - durable sends
between uids on both nodes, group publishes, periodic disconnect + resume
with ``device=`` and ``read`` confirmations - while abusive clients run,
mixed: fan-out floods (frames to 1000 uids, ``POST /api/send`` to 10,000),
resume floods of one uid with a big inbox, receivers that never read,
invalid names (HTTP and frames), connection floods of one uid, garbage on
the relay channel and on each node's cluster port.

    python3 tests/faults/abuse.py --quick     # CI: 20 s of abuse (< 60 s wall)
    python3 tests/faults/abuse.py             # full: 60 s of abuse
    python3 tests/faults/abuse.py --duration 120 --clients 40

Report: build/faults/abuse[-quick]/report.json plus one summary line.
Must hold (exit 1 otherwise): no acknowledged legitimate message lost, no
node crash (process exited, or /healthz not 200 at the end), node RSS and
Redis used_memory peaks within the budgets of ABUSE.md, and every defence
seen working (refusals of the documented kind). Exit 2: the soak itself
could not run. Every process is started here and stopped by its own pid;
only 127.0.0.1; every loop is bounded in count and time.

The node binary is $WSC_BINARY (default build/wscluster).
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from abuse_attacks import (basp_big_header, cluster_garbage, frame_name_probes, http, http_name_probes,  # noqa: E402
                           json_ascii, metrics, relay_garbage)
from checker import analyse, pct  # noqa: E402
from client import Conv, Fleet, SimClient, now  # noqa: E402
from cluster import Cluster, harness  # noqa: E402
from harness import RedisServer  # noqa: E402
import wsaio  # noqa: E402
from wsaio import Closed, HandshakeFailed, connect  # noqa: E402

MiB = 1 << 20
KiB = 1 << 10

# Node options: the defaults, written out so that the budgets below are
# computed from the values the nodes run with.
NODE_OPTIONS = {
    "max-fanout-bytes": 1 * MiB,
    "send-queue-bytes": 1 * MiB,
    "max-connections-per-uid": 64,
    "max-resumes-per-uid": 4,
    "max-message-bytes": 65536,
    "inbox-max-messages": 1000,
    "max-connections-per-address": 1000,
    "heartbeat": "500ms",
}

PROFILES = {
    "full": {
        "duration": 60.0, "clients": 30, "rate": 1.0, "groups": 3, "group_rate": 0.3,
        "resume_every": 0.7,
        "fanout_ws_every": 1.0, "fanout_http_every": 1.5,
        "resume_fill": 600, "resume_pad": 32000, "resume_burst": 12, "resume_every_s": 5.0,
        "nonreader_every": 6.0, "nonreader_flood_s": 3.0, "nonreader_rate": 40,
        "nonreader_pad": 40000,
        "names_every": 2.0, "connflood_every": 6.0, "connflood_size": 72,
        "relay_every": 2.0, "clusterport_every": 3.0,
        "settle_pending": 12.0, "settle_live": 5.0, "settle_final": 15.0,
    },
    "quick": {
        "duration": 20.0, "clients": 16, "rate": 1.0, "groups": 2, "group_rate": 0.3,
        "resume_every": 0.6,
        "fanout_ws_every": 1.0, "fanout_http_every": 1.5,
        "resume_fill": 300, "resume_pad": 24000, "resume_burst": 10, "resume_every_s": 5.0,
        "nonreader_every": 6.0, "nonreader_flood_s": 3.0, "nonreader_rate": 40,
        "nonreader_pad": 40000,
        "names_every": 3.0, "connflood_every": 6.0, "connflood_size": 70,
        "relay_every": 3.0, "clusterport_every": 4.0,
        "settle_pending": 8.0, "settle_live": 3.0, "settle_final": 10.0,
    },
}

CLIENT_CFG = {
    "handshake_timeout": 4.0,
    "dead_after": 6.0,
    "ping_every": 1.0,
    "ack_timeout": 6.0,
    "gap_resync": 3.0,
    "read_every": 1.0,
}

# Safety stops: the soak never lets a missing defence take the machine.
REDIS_SAFETY_BYTES = 1536 * MiB
RSS_SAFETY_BYTES = 3072 * MiB

T0 = time.monotonic()


def log(msg):
    sys.stdout.write("[%6.1f] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


def payload_len(data):
    return len(json.dumps(data, separators=(",", ":")).encode())


# -- legitimate clients ----------------------------------------------------------------


class LegitClient(SimClient):
    """A SimClient (durable sends, resume, read) that is also a member of one
    group: it joins on every connection and publishes now and then."""

    def __init__(self, fleet, uid, addrs, group=None, group_rate=0.0):
        super().__init__(fleet, uid, addrs)
        self.group = group
        self.group_rate = group_rate
        self.join_ack = {}      # conn no -> time the join was acknowledged
        self.conn_last_rx = {}  # conn no -> time of the last frame read on it
        self.gpub_n = 0
        self.gnext_t = 0.0
        self.grx = []           # (t, seq, msg_id, (sender, n), replay)

    def on_welcome(self, conn, w):
        super().on_welcome(conn, w)
        self.conn_last_rx[conn.no] = now()
        if self.group:
            self.send({"type": "join", "id": "j|%d" % conn.no, "group": self.group})

    def on_frame(self, f):
        t = now()
        conn = self.conn
        if conn is not None:
            self.conn_last_rx[conn.no] = t
        kind = f.get("type")
        fid = f.get("id")
        if kind == "group":
            self.on_group(f, t)
            return
        if isinstance(fid, str) and fid[:2] in ("j|", "g|"):
            if kind == "ack" and fid.startswith("j|"):
                self.join_ack[int(fid[2:])] = t
            elif kind == "ack":
                self.fleet.on_gack(self.uid, int(fid[2:]), t)
            else:
                self.errors.append((t, "group %s %s: %s" % (fid[:1], f.get("code"),
                                                            f.get("message"))))
            return
        super().on_frame(f)

    def on_group(self, f, t):
        data = f.get("data")
        seq, msg_id, conn = f.get("seq"), f.get("msg_id"), self.conn
        if not isinstance(data, dict) or "gsender" not in data or f.get("group") != self.group:
            self.bad.append((t, "foreign group message", json.dumps(f)[:200]))
            return
        replay = bool(isinstance(seq, int) and conn is not None and conn.resumed
                      and isinstance(conn.to, int) and seq <= conn.to)
        key = (data["gsender"], data.get("gn"))
        lat = int(time.time() * 1000) - (data.get("sent_ms") or 0)
        self.grx.append((t, seq, msg_id, key, replay, lat))
        if isinstance(seq, int) and seq > self.contig:
            self.above.add(seq)
            self.advance()
        self.check_caught(t)

    def tick(self, t, cfg):
        super().tick(t, cfg)
        fl = self.fleet
        if not (self.group and self.group_rate > 0 and fl.sending and self.connected
                and not self.paused and not self.stopped):
            return
        conn = self.conn
        if conn is None or conn.no not in self.join_ack:
            return
        if self.gnext_t == 0.0:
            self.gnext_t = t + random.expovariate(self.group_rate)
            return
        if t < self.gnext_t:
            return
        self.gnext_t = t + random.expovariate(self.group_rate)
        self.gpub_n += 1
        n = self.gpub_n
        fl.gpub[(self.uid, n)] = {"group": self.group, "t_sent": t, "t_ack": None}
        self.send({"type": "publish", "id": "g|%d" % n, "group": self.group,
                   "data": {"gsender": self.uid, "gn": n, "sent_ms": int(time.time() * 1000)}})


class LegitFleet(Fleet):
    def __init__(self, addrs, cfg, rng):
        super().__init__(addrs, cfg, rng)
        self.gpub = {}  # (sender, n) -> {group, t_sent, t_ack}

    def build_legit(self, count, rate, groups, group_rate):
        uids = ["u%03d" % i for i in range(count)]
        for i, uid in enumerate(uids):
            order = [self.addrs[(i + k) % len(self.addrs)] for k in range(len(self.addrs))]
            group = "g%d" % (i % groups) if groups and i % 2 == 0 else None
            c = LegitClient(self, uid, order, group, group_rate)
            others = [u for u in uids if u != uid]
            # Two conversations: one to a uid starting on the other node.
            peer_other = [u for j, u in enumerate(uids) if j % 2 != i % 2]
            for k, pool in enumerate((peer_other, others)):
                to = [self.rng.choice(pool)]
                if k == 1 and i % 5 == 0:
                    to.append(self.rng.choice([u for u in others if u != to[0]]))
                c.convs.append(Conv("%s.%d" % (uid, k), to, rate / 2))
            self.clients[uid] = c
        return self

    def on_gack(self, uid, n, t):
        p = self.gpub.get((uid, n))
        if p is not None and p["t_ack"] is None:
            p["t_ack"] = t

    def group_required(self):
        """{(receiver, (sender, n))}: group messages each member must get: it
        joined on a connection before the publish was sent and that
        connection was still read from after the publish was acknowledged
        (so it was a member when the message was stored)."""
        members = {}
        for c in self.clients.values():
            if c.group:
                members.setdefault(c.group, []).append(c)
        req = set()
        for (s, n), p in self.gpub.items():
            if p["t_ack"] is None:
                continue
            for m in members.get(p["group"], ()):
                if m.uid == s:
                    continue
                for cno, tj in m.join_ack.items():
                    if tj < p["t_sent"] and m.conn_last_rx.get(cno, 0) > p["t_ack"]:
                        req.add((m.uid, (s, n)))
                        break
        return req

    def group_outstanding(self):
        got = set()
        for c in self.clients.values():
            for rec in c.grx:
                if rec[2] is not None:
                    got.add((c.uid, rec[3]))
        return self.group_required() - got


# -- the soak ----------------------------------------------------------------------------


class PlainCluster(Cluster):
    """Cluster with a throwaway Redis (no AOF: the soak measures memory, not
    durability across a Redis crash)."""

    def __init__(self, logdir, count, node_options):
        super().__init__(logdir, count, node_options)
        self.redis = RedisServer()
        shutil.rmtree(self.redis.workdir, ignore_errors=True)  # its own temp dir: unused
        self.redis.workdir = os.path.join(logdir, "redis")
        os.makedirs(self.redis.workdir, exist_ok=True)
        self.redis.log_path = os.path.join(self.redis.workdir, "redis.log")


class Soak:
    def __init__(self, prof, outdir, seed):
        self.prof = prof
        self.outdir = outdir
        self.rng = random.Random(seed)
        random.seed(seed)
        self.cluster = PlainCluster(os.path.join(outdir, "logs"), 2, NODE_OPTIONS)
        self.fleet = None
        self.deadline = None
        self.stop_attacks = False
        self.safety = []           # safety stops that fired
        # attack counters: attack -> outcome -> count
        self.counts = {}
        self.violations = {}       # defence -> [examples]
        self.accepted_bytes = 0    # payload bytes stored by requests the nodes accepted
        self.accepted_copies = 0   # stored copies (receivers) of those requests
        self.samples = {"redis": [], "health": {}}
        self.peak_rss = {}
        self.peak_redis = 0
        self.base_rss = {}
        self.base_redis = 0
        self.peak_conns = {}
        self.cluster_addrs = {}
        self.tasks = []
        self.busted = set()        # over-budget variants stopped after acceptance
        self.relay_counter = 0
        self.basp_growth = {}     # node -> most RSS growth while a BASP probe was held
        self.basp_active = False  # a BASP probe is held (and 1 s after)
        self.peak_rss_no_basp = {}  # sampled VmRSS peak outside those windows
        self.skip = set()
        self.series = {}           # node -> [(s since start, RSS MiB)] every ~2 s

    # -- bookkeeping ---------------------------------------------------------------

    def count(self, attack, outcome, n=1):
        d = self.counts.setdefault(attack, {})
        d[outcome] = d.get(outcome, 0) + n

    def violate(self, defence, example):
        v = self.violations.setdefault(defence, [])
        if len(v) < 5:
            v.append(example)
        elif len(v) == 5:
            v.append("...")
        self.count("violations", defence)

    def stored(self, receivers, data_bytes):
        cap = NODE_OPTIONS["max-fanout-bytes"]
        self.accepted_bytes += min(receivers * data_bytes, cap) if receivers > 1 else data_bytes
        self.accepted_copies += receivers

    def running(self):
        return not self.stop_attacks and now() < self.deadline

    def nodes(self):
        return self.cluster.nodes

    # -- setup -----------------------------------------------------------------------

    async def setup(self):
        await asyncio.to_thread(self.cluster.start)
        took = await self.cluster.wait_mesh(timeout=20)
        if took is None:
            raise RuntimeError("the 2 nodes did not form a cluster within 20 s")
        status, text = await http("127.0.0.1", self.nodes()[0].port, "GET", "/api/nodes")
        for e in json.loads(text):
            host, _, port = str(e.get("cluster", "")).rpartition(":")
            if host and port.isdigit():
                self.cluster_addrs[e["id"]] = (host if host != "0.0.0.0" else "127.0.0.1",
                                               int(port))
        log("cluster up: %s; cluster ports %s" % (
            ", ".join("%s=%d (pid %d)" % (n.name, n.port, n.pid) for n in self.nodes()),
            self.cluster_addrs))
        # Baselines before any client.
        await asyncio.sleep(0.5)
        for n in self.nodes():
            self.base_rss[n.name] = read_status(n.pid).get("VmRSS", 0)
        self.base_redis = await self.redis_used_memory() or 0
        p = self.prof
        self.fleet = LegitFleet([(n.host, n.port) for n in self.nodes()], dict(CLIENT_CFG),
                                self.rng)
        self.fleet.build_legit(p["clients"], p["rate"], p["groups"], p["group_rate"])
        await self.fleet.start(stagger=1.0)
        if not all(c.connected for c in self.fleet.clients.values()):
            n = sum(1 for c in self.fleet.clients.values() if c.connected)
            raise RuntimeError("only %d/%d legitimate clients connected"
                               % (n, len(self.fleet.clients)))
        log("%d legitimate clients connected: %s" % (
            len(self.fleet.clients),
            {k: len(v) for k, v in sorted(self.fleet.by_node().items())}))

    async def redis_used_memory(self):
        try:
            info = await asyncio.to_thread(self.cluster.redis.command, "INFO", "memory",
                                           timeout=2.0)
        except (OSError, RuntimeError):
            return None
        for line in str(info).splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":", 1)[1])
        return None

    # -- sampler ------------------------------------------------------------------------

    async def sampler(self, stop):
        while not stop.is_set():
            for n in self.nodes():
                st = read_status(n.pid) if n.running() else {}
                rss = st.get("VmRSS", 0)
                ser = self.series.setdefault(n.name, [])
                if not ser or now() - T0 - ser[-1][0] >= 2.0 or rss >> 20 > max(
                        x[1] for x in ser) + 8:
                    ser.append((round(now() - T0, 1), rss >> 20))
                self.peak_rss[n.name] = max(self.peak_rss.get(n.name, 0), rss,
                                            st.get("VmHWM", 0))
                if not self.basp_active:
                    self.peak_rss_no_basp[n.name] = max(self.peak_rss_no_basp.get(n.name, 0),
                                                        rss)
                if rss > RSS_SAFETY_BYTES and "rss" not in self.busted:
                    self.busted.add("rss")
                    self.safety.append("node %s RSS %d MiB: attacks stopped" % (n.name, rss >> 20))
                    self.stop_attacks = True
            used = await self.redis_used_memory()
            if used is not None:
                self.samples["redis"].append(used)
                self.peak_redis = max(self.peak_redis, used)
                if used > REDIS_SAFETY_BYTES and "redis" not in self.busted:
                    self.busted.add("redis")
                    self.safety.append("Redis used_memory %d MiB: attacks stopped" % (used >> 20))
                    self.stop_attacks = True
            for n in self.nodes():
                try:
                    status, _ = await http(n.host, n.port, "GET", "/healthz", timeout=2.0)
                except (OSError, asyncio.TimeoutError, ValueError):
                    status = None
                h = self.samples["health"].setdefault(n.name, {})
                h[str(status)] = h.get(str(status), 0) + 1
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass

    # -- attacks ---------------------------------------------------------------------------

    async def loop(self, name, every, body, jitter=0.3):
        """Runs ``body(i)`` every ``every`` s until the deadline (bounded)."""
        await asyncio.sleep(self.rng.uniform(0, every))
        for i in range(100000):
            if not self.running():
                return
            t = now()
            try:
                await asyncio.wait_for(body(i), max(5.0, every * 4))
            except asyncio.TimeoutError:
                self.count(name, "round_timeout")
            except Exception as e:  # noqa: BLE001 - an attack bug is reported, never fatal
                self.count(name, "soak_error")
                log("%s: soak error %r" % (name, e))
                traceback.print_exc()
            left = every * self.rng.uniform(1 - jitter, 1 + jitter) - (now() - t)
            if left > 0:
                await asyncio.sleep(min(left, max(0.0, self.deadline - now())))

    async def ws_open(self, node, uid, extra=None, rcvbuf=None, limit=1 << 16, timeout=4.0):
        """(ws, welcome) or raises."""
        q = {"uid": uid}
        q.update(extra or {})
        ws = await connect(node.host, node.port, query=urllib.parse.urlencode(q),
                           timeout=timeout, rcvbuf=rcvbuf, limit=limit)
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        except BaseException:
            ws.abort()
            raise
        return ws, first

    # 1. fan-out floods over WebSocket frames ----------------------------------------

    async def attack_fanout_ws(self):
        nodes = self.nodes()
        conns = []
        for k, n in enumerate(nodes):
            ws, _ = await self.ws_open(n, "xa%d" % k)
            conns.append(ws)
        pending = {}  # id -> (expect, receivers, data bytes, t)

        async def reader(ws):
            while True:
                try:
                    f = json.loads(await ws.recv())
                except Closed as e:
                    self.count("fanout_ws", "attacker_closed_%s" % e.code)
                    return
                p = pending.pop(f.get("id"), None)
                if p is None:
                    continue
                expect, rcv, nbytes, _ = p
                kind = f.get("type")
                code = f.get("code") if kind == "error" else None
                if expect == "too_large":
                    if code == "too_large":
                        self.count("fanout_ws", "refused_too_large")
                    elif kind == "ack":
                        self.count("fanout_ws", "accepted_over_budget")
                        self.stored(rcv, nbytes)
                        self.violate("fanout_ws_too_large", "%d receivers x %d B acked"
                                     % (rcv, nbytes))
                        self.busted.add("fanout_ws_over")
                    else:
                        self.count("fanout_ws", "refused_%s" % code)
                        self.violate("fanout_ws_too_large", "%d x %d B answered %s"
                                     % (rcv, nbytes, code))
                else:
                    if kind == "ack":
                        self.count("fanout_ws", "accepted_within_budget")
                        self.stored(rcv, nbytes)
                    else:
                        self.count("fanout_ws", "within_budget_refused_%s" % code)
        readers = [asyncio.ensure_future(reader(ws)) for ws in conns]
        big_to = ["xt%04d" % i for i in range(1000)]
        small_to = ["xt%04d" % i for i in range(100)]
        pads = [2000, 20000, 50000]

        async def body(i):
            ws = conns[i % len(conns)]
            if "fanout_ws_over" not in self.busted:
                data = {"pad": "x" * pads[i % len(pads)]}
                fid = "fo%d" % i
                pending[fid] = ("too_large", len(big_to), payload_len(data), now())
                ws.send_json({"type": "send", "id": fid, "to": big_to, "data": data})
            if i % 3 == 2:
                data = {"pad": "y" * 5000}
                fid = "fi%d" % i
                pending[fid] = ("ok", len(small_to), payload_len(data), now())
                ws.send_json({"type": "send", "id": fid, "to": small_to, "data": data})
            await asyncio.sleep(0)
            for fid, p in list(pending.items()):
                if now() - p[3] > 8.0:
                    pending.pop(fid, None)
                    self.count("fanout_ws", "no_answer")
        try:
            await self.loop("fanout_ws", self.prof["fanout_ws_every"], body)
            await asyncio.sleep(2.0)
        finally:
            for r in readers:
                r.cancel()
            for ws in conns:
                await ws.close()
        self.count("fanout_ws", "unanswered_at_end", len(pending))

    # 2. fan-out floods over the HTTP API ---------------------------------------------------

    async def attack_fanout_http(self):
        huge_to = ["xh%05d" % i for i in range(10000)]
        mid_to = huge_to[:1000]
        ok_to = huge_to[:50]

        async def post(node, to, data, expect):
            body = json.dumps({"to": to, "data": data}, separators=(",", ":")).encode()
            nbytes = payload_len(data)
            try:
                status, text = await http(node.host, node.port, "POST", "/api/send", body,
                                          timeout=10.0)
            except (OSError, asyncio.TimeoutError, ValueError) as e:
                self.count("fanout_http", "no_answer")
                if expect == 413:
                    self.violate("fanout_http_413", "%d x %d B: %r" % (len(to), nbytes, e))
                return
            if expect == 413:
                if status == 413:
                    self.count("fanout_http", "refused_413")
                elif status == 200:
                    self.count("fanout_http", "accepted_over_budget")
                    self.stored(len(to), nbytes)
                    self.busted.add("fanout_http_over")
                    self.violate("fanout_http_413", "%d x %d B answered 200" % (len(to), nbytes))
                else:
                    self.count("fanout_http", "answered_%s" % status)
                    self.violate("fanout_http_413", "%d x %d B answered %s %s"
                                 % (len(to), nbytes, status, text[:100]))
            else:
                if status == 200:
                    self.count("fanout_http", "accepted_within_budget")
                    self.stored(len(to), nbytes)
                else:
                    self.count("fanout_http", "within_budget_answered_%s" % status)

        async def body(i):
            node = self.nodes()[i % 2]
            if "fanout_http_over" not in self.busted:
                if i % 2 == 0:
                    await post(node, huge_to, {"pad": "z" * 20000}, 413)
                else:
                    await post(node, mid_to, {"pad": "z" * 2000}, 413)
            if i % 3 == 1:
                await post(node, ok_to, {"pad": "w" * 10000}, 200)
        await self.loop("fanout_http", self.prof["fanout_http_every"], body)

    # 3. resume floods: many concurrent resumes of one uid with a big inbox ------------------

    async def fill_resume_inbox(self):
        p = self.prof
        node = self.nodes()[1]
        ws, _ = await self.ws_open(node, "xrfill")
        acked = 0
        data = {"pad": "r" * p["resume_pad"]}
        nbytes = payload_len(data)
        try:
            for i in range(p["resume_fill"]):
                ws.send_json({"type": "send", "id": i, "to": "xr0", "data": data})
                if i % 50 == 49:
                    await ws.writer.drain()
            t, answered = now(), 0
            while answered < p["resume_fill"] and now() - t < 20:
                f = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if f.get("type") == "ack":
                    acked += 1
                    answered += 1
                elif f.get("type") == "error":
                    self.count("resume_flood", "fill_error_%s" % f.get("code"))
                    answered += 1
        finally:
            await ws.close()
        self.stored(1, nbytes * acked)
        self.accepted_copies += acked - 1
        log("resume flood: inbox of xr0 filled with %d x %d B" % (acked, nbytes))

    async def attack_resume_flood(self):
        p = self.prof
        limit = NODE_OPTIONS["max-resumes-per-uid"]
        await self.fill_resume_inbox()

        async def one(node, j, burst):
            try:
                ws, first = await self.ws_open(node, "xr0", {"device": "rd%d-%d" % (burst, j)},
                                               rcvbuf=4096, limit=4096, timeout=4.0)
            except Closed as e:
                return ("closed_%s" % e.code, None)
            except HandshakeFailed as e:
                return ("http_%s" % status_of(e), None)
            except (OSError, asyncio.TimeoutError, ValueError, EOFError) as e:
                return ("failed_%s" % type(e).__name__, None)
            if first.get("type") != "welcome":
                ws.abort()
                return ("first_%s" % first.get("type"), None)
            return ("welcome", ws)

        async def drain(ws, secs):
            frames = [0]

            async def go():
                while True:
                    try:
                        await ws.recv()
                    except Closed as e:
                        return "closed_%s" % e.code
                    except ValueError:  # not UTF-8: counted, read on
                        pass
                    frames[0] += 1
            try:
                return await asyncio.wait_for(go(), secs), frames[0]
            except asyncio.TimeoutError:
                return "open", frames[0]

        async def body(i):
            node = self.nodes()[i % 2]
            burst = p["resume_burst"]
            res = await asyncio.gather(*(one(node, j, i) for j in range(burst)))
            welcomed = [ws for how, ws in res if ws is not None]
            for how, ws in res:
                if ws is None:
                    self.count("resume_flood", "refused_" + how)
            await asyncio.sleep(2.0)  # admitted replays are stuck on a reader that waits
            ends = await asyncio.gather(*(drain(ws, 1.5) for ws in welcomed))
            admitted = 0
            for how, frames in ends:
                self.count("resume_flood", "after_welcome_" + how)
                if how == "open" or how == "closed_1008":
                    admitted += 1
            n1013 = sum(1 for h, _ in ends if h == "closed_1013") + \
                sum(1 for h, _ in res if h == "closed_1013")
            self.count("resume_flood", "bursts")
            self.count("resume_flood", "admitted", admitted)
            if admitted > limit or n1013 < burst - limit:
                self.violate("resume_flood_1013", "burst %d on %s: %d of %d admitted "
                             "(limit %d), ends %s" % (i, node.name, admitted, burst, limit,
                                                      sorted(h for h, _ in ends)))
            for ws in welcomed:
                await ws.close(timeout=0.5)
        await self.loop("resume_flood", p["resume_every_s"], body, jitter=0.1)

    # 4. receivers that never read ------------------------------------------------------------

    async def attack_nonreaders(self):
        p = self.prof
        nodes = self.nodes()
        flooders = []
        acks = {"n": 0}

        async def ack_reader(ws):
            while True:
                try:
                    f = json.loads(await ws.recv())
                except Closed:
                    return
                if f.get("type") == "ack":
                    acks["n"] += 1
                elif f.get("type") == "error":
                    self.count("nonreader", "flood_error_%s" % f.get("code"))
        for k, n in enumerate(nodes):
            ws, _ = await self.ws_open(n, "xf%d" % k)
            flooders.append(ws)
        readers = [asyncio.ensure_future(ack_reader(ws)) for ws in flooders]
        data = {"pad": "s" * p["nonreader_pad"]}
        nbytes = payload_len(data)

        async def one(k, i):
            # The receiver on node k, its flooder on the other node.
            node = nodes[k]
            uid = "xs%d" % k
            try:
                ws, first = await self.ws_open(node, uid, rcvbuf=4096, limit=4096)
            except Exception as e:  # noqa: BLE001
                self.count("nonreader", "connect_failed_%s" % type(e).__name__)
                return
            flooder = flooders[1 - k]
            m0 = await metrics(node.host, node.port) or {}
            t = now()
            sent = 0
            # At least 8 MB: more than the kernel's socket buffers on loopback
            # (up to ~4 MB) plus send-queue-bytes; bounded in time.
            target = -(-8 * MiB // nbytes)
            while sent < target and now() - t < 2 * p["nonreader_flood_s"] and self.running():
                for _ in range(max(1, p["nonreader_rate"] // 10)):
                    try:
                        flooder.send_json({"type": "send", "to": uid, "data": data})
                        sent += 1
                    except Closed:
                        break
                await flooder.writer.drain()
                await asyncio.sleep(0.1)
            self.count("nonreader", "flood_frames", sent)
            # Now read what is there: the node must have closed it with 1008.
            how = "open"
            t = now()
            while now() - t < 8.0:
                try:
                    await asyncio.wait_for(ws.recv(), 1.0)
                except Closed as e:
                    how = "closed_%s" % e.code
                    break
                except asyncio.TimeoutError:
                    break
            self.count("nonreader", "receiver_" + how)
            m1 = await metrics(node.host, node.port) or {}
            grew = (m1.get("wscluster_queue_overflows_total", 0) -
                    m0.get("wscluster_queue_overflows_total", 0))
            if how == "closed_None" and grew > 0:
                # The node gave up on the close handshake with a reader that does
                # not read and reset the TCP connection: the 1008 frame is lost
                # with the unread data; its overflow counter says why.
                how = "closed_1008"
                self.count("nonreader", "receiver_reset_after_overflow")
            if how == "closed_1008":
                self.count("nonreader", "closed_by_queue_limit")
            if how != "closed_1008" and sent < target:
                self.count("nonreader", "flood_short_not_judged")
            elif how != "closed_1008":
                self.violate("nonreader_1008", "%s on %s after %d x %d B: %s"
                             % (uid, node.name, sent, nbytes, how))
            await ws.close(timeout=0.5)

        async def body(i):
            before = acks["n"]
            await asyncio.gather(one(0, i), one(1, i))
            await asyncio.sleep(0.5)
            got = acks["n"] - before
            self.stored(1, nbytes * got)
            self.accepted_copies += max(0, got - 1)
        try:
            await self.loop("nonreader", p["nonreader_every"], body, jitter=0.1)
        finally:
            for r in readers:
                r.cancel()
            for ws in flooders:
                await ws.close()

    # 5. invalid names ----------------------------------------------------------------------

    async def attack_names(self):
        nodes = self.nodes()
        probers = []
        for k, n in enumerate(nodes):
            ws, _ = await self.ws_open(n, "xn%d" % k)
            probers.append(ws)
        answers = {}
        idless = []  # codes of errors without id (a frame that is not JSON has none)

        async def reader(k, ws):
            while True:
                try:
                    f = json.loads(await ws.recv())
                except Closed as e:
                    self.count("names", "prober_closed_%s" % e.code)
                    self.violate("names_frames_bad_frame", "prober on %s closed with %s"
                                 % (nodes[k].name, e.code))
                    return
                if "id" in f:
                    answers[f["id"]] = f
                elif f.get("type") == "error":
                    idless.append(f.get("code"))
        readers = [asyncio.ensure_future(reader(k, ws)) for k, ws in enumerate(probers)]

        async def body(i):
            node = nodes[i % 2]
            # HTTP (handshake query, API paths, query strings, bodies): 400.
            for label, method, path, bod, upgrade in http_name_probes():
                try:
                    status, text = await http(node.host, node.port, method, path, bod,
                                              timeout=3.0, upgrade=upgrade)
                except (OSError, asyncio.TimeoutError, ValueError) as e:
                    status, text = None, repr(e)
                if status == 400:
                    self.count("names", "http_400")
                else:
                    self.count("names", "http_%s" % status)
                    self.violate("names_http_400", "%s %s -> %s %s" % (label, path[:60], status,
                                                                       str(text)[:80]))
            # Frames: error bad_frame, the connection lives on.
            ws = probers[i % 2]
            ids = []
            idless.clear()
            for label, frame in frame_name_probes():
                fid = "n%d.%s" % (i, label)
                ids.append((fid, label))
                try:
                    ws.writer.write(wsaio._frame(0x1, json_ascii(dict(frame, id=fid)).encode()))
                except (OSError, RuntimeError):
                    pass
            ws.send_json({"type": "ping", "id": "n%d.ping" % i})
            t = now()
            while now() - t < 4.0 and "n%d.ping" % i not in answers:
                await asyncio.sleep(0.05)
            # A lone surrogate escape (\\ud800) is not JSON nlohmann accepts: the
            # answer is bad_json without an id. Every other probe: bad_frame, by id.
            for fid, label in ids:
                f = answers.pop(fid, None)
                code = None if f is None else (f.get("code") if f.get("type") == "error"
                                               else f.get("type"))
                if code is None and "surrogate" in label:
                    code = idless.pop(0) if idless else None
                    if code in ("bad_json", "bad_frame"):
                        self.count("names", "frame_%s" % code)
                        continue
                if code == "bad_frame":
                    self.count("names", "frame_bad_frame")
                else:
                    self.count("names", "frame_%s" % code)
                    self.violate("names_frames_bad_frame", "%s -> %s" % (label, code))
            if answers.pop("n%d.ping" % i, None) is None:
                self.violate("names_frames_bad_frame", "no pong after the probes on %s"
                             % node.name)
            # Invalid UTF-8 in a text frame: RFC 6455 says close 1007.
            try:
                w2, _ = await self.ws_open(node, "xn%d-utf8" % i)
                w2.writer.write(wsaio._frame(0x1, b'{"type":"join","group":"\xff"}'))
                try:
                    while True:
                        await asyncio.wait_for(w2.recv(), 3.0)
                except Closed as e:
                    self.count("names", "raw_utf8_closed_%s" % e.code)
                except asyncio.TimeoutError:
                    self.count("names", "raw_utf8_not_closed")
                await w2.close(timeout=0.3)
            except Exception as e:  # noqa: BLE001
                self.count("names", "raw_utf8_%s" % type(e).__name__)
        try:
            await self.loop("names", self.prof["names_every"], body)
        finally:
            for r in readers:
                r.cancel()
            for ws in probers:
                await ws.close()

    # 6. connection floods of one uid -------------------------------------------------------

    async def attack_connflood(self):
        p = self.prof
        limit = NODE_OPTIONS["max-connections-per-uid"]

        async def one(node, uid):
            try:
                ws, first = await self.ws_open(node, uid, timeout=6.0)
            except HandshakeFailed as e:
                return "http_%s" % status_of(e), None
            except Closed as e:
                return "closed_%s" % e.code, None
            except (OSError, asyncio.TimeoutError, ValueError, EOFError) as e:
                return "failed_%s" % type(e).__name__, None
            return ("welcome" if first.get("type") == "welcome" else "first_other"), ws

        async def body(i):
            node = self.nodes()[i % 2]
            uid = "xc%d" % i
            res = await asyncio.gather(*(one(node, uid) for _ in range(p["connflood_size"])))
            open_ws = [ws for _, ws in res if ws is not None]
            for how, _ in res:
                self.count("connflood", how)
            await asyncio.sleep(0.5)
            closed_1008 = 0
            for ws in open_ws:
                try:
                    await asyncio.wait_for(ws.recv(), 0.02)
                except Closed as e:
                    self.count("connflood", "closed_after_welcome_%s" % e.code)
                    closed_1008 += e.code == 1008
                except asyncio.TimeoutError:
                    pass
            held = len(open_ws) - closed_1008
            self.peak_conns[node.name] = max(self.peak_conns.get(node.name, 0), held)
            if held > limit or held == len(res):
                self.violate("connflood_503", "%s: %d of %d connections of %s held (limit %d)"
                             % (node.name, held, len(res), uid, limit))
            await asyncio.gather(*(ws.close(timeout=0.5) for ws in open_ws))
        await self.loop("connflood", p["connflood_every"], body, jitter=0.1)

    # 7. garbage on the relay channel -----------------------------------------------------

    async def attack_relay(self):
        prefix = "wscluster"

        async def body(i):
            for n in self.nodes():
                self.relay_counter += 10
                for label, payload in relay_garbage(self.rng, n.name, self.relay_counter):
                    try:
                        await asyncio.to_thread(self.cluster.redis.command, "PUBLISH",
                                                "%s:relay:%s" % (prefix, n.name), payload,
                                                timeout=2.0)
                        self.count("relay", "published_" + label)
                    except (OSError, RuntimeError):
                        self.count("relay", "publish_failed")
            await asyncio.sleep(0.3)
            await self.canary("relay", i)
        await self.loop("relay", self.prof["relay_every"], body)

    # 8. garbage on the cluster port --------------------------------------------------------

    async def attack_clusterport(self):
        async def send_garbage(addr, data, hold, node=None):
            before = read_status(node.pid).get("VmRSS", 0) if node else 0
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(*addr), 2.0)
            except (OSError, asyncio.TimeoutError):
                return "connect_failed"
            try:
                w.write(data)
                await asyncio.wait_for(w.drain(), 2.0)
                t = now()
                while now() - t < hold:
                    try:
                        chunk = await asyncio.wait_for(r.read(65536), hold / 2)
                    except asyncio.TimeoutError:
                        chunk = None
                    if node is not None and now() - t >= hold / 2:
                        # RSS while the node holds the claimed payload buffer.
                        grew = read_status(node.pid).get("VmRSS", 0) - before
                        self.basp_growth[node.name] = max(self.basp_growth.get(node.name, 0),
                                                          grew)
                        if grew > 32 * MiB:
                            self.violate("clusterport_basp_allocation",
                                         "%s: RSS +%d MiB while a 32-byte BASP header claiming "
                                         "a 64 MiB payload was held (unauthenticated, "
                                         "cluster port)" % (node.name, grew >> 20))
                        node = None
                    if chunk == b"":
                        return "closed_by_node"
                return "held"
            except (OSError, asyncio.TimeoutError):
                return "reset_by_node"
            finally:
                w.transport.abort()

        async def body(i):
            jobs = []
            for node_id, addr in self.cluster_addrs.items():
                jobs.append(("random", send_garbage(
                    addr, cluster_garbage(self.rng, self.rng.randint(1, 65536)), 0.3)))
                jobs.append(("tiny", send_garbage(addr, os.urandom(3), 0.1)))
            res = await asyncio.gather(*(j for _, j in jobs))
            if i % 2 == 0:
                # One at a time per node, so the RSS growth is this probe's.
                for node in self.nodes():
                    addr = self.cluster_addrs.get(node.name)
                    if addr:
                        jobs.append(("basp_64mib_header", None))
                        self.basp_active = True
                        try:
                            res.append(await send_garbage(addr, basp_big_header() +
                                                          os.urandom(4096), 1.0, node))
                            await asyncio.sleep(1.0)
                        finally:
                            self.basp_active = False
            for (label, _), how in zip(jobs, res):
                self.count("clusterport", "%s_%s" % (label, how))
            await self.canary("clusterport", i)
        await self.loop("clusterport", self.prof["clusterport_every"], body)

    async def canary(self, attack, i):
        """A fresh connection to every node gets its welcome and a pong."""
        for n in self.nodes():
            try:
                ws, first = await self.ws_open(n, "xk%s%d" % (attack[:2], i))
                ok = first.get("type") == "welcome"
                if ok:
                    ws.send_json({"type": "ping", "id": 1})
                    f = json.loads(await asyncio.wait_for(ws.recv(), 3.0))
                    ok = f.get("type") == "pong"
                await ws.close(timeout=0.3)
            except Exception as e:  # noqa: BLE001
                ok = False
                first = repr(e)
            if ok:
                self.count(attack, "canary_ok")
            else:
                self.count(attack, "canary_failed")
                self.violate("canary_after_" + attack, "%s: %s" % (n.name, str(first)[:100]))

    # -- legitimate traffic ----------------------------------------------------------------

    async def resumer(self):
        """Every ``resume_every`` s one legitimate client closes and resumes."""
        fl = self.fleet
        for _ in range(100000):
            if now() >= self.deadline:
                return
            await asyncio.sleep(self.prof["resume_every"])
            up = [c for c in fl.clients.values() if c.connected and c.conn and c.conn.t_caught]
            if up:
                c = self.rng.choice(up)
                c.drop("periodic", close=True)
                self.count("legit", "periodic_resumes")

    async def settle(self):
        """faults.py's settle: no new sends, pending ones acked and delivered,
        then every client resumes once more and catches up (bounded)."""
        fl = self.fleet
        p = self.prof
        fl.sending = False
        clients = list(fl.clients.values())
        notes = []
        ok = await fl.wait(lambda: all(all(v.pending is None for v in c.convs) for c in clients),
                           p["settle_pending"])
        if not ok:
            notes.append("pending sends not acknowledged within %.0f s" % p["settle_pending"])
        await fl.wait(lambda: not fl.outstanding and not fl.group_outstanding(),
                      p["settle_live"], step=0.25)
        tf = now()
        notes.append("%d send and %d group deliveries outstanding before the final resume"
                     % (len(fl.outstanding), len(fl.group_outstanding())))
        for i, c in enumerate(clients):
            c.drop("final", close=True)
            if i % 10 == 9:
                await asyncio.sleep(0.05)

        def resumed():
            for c in clients:
                cn = c.conn
                if not c.connected or cn is None or cn.t_open is None or cn.t_open <= tf \
                        or cn.t_caught is None:
                    return False
            return not fl.outstanding and not fl.group_outstanding()
        if not await fl.wait(resumed, p["settle_final"], step=0.25):
            n = sum(1 for c in clients if c.connected and c.conn.t_open > tf and c.conn.t_caught)
            notes.append("final resume: %d/%d clients caught up" % (n, len(clients)))
        return tf, notes

    # -- run -----------------------------------------------------------------------------------

    async def run(self):
        p = self.prof
        stop_sampler = asyncio.Event()
        sampler = asyncio.ensure_future(self.sampler(stop_sampler))
        result = {}
        try:
            await self.setup()
            self.fleet.sending = True
            await asyncio.sleep(1.0)
            self.deadline = now() + p["duration"]
            t_start = now()
            log("abuse phase: %.0f s" % p["duration"])
            attacks = [("fanout_ws", self.attack_fanout_ws), ("fanout_http",
                                                                 self.attack_fanout_http),
                       ("resume_flood", self.attack_resume_flood),
                       ("nonreader", self.attack_nonreaders), ("names", self.attack_names),
                       ("connflood", self.attack_connflood), ("relay", self.attack_relay),
                       ("clusterport", self.attack_clusterport), ("resumer", self.resumer)]
            attacks = [(k, f) for k, f in attacks if k not in self.skip]
            names = [k for k, _ in attacks]
            self.tasks = [asyncio.ensure_future(f()) for _, f in attacks]
            done, pend = await asyncio.wait(self.tasks, timeout=p["duration"] + 25)
            for t in pend:
                t.cancel()
            for name, t in zip(names, self.tasks):
                if t in pend:
                    self.count(name, "task_overran")
                elif t.exception() is not None:
                    e = t.exception()
                    self.count(name, "task_failed")
                    log("attack %s failed: %r" % (name, e))
                    traceback.print_exception(type(e), e, e.__traceback__)
            abuse_s = now() - t_start
            log("abuse phase over (%.1f s); settling" % abuse_s)
            tf, notes = await asyncio.wait_for(self.settle(), 60)
            result = await self.report(abuse_s, tf, notes)
        finally:
            stop_sampler.set()
            try:
                await asyncio.wait_for(sampler, 5)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                sampler.cancel()
            if self.fleet is not None:
                await self.fleet.stop()
            await asyncio.to_thread(self.cluster.stop)
        return result

    # -- report --------------------------------------------------------------------------------

    async def report(self, abuse_s, tf, notes):
        fl = self.fleet
        a = analyse(fl, [], tf)
        # Group messages.
        req = fl.group_required()
        got, lat, g_recovered = set(), [], 0
        for c in fl.clients.values():
            seen = set()
            for t, seq, mid, key, replay, l in c.grx:
                if mid is None or (c.uid, key) in seen:
                    continue
                seen.add((c.uid, key))
                got.add((c.uid, key))
                if replay:
                    g_recovered += 1
                elif l is not None and l >= 0:
                    lat.append(l)
        g_lost = sorted(req - got)
        # Crashes: a node that exited, or /healthz not 200 now; /metrics answers.
        crashes, final_health, counters = [], {}, {}
        for n in self.nodes():
            rc = n.proc.poll()
            try:
                status, _ = await http(n.host, n.port, "GET", "/healthz", timeout=3.0)
            except (OSError, asyncio.TimeoutError, ValueError):
                status = None
            final_health[n.name] = status
            if rc is not None:
                crashes.append("%s exited with %s" % (n.name, rc))
            elif status != 200:
                crashes.append("%s /healthz %s at the end" % (n.name, status))
            m = await metrics(n.host, n.port)
            if m is None and rc is None:
                crashes.append("%s /metrics does not answer" % n.name)
            counters[n.name] = pick_counters(m or {})
            st = read_status(n.pid) if rc is None else {}
            self.peak_rss[n.name] = max(self.peak_rss.get(n.name, 0), st.get("VmHWM", 0))
        budgets = self.budgets()
        over = []
        for name, peak in self.peak_rss.items():
            if peak > budgets["rss"][name]:
                over.append("node %s RSS peak %.1f MiB > budget %.1f MiB"
                            % (name, peak / MiB, budgets["rss"][name] / MiB))
        if self.peak_redis > budgets["redis"]:
            over.append("Redis used_memory peak %.1f MiB > budget %.1f MiB"
                        % (self.peak_redis / MiB, budgets["redis"] / MiB))
        # Every defence must have been seen refusing.
        c = self.counts
        seen = {
            "fanout_ws_too_large": c.get("fanout_ws", {}).get("refused_too_large", 0),
            "fanout_http_413": c.get("fanout_http", {}).get("refused_413", 0),
            "resume_flood_1013": sum(v for k, v in c.get("resume_flood", {}).items()
                                     if k.endswith("closed_1013")),
            "nonreader_1008": c.get("nonreader", {}).get("closed_by_queue_limit", 0),
            "names_http_400": c.get("names", {}).get("http_400", 0),
            "names_frames_bad_frame": c.get("names", {}).get("frame_bad_frame", 0),
            "connflood_503": c.get("connflood", {}).get("http_503", 0) +
            c.get("connflood", {}).get("closed_after_welcome_1008", 0),
            "relay_canary": c.get("relay", {}).get("canary_ok", 0),
            "clusterport_canary": c.get("clusterport", {}).get("canary_ok", 0),
        }
        missing = sorted(k for k, v in seen.items() if v == 0
                         and k.split("_")[0] not in {x.split("_")[0] for x in self.skip})
        lost = a["lost"] + len(g_lost)
        all_lat = list(lat)
        for cl in fl.clients.values():
            first = set()
            for rec in cl.rx:
                key = (rec[3], rec[4], rec[5])
                if rec[2] is None or key in first:
                    continue
                first.add(key)
                if not rec[7] and rec[10] is not None and rec[10] >= 0:
                    all_lat.append(rec[10])
        failed = []
        if lost:
            failed.append("lost=%d (sends %d, group %d)" % (lost, a["lost"], len(g_lost)))
        if a["acked"] == 0:
            failed.append("no legitimate message acknowledged")
        if crashes:
            failed.append("crashes: " + "; ".join(crashes))
        failed += over
        for d in sorted(self.violations):
            failed.append("defence %s failed %d times, e.g. %s" % (
                d, self.counts["violations"][d], self.violations[d][0]))
        for d in missing:
            if d not in self.violations:
                failed.append("defence %s never seen refusing" % d)
        if self.safety:
            failed += ["safety stop: " + s for s in self.safety]
        res = {
            "ok": not failed,
            "failed": failed,
            "mode": self.prof.get("mode"),
            "abuse_s": round(abuse_s, 1),
            "node_options": NODE_OPTIONS,
            "profile": self.prof,
            "legit": {
                "clients": a["clients"], "sends_acked": a["acked"],
                "expected_deliveries": a["expected_deliveries"], "lost_sends": a["lost"],
                "group_publishes": len(fl.gpub),
                "group_acked": sum(1 for p in fl.gpub.values() if p["t_ack"]),
                "group_required_deliveries": len(req), "lost_group": len(g_lost),
                "lost": lost, "lost_examples": a["examples"]["lost"][:5] + [
                    list(x) for x in g_lost[:5]],
                "duplicates": a["duplicates"], "reordered": a["reordered"],
                "unexpected": a["unexpected"], "seq_conflicts": a["seq_conflicts"],
                "recovered_in_replay": a["recovered"] + g_recovered,
                "delivery_ms_p50": pct(all_lat, 50), "delivery_ms_p99": pct(all_lat, 99),
                "send_delivery_ms_p99": a["delivery_ms_p99"],
                "group_delivery_ms_p99": pct(lat, 99),
                "ack_ms_p99": a["ack_ms_p99"], "closes": a["closes"],
                "send_failures": a["send_failures"], "bad_frames": a["bad_frames"],
                "gap_resyncs": a["gap_resyncs"], "too_old": a["too_old"],
            },
            "crashes": crashes,
            "final_healthz": final_health,
            "healthz_samples": self.samples["health"],
            "rss_peak_bytes": self.peak_rss,
            "rss_base_bytes": self.base_rss,
            "rss_mib_series": self.series,
            "basp_probe_rss_growth_bytes": self.basp_growth,
            "rss_peak_outside_basp_probes_bytes": self.peak_rss_no_basp,
            "skipped_attacks": sorted(self.skip),
            "redis_used_memory_peak": self.peak_redis,
            "redis_used_memory_base": self.base_redis,
            "budgets": budgets,
            "accepted_payload_bytes": self.accepted_bytes,
            "accepted_copies": self.accepted_copies,
            "attacks": self.counts,
            "defences_seen": seen,
            "violations": self.violations,
            "node_counters": counters,
            "notes": notes,
            "safety": self.safety,
        }
        return res

    def budgets(self):
        """RSS per node and Redis used_memory budgets (see ABUSE.md)."""
        o, p = NODE_OPTIONS, self.prof
        per_conn = 64 * KiB
        queue = o["send-queue-bytes"] + 2 * o["max-message-bytes"]
        legit_per_node = (p["clients"] + 1) // 2
        holders = (legit_per_node + 1            # legitimate clients
                   + 2                           # one non-reading receiver per node, 2 flooders
                   + o["max-resumes-per-uid"]    # admitted replays of the resume flood
                   + 4)                          # attackers, probers, canaries
        conns = (legit_per_node * 2 + o["max-connections-per-uid"] + p["resume_burst"] + 16)
        fanout = 4 * o["max-fanout-bytes"]       # fan-out requests in flight (2 WS, 2 HTTP)
        rss = {}
        for name, base in self.base_rss.items():
            rss[name] = base + 64 * MiB + conns * per_conn + holders * queue + fanout
        redis = (self.base_redis + 32 * MiB + 2 * self.accepted_bytes
                 + 512 * self.accepted_copies)
        return {"rss": rss, "redis": redis,
                "rss_terms": {"slack": 64 * MiB, "connections": conns, "per_connection": per_conn,
                              "queue_holders": holders, "per_queue": queue,
                              "fanout_in_flight": fanout},
                "redis_terms": {"slack": 32 * MiB, "accepted_payload_x2": 2 * self.accepted_bytes,
                                "per_copy_overhead": 512 * self.accepted_copies}}


# -- helpers -----------------------------------------------------------------------------


def read_status(pid):
    """VmRSS / VmHWM of a process in bytes ({} when it is gone)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) * 1024
    except (OSError, ValueError, TypeError):
        pass
    return out


def status_of(e):
    parts = str(e).split(" ", 2)
    return parts[1] if len(parts) > 1 and parts[1].isdigit() else "?"


COUNTER_WORDS = ("rejected", "overflow", "too_large", "bad_frame", "resume", "refused",
                 "dropped", "limit", "quota", "fanout", "malformed", "relay", "restart",
                 "handshakes_total", "1013", "forbidden")


def pick_counters(m):
    return {k: v for k, v in sorted(m.items())
            if any(w in k for w in COUNTER_WORDS) and v}


def summary(r):
    L = r.get("legit", {})
    b = r.get("budgets", {})
    rss = ", ".join("%s %.0f/%.0f MiB" % (k, v / MiB, b.get("rss", {}).get(k, 0) / MiB)
                    for k, v in sorted(r.get("rss_peak_bytes", {}).items()))
    nob = r.get("rss_peak_outside_basp_probes_bytes", {})
    if nob:
        rss += " (outside BASP probes %s)" % ", ".join("%s %.0f" % (k, v / MiB)
                                                        for k, v in sorted(nob.items()))
    seen = r.get("defences_seen", {})
    return ("ABUSE %s: %.0f s, legit acked %s sends + %s group, lost %s, delivery p99 %s ms, "
            "crashes %d, RSS peak %s, Redis peak %.0f/%.0f MiB, refusals %s" % (
                "PASS" if r.get("ok") else "FAIL", r.get("abuse_s", 0), L.get("sends_acked"),
                L.get("group_acked"), L.get("lost"), L.get("delivery_ms_p99"),
                len(r.get("crashes", [])), rss, r.get("redis_used_memory_peak", 0) / MiB,
                b.get("redis", 0) / MiB, json.dumps(seen, separators=(",", ":"))))


async def main_async(args):
    prof = dict(PROFILES["quick" if args.quick else "full"])
    prof["mode"] = "quick" if args.quick else "full"
    if args.duration:
        prof["duration"] = args.duration
    if args.clients:
        prof["clients"] = args.clients
    outdir = os.path.abspath(args.out)
    os.makedirs(outdir, exist_ok=True)
    soak = Soak(prof, outdir, args.seed)
    soak.skip = {x for x in args.skip.split(",") if x}
    t = now()
    try:
        r = await soak.run()
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        print("ABUSE soak could not run: %r" % (e,))
        return 2
    r["wall_s"] = round(now() - t, 1)
    r["binary"] = harness.binary_path()
    path = os.path.join(outdir, "report.json")
    with open(path, "w") as f:
        json.dump(r, f, indent=1, sort_keys=True, default=str)
    print(json.dumps({k: r[k] for k in ("ok", "failed", "legit", "crashes", "rss_peak_bytes",
                                        "redis_used_memory_peak", "budgets", "attacks")},
                     indent=1, sort_keys=True, default=str))
    for f in r["failed"]:
        print("FAILED: " + f)
    print(summary(r))
    print("report: %s (%.0f s wall)" % (path, r["wall_s"]))
    return 0 if r["ok"] else 1


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI mode: 20 s, fewer clients")
    p.add_argument("--duration", type=float, default=0.0, help="seconds of abuse")
    p.add_argument("--clients", type=int, default=0, help="legitimate clients")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--skip", default="", help="attacks left out (diagnosis only; the soak "
                   "then does not judge them): fanout_ws,fanout_http,resume_flood,nonreader,"
                   "names,connflood,relay,clusterport,resumer")
    p.add_argument("--out", default=None, help="report folder (default build/faults/abuse"
                   "[-quick])")
    args = p.parse_args()
    if args.out is None:
        args.out = os.path.join(harness.REPO_ROOT, "build", "faults",
                                "abuse-quick" if args.quick else "abuse")
    try:
        harness.require_binary()
    except RuntimeError as e:
        print(e)
        return 2
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

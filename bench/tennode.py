#!/usr/bin/python3
"""The ten-node run of issue 15 (acceptance 3): N wscluster nodes on one Redis
Cluster of 3 masters + 3 replicas, C connections spread over the nodes,
random cross-node durable sends, groups whose members span every node,
broadcasts; the steady phases with 2, 4 and 10 nodes (same total load, same
shape) measure server CPU per delivery and Redis CPU per message per shard;
then, on 10 nodes, kill -9 of three nodes and of one Redis master at once
while the clients keep going: detection and cleanup per dead node (each
claimed exactly once), acked messages lost, duplicates, p99.

    bench/tennode.sh                  # full: 10,000 connections, writes docs/scaling.md
    bench/tennode.sh --quick          # CI: 1,000 connections, < 3 min, checks asserted
    bench/tennode.sh --help

Connections: `active` of them are the fault suite's IM clients
(tests/faults/client.py, Python asyncio: they send, ack, resume with
device=, and the checker judges every delivery); the rest are idle
WebSocket connections held by the C++ generator (`wsc-loadgen --scenario s1`,
one per pair of nodes) that receive every broadcast. Python cannot drive
10,000 chatting clients on two cores next to 10 nodes and 6 Redis servers
(its own CPU would be most of the box), so the chatting part is small and
the idle part is C++.

Exit status: 0 when every asserted check holds (0 acked messages lost, 0
duplicates, every killed node claimed exactly once and no live node
claimed, the killed nodes' keys gone), 1 when one fails, 2 when the run
itself could not be done. Every process is started here and stopped by its
own pid; only 127.0.0.1.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "faults"))

from cluster import Cluster, harness  # noqa: E402  (puts tests/integration on sys.path)
from client import Conv, Fleet, SimClient, now  # noqa: E402
from checker import analyse, pct, verdict  # noqa: E402
import faults as fsuite  # noqa: E402  (CLIENT_CFG, Ctx.settle, log_times)
from wsaio import http_get  # noqa: E402
from harness import RedisClusterServer  # noqa: E402

BEGIN = "<!-- tennode:begin -->"
END = "<!-- tennode:end -->"
CLK = os.sysconf("SC_CLK_TCK")
PREFIX = "wscluster"

PROFILES = {
    "full": {
        "connections": 10000, "active": 400, "rate": 1.0, "groups": 40, "group_size": 10,
        "publish_rate": 40.0, "broadcast_rate": 1.0, "node_counts": [2, 4, 10],
        "warmup": 3.0, "ramp": 1.0, "phase": 10.0, "idle": 6.0, "repeat": 3,
        "control": [[2, 0.2]],
        "fault_pre": 3.0, "fault": 15.0, "redis_restart": 5.0, "steady": 5.0,
        "settle_pending": 15.0, "settle_live": 5.0, "settle_final": 20.0,
    },
    "quick": {
        "connections": 1000, "active": 100, "rate": 1.0, "groups": 10, "group_size": 10,
        "publish_rate": 10.0, "broadcast_rate": 1.0, "node_counts": [2, 10],
        "warmup": 1.5, "ramp": 0.5, "phase": 3.0, "idle": 2.0, "repeat": 1, "control": [],
        "fault_pre": 1.5, "fault": 10.0, "redis_restart": 4.0, "steady": 2.5,
        "settle_pending": 8.0, "settle_live": 3.0, "settle_final": 10.0,
    },
}

T0 = time.monotonic()


def log(msg):
    sys.stdout.write("[%7.1f] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


def med(values):
    values = [v for v in values if v is not None]
    return None if not values else statistics.median(values)


def r2(x, nd=1):
    return None if x is None else round(x, nd)


# -- CPU ------------------------------------------------------------------------------


def proc_cpu(pid):
    """utime + stime of every thread of ``pid``, in seconds (None if gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / CLK
    except (OSError, IndexError, ValueError):
        return None


def box_cpu():
    """(busy, total) CPU seconds of the whole box since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    total = sum(v)
    return (total - v[3] - v[4]) / CLK, total / CLK


# -- the cluster ------------------------------------------------------------------------


class TenCluster(Cluster):
    """The fault suite's Cluster on a shared Redis Cluster (started once for
    every node count); nodes n1..nN."""

    def __init__(self, logdir, count, node_options, redis):
        os.makedirs(logdir, exist_ok=True)
        self.logdir = logdir
        self.redis = redis
        self.count = count
        self.extra = dict(node_options)
        self.nodes = []

    def start(self):
        return self.start_nodes(health_timeout=60)

    def stop(self):
        self.stop_nodes()  # the Redis Cluster outlives the configuration


def shard_map(rc):
    """port -> shard number (0..masters-1, by the master's first slot) and the
    masters' ports, from CLUSTER NODES."""
    text = rc.live()[0].command("CLUSTER", "NODES")
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    ids = {}
    for p in lines:
        ids[p[0]] = int(p[1].split("@")[0].rsplit(":", 1)[1])
    masters = []
    for p in lines:
        if "master" in p[2] and len(p) > 8:
            first = int(p[8].split("-")[0])
            masters.append((first, ids[p[0]], p[0]))
    masters.sort()
    shard = {}
    for k, (_, port, mid) in enumerate(masters):
        shard[port] = k
        for p in lines:
            if p[3] == mid:
                shard[ids[p[0]]] = k
    return shard, [m[1] for m in masters]


# -- clients ------------------------------------------------------------------------------


class TClient(SimClient):
    """A fault-suite client that also takes group messages (``publish``
    through the fleet) and broadcasts, and treats an ack that lists
    ``unavailable`` receivers as a failed send (sent again)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.grx = []   # (t, gkey, msg_id, seq, replay, latency ms)
        self.brx = []   # (t, bkey, latency ms)

    def on_frame(self, f):
        kind = f.get("type")
        t = now()
        if kind == "group":
            return self.on_group(f, t)
        if kind == "broadcast":
            d = f.get("data") or {}
            if isinstance(d, dict) and "bk" in d:
                self.brx.append((t, d["bk"], int(time.time() * 1000) - (d.get("sent_ms") or 0)))
            return None
        if kind == "ack":
            fid = f.get("id")
            if isinstance(fid, str) and fid.startswith("g|"):
                return self.fleet.on_pub_ack(int(fid[2:]), f, t)
            if f.get("unavailable") and isinstance(fid, str) and fid.startswith("m|"):
                self.fleet.unavailable_acks += 1
                return self.on_error({"id": fid, "code": "ack_unavailable"}, t)
        if kind == "error":
            fid = f.get("id")
            if isinstance(fid, str) and fid.startswith("g|"):
                self.fleet.pub_errors[str(f.get("code"))] = \
                    self.fleet.pub_errors.get(str(f.get("code")), 0) + 1
                return None
        return super().on_frame(f)

    def on_group(self, f, t):
        d = f.get("data") or {}
        seq, mid = f.get("seq"), f.get("msg_id")
        conn = self.conn
        replay = bool(isinstance(seq, int) and conn is not None and conn.resumed
                      and isinstance(conn.to, int) and seq <= conn.to)
        gk = d.get("gk") if isinstance(d, dict) else None
        if gk is None:
            self.bad.append((t, "foreign group message", json.dumps(f)[:200]))
            return
        self.grx.append((t, gk, mid, seq, replay,
                         int(time.time() * 1000) - (d.get("sent_ms") or 0)))
        if mid is not None:
            self.msg_ids.add(mid)
        if isinstance(seq, int) and seq > self.contig:
            self.above.add(seq)
            self.advance()
        self.check_caught(t)


class TFleet(Fleet):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.unavailable_acks = 0
        self.pubs = {}          # key -> dict(group, t, acked, unavailable)
        self.pub_errors = {}
        self.next_pub = 0

    def build_ten(self, count, n_nodes, rate, groups, group_size):
        uids = ["u%03d" % i for i in range(count)]
        for i, uid in enumerate(uids):
            order = [self.addrs[(i + k) % len(self.addrs)] for k in range(len(self.addrs))]
            c = TClient(self, uid, order)
            # Random cross-node conversations: the receiver starts on another node.
            others = [u for j, u in enumerate(uids) if j % n_nodes != i % n_nodes]
            for k in range(2):
                to = [self.rng.choice(others)]
                c.convs.append(Conv("%s.%d" % (uid, k), to, rate / 2.0))
            self.clients[uid] = c
        # Group g: group_size consecutive clients, i.e. members on every node.
        self.groups = {}
        for g in range(groups):
            members = [uids[(g * group_size + j) % count] for j in range(group_size)]
            self.groups["tg%d" % g] = members
        return self

    def publish_one(self):
        g = self.rng.choice(sorted(self.groups))
        live = [u for u in self.groups[g] if self.clients[u].connected]
        if not live:
            return False
        c = self.clients[self.rng.choice(live)]
        k = self.next_pub
        self.next_pub += 1
        ok = c.send({"type": "publish", "id": "g|%d" % k, "group": g,
                     "data": {"gk": k, "sent_ms": int(time.time() * 1000)}})
        if ok:
            self.pubs[k] = {"group": g, "t": now(), "acked": None, "unavailable": []}
        return ok

    def on_pub_ack(self, k, f, t):
        p = self.pubs.get(k)
        if p is not None and p["acked"] is None:
            p["acked"] = t
            p["ack_s"] = t - p["t"]
            p["unavailable"] = list(f.get("unavailable") or [])


def group_check(fleet):
    """Per acked publish, every member (but those answered unavailable) must
    hold one durable copy; a second msg_id for one publish is a duplicate."""
    got = {}   # (uid, gk) -> set(msg_id)
    for c in fleet.clients.values():
        for t, gk, mid, seq, replay, lat in c.grx:
            if mid is not None:
                got.setdefault((c.uid, gk), set()).add(mid)
    out = {"publishes": len(fleet.pubs), "acked": 0, "expected_copies": 0, "lost": 0,
           "duplicates": 0, "unavailable_members": 0, "errors": dict(fleet.pub_errors),
           "examples_lost": []}
    for k, p in fleet.pubs.items():
        if p["acked"] is None:
            continue
        out["acked"] += 1
        for m in fleet.groups[p["group"]]:
            if m in p["unavailable"]:
                out["unavailable_members"] += 1
                continue
            out["expected_copies"] += 1
            ids = got.get((m, k))
            if not ids:
                out["lost"] += 1
                if len(out["examples_lost"]) < 5:
                    out["examples_lost"].append([m, k, p["group"]])
    for ids in got.values():
        if len(ids) > 1:
            out["duplicates"] += len(ids) - 1
    return out


# -- one configuration: N nodes, connections, traffic ---------------------------------------


class Config:
    def __init__(self, args, prof, rc, n_nodes, outdir, seed, options, scale=1.0, rnd=0):
        self.args, self.prof, self.rc, self.n = args, prof, rc, n_nodes
        self.scale = scale  # sends and publishes at this share of the profile's rates
        self.label = label(n_nodes, scale)
        self.logdir = os.path.join(outdir, "logs", "%s-r%d" % (self.label, rnd))
        self.cluster = TenCluster(self.logdir, n_nodes, options, rc)
        self.rng = random.Random(seed)
        random.seed(seed)
        self.fleet = None
        self.loadgens = []
        self.pub_on = False
        self.bc_on = False
        self.bc_sent = 0
        self.bc_fail = 0
        self.tasks = []
        self.notes = []
        # for faults.Ctx.settle
        self.t_final = None

    # -- setup and teardown --

    async def start(self):
        p = self.prof
        await asyncio.to_thread(self.rc.command, "FLUSHALL")
        await asyncio.to_thread(self.cluster.start)
        mesh = await self.cluster.wait_mesh(timeout=60)
        if mesh is None:
            raise RuntimeError("the %d nodes did not form a cluster within 60 s" % self.n)
        log("n=%s: %d nodes up, mesh in %.1f s" % (self.label, self.n, mesh))
        addrs = [(n.host, n.port) for n in self.cluster.nodes]
        self.fleet = TFleet(addrs, dict(fsuite.CLIENT_CFG), self.rng)
        self.fleet.build_ten(p["active"], self.n, p["rate"] * self.scale, p["groups"],
                             p["group_size"])
        n1 = self.cluster.nodes[0]
        for g, members in self.fleet.groups.items():
            st, _, body = await asyncio.to_thread(n1.http, "POST", "/api/groups/%s/members" % g,
                                                  {"add": members})
            if st != 200:
                raise RuntimeError("group %s: HTTP %s %r" % (g, st, body))
        await self.start_idle()
        await self.fleet.start(stagger=1.5)
        if not all(c.connected for c in self.fleet.clients.values()):
            k = sum(1 for c in self.fleet.clients.values() if c.connected)
            raise RuntimeError("only %d/%d active clients connected" % (k, len(self.fleet.clients)))
        self.tasks = [asyncio.ensure_future(self.publisher()),
                      asyncio.ensure_future(self.broadcaster())]
        conns = await self.connections()
        log("n=%s: %d connections (%d active IM clients, idle: %s)" % (
            self.label, sum(conns.values()), len(self.fleet.clients), self.idle_counts))
        self.conns_at_start = conns

    async def start_idle(self):
        """Idle connections: one wsc-loadgen s1 per pair of nodes, held until
        the configuration ends."""
        p = self.prof
        idle = p["connections"] - p["active"]
        ports = [n.port for n in self.cluster.nodes]
        pairs = [ports[i:i + 2] for i in range(0, len(ports), 2)]
        per = [idle // len(pairs) + (1 if k < idle % len(pairs) else 0) for k in range(len(pairs))]
        self.idle_counts = per
        hold = self.args.hold  # bounds the generator if this driver dies
        for k, (pair, cnt) in enumerate(zip(pairs, per)):
            if cnt <= 0:
                continue
            cmd = [self.args.loadgen, "--scenario", "s1", "--ports", ",".join(map(str, pair)),
                   "--n", str(cnt), "--settle", str(hold), "--max-seconds", str(hold + 60),
                   "--uid-prefix", "i%d_" % k, "--connect-concurrency", "128"]
            out = open(os.path.join(self.logdir, "loadgen-%d.log" % k), "ab")
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                out.close()
            self.loadgens.append(proc)
            with harness._live_lock:  # killed at exit, by pid, if the run is interrupted
                harness._live_processes.add(proc)
        want = idle
        t = now()
        while now() - t < 90:
            conns = await self.connections()
            if sum(conns.values()) >= want:
                return
            for proc in self.loadgens:
                if proc.poll() is not None:
                    raise RuntimeError("wsc-loadgen exited with %s (see %s)" % (
                        proc.returncode, self.logdir))
            await asyncio.sleep(0.5)
        raise RuntimeError("idle connections: %d of %d after 90 s" % (
            sum((await self.connections()).values()), want))

    async def stop(self):
        self.pub_on = self.bc_on = False
        for t in self.tasks:
            t.cancel()
        if self.fleet is not None:
            await self.fleet.stop()
        for proc in self.loadgens:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except OSError:
                    pass
        for proc in self.loadgens:
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait, 5)
        await asyncio.to_thread(self.cluster.stop)

    # -- traffic --

    async def publisher(self):
        rate = self.prof["publish_rate"] * self.scale
        nxt = now()
        while True:
            nxt += 1.0 / rate
            await asyncio.sleep(max(0.0, nxt - now()))
            if nxt < now() - 1.0:
                nxt = now()
            if self.pub_on:
                self.fleet.publish_one()

    async def broadcaster(self):
        rate = self.prof["broadcast_rate"]
        nxt = now()
        k = 0
        while True:
            nxt += 1.0 / rate
            await asyncio.sleep(max(0.0, nxt - now()))
            if nxt < now() - 1.0:
                nxt = now()
            if not self.bc_on:
                continue
            live = [n for n in self.cluster.nodes if n.running()]
            node = live[k % len(live)]
            k += 1
            body = {"data": {"bk": k, "sent_ms": int(time.time() * 1000)}}
            try:
                st, _, _ = await asyncio.to_thread(node.http, "POST", "/api/broadcast", body,
                                                   None, 3.0)
                if st == 200:
                    self.bc_sent += 1
                else:
                    self.bc_fail += 1
            except OSError:
                self.bc_fail += 1

    def traffic(self, kind):
        self.fleet.sending = kind in ("send", "mixed")
        self.pub_on = kind in ("group", "mixed")
        self.bc_on = kind in ("broadcast", "mixed")

    # -- measurement --

    async def metrics_of(self, node):
        try:
            st, body = await http_get(node.host, node.port, "/metrics", 3.0)
        except (OSError, asyncio.TimeoutError, ValueError, IndexError):
            return None
        out = {}
        if st == 200 and isinstance(body, str):
            for line in body.splitlines():
                if line.startswith("wscluster_frames_out_by_type_total{type=\""):
                    kind = line.split('"')[1]
                    out[kind] = float(line.rsplit(" ", 1)[1])
                elif line.startswith("wscluster_connections "):
                    out["connections"] = float(line.rsplit(" ", 1)[1])
                elif 'direction="out"' in line and line.startswith(
                        ("wscluster_remote_batches_total{", "wscluster_deliveries_remote_total{")):
                    k = "batches_out" if "batches" in line else "remote_out"
                    out[k] = out.get(k, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    async def connections(self):
        live = [n for n in self.cluster.nodes if n.running()]
        ms = await asyncio.gather(*(self.metrics_of(n) for n in live))
        return {n.name: int((m or {}).get("connections", 0)) for n, m in zip(live, ms)}

    async def snapshot(self):
        live = [n for n in self.cluster.nodes if n.running()]
        ms = await asyncio.gather(*(self.metrics_of(n) for n in live))
        s = {"t": now(), "box": box_cpu(),
             "nodes": {n.name: proc_cpu(n.pid) for n in live},
             "frames": {n.name: m for n, m in zip(live, ms)},
             "redis": {s_.port: proc_cpu(s_.proc.pid) for s_ in self.rc.live()},
             "self": proc_cpu(os.getpid()),
             "loadgen": sum(x for x in (self.loadgen_cpu(p) for p in self.loadgens) if x)}
        return s

    @staticmethod
    def loadgen_cpu(proc):
        """CPU of a loadgen and its forked workers (children of its pid)."""
        total = proc_cpu(proc.pid) or 0.0
        try:
            with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
                for c in f.read().split():
                    total += proc_cpu(int(c)) or 0.0
        except OSError:
            pass
        return total

    def window_latency(self, t0, t1):
        sends = [r[10] for c in self.fleet.clients.values() for r in c.rx
                 if t0 <= r[0] < t1 and r[2] is not None and not r[7]]
        groups = [r[5] for c in self.fleet.clients.values() for r in c.grx
                  if t0 <= r[0] < t1 and r[2] is not None and not r[4]]
        bcs = [r[2] for c in self.fleet.clients.values() for r in c.brx if t0 <= r[0] < t1]
        acks = [a[3] * 1000 for c in self.fleet.clients.values() for a in c.acks
                if t0 <= a[0] < t1]
        pub_acks = [p["ack_s"] * 1000 for p in self.fleet.pubs.values()
                    if p["acked"] is not None and t0 <= p["acked"] < t1]
        messages = {"send": sum(1 for c in self.fleet.clients.values() for a in c.acks
                                if t0 <= a[0] < t1),
                    "group": len(pub_acks)}

        def pp(v):
            return {"n": len(v), "p50": pct(v, 50), "p99": pct(v, 99)}
        return {"send": pp(sends), "group": pp(groups), "broadcast": pp(bcs),
                "send_ack": pp([round(x, 1) for x in acks]),
                "publish_ack": pp([round(x, 1) for x in pub_acks])}, messages

    def delta(self, a, b, kind):
        secs = b["t"] - a["t"]
        node_cpu = sum(b["nodes"][k] - a["nodes"][k] for k in b["nodes"]
                       if a["nodes"].get(k) is not None and b["nodes"][k] is not None)
        deliveries = {}
        internal = {}
        for name, fb in b["frames"].items():
            fa = a["frames"].get(name)
            if not fa or not fb:
                continue
            for k in ("message", "group", "broadcast"):
                deliveries[k] = deliveries.get(k, 0) + fb.get(k, 0) - fa.get(k, 0)
            for k in ("batches_out", "remote_out"):
                internal[k] = internal.get(k, 0) + fb.get(k, 0) - fa.get(k, 0)
        total = sum(deliveries.values())
        shard, _ = self.shards
        redis_shard = {}
        for port, cb in b["redis"].items():
            ca = a["redis"].get(port)
            if ca is None or cb is None:
                continue
            k = shard.get(port, -1)
            redis_shard[k] = redis_shard.get(k, 0.0) + cb - ca
        lat, messages = self.window_latency(a["t"], b["t"])
        busy = b["box"][0] - a["box"][0]
        ours = node_cpu + sum(redis_shard.values()) + (b["self"] - a["self"]) + \
            (b["loadgen"] - a["loadgen"])
        msgs = messages.get(kind, 0) if kind in ("send", "group") else 0
        out = {
            "kind": kind, "seconds": round(secs, 2),
            "deliveries": {k: int(v) for k, v in deliveries.items()},
            "deliveries_total": int(total),
            "deliveries_per_s": round(total / secs, 1),
            "node_cpu_cores": round(node_cpu / secs, 3),
            "node_cpu_cores_per_node": {
                k: round((b["nodes"][k] - a["nodes"][k]) / secs, 3) for k in b["nodes"]
                if a["nodes"].get(k) is not None and b["nodes"][k] is not None},
            "node_cpu_us_per_delivery": None if total < 1 else round(1e6 * node_cpu / total, 1),
            "redis_cpu_cores_per_shard": {str(k): round(v / secs, 3)
                                          for k, v in sorted(redis_shard.items())},
            "messages": msgs,
            "redis_cpu_us_per_message_per_shard": {} if not msgs else {
                str(k): round(1e6 * v / msgs, 1) for k, v in sorted(redis_shard.items())},
            "redis_cpu_us_per_message": None if not msgs else
            round(1e6 * sum(redis_shard.values()) / msgs, 1),
            "redis_cpu_us_per_delivery": None if total < 1 else
            round(1e6 * sum(redis_shard.values()) / total, 1),
            "latency_ms": lat,
            "basp_batches_per_s": round(internal.get("batches_out", 0) / secs, 1),
            "remote_deliveries_per_batch": None if not internal.get("batches_out") else
            round(internal.get("remote_out", 0) / internal["batches_out"], 2),
            "_redis_shard_s": redis_shard,
            "box_busy_cores": round(busy / secs, 2),
            "client_cpu_cores": round(((b["self"] - a["self"]) + (b["loadgen"] - a["loadgen"]))
                                      / secs, 2),
            "other_cores": round(max(0.0, busy - ours) / secs, 2),
            "_node_cpu_s": node_cpu,
        }
        return out

    async def measure(self, kind, secs):
        p = self.prof
        self.traffic(kind)
        await asyncio.sleep(p["ramp"])
        a = await self.snapshot()
        await asyncio.sleep(secs)
        b = await self.snapshot()
        self.traffic("none")
        await asyncio.sleep(p["ramp"] + 0.5)  # drain before the next phase
        d = self.delta(a, b, kind)
        log("n=%s %-9s %7.0f deliv/s  node %.2f cores %6s us/deliv  redis %s  p99 %s  others %.2f" % (
            self.label, kind, d["deliveries_per_s"], d["node_cpu_cores"],
            d["node_cpu_us_per_delivery"], d["redis_cpu_cores_per_shard"],
            {k: v["p99"] for k, v in d["latency_ms"].items() if v["n"]}, d["other_cores"]))
        return d

    async def steady(self, windows):
        p = self.prof
        self.shards = await asyncio.to_thread(shard_map, self.rc)
        self.traffic("mixed")
        await asyncio.sleep(p["warmup"])
        self.traffic("none")
        await asyncio.sleep(1.0)
        reps = []
        for r in range(windows):
            rep = {}
            for kind in ("idle", "send", "group", "broadcast"):
                rep[kind] = await self.measure(kind, p["idle"] if kind == "idle" else p["phase"])
            reps.append(rep)
        return reps


def label(n, scale):
    return str(n) if scale == 1.0 else "%dx%g" % (n, scale)


def redis_above(d, r, shard=None):
    """Redis CPU per message (µs) less what the same shards use idle."""
    if not d["messages"]:
        return None
    idle = r["idle"]["redis_cpu_cores_per_shard"]
    cpu = 0.0
    for k, v in d["_redis_shard_s"].items():
        if shard is None or str(k) == shard:
            cpu += v - idle.get(str(k), 0.0) * d["seconds"]
    return round(1e6 * cpu / d["messages"], 1)


def summarize(reps):
    """Medians over the repetitions, per kind; the baseline-subtracted
    (marginal) node CPU per delivery."""
    out = {}
    idle = med([r["idle"]["node_cpu_cores"] for r in reps])
    out["idle_node_cpu_cores"] = idle
    out["idle_redis_cpu_cores"] = med([sum(r["idle"]["redis_cpu_cores_per_shard"].values())
                                       for r in reps])
    for kind in ("send", "group", "broadcast"):
        ds = [r[kind] for r in reps]
        k = {
            "deliveries_per_s": med([d["deliveries_per_s"] for d in ds]),
            "node_cpu_cores": med([d["node_cpu_cores"] for d in ds]),
            "node_cpu_us_per_delivery": med([d["node_cpu_us_per_delivery"] for d in ds]),
            "node_cpu_us_per_delivery_above_idle": med([
                None if not d["deliveries_total"] else
                round(1e6 * (d["_node_cpu_s"] - r["idle"]["node_cpu_cores"] * d["seconds"])
                      / d["deliveries_total"], 1) for d, r in zip(ds, reps)]),
            "redis_cpu_us_per_message": med([d["redis_cpu_us_per_message"] for d in ds]),
            "redis_cpu_us_per_message_above_idle": med([redis_above(d, r) for d, r in zip(ds, reps)]),
            "redis_cpu_us_per_message_above_idle_per_shard": {
                s: med([redis_above(d, r, s) for d, r in zip(ds, reps)])
                for s in ds[0]["redis_cpu_us_per_message_per_shard"]},
            "basp_batches_per_s": med([d["basp_batches_per_s"] for d in ds]),
            "remote_deliveries_per_batch": med([d["remote_deliveries_per_batch"] for d in ds]),
            "redis_cpu_us_per_delivery": med([d["redis_cpu_us_per_delivery"] for d in ds]),
            "redis_cpu_us_per_message_per_shard": {
                s: med([d["redis_cpu_us_per_message_per_shard"].get(s) for d in ds])
                for s in ds[0]["redis_cpu_us_per_message_per_shard"]},
            "p50_ms": med([d["latency_ms"][kind]["p50"] for d in ds]),
            "p99_ms": med([d["latency_ms"][kind]["p99"] for d in ds]),
            "other_cores": med([d["other_cores"] for d in ds]),
            "box_busy_cores": med([d["box_busy_cores"] for d in ds]),
        }
        out[kind] = k
    # All three kinds together: total node CPU / total deliveries.
    tot = []
    for r in reps:
        cpu = sum(r[k]["_node_cpu_s"] for k in ("send", "group", "broadcast"))
        dl = sum(r[k]["deliveries_total"] for k in ("send", "group", "broadcast"))
        tot.append(None if not dl else round(1e6 * cpu / dl, 1))
    out["all_node_cpu_us_per_delivery"] = med(tot)
    tot = []
    for r in reps:
        kinds = [r[k] for k in ("send", "group", "broadcast")]
        cpu = sum(d["_node_cpu_s"] - r["idle"]["node_cpu_cores"] * d["seconds"] for d in kinds)
        dl = sum(d["deliveries_total"] for d in kinds)
        tot.append(None if not dl else round(1e6 * cpu / dl, 1))
    out["all_node_cpu_us_per_delivery_above_idle"] = med(tot)
    out["other_cores"] = med([r[k]["other_cores"] for r in reps for k in r])
    return out


# -- the fault phase ----------------------------------------------------------------------------


async def fault_phase(cfg, prof, durable_note):
    cl = cfg.cluster
    fleet = cfg.fleet
    rc = cfg.rc
    victims = cl.nodes[-3:]
    survivors = [n for n in cl.nodes if n not in victims]
    # The Redis master holding the last victim's node keys: its claim needs the failover.
    master = rc.owner(harness.key_slot("%s:{n:%s}:h" % (PREFIX, victims[-1].name)))
    shard, masters = await asyncio.to_thread(shard_map, rc)
    replica_ports = [p for p, k in shard.items() if k == shard[master.port] and p != master.port]
    cfg.traffic("mixed")
    await asyncio.sleep(prof["fault_pre"])
    t, wall = now(), time.time()
    for v in victims:
        os.kill(v.pid, signal.SIGKILL)
    os.kill(master.proc.pid, signal.SIGKILL)
    for v in victims:
        v.kill()
    master.proc.wait(10)
    with harness._live_lock:
        harness._live_processes.discard(master.proc)
    log("kill -9 %s and Redis master :%d (shard %d, replica %s)" % (
        ",".join(v.name for v in victims), master.port, shard[master.port], replica_ports))
    dets = [asyncio.ensure_future(cl.detect(v.name, survivors, t, timeout=prof["fault"] + 10))
            for v in victims]

    async def failover():
        while now() - t < prof["fault"] + 10:
            try:
                owner = await asyncio.to_thread(rc.owner, harness.key_slot(
                    "%s:{n:%s}:h" % (PREFIX, victims[-1].name)))
                if owner.port != master.port:
                    info = await asyncio.to_thread(owner.command, "CLUSTER", "INFO")
                    if "cluster_state:ok" in info:
                        return now() - t
            except (OSError, RuntimeError, StopIteration):
                pass
            await asyncio.sleep(0.1)
        return None
    fo = asyncio.ensure_future(failover())

    async def restart_master():
        """The killed Redis comes back (same port and nodes.conf, no data)
        once the failover is done: it rejoins as the new master's replica, so
        the shard has a replica again (durable-replicas=1 needs one)."""
        took = await fo
        if took is None:
            return None, None
        await asyncio.sleep(max(0.0, prof["redis_restart"] - (now() - t)))
        t_start = now() - t
        await asyncio.to_thread(master.start)
        while now() - t < prof["fault"] + 20:
            try:
                info = await asyncio.to_thread(master.command, "INFO", "replication")
                if "role:slave" in info and "master_link_status:up" in info:
                    return t_start, now() - t
            except (OSError, RuntimeError):
                pass
            await asyncio.sleep(0.1)
        return t_start, None
    rs = asyncio.ensure_future(restart_master())
    await asyncio.sleep(prof["fault"])
    # A claim may come late (after a promotion survivors wait a full
    # node-timeout first): wait for one per victim, bounded.
    def claimed(v):
        return any(fsuite.log_times(n, "node %s silent for longer than" % v.name, wall)
                   for n in survivors)
    for _ in range(150):
        if all(claimed(v) for v in victims) or now() - t > prof["fault"] + 15:
            break
        await asyncio.sleep(0.1)
    detections = [await d for d in dets]
    redis_failover = await fo
    redis_restart, redis_replica_up = await asyncio.wait_for(rs, 30)
    log("killed Redis restarted at %s s, in sync as a replica at %s s" % (
        r2(redis_restart, 2), r2(redis_replica_up, 2)))
    t_end = now()
    # Claims: the "declared down" line of the survivor that won the claim
    # (written once the claim's cleanup is done).
    per_node = []
    false_claims = []
    for v, det in zip(victims, detections):
        lost_link = [x for n in survivors
                     for x in fsuite.log_times(n, "lost the connection to node %s;" % v.name, wall)]
        claims = [(n.name, x) for n in survivors
                  for x in fsuite.log_times(n, "node %s silent for longer than" % v.name, wall)]
        keys = {}
        for suffix in ("h", "nb", "ni"):
            key = "%s:{n:%s}:%s" % (PREFIX, v.name, suffix)
            try:
                keys[suffix] = await asyncio.to_thread(rc.command, "EXISTS", key)
            except (OSError, RuntimeError) as e:
                keys[suffix] = "error %s" % e
        per_node.append({
            "node": v.name,
            "link_lost_s": None if not lost_link else round(min(lost_link) - wall, 2),
            "detection_s": None if det is None else round(det, 2),
            "cleanup_s": None if not claims else round(min(x for _, x in claims) - wall, 2),
            "claims": len(claims), "claimed_by": [c[0] for c in claims],
            "keys_left": {k: v_ for k, v_ in keys.items() if v_ != 0},
        })
    for n in survivors:
        for s in survivors:
            if fsuite.log_times(n, "node %s silent for longer than" % s.name, wall):
                false_claims.append("%s claimed live %s" % (n.name, s.name))
    log("per dead node: %s" % json.dumps(per_node))
    log("redis failover (slot owner changed, cluster_state ok) after %s s" % (
        None if redis_failover is None else round(redis_failover, 2)))
    faults = [{"name": "kill -9 %s + Redis master" % ",".join(v.name for v in victims),
               "t_ref": t, "t_start": t, "t_end": t_end, "detect": True,
               "detection": None if None in detections else max(detections)}]
    # Steady traffic after the fault, then the fault suite's settle (every
    # pending send acked, a final resume of every client).
    ts = now()
    await asyncio.sleep(prof["steady"])
    steady = (ts, now() - 1.0)
    cfg.traffic("none")
    await asyncio.wait_for(fsuite.Ctx.settle(cfg), 90)
    res = analyse(fleet, faults, cfg.t_final, fsuite.RECOVERY_LIMIT, steady)
    res["checker_verdict"] = verdict(res, fsuite.DETECT_LIMIT, fsuite.RECOVERY_LIMIT)
    g = group_check(fleet)
    lat, _ = cfg.window_latency(t, t_end)
    out = {
        "victims": [v.name for v in victims], "redis_master_killed": master.port,
        "redis_shard": shard[master.port], "redis_failover_s": r2(redis_failover, 2),
        "redis_restarted_s": r2(redis_restart, 2), "redis_replica_up_s": r2(redis_replica_up, 2),
        "per_node": per_node, "false_claims": false_claims,
        "durable_replicas": durable_note,
        "sends": {k: res.get(k) for k in (
            "attempts", "acked", "expected_deliveries", "lost", "duplicates", "reordered",
            "unexpected", "seq_conflicts", "recovered", "redelivered", "resend_copies",
            "nondurable", "gap_resyncs", "too_old", "cursor_ahead", "delivery_ms_p50",
            "delivery_ms_p99", "ack_ms_p50", "ack_ms_p99", "affected", "recovery_s_p99",
            "recovery_s_max", "send_failures", "closes", "live_routing_broken")},
        "unavailable_acks": fleet.unavailable_acks,
        "groups": g,
        "broadcasts": {"sent": cfg.bc_sent, "failed": cfg.bc_fail},
        "latency_during_fault_ms": lat,
        "checker_verdict": res["checker_verdict"],
        "examples": res.get("examples"),
        "notes": cfg.notes,
    }
    fails = []
    for pn in per_node:
        if pn["claims"] != 1:
            fails.append("%s claimed %d times" % (pn["node"], pn["claims"]))
        if pn["keys_left"]:
            fails.append("%s keys left: %s" % (pn["node"], pn["keys_left"]))
    if getattr(cfg.args, "strict", False):
        fails += false_claims
    if res["lost"]:
        fails.append("acked sends lost: %d" % res["lost"])
    if res["duplicates"]:
        fails.append("duplicate sends: %d" % res["duplicates"])
    if g["lost"]:
        fails.append("acked group copies lost: %d" % g["lost"])
    if g["duplicates"]:
        fails.append("duplicate group copies: %d" % g["duplicates"])
    if not res["acked"] or not g["acked"]:
        fails.append("nothing acked (sends %s, publishes %s)" % (res["acked"], g["acked"]))
    out["failed"] = fails
    return out


# -- the run ------------------------------------------------------------------------------------


def durable_replicas_option(args):
    """(node options, note): durable-replicas=1 when the binary has it."""
    try:
        helptext = harness.run_binary(["--help"]).stdout
    except Exception:  # noqa: BLE001
        helptext = ""
    has = "--durable-replicas" in helptext
    want = args.durable_replicas
    if want == "auto":
        want = "1" if has else "0"
    if want != "0" and not has:
        return {}, "durable-replicas=%s asked, but this binary has no such option: run without" % want
    if want == "0":
        return {}, ("off: this binary has no durable-replicas option (acks do not wait for "
                    "the Redis replica)" if not has else "off (--durable-replicas 0)")
    return {"durable-replicas": want}, "durable-replicas=%s" % want


async def main_async(args):
    prof = dict(PROFILES["quick" if args.quick else "full"])
    for k in ("connections", "active", "repeat"):
        if getattr(args, k):
            prof[k] = getattr(args, k)
    if args.nodes:
        prof["node_counts"] = [int(x) for x in args.nodes.split(",")]
    if args.phase:
        prof["phase"] = args.phase
    if args.control is not None:
        prof["control"] = [[int(c.split("x")[0]), float(c.split("x")[1])]
                           for c in args.control.split(",") if c]
    outdir = os.path.abspath(args.out)
    shutil.rmtree(os.path.join(outdir, "logs"), ignore_errors=True)  # node logs are appended to
    os.makedirs(outdir, exist_ok=True)
    dr_opts, dr_note = durable_replicas_option(args)
    options = {"max-connections-per-address": 0, "handshake-rate-per-address": 0,
               "stored-bytes-rate-per-address": 0,
               "max-connections-per-uid": 0,
               "max-connections": 100000, "log-level": "info"}
    options.update(dr_opts)
    log("profile %s; %s" % (json.dumps(prof), dr_note))
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    t_run = now()
    rc = RedisClusterServer(masters=3, replicas=1, node_timeout_ms=1000)
    report = {"mode": "quick" if args.quick else "full", "profile": prof,
              "command": " ".join(["bench/tennode.sh"] + sys.argv[1:]),
              "started": started, "durable_replicas": dr_note, "node_options": options,
              "binary": fsuite.binary_info(), "configs": {}, "fault": None, "failed": []}
    try:
        await asyncio.to_thread(rc.start)
        log("Redis Cluster up: %s" % rc.url)
        # Rounds: every configuration once per round (a slow spell of the
        # shared box then hits all of them alike); medians over the rounds.
        plan = [(n, 1.0) for n in prof["node_counts"]] + [tuple(c) for c in prof["control"]]
        fault_n = max(prof["node_counts"])
        reps = {}
        for rnd in range(prof["repeat"]):
            for i, (n, scale) in enumerate(plan):
                cfg = Config(args, prof, rc, n, outdir, args.seed + 100 * rnd + i, options,
                             scale, rnd)
                try:
                    await cfg.start()
                    reps.setdefault(cfg.label, []).extend(await cfg.steady(1))
                    report["configs"][cfg.label] = {
                        "nodes": n, "rate_scale": scale, "connections": cfg.conns_at_start,
                        "summary": summarize(reps[cfg.label]),
                        "reps": [{k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
                                  for k, v in r.items()} for r in reps[cfg.label]]}
                    if (rnd == prof["repeat"] - 1 and n == fault_n and scale == 1.0
                            and not args.no_fault):
                        report["fault"] = await fault_phase(cfg, prof, dr_note)
                        report["failed"] += report["fault"]["failed"]
                finally:
                    await asyncio.wait_for(cfg.stop(), 60)
    except Exception as e:  # noqa: BLE001 - reported
        traceback.print_exc()
        report["failed"].append("run error: %r" % (e,))
        report["error"] = True
    finally:
        await asyncio.to_thread(rc.cleanup)
    report["duration_s"] = round(now() - t_run, 1)
    counts = sorted(int(k) for k in report["configs"] if k.isdigit())
    if len(counts) >= 2:
        lo, hi = str(counts[0]), str(counts[-1])
        ratio = {}
        for kind in ("send", "group", "broadcast"):
            a = report["configs"][lo]["summary"][kind]["node_cpu_us_per_delivery"]
            b = report["configs"][hi]["summary"][kind]["node_cpu_us_per_delivery"]
            ratio[kind] = None if not a or not b else round(b / a, 2)
            a = report["configs"][lo]["summary"][kind]["node_cpu_us_per_delivery_above_idle"]
            b = report["configs"][hi]["summary"][kind]["node_cpu_us_per_delivery_above_idle"]
            ratio[kind + "_above_idle"] = None if not a or not b else round(b / a, 2)
        a = report["configs"][lo]["summary"]["all_node_cpu_us_per_delivery"]
        b = report["configs"][hi]["summary"]["all_node_cpu_us_per_delivery"]
        ratio["all"] = None if not a or not b else round(b / a, 2)
        a = report["configs"][lo]["summary"]["all_node_cpu_us_per_delivery_above_idle"]
        b = report["configs"][hi]["summary"]["all_node_cpu_us_per_delivery_above_idle"]
        ratio["all_above_idle"] = None if not a or not b else round(b / a, 2)
        report["ratio"] = {"from": int(lo), "to": int(hi), "node_cpu_per_delivery": ratio}
        for c in prof["control"]:
            k = label(*c)
            if k in report["configs"]:
                ctl = {}
                for kind in ("send", "group"):
                    a = report["configs"][k]["summary"][kind]["node_cpu_us_per_delivery"]
                    b = report["configs"][hi]["summary"][kind]["node_cpu_us_per_delivery"]
                    ctl[kind] = None if not a or not b else round(b / a, 2)
                report["ratio"].setdefault("control", {})[k] = ctl
    with open(os.path.join(outdir, "report.json"), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True, default=str)
    md = markdown(report)
    with open(os.path.join(outdir, "report.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    if args.docs and not report.get("error"):
        write_docs(md)
        log("docs/scaling.md updated")
    if report["failed"]:
        print("FAILED: " + "; ".join(report["failed"]))
    print("report: %s (%.0f s)" % (os.path.join(outdir, "report.json"), report["duration_s"]))
    if report.get("error"):
        return 2
    return 1 if report["failed"] else 0


# -- report ---------------------------------------------------------------------------------------


def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return ("%%.%df" % nd) % x
    return str(x)


def markdown(rep):
    p = rep["profile"]
    L = []
    L.append("## Ten-node run (issue 15, acceptance 3)")
    L.append("")
    L.append("Generated by `%s` on %s (%s mode, %.0f s; binary %s, git %s). Do not edit by "
             "hand: the command rewrites this section." % (
                 rep["command"], rep["started"], rep["mode"], rep["duration_s"],
                 rep["binary"].get("sha256"), rep["binary"].get("git_head")))
    L.append("")
    L.append("Setup: one Redis Cluster of 3 masters + 3 replicas (`cluster-node-timeout 1000`), "
             "N nodes (`redis=cluster://...`, defaults but `max-connections-per-address=0`, `handshake-rate-per-address=0` and `stored-bytes-rate-per-address=0`), all "
             "on 127.0.0.1 of this 2-core box, sharing it with the clients and with other "
             "work (\"other cores\" below: CPU used by processes not of this run). "
             "%d connections: %d IM clients of the fault suite (Python; random cross-node "
             "durable sends with acks, %.0f msg/s in all; %d groups of %d members spanning every "
             "node, %.0f publishes/s; they resume with `device=`) and %d idle connections "
             "(`wsc-loadgen s1`, one per node pair) that receive the broadcasts (%.1f/s, "
             "`POST /api/broadcast`). Same totals for every N; the load per node is 1/N of it. "
             "Durable delivery: %s." % (
                 p["connections"], p["active"], p["active"] * p["rate"], p["groups"],
                 p["group_size"], p["publish_rate"], p["connections"] - p["active"],
                 p["broadcast_rate"], rep["durable_replicas"]))
    L.append("")
    L.append("Each kind is measured alone, %s s per window, median of %d rounds (a round runs every configuration once, each with fresh nodes and connections); node CPU "
             "is utime+stime of every node process (`/proc/PID/stat`), deliveries are the "
             "nodes' `wscluster_frames_out_by_type_total` (frames written to connections). "
             "\"above idle\" subtracts the CPU the same N nodes use with the connections open "
             "and no traffic (heartbeats, timers, pings)." % (fmt(p["phase"], 0), p["repeat"]))
    L.append("")
    counts = sorted(int(k) for k in rep["configs"] if k.isdigit())
    labels = [str(n) for n in counts] + [k for k in rep["configs"] if not k.isdigit()]
    L.append("| N nodes | kind | deliveries/s | node CPU (cores) | node µs/delivery | above idle | "
             "remote deliveries per BASP batch | Redis µs/message above idle: all (shard 0/1/2) | "
             "Redis µs/message, raw | p50 / p99 ms | other cores |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for lab in labels:
        s = rep["configs"][lab]["summary"]
        c = rep["configs"][lab]
        n = "%d" % c.get("nodes", int(lab)) if lab.isdigit() else \
            "%d, sends and publishes ×%g" % (c["nodes"], c["rate_scale"])
        L.append("| %s | idle | 0 | %s | | | | Redis %s cores in all | | | |" % (
            n, fmt(s["idle_node_cpu_cores"], 3), fmt(s["idle_redis_cpu_cores"], 3)))
        for kind in ("send", "group", "broadcast"):
            k = s[kind]
            shards = k["redis_cpu_us_per_message_above_idle_per_shard"]
            sh = "-"
            if shards:
                sh = "%s (%s)" % (fmt(k["redis_cpu_us_per_message_above_idle"]),
                                  "/".join(fmt(shards.get(str(i))) for i in range(3)))
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |" % (
                n, kind, fmt(k["deliveries_per_s"], 0), fmt(k["node_cpu_cores"], 3),
                fmt(k["node_cpu_us_per_delivery"]), fmt(k["node_cpu_us_per_delivery_above_idle"]),
                fmt(k["remote_deliveries_per_batch"], 2), sh, fmt(k["redis_cpu_us_per_message"]),
                fmt(k["p50_ms"], 0), fmt(k["p99_ms"], 0), fmt(k["other_cores"], 2)))
        L.append("| %s | **all three** | | | **%s** | %s | | | | | |" % (
            n, fmt(s["all_node_cpu_us_per_delivery"]),
            fmt(s["all_node_cpu_us_per_delivery_above_idle"])))
    L.append("")
    if rep.get("ratio"):
        r = rep["ratio"]["node_cpu_per_delivery"]
        L.append("Node CPU per delivery, %d nodes / %d nodes: **all kinds %s** (goal ≤ 1.3); "
                 "send %s, group %s, broadcast %s; above idle: all kinds %s, send %s, group %s, "
                 "broadcast %s." % (
                     rep["ratio"]["to"], rep["ratio"]["from"], fmt(r["all"], 2),
                     fmt(r["send"], 2), fmt(r["group"], 2), fmt(r["broadcast"], 2),
                     fmt(r["all_above_idle"], 2), fmt(r["send_above_idle"], 2), fmt(r["group_above_idle"], 2),
                     fmt(r["broadcast_above_idle"], 2)))
        for k, ctl in rep["ratio"].get("control", {}).items():
            c = rep["configs"][k]
            L.append("")
            L.append("Control at the same load per node: %d nodes with sends and publishes at "
                     "×%g of the totals carry per node what each of %g nodes carries at full "
                     "rate; node CPU per delivery, %d nodes / that: send %s, group %s." % (
                         c["nodes"], c["rate_scale"], c["nodes"] / c["rate_scale"],
                         rep["ratio"]["to"], fmt(ctl["send"], 2), fmt(ctl["group"], 2)))
        L.append("")
    f = rep.get("fault")
    if f:
        L.append("**Fault** (N = %d, all traffic on): kill -9 of %s and of the Redis master "
                 "holding `{n:%s}` (shard %s) at the same instant; the clients keep sending and "
                 "reconnect to live nodes. Redis failover (slot owner changed, `cluster_state:ok`) "
                 "after %s s; the killed Redis is started again (empty, same port) at %s s and "
                 "is the new master's replica, in sync, at %s s (until then that shard has no "
                 "replica)." % (
                     max(counts), ", ".join(f["victims"]), f["victims"][-1], f["redis_shard"],
                     fmt(f["redis_failover_s"], 2), fmt(f["redis_restarted_s"], 2),
                     fmt(f["redis_replica_up_s"], 2)))
        L.append("")
        L.append("| dead node | CAF link lost (s) | gone from every survivor's `/api/nodes` (s) | "
                 "cleaned up: claim done (s) | claims | keys left |")
        L.append("|---|---|---|---|---|---|")
        for pn in f["per_node"]:
            L.append("| %s | %s | %s | %s | %d (by %s) | %s |" % (
                pn["node"], fmt(pn["link_lost_s"], 2), fmt(pn["detection_s"], 2),
                fmt(pn["cleanup_s"], 2), pn["claims"], ",".join(pn["claimed_by"]) or "-",
                json.dumps(pn["keys_left"]) if pn["keys_left"] else "none"))
        L.append("")
        s = f["sends"]
        g = f["groups"]
        lat = f["latency_during_fault_ms"]
        L.append("- Sends (the whole %d-node configuration, steady windows and fault): %s acked, **%s acked lost**, %s duplicates, %s reordered, %s recovered "
                 "from the inbox on resume, %s acks listing `unavailable` receivers (sent again); "
                 "delivery p50/p99 %s/%s ms over the whole run, ack p99 %s ms; clients affected "
                 "%s, caught up p99 %s s (max %s s)." % (
                     max(counts), s["acked"], s["lost"], s["duplicates"], s["reordered"],
                     s["recovered"],
                     f["unavailable_acks"], fmt(s["delivery_ms_p50"], 0),
                     fmt(s["delivery_ms_p99"], 0), fmt(s["ack_ms_p99"], 0), s["affected"],
                     s["recovery_s_p99"], s["recovery_s_max"]))
        L.append("- Group publishes: %s acked, %s member copies expected, **%s lost**, %s "
                 "duplicates, %s members answered `unavailable`. Broadcasts: %s sent (at most "
                 "once, not checked)." % (
                     g["acked"], g["expected_copies"], g["lost"], g["duplicates"],
                     g["unavailable_members"], f["broadcasts"]["sent"]))
        L.append("- Latency in the fault window (kill to end of window), p50/p99 ms: send %s/%s, "
                 "group %s/%s, broadcast %s/%s." % (
                     fmt(lat["send"]["p50"], 0), fmt(lat["send"]["p99"], 0),
                     fmt(lat["group"]["p50"], 0), fmt(lat["group"]["p99"], 0),
                     fmt(lat["broadcast"]["p50"], 0), fmt(lat["broadcast"]["p99"], 0)))
        if f["false_claims"]:
            L.append("- **Live nodes claimed** (reported, asserted only with `--strict`): %s. "
                     "Their node keys live on the killed master's shard: no heartbeat could "
                     "be written during the failover, so their lease expired "
                     "(`node-timeout` 3 s < failover + heartbeat); each wrote its entry and "
                     "bindings back at its next heartbeat." % "; ".join(f["false_claims"]))
        else:
            L.append("- No live node was claimed.")
        if f["checker_verdict"]:
            L.append("- Fault-suite checker points not met (not asserted here): %s" %
                     "; ".join(f["checker_verdict"]))
        for n_ in f.get("notes", []):
            L.append("- %s" % n_)
        L.append("- Idle connections of the killed nodes are not reopened (`wsc-loadgen s1` "
                 "does not reconnect); the IM clients do.")
        L.append("")
    L.append("Asserted: %s." % ("all checks hold" if not rep["failed"] else
                                 "**FAILED**: " + "; ".join(rep["failed"])))
    return "\n".join(L)


def write_docs(md):
    path = os.path.join(ROOT, "docs", "scaling.md")
    with open(path) as f:
        text = f.read()
    block = "%s\n%s\n%s" % (BEGIN, md, END)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI mode: 1,000 connections, short phases")
    p.add_argument("--connections", type=int, default=0, help="connections in all")
    p.add_argument("--active", type=int, default=0, help="of which IM clients (Python)")
    p.add_argument("--repeat", type=int, default=0, help="measurement windows per kind and N")
    p.add_argument("--phase", type=float, default=0.0, help="seconds per measurement window")
    p.add_argument("--nodes", default="", help="node counts, e.g. 2,4,10 (the last one gets the fault)")
    p.add_argument("--no-fault", action="store_true", help="skip the kill -9 phase")
    p.add_argument("--control", default=None,
                   help="extra configurations NxS: N nodes with sends and publishes at S times "
                   "the rates (full default 2x0.2: the per-node load of 10 nodes)")
    p.add_argument("--strict", action="store_true",
                   help="also fail when a live node was claimed during the fault")
    p.add_argument("--durable-replicas", default="auto",
                   help="auto (1 when the binary has the option), 0 or 1")
    p.add_argument("--docs", dest="docs", action="store_true", default=None,
                   help="write the section into docs/scaling.md (default in full mode)")
    p.add_argument("--no-docs", dest="docs", action="store_false")
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--out", default=None, help="default build/tennode[/quick]")
    args = p.parse_args()
    if args.docs is None:
        args.docs = not args.quick
    if args.out is None:
        args.out = os.path.join(ROOT, "build", "tennode", *(["quick"] if args.quick else []))
    args.hold = 600 if args.quick else 3000
    args.loadgen = os.environ.get("WSC_LOADGEN", os.path.join(ROOT, "build", "bench", "wsc-loadgen"))
    try:
        harness.require_binary()
    except RuntimeError as e:
        print(e)
        return 2
    if not os.access(args.loadgen, os.X_OK):
        print("wsc-loadgen not found at %s (build it, or set WSC_LOADGEN)" % args.loadgen)
        return 2
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

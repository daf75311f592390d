#!/usr/bin/python3
"""wscluster fault suite: ~300 IM clients over 3 nodes and a durable Redis,
faults injected one scenario at a time, every delivery judged by the checker.

    tests/faults/run.sh                 # full suite (~6 min), report in build/faults/
    tests/faults/run.sh --quick         # CI mode: fewer clients, shorter phases
    tests/faults/run.sh --only kill9,redis --clients 150

Exit status: 0 when every acceptance point of every scenario holds, 1 when
one fails, 2 on a usage error or when the suite itself could not run.
Standard library only; every process is started here and stopped by pid;
only 127.0.0.1.
"""

import argparse
import asyncio
import json
import math
import os
import random
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from checker import analyse, verdict  # noqa: E402
from client import Fleet, now  # noqa: E402
from cluster import Cluster, NsCluster, harness  # noqa: E402
import netlab  # noqa: E402
from wsaio import http_get  # noqa: E402

DETECT_LIMIT = 5.0
RECOVERY_LIMIT = 10.0

PROFILES = {
    "full": {
        "clients": 300, "rate": 2.0, "convs": 2, "warmup": 4.0,
        "kill_phase": 10.0, "after_restart": 3.0,
        "rolling_max_wait": 9.0,
        "redis_down": 4.0, "redis_after": 6.0,
        "stop_for": 10.0, "stop_after": 5.0,
        "slow_clients": 3, "flooders": 6, "flood_rate": 10.0, "flood_pad": 30000,
        "slow_phase": 8.0, "slow_after": 8.0, "slow_queue_limit": 64,
        "storm_phase": 10.0, "partition_for": 10.0, "partition_after": 6.0,
        "scenario_timeout": 150.0, "steady": 5.0, "drain_period": "5s",
        "settle_pending": 15.0, "settle_live": 5.0, "settle_final": 15.0,
    },
    "quick": {
        "clients": 60, "rate": 2.0, "convs": 2, "warmup": 1.5,
        "kill_phase": 6.0, "after_restart": 1.0,
        "rolling_max_wait": 6.0,
        "redis_down": 4.0, "redis_after": 3.0,
        "stop_for": 10.0, "stop_after": 2.0,
        "slow_clients": 2, "flooders": 6, "flood_rate": 10.0, "flood_pad": 30000,
        "slow_phase": 5.0, "slow_after": 4.0, "slow_queue_limit": 64,
        "storm_phase": 6.0, "partition_for": 6.0, "partition_after": 3.0,
        "scenario_timeout": 90.0, "steady": 2.5, "drain_period": "2s",
        "settle_pending": 6.0, "settle_live": 2.0, "settle_final": 6.0,
    },
}

CLIENT_CFG = {
    "handshake_timeout": 3.0,  # connect + welcome
    "dead_after": 3.5,         # nothing received for this long: the node is hung
    "ping_every": 1.0,         # ping when nothing was received for this long
    "ack_timeout": 6.0,        # send again when no ack came (request-timeout is 5 s)
    "gap_resync": 3.0,         # resume when a seq gap stays open this long
    "read_every": 1.0,         # confirm the contiguous seq at most this often
}


def log(msg):
    sys.stdout.write("[%7.1f] %s\n" % (time.monotonic() - T0, msg))
    sys.stdout.flush()


T0 = time.monotonic()


class Ctx:
    """One scenario: its cluster, its clients, its faults."""

    def __init__(self, name, prof, outdir, seed, node_options=None, lab=None):
        self.name = name
        self.prof = prof
        self.logdir = os.path.join(outdir, "logs", name)
        if lab is not None:
            self.cluster = NsCluster(self.logdir, lab, node_options)
        else:
            self.cluster = Cluster(self.logdir, 3, node_options)
        self.rng = random.Random(seed)
        random.seed(seed)
        self.fleet = None
        self.faults = []
        self.premise_failed = []
        self.notes = []
        self.t_final = None
        self.steady = None

    async def setup(self, build_extra=None):
        await asyncio.to_thread(self.cluster.start)
        took = await self.cluster.wait_mesh(timeout=20)
        if took is None:
            raise RuntimeError("the 3 nodes did not form a cluster within 20 s")
        self.fleet = Fleet([(n.host, n.port) for n in self.cluster.nodes], dict(CLIENT_CFG),
                           self.rng)
        self.fleet.build(self.prof["clients"], self.prof["convs"], self.prof["rate"])
        if build_extra:
            build_extra(self)
        await self.fleet.start()
        if not all(c.connected for c in self.fleet.clients.values()):
            n = sum(1 for c in self.fleet.clients.values() if c.connected)
            raise RuntimeError("only %d/%d clients connected" % (n, len(self.fleet.clients)))
        log("%s: %d clients connected over %s" % (
            self.name, len(self.fleet.clients),
            {k: len(v) for k, v in sorted(self.fleet.by_node().items())}))
        self.fleet.sending = True
        await asyncio.sleep(self.prof["warmup"])

    def node_of_most_clients(self):
        counts = self.fleet.by_node()
        best = max(counts, key=lambda k: len(counts[k]))
        return self.cluster.node(best), len(counts[best])

    async def steady_phase(self):
        """A few seconds of normal traffic after the fault: live delivery
        between every pair of nodes is judged on it."""
        t = now()
        await asyncio.sleep(self.prof["steady"])
        self.steady = (t, now() - 1.0)

    async def settle(self):
        """Stops new sends, lets every pending one be acknowledged and
        delivered, then every client resumes once more (an app restart) and
        catches up. Bounded."""
        fl = self.fleet
        fl.sending = False
        clients = list(fl.clients.values())
        for c in clients:
            if c.paused:
                c.unpause()
        p = self.prof
        ok = await fl.wait(lambda: all(all(v.pending is None for v in c.convs) for c in clients),
                           p["settle_pending"])
        if not ok:
            self.notes.append("pending sends not acknowledged within %.0f s of the settle"
                              % p["settle_pending"])
        await fl.wait(lambda: not fl.outstanding, p["settle_live"])
        self.t_final = now()
        left = len(fl.outstanding)
        if left:
            self.notes.append("%d deliveries still outstanding before the final resume" % left)
        for i, c in enumerate(clients):
            c.drop("final", close=True)
            if i % 20 == 19:
                await asyncio.sleep(0.05)
        tf = self.t_final

        def resumed():
            for c in clients:
                cn = c.conn
                if not c.connected or cn is None or cn.t_open is None or cn.t_open <= tf \
                        or cn.t_caught is None:
                    return False
            return not fl.outstanding
        if not await fl.wait(resumed, p["settle_final"]):
            n = sum(1 for c in clients if c.connected and c.conn.t_open > tf and c.conn.t_caught)
            self.notes.append("final resume: %d/%d clients caught up, %d deliveries outstanding"
                              % (n, len(clients), len(fl.outstanding)))

    async def teardown(self):
        if self.fleet is not None:
            await self.fleet.stop()
        await asyncio.to_thread(self.cluster.stop)

    async def metric(self, name):
        total = 0
        for n in self.cluster.nodes:
            if not n.running():
                continue
            try:
                status, body = await http_get(n.host, n.port, "/metrics", 2.0)
            except (OSError, asyncio.TimeoutError, ValueError, IndexError):
                continue
            if status == 200 and isinstance(body, str):
                for line in body.splitlines():
                    if line.startswith(name + " ") or line.startswith(name + "{"):
                        try:
                            total += float(line.rsplit(" ", 1)[1])
                        except ValueError:
                            pass
        return total


async def wait_healthy_all(nodes, timeout):
    t = now()
    while now() - t < timeout:
        good = 0
        for n in nodes:
            try:
                status, _ = await http_get(n.host, n.port, "/healthz", 1.0)
                good += status == 200
            except (OSError, asyncio.TimeoutError, ValueError, IndexError):
                pass
        if good == len(nodes):
            return now() - t
        await asyncio.sleep(0.1)
    return None


# -- scenarios ------------------------------------------------------------------


async def sc_kill9(ctx):
    """kill -9 of one node while clients send; restarted later under its id."""
    await ctx.setup()
    cl = ctx.cluster
    victim = cl.node("n2")
    survivors = [n for n in cl.nodes if n is not victim]
    t = now()
    victim.kill()
    log("kill -9 %s" % victim.name)
    det = asyncio.ensure_future(cl.detect(victim.name, survivors, t))
    await asyncio.sleep(ctx.prof["kill_phase"])
    detection = await det
    log("detected after %s s; restarting %s" % (detection and round(detection, 2), victim.name))
    ctx.faults.append({"name": "kill -9 n2", "t_ref": t, "t_start": t, "t_end": now(),
                       "detect": True, "detection": detection})
    await asyncio.to_thread(victim.start)
    mesh = await cl.wait_mesh(timeout=15)
    if mesh is None:
        ctx.premise_failed.append("restarted n2 did not rejoin")
    await asyncio.sleep(ctx.prof["after_restart"])


async def sc_rolling(ctx):
    """Graceful restart of n1, n2, n3 in turn (same port, same node-id)."""
    await ctx.setup()
    cl = ctx.cluster
    prev = None
    for node in list(cl.nodes):
        t = now()
        if prev is not None:
            prev["t_end"] = t
        node.signal(signal.SIGTERM)
        log("SIGTERM %s" % node.name)
        survivors = [n for n in cl.nodes if n is not node]
        det = asyncio.ensure_future(cl.detect(node.name, survivors, t, timeout=10))
        try:
            rc = await asyncio.to_thread(node.wait, 20)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
            rc = "timeout"
            node.kill()
        if rc != 0:
            ctx.premise_failed.append("%s exited with %s on SIGTERM" % (node.name, rc))
        detection = await det
        prev = {"name": "graceful restart %s" % node.name, "t_ref": t, "t_start": t,
                "t_end": None, "detect": False, "detection": detection}
        ctx.faults.append(prev)
        await asyncio.to_thread(node.start)
        if await cl.wait_mesh(timeout=15) is None:
            ctx.premise_failed.append("restarted %s did not rejoin" % node.name)
        log("%s back (exit %s, gone from peers after %s s)" % (
            node.name, rc, detection and round(detection, 2)))
        # The next node goes once this one's clients are back (bounded).
        fl = ctx.fleet
        await fl.wait(lambda: all(c.connected and c.conn.t_caught for c in fl.clients.values()),
                      max(0.0, ctx.prof["rolling_max_wait"] - (now() - t)))
        await asyncio.sleep(1.0)
    prev["t_end"] = now()


async def sc_redis(ctx):
    """Redis kill -9, down for a while, restarted on the same port (AOF)."""
    await ctx.setup()
    cl = ctx.cluster
    before = cl.redis.command("DBSIZE")
    t_kill = now()
    cl.redis.kill9()
    log("kill -9 redis (%s keys)" % before)
    await asyncio.sleep(ctx.prof["redis_down"])
    t_up = now()
    await asyncio.to_thread(cl.redis.start)
    after = cl.redis.command("DBSIZE")
    log("redis restarted (%s keys after AOF load)" % after)
    if not after or after < before // 2:
        ctx.premise_failed.append("Redis data did not survive (%s keys before, %s after)"
                                  % (before, after))
    healthy = await wait_healthy_all(cl.nodes, 15)
    ctx.notes.append("nodes /healthz 200 again %s s after the Redis restart"
                     % (None if healthy is None else round(healthy, 2)))
    if healthy is None:
        ctx.premise_failed.append("nodes not healthy within 15 s of the Redis restart")
    await asyncio.sleep(ctx.prof["redis_after"])
    ctx.faults.append({"name": "redis kill -9 + restart", "t_ref": t_up, "t_start": t_kill,
                       "t_end": now(), "detect": False, "detection": None})


async def sc_sigstop(ctx):
    """SIGSTOP of a node for 10 s, then SIGCONT."""
    await ctx.setup()
    cl = ctx.cluster
    victim = cl.node("n3")
    survivors = [n for n in cl.nodes if n is not victim]
    t = now()
    os.kill(victim.pid, signal.SIGSTOP)
    log("SIGSTOP %s" % victim.name)
    det = asyncio.ensure_future(cl.detect(victim.name, survivors, t, timeout=ctx.prof["stop_for"]))
    try:
        await asyncio.sleep(ctx.prof["stop_for"])
    finally:
        os.kill(victim.pid, signal.SIGCONT)
    t_cont = now()
    log("SIGCONT %s" % victim.name)
    detection = await det
    # The hung node and its wake-up are two events: what the node does when
    # it runs again (frames it still had, routes over dead peer links) is
    # judged from SIGCONT.
    ctx.faults.append({"name": "SIGSTOP n3 %ds" % ctx.prof["stop_for"], "t_ref": t,
                       "t_start": t, "t_end": t_cont, "detect": True, "detection": detection})
    await asyncio.sleep(ctx.prof["stop_after"])
    ctx.faults.append({"name": "SIGCONT n3 (wake-up)", "t_ref": t_cont, "t_start": t_cont,
                       "t_end": now(), "detect": False, "detection": None})
    mesh = await cl.wait_mesh(timeout=10)
    ctx.notes.append("after SIGCONT the cluster %s" % (
        "re-formed with all 3 nodes" if mesh is not None else
        "did NOT re-form with all 3 nodes within 10 s"))


async def sc_slow(ctx):
    """A few clients stop reading while others flood them with big messages:
    the send-queue limit closes them; they resume and catch up."""
    prof = ctx.prof
    state = {}

    def extra(c):
        uids = list(c.fleet.clients)
        slow = uids[1:1 + prof["slow_clients"]]
        flooders = [u for u in uids if u not in slow][-prof["flooders"]:]
        convs = []
        for f in flooders:
            for s in slow:
                convs.append(c.fleet.add_conv(f, [s], prof["flood_rate"], active=False,
                                              pad=prof["flood_pad"]))
        for s in slow:
            c.fleet.clients[s].slow_rcvbuf = 4096
        state.update(slow=slow, convs=convs)

    await ctx.setup(extra)
    fl = ctx.fleet
    slow = [fl.clients[u] for u in state["slow"]]
    t0 = now()
    for c in slow:
        c.pause()
    for conv in state["convs"]:
        conv.active = True
    log("%d clients stop reading; %d flood conversations on" % (len(slow), len(state["convs"])))
    await asyncio.sleep(prof["slow_phase"])
    for conv in state["convs"]:
        conv.active = False
    t1 = now()
    for c in slow:
        c.unpause()
    overflows = await ctx.metric("wscluster_queue_overflows_total")
    log("slow clients read again (%d send-queue overflows on the nodes)" % overflows)
    await asyncio.sleep(prof["slow_after"])
    ctx.faults.append({"name": "slow readers", "t_ref": t1, "t_start": t0, "t_end": now(),
                       "detect": False, "detection": None})
    closed = sum(1 for c in slow for cn in c.conns if cn.t_open and cn.t_close
                 and t0 <= cn.t_close and cn.cause not in ("final", "stop"))
    ctx.notes.append("send-queue overflows reported by the nodes: %d; slow-client connections "
                     "closed during the scenario: %d" % (overflows, closed))
    if overflows < len(slow):
        ctx.premise_failed.append("only %d send-queue overflows for %d slow readers: the scenario "
                                  "did not exercise the limit" % (overflows, len(slow)))
    ctx.extra_info = {"slow_uids": state["slow"], "overflows": overflows}


async def sc_storm(ctx):
    """kill -9 of the node holding the most clients; they all reconnect at
    once (no jitter on the first attempt)."""
    await ctx.setup()
    ctx.fleet.storm = True
    cl = ctx.cluster
    victim, held = ctx.node_of_most_clients()
    survivors = [n for n in cl.nodes if n is not victim]
    t = now()
    victim.kill()
    log("kill -9 %s holding %d clients; reconnect storm" % (victim.name, held))
    det = asyncio.ensure_future(cl.detect(victim.name, survivors, t))
    await asyncio.sleep(ctx.prof["storm_phase"])
    detection = await det
    ctx.faults.append({"name": "kill -9 %s (%d clients)" % (victim.name, held), "t_ref": t,
                       "t_start": t, "t_end": now(), "detect": True, "detection": detection})
    ctx.notes.append("%d of %d clients were on %s" % (held, len(ctx.fleet.clients), victim.name))


def log_times(node, pattern, since_wall):
    """Wall-clock times of the node's log lines containing ``pattern``
    written at or after ``since_wall``."""
    out = []
    for line in node.log_text().splitlines():
        if pattern not in line or len(line) < 23:
            continue
        try:
            base = time.mktime(time.strptime(line[:19], "%Y-%m-%dT%H:%M:%S"))
            t = base + int(line[20:23]) / 1000.0
        except ValueError:
            continue
        if t >= since_wall - 0.001:
            out.append(t)
    return out


async def sc_partition(ctx):
    """Node-to-node partition: bridge port of n3's cluster link down for a
    while (Redis and clients still reach every node), then up again."""
    await ctx.setup()
    cl = ctx.cluster
    t, wall = now(), time.time()
    netlab.set_port("c3", False)
    log("partition: n3's cluster link down (Redis and clients still reach it)")
    try:
        await asyncio.sleep(ctx.prof["partition_for"])
    finally:
        netlab.set_port("c3", True)
    t_heal, wall_heal = now(), time.time()
    log("partition healed")
    seen = {}
    for n in cl.nodes:
        others = ["n3"] if n.name != "n3" else ["n1", "n2"]
        for o in others:
            ts = [x for x in log_times(n, "lost the connection to node %s" % o, wall) if x < wall_heal]
            seen["%s sees %s" % (n.name, o)] = None if not ts else round(min(ts) - wall, 2)
    ctx.notes.append("partition seen (CAF link to the peer declared lost, s after the cut): %s"
                     % json.dumps(seen, sort_keys=True))
    survivors_seen = [seen["n1 sees n3"], seen["n2 sees n3"]]
    detection = None if None in survivors_seen else max(survivors_seen)
    declared = [x for n in cl.nodes for x in log_times(n, "declared down", wall)]
    if declared:
        ctx.notes.append("a node was declared down during the partition (Redis was reachable)")
    ctx.faults.append({"name": "partition n3 | n1,n2", "t_ref": t, "t_start": t, "t_end": t_heal,
                       "detect": True, "detection": detection})
    await asyncio.sleep(ctx.prof["partition_after"])
    ctx.faults.append({"name": "partition healed", "t_ref": t_heal, "t_start": t_heal,
                       "t_end": now(), "detect": False, "detection": None})


async def run_partition(prof, outdir, seed, args):
    """Runs sc_partition in a child driver inside the hub namespace."""
    title = "node-to-node partition (netns, bridge port down)"
    ok, why = netlab.available()
    if not ok:
        return {"scenario": "partition", "title": title, "skipped": why, "failed": [],
                "premise_failed": [], "notes": ["skipped: %s" % why]}
    lab = netlab.Lab()
    result_path = os.path.join(outdir, "logs", "partition", "result.json")
    try:
        os.remove(result_path)
    except OSError:
        pass
    proc = None
    try:
        lab.setup()
        cmd = ["ip", "netns", "exec", lab.hub, sys.executable, os.path.abspath(__file__),
               "--inner-partition", json.dumps(lab.describe()), "--out", outdir,
               "--seed", str(seed)]
        if args.quick:
            cmd.append("--quick")
        if args.clients:
            cmd += ["--clients", str(args.clients)]
        if args.rate:
            cmd += ["--rate", str(args.rate)]
        proc = await asyncio.create_subprocess_exec(*cmd, start_new_session=True)
        try:
            await asyncio.wait_for(proc.wait(), prof["scenario_timeout"] + 120)
        except asyncio.TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    except Exception as e:  # noqa: BLE001 - reported as a failed scenario
        return {"scenario": "partition", "title": title, "failed": ["suite error: %r" % (e,)],
                "premise_failed": [], "notes": []}
    finally:
        lab.teardown()
    try:
        with open(result_path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"scenario": "partition", "title": title,
                "failed": ["no result from the namespaced driver: %r" % (e,)],
                "premise_failed": [], "notes": []}


SCENARIOS = [
    ("kill9", "kill -9 of a node", sc_kill9, {}),
    ("rolling", "rolling graceful restart", sc_rolling, {"drain-period": "drain_period"}),
    ("redis", "Redis kill -9 + restart (AOF)", sc_redis, {}),
    ("sigstop", "SIGSTOP of a node for 10 s", sc_sigstop, {}),
    ("slow", "slow-reading clients", sc_slow, {"send-queue-limit": "slow_queue_limit"}),
    ("storm", "reconnect storm (kill -9, 1/3 of clients)", sc_storm, {}),
    ("partition", "node-to-node partition (netns, bridge port down)", sc_partition, {}),
]


async def run_scenario(key, title, fn, node_opts, prof, outdir, seed, lab=None):
    opts = {k: prof[v] for k, v in node_opts.items()}
    ctx = Ctx(key, prof, outdir, seed, opts, lab)
    started = now()
    result = {"scenario": key, "title": title, "node_options": opts}
    try:
        try:
            await asyncio.wait_for(fn(ctx), prof["scenario_timeout"])
            await ctx.steady_phase()
            await asyncio.wait_for(ctx.settle(), 45)
        except asyncio.TimeoutError:
            ctx.premise_failed.append("scenario did not finish within its time bound")
        if ctx.fleet is not None:
            result.update(analyse(ctx.fleet, ctx.faults, ctx.t_final, RECOVERY_LIMIT,
                                  ctx.steady))
            dump_records(ctx)
    except Exception as e:  # noqa: BLE001 - reported as a failed scenario
        traceback.print_exc()
        ctx.premise_failed.append("suite error: %r" % (e,))
    finally:
        try:
            await asyncio.wait_for(ctx.teardown(), 40)
        except Exception as e:  # noqa: BLE001
            ctx.notes.append("teardown: %r" % (e,))
    result["premise_failed"] = ctx.premise_failed
    result["notes"] = ctx.notes
    result["extra"] = getattr(ctx, "extra_info", {})
    result["duration_s"] = round(now() - started, 1)
    result["failed"] = verdict(result, DETECT_LIMIT, RECOVERY_LIMIT)
    result["logs"] = os.path.relpath(ctx.logdir, harness.REPO_ROOT)
    return result


def dump_records(ctx):
    """Everything each client saw, for evidence: logs/<scenario>/clients.jsonl
    (times are seconds of time.monotonic(), like the fault times in faults.json)."""
    path = os.path.join(ctx.logdir, "clients.jsonl")
    with open(path, "w") as f:
        for c in ctx.fleet.clients.values():
            f.write(json.dumps({
                "uid": c.uid, "convs": [[v.cid, v.to] for v in c.convs],
                "conns": [cn.summary() for cn in c.conns],
                "rx": c.rx, "acks": c.acks, "send_fail": c.send_fail, "errors": c.errors,
                "gap_resyncs": c.gap_resyncs, "too_old": c.too_old,
                "cursor_ahead": c.cursor_ahead, "bad": c.bad,
                "contig": c.contig}, default=str) + "\n")
    with open(os.path.join(ctx.logdir, "faults.json"), "w") as f:
        json.dump({"faults": ctx.faults, "t_final": ctx.t_final, "steady": ctx.steady}, f,
                  indent=1, default=str)


# -- report ----------------------------------------------------------------------------

COLUMNS = [
    ("scenario", "scenario"), ("acked", "acked sent"), ("lost", "lost"),
    ("duplicates", "dup (after msg_id)"), ("reordered", "reordered"),
    ("unexpected", "unexpected"), ("recovered", "recovered (replay)"),
    ("detection_s", "detect s"), ("affected", "affected"),
    ("recovery_s_p99", "p99 caught up s"), ("verdict", "verdict"),
]
INFO = [("resend_copies", "resend copies"), ("redelivered", "redelivered (msg_id dedup)"),
        ("nondurable", "at-most-once copies"), ("gap_resyncs", "gap resyncs"),
        ("late_final_resume", "only on final resume"), ("too_old", "too_old"),
        ("ack_ms_p99", "ack p99 ms"), ("delivery_ms_p99", "delivery p99 ms")]


def cell(r, k):
    if k == "verdict":
        if r.get("skipped"):
            return "SKIP"
        return "PASS" if not r["failed"] else "FAIL"
    v = r.get(k)
    if v is None:
        return "-"
    return str(v)


def table(results, cols, md):
    head = [c[1] for c in cols]
    rows = [[cell(r, c[0]) for c in cols] for r in results]
    if md:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)
    w = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    fmt = "  ".join("%%-%ds" % x for x in w)
    return "\n".join([fmt % tuple(head), fmt % tuple("-" * x for x in w)] +
                     [fmt % tuple(r) for r in rows])


def markdown(report):
    lines = ["# wscluster fault suite report", "",
             "Mode `%s`, %s clients, %s msg/s per client, started %s, %.0f s, result **%s**." % (
                 report["mode"], report["profile"]["clients"], report["profile"]["rate"],
                 report["started"], report["duration_s"],
                 "PASS" if report["ok"] else "FAIL"), "",
             "Binary: `%s` (sha256 %s..., built %s, git HEAD %s plus the working tree)." % (
                 report["binary"].get("path"), report["binary"].get("sha256"),
                 report["binary"].get("mtime"), report["binary"].get("git_head")), "",
             table(report["scenarios"], [(k, t) for k, t in COLUMNS], True), "",
             "Information (not acceptance points):", "",
             table(report["scenarios"], [("scenario", "scenario")] + INFO, True), ""]
    for r in report["scenarios"]:
        lines.append("## %s: %s" % (r["scenario"], r["title"]))
        lines.append("")
        if r["failed"]:
            lines.append("- **failed**: " + "; ".join(r["failed"]))
        for f in r.get("faults", []):
            lines.append("- fault `%s`: affected %s, caught up within %.0f s: %s, never: %s, "
                         "p99 %s s, max %s s, detection %s s" % (
                             f["fault"], f["affected"], RECOVERY_LIMIT, f["recovered_in_limit"],
                             f["never_recovered"], f["recovery_s_p99"], f["recovery_s_max"],
                             f["detection_s"]))
        for n in r.get("notes", []):
            lines.append("- " + n)
        if r.get("live_routing"):
            lines.append("- live deliveries per node pair after recovery (delivered live within 2 s / "
                         "acked): %s" % json.dumps(r["live_routing"], sort_keys=True))
        if r.get("closes"):
            lines.append("- connection ends seen by clients: %s" % json.dumps(r["closes"], sort_keys=True))
        if r.get("send_failures"):
            lines.append("- send retries/errors: %s" % json.dumps(r["send_failures"], sort_keys=True))
        for k, v in r.get("examples", {}).items():
            if v:
                lines.append("- examples of %s: `%s`" % (k, json.dumps(v[:3])))
        lines.append("- logs: `%s`" % r.get("logs"))
        lines.append("")
    return "\n".join(lines)


def binary_info():
    import hashlib
    import subprocess
    path = harness.binary_path()
    info = {"path": os.path.relpath(os.environ.get("WSC_BINARY_SOURCE", path), harness.REPO_ROOT)}
    try:
        with open(path, "rb") as f:
            info["sha256"] = hashlib.sha256(f.read()).hexdigest()[:16]
        src = os.environ.get("WSC_BINARY_SOURCE", path)
        info["mtime"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.path.getmtime(src)))
        info["git_head"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=harness.REPO_ROOT,
                                          capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


async def main_async(args):
    prof = dict(PROFILES["quick" if args.quick else "full"])
    if args.clients:
        prof["clients"] = args.clients
    if args.rate:
        prof["rate"] = args.rate
    outdir = os.path.abspath(args.out)
    os.makedirs(outdir, exist_ok=True)
    if args.inner_partition:
        # The child driver of the partition scenario (inside the hub namespace).
        lab = json.loads(args.inner_partition)
        key, title, fn, opts = next(s for s in SCENARIOS if s[0] == "partition")
        r = await run_scenario(key, title, fn, opts, prof, outdir, args.seed, lab)
        with open(os.path.join(outdir, "logs", "partition", "result.json"), "w") as f:
            json.dump(r, f, default=str)
        return 0
    chosen = [s for s in SCENARIOS if not args.only or s[0] in args.only.split(",")]
    if not chosen:
        print("no scenario matches --only %s (have: %s)" % (args.only, ",".join(s[0] for s in SCENARIOS)))
        return 2
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t = now()
    results = []
    for i, (key, title, fn, opts) in enumerate(chosen):
        log("== %s: %s" % (key, title))
        if key == "partition":
            r = await run_partition(prof, outdir, args.seed + i, args)
        else:
            r = await run_scenario(key, title, fn, opts, prof, outdir, args.seed + i)
        results.append(r)
        log("== %s: %s %s" % (key, "PASS" if not r["failed"] else "FAIL", "; ".join(r["failed"])))
    report = {"mode": "quick" if args.quick else "full", "profile": prof, "client": CLIENT_CFG,
              "binary": binary_info(),
              "started": started, "duration_s": round(now() - t, 1),
              "limits": {"detection_s": DETECT_LIMIT, "recovery_s": RECOVERY_LIMIT},
              "ok": all(not r["failed"] for r in results), "scenarios": results}
    with open(os.path.join(outdir, "report.json"), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True, default=str)
    with open(os.path.join(outdir, "report.md"), "w") as f:
        f.write(markdown(report) + "\n")
    print()
    print(table(results, COLUMNS, False))
    print()
    print(table(results, [("scenario", "scenario")] + INFO, False))
    print()
    for r in results:
        if r["failed"]:
            print("%s FAILED: %s" % (r["scenario"], "; ".join(r["failed"])))
    print("report: %s, %s (%.0f s)" % (os.path.join(outdir, "report.json"),
                                         os.path.join(outdir, "report.md"), report["duration_s"]))
    return 0 if report["ok"] else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI mode: fewer clients, shorter phases")
    p.add_argument("--only", default="", help="comma-separated scenarios: " +
                   ",".join(s[0] for s in SCENARIOS))
    p.add_argument("--clients", type=int, default=0, help="number of clients (default by mode)")
    p.add_argument("--rate", type=float, default=0.0, help="messages per second per client")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--inner-partition", default="", help=argparse.SUPPRESS)
    p.add_argument("--out", default=None,
                   help="report and logs folder (default build/faults, with --quick build/faults/quick)")
    args = p.parse_args()
    if args.out is None:
        args.out = os.path.join(harness.REPO_ROOT, "build", "faults", *(["quick"] if args.quick else []))
    try:
        harness.require_binary()
    except RuntimeError as e:
        print(e)
        return 2
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

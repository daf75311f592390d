"""Processes of the fault suite: a durable Redis and a three-node cluster.

Built on tests/integration/harness.py (Node, RedisServer, free_port); every
process is started here and stopped by its own pid. Only 127.0.0.1.
"""

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from harness import Node, RedisServer, free_port  # noqa: E402,F401
from wsaio import http_get  # noqa: E402


class DurableRedis(RedisServer):
    """A redis-server with an append-only file fsynced on every write
    (``--appendonly yes --appendfsync always``) in ``workdir``, which can be
    killed with SIGKILL and started again on the same port with the same
    data directory."""

    def __init__(self, workdir, port=None):
        super().__init__(port=port)
        shutil.rmtree(self.workdir, ignore_errors=True)  # the parent's temp dir
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.log_path = os.path.join(workdir, "redis.log")

    def start(self, timeout=10.0):
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [exe, "--port", str(self.port), "--bind", self.host, "--save", "",
                "--appendonly", "yes", "--appendfsync", "always",
                "--dir", self.workdir, "--daemonize", "no", "--protected-mode", "no"]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(args, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        with harness._live_lock:
            harness._live_processes.add(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s" % self.proc.returncode)
            try:
                if self.command("PING", timeout=0.5) == "PONG":
                    return self
            except (OSError, RuntimeError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server not ready after %.0fs" % timeout)

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        with harness._live_lock:
            harness._live_processes.discard(self.proc)

    def cleanup(self):
        self.stop()  # keeps workdir: it is the scenario's log folder


class Cluster:
    """Redis plus ``count`` wscluster nodes n1..nN, with logs in ``logdir``."""

    def __init__(self, logdir, count=3, node_options=None):
        self.logdir = logdir
        shutil.rmtree(logdir, ignore_errors=True)  # fresh Redis data and logs per run
        os.makedirs(logdir, exist_ok=True)
        self.redis = DurableRedis(os.path.join(logdir, "redis"))
        self.count = count
        self.extra = dict(node_options or {})
        self.nodes = []

    def options(self, i):
        opts = {
            "node-id": "n%d" % i,
            "state": "redis",
            "redis": self.redis.url,
            "rate-limit": 0,
            "log-level": "info",
        }
        opts.update(self.extra)
        return opts

    def start(self):
        self.redis.start()
        return self.start_nodes()

    def start_nodes(self, health_timeout=None):
        """Starts nodes n1..n<count> (all at once) and waits for each."""
        self.nodes = [Node(self.options(i + 1), name="n%d" % (i + 1), workdir=self.logdir)
                      for i in range(self.count)]
        for n in self.nodes:
            n.start(wait=False)
        for n in self.nodes:
            n.wait_healthy(health_timeout)
        return self

    @property
    def ports(self):
        return [n.port for n in self.nodes]

    def node(self, node_id):
        return next(n for n in self.nodes if n.name == node_id)

    def restart(self, node):
        """Starts ``node`` again on its port with its node-id (blocking)."""
        node.start(wait=True)

    def stop(self):
        self.stop_nodes()
        self.redis.cleanup()

    def stop_nodes(self):
        """SIGCONT (a stopped node), SIGTERM, then each stopped by its pid."""
        for n in self.nodes:
            if n.running():
                try:
                    os.kill(n.pid, signal.SIGCONT)
                except OSError:
                    pass
        for n in self.nodes:
            if n.running():
                n.signal(signal.SIGTERM)
        for n in self.nodes:
            try:
                n.stop(timeout=10)
            except Exception:  # noqa: BLE001 - best effort; harness kills leftovers
                pass

    # -- async helpers (run on the driver's event loop) ------------------------

    async def list_nodes(self, node, timeout=1.0):
        """Ids listed by ``GET /api/nodes`` on ``node`` (None if no answer)."""
        try:
            status, body = await http_get(node.host, node.port, "/api/nodes", timeout)
        except (OSError, asyncio.TimeoutError, ValueError, IndexError):
            return None
        if status != 200 or not isinstance(body, list):
            return None
        return {e.get("id") for e in body if isinstance(e, dict)}

    async def wait_mesh(self, nodes=None, timeout=20.0):
        """Until every given node lists exactly the given ids. Returns the
        seconds it took, or None on timeout."""
        nodes = nodes or [n for n in self.nodes if n.running()]
        ids = {n.name for n in nodes}
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            ok = True
            for n in nodes:
                if await self.list_nodes(n) != ids:
                    ok = False
                    break
            if ok:
                return time.monotonic() - start
            await asyncio.sleep(0.1)
        return None

    async def detect(self, dead_id, survivors, since, timeout=15.0):
        """Polls ``/api/nodes`` on ``survivors`` (every 100 ms) until none
        lists ``dead_id``; returns seconds from ``since`` (monotonic), or None."""
        while time.monotonic() - since < timeout:
            listed = [await self.list_nodes(n) for n in survivors]
            if all(ids is not None and dead_id not in ids for ids in listed):
                return time.monotonic() - since
            await asyncio.sleep(0.1)
        return None


class NsNode(Node):
    """A node run inside network namespace ``netns`` (``ip netns exec`` execs
    the binary, so the pid is the node's own)."""

    def __init__(self, netns, host, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.netns = netns
        self.host = host

    def start(self, wait=True):
        binary = self.binary or harness.require_binary()
        self.args = [binary, "--listen=%s:%d" % (self.host, self.port)]
        self.args += harness.options_to_args(self.options)
        log = open(self.log_path, "ab")
        try:
            log.write(("$ ip netns exec %s %s\n" % (self.netns, " ".join(self.args))).encode())
            log.flush()
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns] + self.args,
                                         cwd=harness.REPO_ROOT, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env)
        finally:
            log.close()
        with harness._live_lock:
            harness._live_processes.add(self.proc)
        if wait:
            self.wait_healthy()
        return self


class NsCluster(Cluster):
    """The cluster of the partition scenario: node i in namespace
    ``lab["nodes"][i-1]``, clients and Redis on the hub's service address
    (this process must run in the hub namespace)."""

    def __init__(self, logdir, lab, node_options=None):
        super().__init__(logdir, len(lab["nodes"]), node_options)
        import netlab
        self.netlab = netlab
        self.lab = lab
        self.redis.host = netlab.HUB_IP

    def options(self, i):
        opts = super().options(i)
        opts["cluster-listen"] = "%s:0" % (self.netlab.CLUSTER_NET % i)
        opts["cluster-insecure"] = "true"
        # The test's own network namespaces: no API key needed there.
        opts["api-insecure"] = "true"
        return opts

    def start(self):
        self.redis.start()
        self.nodes = [NsNode(self.lab["nodes"][i], self.netlab.SERVICE_NET % (i + 1),
                             self.options(i + 1), name="n%d" % (i + 1), workdir=self.logdir)
                      for i in range(self.count)]
        for n in self.nodes:
            n.start(wait=False)
        for n in self.nodes:
            n.wait_healthy()
        return self

"""The Redis Cluster client (adapters/redis_cluster) against a real cluster.

Starts 3 masters + 3 replicas of Debian's ``redis-server`` on free 127.0.0.1
ports (``cluster-node-timeout 1000``), then runs ``wsc-redis-cluster-check``
(tests/tools/redis_cluster_check.cpp), which SETs and GETs one key per hash
slot in pipelined batches:

1. every slot, no redirect (our CRC16 agrees with Redis);
2. slots migrated while it runs (MIGRATING/IMPORTING, MIGRATE, SETSLOT NODE):
   ASK and MOVED are followed, no command fails;
3. a master killed with SIGKILL while it runs: once the replica is promoted
   the batches succeed again; the outage is measured and reported.

The tool is ``$WSC_REDIS_CLUSTER_CHECK`` or ``tests/wsc-redis-cluster-check``
next to ``$WSC_BINARY``.  Only processes started here are stopped, by pid;
every wait is bounded.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from harness import HOST, KEEP_LOGS, RedisServer, binary_path, free_port, wait_until

NODE_TIMEOUT_MS = 1000


def check_tool_path():
    path = os.environ.get("WSC_REDIS_CLUSTER_CHECK")
    if path:
        return path
    return os.path.join(os.path.dirname(binary_path()), "tests", "wsc-redis-cluster-check")


class RedisCluster:
    """Six cluster-enabled redis-servers joined by ``redis-cli --cluster create``."""

    def __init__(self, size=6, replicas=1):
        self.servers = []
        for _ in range(size):
            self.servers.append(RedisServer(extra_args=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # The bus port must be free too (default: port + 10000).
                "--cluster-port", str(free_port()),
                # A replica syncs at once (the default waits 5 s for more).
                "--repl-diskless-sync-delay", "0"]))
        self.replicas = replicas

    def start(self):
        for s in self.servers:
            s.start()
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        out = subprocess.run(
            [cli, "--cluster", "create"] + ["%s:%d" % (HOST, s.port) for s in self.servers]
            + ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("redis-cli --cluster create failed:\n%s%s" % (out.stdout, out.stderr))
        wait_until(self.healthy, 30, interval=0.2, what="cluster_state:ok on every node")
        return self

    def live(self):
        return [s for s in self.servers if s.proc is not None and s.proc.poll() is None]

    def healthy(self):
        """Every live node: state ok, it sees 3 masters with slots, and each
        replica has synced with its master (a replica that never did may not
        take over: cluster-replica-validity-factor)."""
        try:
            for s in self.live():
                if "cluster_state:ok" not in s.command("CLUSTER", "INFO"):
                    return False
                role = s.command("ROLE")
                if role[0] == "slave" and role[3] != "connected":
                    return False
                nodes = [n for n in self.nodes(s) if "fail" not in n["flags"]]
                masters = [n for n in nodes if "master" in n["flags"] and n["slots"]]
                if len(masters) != 3:
                    return False
            return True
        except (OSError, RuntimeError):
            return False

    @staticmethod
    def nodes(server):
        """CLUSTER NODES of ``server`` as dicts: id, port, flags, master, slots."""
        result = []
        for line in server.command("CLUSTER", "NODES").splitlines():
            f = line.split()
            addr = f[1].split("@")[0]
            result.append({"id": f[0], "port": int(addr.rsplit(":", 1)[1]),
                           "flags": f[2].split(","), "master": f[3], "slots": f[8:]})
        return result

    def server_on(self, port):
        return next(s for s in self.servers if s.port == port)

    def owner(self, slot):
        """The server that masters ``slot`` per a live node's CLUSTER SLOTS."""
        for first, last, master, *_ in self.live()[0].command("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return self.server_on(int(master[1]))
        raise RuntimeError("slot %d has no owner" % slot)

    def node_id(self, server):
        return server.command("CLUSTER", "MYID")

    def seeds(self):
        return ",".join("%s:%d" % (HOST, s.port) for s in self.servers[:3])

    def cleanup(self):
        for s in self.servers:
            s.cleanup()


class RedisClusterClientTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        for exe in ("redis-server", "redis-cli"):
            if shutil.which(exe) is None:
                raise unittest.SkipTest("%s not installed" % exe)
        cls.tool = check_tool_path()
        if not os.access(cls.tool, os.X_OK):
            raise RuntimeError("%s not built (ninja -C build wsc-redis-cluster-check)" % cls.tool)
        cls.cluster = RedisCluster()
        cls.addClassCleanup(cls.cluster.cleanup)
        cls.cluster.start()
        cls.workdir = tempfile.mkdtemp(prefix="wsc-cluster-check-")
        if not KEEP_LOGS:
            cls.addClassCleanup(shutil.rmtree, cls.workdir, True)

    # -- running the tool -------------------------------------------------------

    def start_tool(self, name, *args):
        """Starts the tool with its stdout in a file; returns (proc, path)."""
        path = os.path.join(self.workdir, name + ".out")
        with open(path, "wb") as out:
            proc = subprocess.Popen([self.tool, "--seeds", self.cluster.seeds()] + list(args),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE)
        self.addCleanup(self._reap, proc)
        return proc, path

    @staticmethod
    def _reap(proc):
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stderr.close()

    @staticmethod
    def lines(path):
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def rounds(self, path):
        return [x for x in self.lines(path) if "round" in x]

    def finish(self, proc, path, timeout=60):
        _, err = proc.communicate(timeout=timeout)
        lines = self.lines(path)
        summary = lines[-1] if lines and lines[-1].get("summary") else None
        self.assertIsNotNone(summary, "no summary; stderr: %s" % err.decode(errors="replace"))
        return summary, self.rounds(path), proc.returncode

    def wait_rounds(self, path, n, timeout=30):
        wait_until(lambda: len(self.rounds(path)) >= n, timeout, interval=0.05,
                   what="%d rounds of the check tool" % n)

    # -- tests ---------------------------------------------------------------------

    def test_1_every_slot_without_redirects(self):
        proc, path = self.start_tool("all", "--keys", "16384", "--batch", "256", "--rounds", "2")
        summary, rounds, rc = self.finish(proc, path)
        self.assertEqual(rc, 0, rounds)
        self.assertEqual(len(rounds), 2)
        for r in rounds:
            self.assertEqual((r["ok"], r["failed"], r["mismatched"]), (32768, 0, 0), r)
        # A slot computed differently from Redis would have been MOVED.
        self.assertEqual(summary["moved"], 0, summary)
        self.assertEqual(summary["ask"], 0, summary)
        # The keys really spread over the three masters.
        masters = [s for s in self.cluster.servers if s.command("ROLE")[0] == "master"]
        self.assertEqual(len(masters), 3)
        sizes = [m.command("DBSIZE") for m in masters]
        self.assertEqual(sum(sizes), 16384, sizes)
        self.assertTrue(all(n > 4000 for n in sizes), sizes)

    def test_2_slot_migration_is_followed(self):
        proc, path = self.start_tool("migrate", "--keys", "16384", "--batch", "512",
                                     "--rounds", "100000", "--seconds", "30")
        self.wait_rounds(path, 1)
        src = self.cluster.owner(0)
        dst = next(s for s in self.cluster.servers
                   if s is not src and s.command("ROLE")[0] == "master")
        src_id, dst_id = self.cluster.node_id(src), self.cluster.node_id(dst)
        slots = list(range(0, 8))
        for slot in slots:
            dst.command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            for _ in range(100):
                keys = src.command("CLUSTER", "GETKEYSINSLOT", slot, 100)
                if not keys:
                    break
                src.command("MIGRATE", HOST, dst.port, "", 0, 5000, "KEYS", *keys)
            # A full round of the tool meets the slot migrating with its key
            # gone from the source: ASK to the destination.
            self.wait_rounds(path, len(self.rounds(path)) + 2)
            for s in [dst, src] + [m for m in self.cluster.live()
                                   if m not in (src, dst) and m.command("ROLE")[0] == "master"]:
                s.command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        done = len(self.rounds(path))
        # At least two full rounds with the stale map, then stop the tool
        # (SIGTERM: it ends its round and prints the summary).
        self.wait_rounds(path, done + 2)
        proc.terminate()
        summary, rounds, rc = self.finish(proc, path)
        self.assertEqual(rc, 0, rounds[-3:])
        self.assertEqual(summary["failed"], 0, [r for r in rounds if r["failed"]][:3])
        self.assertEqual(summary["mismatched"], 0, [r for r in rounds if r["mismatched"]][:3])
        # The tool's key of each slot met the migration (ASK) and then the
        # slot's new owner (MOVED).
        self.assertGreaterEqual(summary["ask"], len(slots), summary)
        self.assertGreaterEqual(summary["moved"], 1, summary)
        for slot in slots:
            self.assertIs(self.cluster.owner(slot), dst)
        sys.stderr.write("\n[redis cluster] %d slots migrated under load: %d rounds, 0 failed "
                         "commands, %d MOVED, %d ASK followed\n"
                         % (len(slots), len(rounds), summary["moved"], summary["ask"]))

    def test_3_failover_to_the_promoted_replica(self):
        proc, path = self.start_tool("failover", "--keys", "4096", "--batch", "256",
                                     "--rounds", "100000", "--seconds", "40",
                                     "--retry-deadline-ms", "1000")
        self.wait_rounds(path, 3)
        wait_until(self.cluster.healthy, 30, interval=0.2, what="a healthy cluster")
        victim = self.cluster.owner(100)
        victim_id = self.cluster.node_id(victim)
        replica = next(n for n in self.cluster.nodes(victim) if n["master"] == victim_id)
        victim.proc.kill()  # SIGKILL, by the Popen's own pid
        victim.proc.wait(10)
        killed_at = time.monotonic() * 1000
        promoted = lambda: self.cluster.server_on(replica["port"]).command("ROLE")[0] == "master"
        wait_until(promoted, 20, interval=0.1, what="the replica's promotion")
        promoted_at = time.monotonic() * 1000

        def recovered():
            after = [r for r in self.rounds(path) if r["start"] >= killed_at]
            return any(r["failed"] == 0 for r in after) and len(after) >= 5 \
                and all(r["failed"] == 0 for r in after[-3:])
        wait_until(recovered, 30, interval=0.1, what="fully ok rounds after the failover")
        proc.terminate()
        summary, rounds, rc = self.finish(proc, path)
        after = [r for r in rounds if r["start"] >= killed_at]
        first_ok = next(r for r in after if r["failed"] == 0)
        outage = first_ok["end"] - killed_at
        straddling = [r for r in rounds if r["start"] < killed_at < r["end"]]
        failed_rounds = [r for r in rounds if r["failed"]]
        sys.stderr.write(
            "\n[redis cluster] master :%d killed: replica :%d promoted after %.0f ms; "
            "first fully ok round ended %.0f ms after the kill (cluster-node-timeout %d ms); "
            "%d rounds with failed commands (%d commands, retry deadline 1000 ms), "
            "%d writes lost (acked by the old master, not replicated), %d refreshes, "
            "%d connects, %d script reloads (NOSCRIPT)\n"
            % (victim.port, replica["port"], promoted_at - killed_at, outage, NODE_TIMEOUT_MS,
               len(failed_rounds), summary["failed"], summary["mismatched"],
               summary["refreshes"], summary["connects"], summary["reloads"]))
        self.assertEqual(rc, 0, rounds[-3:])
        self.assertLessEqual(outage, NODE_TIMEOUT_MS + 5000,
                             "batches failed for too long: %s" % (straddling + failed_rounds)[:5])
        self.assertTrue(self.cluster.healthy())


if __name__ == "__main__":
    unittest.main()

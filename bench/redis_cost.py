#!/usr/bin/env python3
"""Redis CPU of each state-store operation, script by script (docs/scaling.md).

Starts a scratch redis-server on a free 127.0.0.1 port, loads the store's Lua
scripts from adapters/redis_scripts.hpp exactly as a node builds them, runs
each operation N times in pipelined batches of 128 (so the per-round-trip
cost of a real node is left out: it is measured apart, in the cluster
benchmarks) and prints, per operation, Redis' own time per call
(INFO commandstats: EVALSHA or the plain command) and the commands inside it.

    bench/redis_cost.py [-n 20000] [--group-size 20] [--json]

Bounded: N calls per operation, one redis-server started and stopped by pid.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, "adapters", "redis_scripts.hpp")
ORDER = ["bind_uid", "unbind_uid", "join_uid", "join_group", "node", "claim", "drop_uid",
         "users_add", "idem", "append", "group_check", "inbox", "read", "forget_node",
         "append_batch"]
# Which helper blocks each script gets (redis_scripts::source).
HELPERS = {"unbind_uid": ["helpers"], "node": ["helpers"], "claim": ["helpers"],
           "drop_uid": ["helpers"], "append": ["safe_helpers", "inbox_helpers"],
           "append_batch": ["safe_helpers", "inbox_helpers"],
           "idem": ["safe_helpers"], "inbox": ["safe_helpers"], "read": ["safe_helpers"]}


def script_sources(session_groups=False):
    text = open(SCRIPTS).read()

    def block(name):
        m = re.search(r'inline constexpr const char\* %s = R"lua\((.*?)\)lua";' % name, text, re.S)
        return m.group(1)

    bodies = re.findall(r'R"lua\((.*?)\)lua"', text.split("bodies[script_count] = {")[1], re.S)
    assert len(bodies) == len(ORDER), "redis_scripts.hpp changed: update ORDER"
    result = {}
    for name, body in zip(ORDER, bodies):
        src = block("prelude") + ("local SESSION_GROUPS = %s\n" % ("true" if session_groups else "false"))
        for h in HELPERS.get(name, []):
            src += block(h)
        result[name] = src + body
    return result


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def reply(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2].decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise OSError("bad reply %r" % line)

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(c) for c in commands))
        return [self.reply() for _ in commands]

    def call(self, *args):
        result = self.pipeline([args])[0]
        if isinstance(result, RuntimeError):
            raise result
        return result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def scratch_redis():
    """A redis-server on a free 127.0.0.1 port in a temporary folder, no
    persistence, and a connection to it; stopped (by pid) and removed after."""
    if not shutil.which("redis-server"):
        sys.exit("redis-server not found (apt-get install redis-server)")
    workdir = tempfile.mkdtemp(prefix="wsc-redis-cost-")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                r = Redis(port)
                r.call("PING")
                break
            except OSError:
                time.sleep(0.05)
        else:
            sys.exit("redis-server did not start")
        yield r
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def commandstats(r):
    stats = {}
    for line in r.call("INFO", "commandstats").split("\r\n"):
        m = re.match(r"cmdstat_(\w+):calls=(\d+),usec=(\d+)", line)
        if m:
            stats[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return stats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20000, help="calls per operation (default 20000)")
    ap.add_argument("--group-size", type=int, default=20)
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = ap.parse_args()
    n, size = max(100, min(args.n, 200000)), max(1, min(args.group_size, 1000))
    with scratch_redis() as r:
        shas = {name: r.call("SCRIPT", "LOAD", src) for name, src in script_sources().items()}
        now = int(time.time() * 1000)
        day = 86400000
        payload = '"' + "x" * 62 + '"'  # 64 bytes of JSON

        def head(msg_id, sender, kind=0, group=""):
            """What group_check and idem get (redis_requests_inbox.cpp): the
            payload's size, not the payload."""
            return [1000, now - day, day, 1 << 20, msg_id, kind, sender, group, len(payload), now,
                    "", 600000, "1"]

        def append_args(msg_id, uids):
            """The append call: 4 shared, the packed entry, the uids' key bases."""
            entry = "%d,0,%d,5,0,%salice%s" % (now, len(msg_id), msg_id, payload)
            return [1000, now - day, day, 1 << 20, entry] + [ukey(u, "") for u in uids]

        def evalsha(name, key, *argv):
            return ("EVALSHA", shas[name], 1, key, "P") + tuple(argv)

        def ukey(uid, what):
            return "P:{u:%s}:%s" % (uid, what)

        def gkey(group):
            return "P:{g:%s}:m" % group

        groups = max(1, 1000 // size)
        # Layout 4: an operation is the commands the STORE sends for it (one
        # per slot; here every uid is in its own slot, as on a cluster).
        ops = [
            ("connect (SADD index + bind_uid + users_add)", lambda i: [
                ("SADD", "P:{n:n1}:nb", "7,u%d,c%d" % (i, i)), ("SADD", "P:{n:n1}:ni", "7"),
                evalsha("bind_uid", ukey("u%d" % i, "b"), "u%d" % i, "c%d" % i, "n1", "7"),
                evalsha("users_add", "P:users", 1)]),
            ("send, 1 receiver (append)", lambda i: [evalsha(
                "append", ukey("u%d" % (i % 1000), "b"),
                *append_args("m%d" % i, ["u%d" % (i % 1000)]))]),
            ("send, volatile (HVALS)", lambda i: [("HVALS", ukey("u%d" % (i % 1000), "b"))]),
            ("join (join_uid + join_group)", lambda i: [
                evalsha("join_uid", ukey("u%d" % (i % 1000), "g"), "u%d" % (i % 1000),
                        "g%d" % ((i % 1000) // size), 100),
                evalsha("join_group", gkey("g%d" % ((i % 1000) // size)),
                        "g%d" % ((i % 1000) // size), "u%d" % (i % 1000), 10000)]),
            ("publish, %d members (group_check + one append per member)" % size,
             lambda i: [evalsha("group_check", gkey("g%d" % (i % groups)),
                                *head("gm%d" % i, "u%d" % ((i % groups) * size), 2,
                                      "g%d" % (i % groups)))] +
             [evalsha("append", ukey("u%d" % ((i % groups) * size + k), "b"),
                      *append_args("gm%d" % i, ["u%d" % ((i % groups) * size + k)]))
              for k in range(size)]),
            ("publish, volatile (SMEMBERS + HVALS per member)", lambda i: [
                ("SMEMBERS", gkey("g%d" % (i % groups)))] +
             [("HVALS", ukey("u%d" % ((i % groups) * size + k), "b")) for k in range(size)]),
            ("resume, page of 64 (inbox)", lambda i: [evalsha(
                "inbox", ukey("u%d" % (i % 1000), "in"), "u%d" % (i % 1000), "d", 0, 64)]),
            ("read cursor (read)", lambda i: [evalsha(
                "read", ukey("u%d" % (i % 1000), "cur"), "u%d" % (i % 1000), "d%d" % (i % 4),
                i, day, 64)]),
            ("disconnect (unbind_uid + SREM index + users_add)", lambda i: [
                evalsha("unbind_uid", ukey("u%d" % i, "b"), "u%d" % i, "c%d" % i),
                ("SREM", "P:{n:n1}:nb", "7,u%d,c%d" % (i, i)),
                evalsha("users_add", "P:users", -1)]),
        ]
        results = []
        for label, make in ops:
            r.call("CONFIG", "RESETSTAT")
            batch = []
            errors = 0
            for i in range(n):
                batch += make(i)
                if len(batch) >= 128 or i == n - 1:
                    errors += sum(isinstance(x, RuntimeError) for x in r.pipeline(batch))
                    batch = []
            stats = commandstats(r)
            # Time of the commands sent (a script's time includes its inner
            # commands, which commandstats lists again by name).
            top = {str(c[0]).lower() for c in make(0)}
            calls = sum(v[0] for k, v in stats.items() if k in top)
            usec = sum(v[1] for k, v in stats.items() if k in top)
            inner = {k: round(v[1] / n, 2) for k, v in stats.items() if k != "config"}
            results.append({"operation": label, "calls": calls, "errors": errors,
                            "usec_per_call": round(usec / n, 2), "inside_usec_per_call": inner})
        info = {"redis": r.call("INFO", "server").split("redis_version:")[1].split("\r\n")[0],
                "calls_per_operation": n, "group_size": size, "results": results}
        if args.json:
            print(json.dumps(info, indent=1))
            return
        print("Redis %s, %d operations each, pipelined by 128 commands; Redis time per "
              "operation (INFO commandstats, all its commands), and per command name "
              "(the commands inside scripts included):" % (info["redis"], n))
        print("| operation | µs per operation | per command (µs per operation) |")
        print("|---|---|---|")
        for x in results:
            inside = ", ".join("%s %.2f" % kv for kv in sorted(x["inside_usec_per_call"].items()))
            flag = " (%d errors)" % x["errors"] if x["errors"] else ""
            print("| %s | %.2f%s | %s |" % (x["operation"], x["usec_per_call"], flag, inside or "-"))


if __name__ == "__main__":
    main()

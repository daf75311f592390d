#!/usr/bin/env python3
"""Redis time of the `read` script (a device confirms it read up to a seq),
by the kind of confirmation (bench/PROFILE.md, "read").

Starts a scratch redis-server on a free 127.0.0.1 port, loads `append` and
`read` of the tree given (default: this one; pass another checkout to compare
its scripts: only its adapters/redis_scripts.hpp and bench/redis_cost.py are
read), stores 32 messages of 64 bytes for each of 1000 uids with `append`,
then runs `read` pipelined by 128 and prints Redis' time per call (INFO
commandstats, EVALSHA) and the commands inside, for:
  next:   each uid's device confirms seq 1, 2, ..., 32 in turn (the cursor
          moves by one: what a client that confirms every message sends);
  repeat: the same again (every seq at or behind the cursor);
  beyond: a second device confirms seqs past the last one (clamped).

    bench/read_cost.py [--tree DIR] [-k 32] [--payload 64]

Bounded: 1000 x k calls per kind, one redis-server started and stopped by pid.
"""

import argparse
import importlib.util
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def load_redis_cost(tree):
    spec = importlib.util.spec_from_file_location(
        "redis_cost_of_tree", os.path.join(tree, "bench", "redis_cost.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", default=os.path.dirname(HERE))
    ap.add_argument("-k", type=int, default=32, help="messages per uid (default 32)")
    ap.add_argument("--payload", type=int, default=64, help="payload bytes (default 64)")
    args = ap.parse_args()
    k, size, uids = max(1, min(args.k, 1000)), max(2, min(args.payload, 65536)), 1000
    rc = load_redis_cost(os.path.abspath(args.tree))
    # The scratch server of this tree's redis_cost (an older tree may lack it).
    here_rc = load_redis_cost(os.path.dirname(HERE))
    with here_rc.scratch_redis() as r:
        src = rc.script_sources()
        sha = {n: r.call("SCRIPT", "LOAD", src[n]) for n in ("append", "read")}
        now, day = int(time.time() * 1000), 86400000
        payload = '"' + "x" * (size - 2) + '"'

        def ukey(u, what):
            return "P:{u:u%d}:%s" % (u, what)

        def run(cmds):
            for i in range(0, len(cmds), 128):
                errors = [x for x in r.pipeline(cmds[i:i + 128]) if isinstance(x, RuntimeError)]
                if errors:
                    sys.exit("error reply: %s" % errors[0])

        appends = []
        for s in range(k):
            for u in range(uids):
                msg_id = "m%d-%d" % (u, s)
                entry = "%d,0,%d,5,0,%salice%s" % (now, len(msg_id), msg_id, payload)
                appends.append(("EVALSHA", sha["append"], 1, ukey(u, "b"), "P", 1000,
                                now - day, day, 1 << 20, entry, ukey(u, "")))
        run(appends)

        def read(u, device, seq):
            return ("EVALSHA", sha["read"], 1, ukey(u, "cur"), "P", "u%d" % u, device, seq,
                    day, 64)

        print("Redis %s, tree %s, %d uids x %d messages of %d bytes; Redis time per `read`:"
              % (r.call("INFO", "server").split("redis_version:")[1].split("\r\n")[0],
                 args.tree, uids, k, size))
        kinds = [
            ("next", [read(u, "d0", s) for s in range(1, k + 1) for u in range(uids)]),
            ("repeat", [read(u, "d0", s) for s in range(1, k + 1) for u in range(uids)]),
            ("beyond", [read(u, "d1", 10 ** 9 + s) for s in range(1, k + 1) for u in range(uids)]),
        ]
        for label, cmds in kinds:
            r.call("CONFIG", "RESETSTAT")
            run(cmds)
            stats = rc.commandstats(r)
            inside = ", ".join("%s %.2f" % (name, v[1] / len(cmds))
                               for name, v in sorted(stats.items())
                               if name not in ("evalsha", "config"))
            print("  %-7s %.2f us/call (inside: %s)" % (label, stats["evalsha"][1] / len(cmds),
                                                        inside or "-"))


if __name__ == "__main__":
    main()

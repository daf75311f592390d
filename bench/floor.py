#!/usr/bin/env python3
"""The kernel floor of an S2 message on this machine, without wscluster.

A message of S2 costs the servers at least: the wake-up that finds the
sender's frame, one read of it, one write of the ack to the sender and one
write of the delivery to the receiver (Redis and the node-to-node link are
batched and left out). This script runs exactly that as a bare epoll server
in a process of its own, against a load process with S2's shape (senders
writing small frames open loop at a fixed total rate, receivers reading),
over loopback TCP, and reports the server's kernel CPU time (stime from
/proc/PID/stat) per message: what any server of that design pays on this
box before it does any work of its own. Its user time is Python's and says
nothing about C++.

    bench/floor.py [--rate 10000] [--duration 10] [--senders 100]
                   [--receivers 1000] [--runs 3] [--fanout 1]

With --fanout K each message is written to K receivers (S3's broadcast
shape: --rate 4 --senders 1 --receivers 5000 --fanout 5000; S4's groups:
--rate 250 --senders 100 --receivers 2000 --fanout 20), and the floor is
reported per delivery. Both sides err low: the load sends in bursts about
once a millisecond (Python's epoll timeout), so the server wakes less often
than under a smooth generator, and the kernel charges CPU by tick sampling.
A C server with the same calls measured the same kernel time (review
helper-57, bench/PROFILE.md). A run that did not deliver everything carries
an "error" and counts in no median.

Only 127.0.0.1; every run is bounded by --duration (+10 s for set-up); the
processes it starts are its own children and are stopped by pid.
"""

import argparse
import json
import os
import select
import socket
import statistics
import sys
import threading
import time
import traceback

FRAME = b"x" * 96  # about the size of an S2 frame, an ack and a delivery


def clock_ticks():
    return os.sysconf("SC_CLK_TCK")


def cpu_of(pid):
    """(utime, stime, voluntary context switches) of a process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    switches = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                switches = int(line.split()[1])
    return (int(fields[11]) / clock_ticks(), int(fields[12]) / clock_ticks(),
            switches)


def serve(listener, senders, receivers, fanout, ready_fd):
    """The bare server: per readable sender, one recv, and per whole frame
    in it one ack and `fanout` deliveries, each one write to a receiver
    (blocking writes: a full socket buffer waits, it does not fail)."""
    ep = select.epoll()
    conns = []
    while len(conns) < senders + receivers:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append(conn)
    # The load process connects its senders first.
    sender_socks, receiver_socks = conns[:senders], conns[senders:]
    by_fd = {}
    partial = {}  # bytes of a frame split across reads, per sender
    for s in sender_socks:
        ep.register(s.fileno(), select.EPOLLIN)
        by_fd[s.fileno()] = s
        partial[s.fileno()] = 0
    os.write(ready_fd, b"r")
    next_receiver = 0
    while True:
        for fd, _ in ep.poll():
            s = by_fd[fd]
            data = s.recv(65536)  # readable: does not block
            if not data:
                return
            frames, partial[fd] = divmod(partial[fd] + len(data), len(FRAME))
            for _ in range(frames):
                s.sendall(FRAME)  # the ack
                for _ in range(fanout):  # the deliveries
                    receiver_socks[next_receiver].sendall(FRAME)
                    next_receiver = (next_receiver + 1) % len(receiver_socks)


def load(port, args, server_pid):
    """Senders write at --rate in total, open loop; receivers read. Python's
    epoll rounds its timeout up to whole milliseconds, so the frames leave
    in bursts about once a millisecond (fewer wake-ups of the server than a
    smoother generator would cause: the floor errs low)."""
    senders = [socket.create_connection(("127.0.0.1", port))
               for _ in range(args.senders)]
    receivers = [socket.create_connection(("127.0.0.1", port))
                 for _ in range(args.receivers)]
    ep = select.epoll()
    for s in senders + receivers:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        ep.register(s.fileno(), select.EPOLLIN)
    socks = {s.fileno(): s for s in senders + receivers}
    receiver_fds = {s.fileno() for s in receivers}
    time.sleep(1)
    interval = 1.0 / args.rate
    total = int(args.rate * args.duration)
    sent = received_bytes = 0
    cpu0 = cpu_of(server_pid)
    start = time.monotonic()
    deadline = start + args.duration + 10
    expected = total * args.fanout * len(FRAME)
    while (sent < total or received_bytes < expected) and \
            time.monotonic() < deadline:
        now = time.monotonic()
        due = min(total, int((now - start) / interval) + 1)
        while sent < due:
            senders[sent % len(senders)].sendall(FRAME)
            sent += 1
        wait = max(0.0, start + sent * interval - time.monotonic())
        for fd, _ in ep.poll(min(wait, 0.01) if sent < total else 0.01):
            try:
                data = socks[fd].recv(65536)
            except BlockingIOError:
                continue
            if fd in receiver_fds:
                received_bytes += len(data)
    elapsed = time.monotonic() - start
    cpu1 = cpu_of(server_pid)
    for s in senders + receivers:
        s.close()
    delivered = received_bytes // len(FRAME)
    stime = cpu1[1] - cpu0[1]
    result = {
        "rate": args.rate, "fanout": args.fanout, "senders": args.senders,
        "receivers": args.receivers, "sent": sent, "delivered": delivered,
        "seconds": round(elapsed, 2),
        "server_stime_us_per_msg": round(stime * 1e6 / max(1, sent), 2),
        "server_stime_us_per_delivery": round(stime * 1e6 / max(1, delivered), 2),
        "server_utime_us_per_msg": round((cpu1[0] - cpu0[0]) * 1e6 / max(1, sent), 2),
        "server_ctx_switches_per_msg": round((cpu1[2] - cpu0[2]) / max(1, sent), 3),
    }
    if delivered != total * args.fanout:
        result["error"] = "incomplete: %d of %d deliveries" % (
            delivered, total * args.fanout)
    return result


def one_run(args):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        status = 0
        try:
            serve(listener, args.senders, args.receivers, args.fanout, ready_w)
        except BaseException:  # a failure of the server must be seen
            traceback.print_exc()
            status = 1
        finally:
            os._exit(status)
    listener.close()
    os.close(ready_w)  # a server that dies before it is ready ends the wait
    result = {}
    try:
        t = threading.Thread(target=lambda: result.update(load(port, args, pid)),
                             daemon=True)
        t.start()
        # The server signals once every connection is accepted.
        ready = select.select([ready_r], [], [], 30)[0] and os.read(ready_r, 1)
        if not ready:
            return {"error": "the server did not start (see stderr)"}
        t.join(args.duration + 30)
        if t.is_alive() or not result:
            return {"error": "the load did not finish"}
        return result
    finally:
        os.close(ready_r)
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=int, default=10000)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--senders", type=int, default=100)
    p.add_argument("--receivers", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--fanout", type=int, default=1,
                   help="deliveries per message (S3-like: many)")
    p.add_argument("--out", help="append each run as a JSON line to this file "
                   "(scenario floor: bench/report.py's goals table reads it)")
    args = p.parse_args()
    if not (1 <= args.rate <= 100000 and 0 < args.duration <= 60
            and 1 <= args.senders <= 2000 and 1 <= args.receivers <= 5000
            and 1 <= args.runs <= 10 and 1 <= args.fanout <= 5000
            and args.rate * args.fanout <= 200000):
        p.error("rate 1..100000, duration 0..60 s, senders 1..2000, "
                "receivers 1..5000, runs 1..10, fanout 1..5000, "
                "rate x fanout <= 200000")
    runs = []
    for _ in range(args.runs):
        r = one_run(args)
        r = {"scenario": "floor", "system": "bare epoll server (Python)",
             "generator": "bench/floor.py", **r}
        print(json.dumps(r), flush=True)
        if args.out:
            with open(args.out, "a") as out:
                out.write(json.dumps(r) + "\n")
        runs.append(r)
    key = "server_stime_us_per_msg" if args.fanout == 1 \
        else "server_stime_us_per_delivery"
    values = [r[key] for r in runs if "error" not in r]
    if values:
        print("server kernel CPU per %s at %d/s x %d: median %.1f us (%s)"
              % ("message" if args.fanout == 1 else "delivery", args.rate,
                 args.fanout, statistics.median(values), values))
    return 0 if len(values) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())

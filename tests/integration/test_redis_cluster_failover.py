"""Failover of a Redis Cluster master under load (issue 15).

A Redis Cluster of 3 masters + 3 replicas (cluster-node-timeout 1000 ms),
two wscluster nodes on it. Senders on both nodes send durable messages with
acks to one busy receiver uid as fast as their acks come back; the master
of that uid's slot is killed with SIGKILL mid-stream and the senders go on
through the failover. Afterwards a fresh device of the receiver replays the
whole inbox, and every positively acked message must be in it.

1. ``durable-replicas=1`` (the shard gets a second replica, so that the
   promoted one still has a replica to WAIT for): 0 acked messages lost,
   and sends are positively acked again within node-timeout + 2 s.
   Before the kill the shard's replicas are paused for 0.6 s with their
   replication links cut, so that writes acked then exist only on the master.
2. The same without ``durable-replicas``: those acked messages are lost
   (asserted: the window test 1 closes is real); the recovery time is
   asserted.
3. A binding the failover lost (the replica is emptied before it is
   promoted) is written back by its node, which notices the promotion at
   its next heartbeat; the uid is routable again and ``users`` stays right.
4. A write short of its replicas is not acked as stored.
5. A live node whose entry is on the failing shard (its lease runs out
   while the replica takes over, and its first heartbeat after it comes
   0.6 s late) is not claimed by a peer whose own shard answered all along:
   the peer notices the promotion and gives every lease a full node-timeout
   before judging anyone.

Only 127.0.0.1; only processes this test started are killed, by pid; every
loop is bounded in count and time.
"""

import signal
import threading
import time
import unittest

from harness import HarnessMixin, RedisClusterServer, RedisServer, free_port, key_slot, wait_until

NODE_TIMEOUT_MS = 1000
PREFIX = "wscf"
MAX_SENDS = 2500          # per sender
RATE = 250                # sends per second per sender, at most
WINDOW = 4                # sends in flight per sender
RUN_SECONDS = 9.0         # the whole stream, kill after KILL_AFTER
KILL_AFTER = 2.0
LAG_SECONDS = 0.6         # replicas paused before the kill (< cluster node timeout)


def ukey(prefix, uid, what):
    return "%s:{u:%s}:%s" % (prefix, uid, what)


def cluster_nodes(server):
    """{node id: (port, flags, master id)} from CLUSTER NODES."""
    result = {}
    for line in server.command("CLUSTER", "NODES").splitlines():
        parts = line.split()
        port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
        result[parts[0]] = (port, parts[2], parts[3])
    return result


def replica_ports(master):
    """Ports of `master`'s replicas as the master sees them, waiting for
    the first one: a freshly started cluster's gossip may not have told
    the master yet (a CI run under ASan read an empty list)."""
    master_id = master.command("CLUSTER", "MYID")
    ports = lambda: {port for port, flags, m in cluster_nodes(master).values() if m == master_id}
    wait_until(lambda: ports(), 20, interval=0.1, what="the master knows its replica")
    return ports()


class Sender(threading.Thread):
    """Sends durable messages "<name>-<i>" to `to` over one connection, at
    most WINDOW unanswered, until `stop` or MAX_SENDS; records when each
    was sent and how it was answered."""

    def __init__(self, node, name, to, stop):
        super().__init__(daemon=True)
        self.client = node.ws(name)
        self.name, self.to, self.stop = name, to, stop
        self.sent = {}      # i -> monotonic time sent
        self.acked = {}     # i -> monotonic time of a positive ack
        self.refused = {}   # i -> "unavailable" or the error code
        self.error = None

    def answered(self):
        return len(self.acked) + len(self.refused)

    def handle(self, frame):
        i = frame.get("id")
        if not isinstance(i, int) or i not in self.sent:
            return
        if frame.get("type") == "ack":
            if self.to in frame.get("unavailable", []):
                self.refused[i] = "unavailable"
            else:
                self.acked[i] = time.monotonic()
        elif frame.get("type") == "error":
            self.refused[i] = frame.get("code")

    def run(self):
        try:
            i = 0
            started = time.monotonic()
            deadline = started + RUN_SECONDS + 30
            while time.monotonic() < deadline:
                while (not self.stop.is_set() and i < MAX_SENDS
                       and len(self.sent) - self.answered() < WINDOW
                       and i < (time.monotonic() - started) * RATE):
                    self.sent[i] = time.monotonic()
                    self.client.send_json({"type": "send", "id": i, "to": self.to,
                                           "data": "%s-%d" % (self.name, i)})
                    i += 1
                if len(self.sent) == self.answered() and (self.stop.is_set() or i >= MAX_SENDS):
                    return
                try:
                    self.handle(self.client.recv_json(timeout=1.0 / RATE))
                except TimeoutError:
                    pass
        except BaseException as e:  # reported by the test
            self.error = e


class FailoverTest(HarnessMixin, unittest.TestCase):

    def start_cluster(self):
        cluster = RedisClusterServer(masters=3, replicas=1, node_timeout_ms=NODE_TIMEOUT_MS)
        self.addCleanup(cluster.cleanup)
        return cluster.start()

    def add_replica(self, cluster, master):
        """A second replica of `master` (joined with CLUSTER MEET): after the
        failover the promoted replica still has one to WAIT for."""
        extra = RedisServer(extra_args=[
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            "--cluster-port", str(free_port()), "--repl-diskless-sync-delay", "0"])
        self.addCleanup(extra.cleanup)
        extra.start()
        cport = int(extra.command("CONFIG", "GET", "cluster-port")[1])
        master.command("CLUSTER", "MEET", "127.0.0.1", str(extra.port), str(cport))
        master_id = master.command("CLUSTER", "MYID")
        wait_until(lambda: master_id in cluster_nodes(extra), 20, interval=0.1,
                   what="the extra replica knows the master")
        self.assertEqual(extra.command("CLUSTER", "REPLICATE", master_id), "OK")
        wait_until(lambda: "master_link_status:up" in extra.command("INFO", "replication"),
                   20, interval=0.1, what="the extra replica in sync")
        wait_until(lambda: cluster._healthy() and all(
            "cluster_state:ok" in s.command("CLUSTER", "INFO") for s in [extra]), 20,
            interval=0.1, what="the cluster ok with the extra replica")
        return extra

    def start_nodes(self, cluster, extra_options):
        options = {"state": "redis", "redis": cluster.url, "redis-prefix": PREFIX,
                   "heartbeat": "500ms", "node-timeout": "3s", "rate-limit": "0",
                   "inbox-max-messages": "100000", "stored-bytes-rate": "100000000"}
        options.update(extra_options)
        return [self.start_node(dict(options, **{"node-id": "n%d" % k})) for k in (1, 2)]

    def replay(self, node, uid, device):
        """Every message of `uid`'s inbox, read by a fresh device."""
        client = node.ws(uid, query={"device": device})
        welcome = client.welcome
        self.assertTrue(welcome.get("resumed"), welcome)
        last = welcome["to"]
        got = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not got or max(got) < last):
            frame = client.wait_for(lambda f: f.get("type") == "message", 10)
            got[frame["seq"]] = frame["data"]
        client.close()
        return got, last

    def run_failover(self, durable):
        cluster = self.start_cluster()
        busy = "busy"
        victim = cluster.owner(key_slot(ukey(PREFIX, busy, "b")))
        servers = list(cluster.servers)
        if durable:
            servers.append(self.add_replica(cluster, victim))
        opts = {"durable-replicas": "1"} if durable else {}
        n1, n2 = self.start_nodes(cluster, opts)
        receiver = n1.ws(busy, query={"device": "live"})
        stop = threading.Event()
        senders = [Sender(n1, "s1", busy, stop), Sender(n2, "s2", busy, stop)]
        for s in senders:
            s.start()
        time.sleep(KILL_AFTER)
        # The replicas fall behind (paused, their replication links cut: the
        # master goes on alone), then the master dies: writes acked in that
        # window exist only on the dead master. Shorter than the cluster's
        # node timeout, so the paused replicas are not judged failed.
        replicas = [x for x in servers if x.port in replica_ports(victim)]
        self.assertTrue(replicas, "the victim has replicas")
        for r in replicas:
            r.proc.send_signal(signal.SIGSTOP)
        try:
            victim.command("CLIENT", "KILL", "TYPE", "replica")
            lag_from = time.monotonic()
            time.sleep(LAG_SECONDS)
            victim.proc.kill()  # SIGKILL, by the Popen's own pid
            killed_at = time.monotonic()
        finally:
            for r in replicas:
                r.proc.send_signal(signal.SIGCONT)
        in_lag = sum(1 for s in senders for i, t in s.acked.items() if lag_from <= t < killed_at)
        survivor = next(s for s in cluster.live() if s is not victim)

        def promoted():
            for first, last, master, *_ in survivor.command("CLUSTER", "SLOTS"):
                if int(master[1]) == victim.port:
                    return False
            return True

        wait_until(promoted, 30, interval=0.05, what="a replica promoted")
        promoted_after = time.monotonic() - killed_at
        time.sleep(max(0.0, killed_at + RUN_SECONDS - KILL_AFTER - time.monotonic()))
        stop.set()
        for s in senders:
            s.join(60)
            self.assertFalse(s.is_alive(), "a sender did not finish")
            self.assertIsNone(s.error, s.error)
        # Positive acks of sends made after the kill: the nodes follow the
        # promoted replica.
        after = sorted(t for s in senders for i, t in s.acked.items() if s.sent[i] > killed_at)
        self.assertTrue(after, "no send was acked after the kill")
        recovered_after = after[0] - killed_at
        got, last = self.replay(n2, busy, "audit")
        stored = set(got.values())
        acked = {"%s-%d" % (s.name, i) for s in senders for i in s.acked}
        refused = sum(len(s.refused) for s in senders)
        lost = sorted(acked - stored)
        receiver.close()
        print("\n  [failover%s] master :%d killed after %d acked sends; replica promoted "
              "after %.2f s; sends acked again after %.2f s (node timeout %d ms); "
              "%d acked, %d of them while the replicas lagged, %d refused "
              "(unavailable/error), %d stored, ACKED LOST: %d%s"
              % (" durable-replicas=1" if durable else "", victim.port,
                 sum(1 for s in senders for i, t in s.acked.items() if t < killed_at),
                 promoted_after, recovered_after, NODE_TIMEOUT_MS, len(acked), in_lag, refused,
                 len(stored), len(lost), (" e.g. %s" % lost[:5]) if lost else ""))
        # The bound of issue 15 is node-timeout + 2 s from the kill; Redis'
        # own election (a random 0.5-1 s delay after the failure is agreed)
        # sometimes takes nearly that: then the nodes must follow within
        # 1 s of the promotion.
        self.assertLessEqual(recovered_after,
                             max(NODE_TIMEOUT_MS / 1000 + 2, promoted_after + 1),
                             "the nodes did not follow the promoted replica in time")
        return lost

    def test_1_durable_replicas_lose_no_acked_message(self):
        lost = self.run_failover(durable=True)
        self.assertEqual(lost, [], "acked messages lost with durable-replicas=1")

    def test_2_without_durable_replicas_acked_messages_are_lost(self):
        # Async replication: what was acked while the replicas lagged is
        # gone with the master. This shows the window test 1 closes.
        lost = self.run_failover(durable=False)
        self.assertGreater(len(lost), 0, "the replicas did not lag: test 1 proves nothing")

    def test_3_a_binding_lost_in_the_failover_is_written_back(self):
        cluster = self.start_cluster()
        # A prefix whose single keys and node entries live off one master:
        # that one fails over with an emptied replica (its bindings lost).
        singles = [":users", ":nodes", ":layout", ":{n:n1}:h", ":{n:n2}:h"]
        victim = prefix = None
        for k in range(200):
            p = "wf%d" % k
            keep = {cluster.owner(key_slot(p + s)).port for s in singles}
            free = [s for s in cluster.master_servers() if s.port not in keep]
            if free:
                victim, prefix = free[0], p
                break
        self.assertIsNotNone(victim)
        uids = ["u%d" % k for k in range(300)]
        on_victim = [u for u in uids if cluster.owner(key_slot(ukey(prefix, u, "b"))) is victim][:3]
        elsewhere = [u for u in uids if u not in on_victim][:3]
        n1, n2 = self.start_nodes(cluster, {"redis-prefix": prefix})
        clients = {u: n2.ws(u) for u in on_victim + elsewhere}
        users = lambda: n1.http("GET", "/api/stats")[2].get("users")
        wait_until(lambda: users() == len(clients), 10, what="users counted")
        # The replica forgets the shard; then its master dies.
        replica = next(s for s in cluster.servers if s.port in replica_ports(victim))
        replica.command("CONFIG", "SET", "replica-read-only", "no")
        self.assertEqual(replica.command("FLUSHALL"), "OK")
        self.assertEqual(replica.command("DBSIZE"), 0)
        victim.proc.kill()  # SIGKILL, by the Popen's own pid
        killed_at = time.monotonic()

        def bound_again():
            try:
                return all(cluster.command("HLEN", ukey(prefix, u, "b")) == 1 for u in on_victim)
            except (OSError, RuntimeError):
                return False

        wait_until(bound_again, NODE_TIMEOUT_MS / 1000 + 10, interval=0.1,
                   what="the lost bindings written back")
        written_back_after = time.monotonic() - killed_at
        # Routable again: a send from the other node reaches them live.
        sender = n1.ws("sender")
        for k, u in enumerate(on_victim):
            sender.send_json({"type": "send", "id": k, "to": u, "data": "back"})
            ack = sender.wait_for(lambda f: f.get("id") == k, 10)
            self.assertEqual(ack["type"], "ack", ack)
            got = clients[u].wait_for(lambda f: f.get("type") == "message", 10)
            self.assertEqual(got["data"], "back")
        online = n1.presence(on_victim + elsewhere)
        print("\n  [failover] bindings written back %.2f s after the kill; users %s "
              "(expected %d); presence %s" % (written_back_after, users(), len(clients) + 1,
                                              online))
        # Every client plus the sender; the written-back bindings are not
        # counted twice.
        wait_until(lambda: users() == len(clients) + 1, 5, what="users right")

    def test_4_a_write_short_of_replicas_is_not_acked_as_stored(self):
        cluster = self.start_cluster()
        busy = "busy"
        master = cluster.owner(key_slot(ukey(PREFIX, busy, "b")))
        replica = next(s for s in cluster.servers if s.port in replica_ports(master))
        n1, _ = self.start_nodes(cluster, {"durable-replicas": "1",
                                           "durable-replicas-timeout": "200ms"})
        sender = n1.ws("sender")

        def send(k):
            sender.send_json({"type": "send", "id": k, "to": busy, "data": "m%d" % k})
            return sender.wait_for(lambda f: f.get("id") == k, 10)

        self.assertNotIn("unavailable", send(0))
        # The replica stops acknowledging (SIGSTOP, by the Popen's own pid).
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            ack = send(1)
            took = time.monotonic() - started
        finally:
            replica.proc.send_signal(signal.SIGCONT)
        self.assertEqual((ack["type"], ack.get("unavailable")), ("ack", [busy]), ack)
        self.assertGreaterEqual(took, 0.2)
        # Back: acked as stored again.
        deadline = time.monotonic() + 10
        k = 2
        while "unavailable" in send(k) and time.monotonic() < deadline:
            k += 1
        self.assertNotIn("unavailable", send(k + 1))
        print("\n  [durable-replicas] a send short of its replica answered unavailable "
              "in %.2f s" % took)


    def test_5_a_live_node_on_the_failing_shard_is_not_claimed(self):
        cluster = self.start_cluster()
        # n2's entry on one master, everything n1 and the counters need on
        # the others: that master is killed.
        elsewhere = [":users", ":nodes", ":layout", ":{n:n1}:h"]
        victim = prefix = None
        for k in range(500):
            p = "wl%d" % k
            owner = cluster.owner(key_slot(p + ":{n:n2}:h"))
            if all(cluster.owner(key_slot(p + s)) is not owner for s in elsewhere):
                victim, prefix = owner, p
                break
        self.assertIsNotNone(victim)
        # A node-timeout shorter than the promotion (~2-2.7 s): n2's lease
        # runs out while its shard fails over. n2 is paused (SIGSTOP) from
        # the kill until 0.6 s after the promotion, so its first heartbeat
        # after the failover surely comes after n1 (heartbeat 200 ms) has
        # looked: without the grace n1 claims it then.
        options = {"state": "redis", "redis": cluster.url, "redis-prefix": prefix,
                   "node-timeout": "1500ms"}
        n1 = self.start_node(dict(options, **{"node-id": "n1", "heartbeat": "200ms"}))
        n2 = self.start_node(dict(options, **{"node-id": "n2", "heartbeat": "500ms"}))
        client = n2.ws("on-n2")
        discovered = lambda: any(e["event"] == "DISCOVER" and e["node"] == "n2"
                                 for e in n1.http("GET", "/api/events")[2])
        wait_until(discovered, 15, what="n1 knows n2")
        survivor = next(s for s in cluster.live() if s is not victim)

        def promoted():
            for first, last, master, *_ in survivor.command("CLUSTER", "SLOTS"):
                if int(master[1]) == victim.port:
                    return False
            return "cluster_state:ok" in survivor.command("CLUSTER", "INFO")

        n2.proc.send_signal(signal.SIGSTOP)
        try:
            victim.proc.kill()  # SIGKILL, by the Popen's own pid
            wait_until(promoted, 20, interval=0.1, what="the replica promoted")
            time.sleep(0.6)
        finally:
            n2.proc.send_signal(signal.SIGCONT)
        # Past the grace: a node-timeout and a heartbeat after the promotion.
        time.sleep(1.5 + 0.2 + 1.0)
        claims = [e for e in n1.http("GET", "/api/events")[2]
                  if e["event"] == "SHUTDOWN" and e.get("node") == "n2"]
        self.assertEqual(claims, [], "n2 was claimed while alive")
        self.assertTrue(n1.presence(["on-n2"]).get("on-n2"))
        client.send_json({"type": "send", "id": 1, "to": "on-n2", "data": "alive"})
        self.assertEqual(client.wait_for(lambda f: f.get("id") == 1, 10)["type"], "ack")


if __name__ == "__main__":
    unittest.main()

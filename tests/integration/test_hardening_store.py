"""Hardening of the state stores (issue 13, findings 1, 3, 5 and 9, store
side): cursor keys that cannot collide, expiry of every per-uid key, paged
replay from the cursor, group_full and too_large on durable group publish,
hostile inbox entries dropped, the key layout guard. Each test runs against
the memory store and the Redis store where the feature exists in both.

Run: WSC_BINARY=build/wscluster python3 -m unittest test_hardening_store -v
"""

import socket
import threading
import re
import time
import unittest

from harness import HarnessMixin, free_port, key_slot, run_binary, stderr_lines, wait_until

PREFIX = "wscluster"


def ukey(uid, what):
    """A per-uid key of layout 4 (adapters/redis_keys.hpp)."""
    return "%s:{u:%s}:%s" % (PREFIX, uid, what)


def entry_ids(redis, key):
    """The ids of an inbox's entries, oldest first."""
    return [e[0] for e in redis.command("XRANGE", key, "-", "+")]


def packed(ts, kind, msg_id, sender, group, data):
    """An inbox entry's field `m` as the STORE packs it (redis_replies.hpp,
    pack_entry); any text for ts and kind, bytes or str for the rest."""
    parts = [x.encode() if isinstance(x, str) else x for x in (msg_id, sender, group, data)]
    head = "%s,%s,%d,%d,%d," % (ts, kind, len(parts[0]), len(parts[1]), len(parts[2]))
    return head.encode() + b"".join(parts)


class OldRedis:
    """A stand-in for a Redis older than the scripts need: answers INFO with
    `version`, SCRIPT LOAD with a SHA, CLUSTER SLOTS with `slots` (ranges
    (first, last, stand-in)), anything else with +OK (enough for a node to
    reach its version check)."""

    def __init__(self, version):
        self.version = version
        self.slots = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.url = "redis://127.0.0.1:%d" % self.port
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line.startswith(b"*"):
                    return
                argv = []
                for _ in range(int(line[1:])):
                    n = int(f.readline()[1:])
                    argv.append(f.read(n + 2)[:-2])
                name = argv[0].upper()
                if name == b"INFO":
                    info = b"# Server\r\nredis_version:%s\r\n" % self.version.encode()
                    conn.sendall(b"$%d\r\n%s\r\n" % (len(info), info))
                elif name == b"CLUSTER":
                    reply = b"*%d\r\n" % len(self.slots)
                    for first, last, owner in self.slots:
                        reply += b"*3\r\n:%d\r\n:%d\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n" % (
                            first, last, owner.port)
                    conn.sendall(reply)
                elif name == b"SCRIPT":
                    conn.sendall(b"$40\r\n" + b"0" * 40 + b"\r\n")
                elif name == b"GET":
                    conn.sendall(b"$-1\r\n")
                else:
                    conn.sendall(b"+OK\r\n")
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def messages(client, count, timeout=10):
    """The next `count` durable frames (message or group) of a client."""
    return [client.wait_for(lambda f: f.get("type") in ("message", "group"), timeout)
            for _ in range(count)]


class StoreBase(HarnessMixin):
    state = None  # "memory" or "redis"

    def setUp(self):
        self.redis = self.start_redis() if self.state == "redis" else None

    def node(self, **extra):
        opts = {"rate-limit": "100000"}
        if self.redis:
            opts.update({"state": "redis", "redis": self.redis.url})
        opts.update(extra)
        return self.start_node(opts)

    def send_all(self, sender, to, values, data_prefix=None):
        """Sends each value to `to` without waiting, then waits for every ack."""
        for i, v in enumerate(values):
            sender.send_json({"type": "send", "id": i, "to": to, "data": v})
        for i in range(len(values)):
            reply = self.reply_to(sender, i, 30)
            self.assertEqual(reply["type"], "ack", reply)

    def read(self, client, seq):
        client.send_json({"type": "read", "id": "read", "seq": seq})
        self.assertEqual(self.reply_to(client, "read")["type"], "ack")

    def join(self, client, group, frame_id="join"):
        client.send_json({"type": "join", "id": frame_id, "group": group})
        return self.reply_to(client, frame_id)

    # -- devices per uid (a sibling of findings 1 and 9) ----------------------

    def test_read_cursors_per_uid_are_bounded(self):
        node = self.node()
        node.api_send(["bob"], "m1")
        for i in range(64):
            dev = node.ws("bob", query={"device": "d%d" % i})
            self.read(dev, 1)
            dev.close()
        extra = node.ws("bob", query={"device": "d64"})
        extra.send_json({"type": "read", "id": "read", "seq": 1})
        refused = self.reply_to(extra, "read")
        self.assertEqual((refused["type"], refused["code"]), ("error", "forbidden"))
        # Devices that have a cursor keep moving it.
        node.api_send(["bob"], "m2")
        known = node.ws("bob", query={"device": "d3"})
        self.read(known, 2)

    # -- finding 9 ------------------------------------------------------------

    def test_cursor_keys_do_not_collide(self):
        node = self.node()
        alice = node.ws("alice")
        # The victim, uid "acme:bob" on device "phone", has 3 unread messages.
        self.send_all(alice, "acme:bob", ["v1", "v2", "v3"])
        # The attacker, uid "acme" on device "bob:phone", reads far in its own
        # inbox: with `cur:<uid>:<device>` keys this was the victim's cursor.
        self.send_all(alice, "acme", ["a%d" % i for i in range(6)])
        attacker = node.ws("acme", query={"device": "bob:phone"})
        self.assertEqual(len(messages(attacker, 6)), 6)
        self.read(attacker, 6)
        attacker.close()
        victim = node.ws("acme:bob", query={"device": "phone"})
        self.assertEqual((victim.welcome["resumed"], victim.welcome["from"],
                          victim.welcome["to"]), (True, 1, 3))
        self.assertEqual([m["data"] for m in messages(victim, 3)], ["v1", "v2", "v3"])
        if self.redis:
            self.assertEqual(self.redis.command("TYPE", ukey("acme", "cur")), "hash")
            self.assertEqual(self.redis.command("HGET", ukey("acme", "cur"), "bob:phone"), "6")
            self.assertIsNone(self.redis.command("HGET", ukey("acme:bob", "cur"), "phone"))

    # -- expiry ---------------------------------------------------------------

    def test_silent_uid_expires_and_restarts_clean(self):
        # inbox-max-age 2 s: after that long without a message or a read, a
        # uid's inbox and cursors are gone; its next message starts a new
        # life, past the seqs of the earlier one, not hidden by the old
        # cursor.
        node = self.node(**{"inbox-max-age": "2s"})
        alice = node.ws("alice")
        self.send_all(alice, "tina", ["t1", "t2", "t3"])
        t0 = time.monotonic()
        if self.redis:
            ttl = self.redis.command("PTTL", ukey("tina", "in"))
            self.assertTrue(0 < ttl <= 2000, ttl)
            # No counter: the cursors' hash exists from the first read on.
            self.assertEqual(self.redis.command("EXISTS", ukey("tina", "cur")), 0)
            # The seq hint, a key of its own: last seq 1 (within 15), life
            # born at 1; it outlives the inbox by 30 days.
            self.assertEqual(self.redis.command("GET", ukey("tina", "last")), "1,1")
            ttl = self.redis.command("PTTL", ukey("tina", "last")) - 30 * 86400 * 1000
            self.assertTrue(0 < ttl <= 2000, ttl)
        # The device reads later than the last message: its cursor outlives
        # the inbox (on Redis the inbox is the counter: the next message
        # starts a new one and clears the cursors).
        time.sleep(1.0)
        tina = node.ws("tina", query={"device": "d"})
        self.assertEqual([m["seq"] for m in messages(tina, 3)], [1, 2, 3])
        self.read(tina, 3)
        tina.close()
        if self.redis:
            # The cursors expire like the inbox, from the read that made them.
            ttl = self.redis.command("PTTL", ukey("tina", "cur"))
            self.assertTrue(1000 < ttl <= 2000, ttl)
            wait_until(lambda: self.redis.command("EXISTS", ukey("tina", "in")) == 0, 5,
                       what="inbox expired")
            self.assertEqual(self.redis.command("HGET", ukey("tina", "cur"), "d"), "3")
        else:
            time.sleep(max(0.0, t0 + 2.3 - time.monotonic()))
        self.send_all(alice, "tina", ["fresh"])
        # Past the earlier life's last seq: 4 in memory (exact), the hint
        # + 16 on Redis (the hint is written every 16th seq).
        first = 17 if self.redis else 4
        tina = node.ws("tina", query={"device": "d"})
        self.assertEqual((tina.welcome["resumed"], tina.welcome.get("reason"), tina.welcome["to"]),
                         (False, "too_old", first))
        (m,) = messages(tina, 1)
        self.assertEqual((m["seq"], m["data"]), (first, "fresh"))
        if self.redis:
            self.assertEqual(self.redis.command("GET", ukey("tina", "last")), "17,17")

    def test_a_since_of_an_earlier_life_is_too_old(self):
        # F1: an inbox's seqs started over at 1 in each life, so a `since`
        # of an earlier life, once the new life held more messages, resumed
        # in the middle of it: since=3 got `resumed:true` and seqs 4..7,
        # skipping 1..3 silently. Seqs now continue across lives: a position
        # of an earlier life lies before the new life's oldest seq.
        node = self.node(**{"inbox-max-age": "1s"})
        alice = node.ws("alice")
        self.send_all(alice, "fred", ["a%d" % i for i in range(5)])
        fred = node.ws("fred", query={"device": "d"})
        old = [m["seq"] for m in messages(fred, 5)]
        self.assertEqual(old, [1, 2, 3, 4, 5])
        self.read(fred, 5)
        fred.close()
        if self.redis:
            wait_until(lambda: self.redis.command("EXISTS", ukey("fred", "in")) == 0, 5,
                       what="inbox expired")
            # The hint outlives the inbox by 30 days.
            self.assertEqual(self.redis.command("GET", ukey("fred", "last")), "1,1")
            self.assertGreater(self.redis.command("PTTL", ukey("fred", "last")), 29 * 86400 * 1000)
        else:
            time.sleep(1.3)  # the read renewed the inbox
        new_data = ["b%d" % i for i in range(7)]
        self.send_all(alice, "fred", new_data)
        # Before the fix: resumed:true from 4, the new life's 1..3 skipped.
        late = node.ws("fred", query={"device": "x", "since": "3"})
        self.assertEqual((late.welcome["resumed"], late.welcome.get("reason")),
                         (False, "too_old"), late.welcome)
        got = messages(late, 7)
        self.assertEqual([m["data"] for m in got], new_data)
        new = [m["seq"] for m in got]
        self.assertEqual(new, list(range(new[0], new[0] + 7)))
        self.assertGreater(new[0], old[-1])
        # The earlier life's last seq misses nothing where the store knows
        # it exactly (memory); Redis knows it within 15 and says too_old.
        # Either way, all of the new life comes.
        done = node.ws("fred", query={"device": "x", "since": "5"})
        self.assertEqual(done.welcome["resumed"], not self.redis, done.welcome)
        self.assertEqual([m["data"] for m in messages(done, 7)], new_data)
        # The device's cursor of the earlier life (5) hides none of the new
        # life's messages.
        fred = node.ws("fred", query={"device": "d"})
        self.assertEqual((fred.welcome["resumed"], fred.welcome.get("reason")),
                         (False, "too_old"), fred.welcome)
        self.assertEqual([m["data"] for m in messages(fred, 7)], new_data)
        self.assertNoFrame(fred, lambda f: f.get("type") == "message", 0.3, "extra")

    def test_a_device_connected_while_its_inbox_expires_stays_connected(self):
        # The new life's seqs continue past the earlier life's: on Redis up
        # to 31 past the device's last frame (the store knows the last seq
        # within 15). That gap is no loss when the new life is whole from
        # its first seq: the device gets the new message and stays
        # connected (its catch-up once said too_old and closed it with
        # 1013).
        node = self.node(**{"inbox-max-age": "1s"})
        alice = node.ws("alice")
        bob = node.ws("bob", query={"device": "d"})
        self.send_all(alice, "bob", ["b1", "b2", "b3"])
        self.assertEqual([m["seq"] for m in messages(bob, 3)], [1, 2, 3])
        if self.redis:
            wait_until(lambda: self.redis.command("EXISTS", ukey("bob", "in")) == 0, 5,
                       what="inbox expired")
        else:
            time.sleep(1.3)
        self.send_all(alice, "bob", ["n1"])
        (m,) = messages(bob, 1)
        first = 17 if self.redis else 4
        self.assertEqual((m["seq"], m["data"]), (first, "n1"))
        self.send_all(alice, "bob", ["n2"])
        (m,) = messages(bob, 1)
        self.assertEqual((m["seq"], m["data"]), (first + 1, "n2"))

    def test_a_device_that_resumed_after_the_last_message_stays_connected(self):
        # Review helper-55, H1: the device connects (and resumes) well after
        # the earlier life's last message, so it was not quiet for
        # inbox-max-age when the new life came; 4d8e212 keyed the exemption
        # on that quiet time and closed it with 1013 on Redis. What counts
        # is the inbox: nothing of the new life is missing.
        node = self.node(**{"inbox-max-age": "2s"})
        alice = node.ws("alice")
        self.send_all(alice, "ben", ["b1", "b2", "b3"])
        t0 = time.monotonic()
        time.sleep(1.0)
        ben = node.ws("ben", query={"device": "d"})
        self.assertEqual([m["seq"] for m in messages(ben, 3)], [1, 2, 3])
        if self.redis:
            wait_until(lambda: self.redis.command("EXISTS", ukey("ben", "in")) == 0, 5,
                       what="inbox expired")
        else:
            time.sleep(max(0.0, t0 + 2.3 - time.monotonic()))
        self.send_all(alice, "ben", ["n1", "n2"])
        first = 17 if self.redis else 4
        self.assertEqual([(m["seq"], m["data"]) for m in messages(ben, 2)],
                         [(first, "n1"), (first + 1, "n2")])
        self.read(ben, first + 1)  # still connected

    def test_a_life_past_16_messages_continues_after_its_last_hint(self):
        # The hint is written at every seq % 16 == 1: after 20 messages it
        # is 17, so the next life starts at 33 on Redis (exactly at 21 in
        # memory); a device connected throughout takes the jump, a since of
        # the earlier life reads as too_old where the store cannot tell.
        node = self.node(**{"inbox-max-age": "1s"})
        alice = node.ws("alice")
        cleo = node.ws("cleo", query={"device": "d"})
        self.send_all(alice, "cleo", ["c%d" % i for i in range(20)])
        self.assertEqual([m["seq"] for m in messages(cleo, 20)], list(range(1, 21)))
        if self.redis:
            self.assertEqual(self.redis.command("GET", ukey("cleo", "last")), "17,1")
            wait_until(lambda: self.redis.command("EXISTS", ukey("cleo", "in")) == 0, 5,
                       what="inbox expired")
        else:
            time.sleep(1.3)
        first = 33 if self.redis else 21
        self.send_all(alice, "cleo", ["n1"])
        (m,) = messages(cleo, 1)
        self.assertEqual((m["seq"], m["data"]), (first, "n1"))
        late = node.ws("cleo", query={"device": "x", "since": "20"})
        self.assertEqual(late.welcome["resumed"], not self.redis, late.welcome)
        self.assertEqual([m["seq"] for m in messages(late, 1)], [first])
        # The next hints of the new life keep its first seq.
        self.send_all(alice, "cleo", ["m%d" % i for i in range(16)])
        self.assertEqual([m["seq"] for m in messages(cleo, 16)],
                         list(range(first + 1, first + 17)))
        if self.redis:
            self.assertEqual(self.redis.command("GET", ukey("cleo", "last")), "49,33")

    # -- finding 3 ------------------------------------------------------------

    def test_paged_replay_of_a_large_inbox(self):
        count = 1500
        node = self.node(**{"inbox-max-messages": "5000"})
        alice = node.ws("alice")
        self.send_all(alice, "pat", list(range(count)))
        start = time.monotonic()
        pat = node.ws("pat", query={"device": "d"}, timeout=15)
        self.assertEqual((pat.welcome["resumed"], pat.welcome["from"], pat.welcome["to"]),
                         (True, 1, count))
        got = messages(pat, count, timeout=15)
        elapsed = time.monotonic() - start
        self.assertEqual([m["seq"] for m in got], list(range(1, count + 1)))
        self.assertEqual([m["data"] for m in got], list(range(count)))
        self.assertNoFrame(pat, lambda f: f.get("type") == "message", 0.5, "duplicate")
        print("\n  [%s] resume of %d messages: %.3f s" % (self.state, count, elapsed))
        # Live after the replay: the next seq, once.
        self.send_all(alice, "pat", ["live"])
        (m,) = messages(pat, 1)
        self.assertEqual((m["seq"], m["data"]), (count + 1, "live"))

    # -- finding 1 (store side) -----------------------------------------------

    def test_group_full(self):
        node = self.node(**{"max-group-members": "3"})
        members = [node.ws(u) for u in ("g1", "g2", "g3")]
        for c in members:
            self.assertEqual(self.join(c, "club")["type"], "ack")
        late = node.ws("g4")
        reply = self.join(late, "club")
        self.assertEqual((reply["type"], reply.get("code")), ("error", "group_full"), reply)
        # A member joining again is no new member; other groups still work.
        self.assertEqual(self.join(members[0], "club", "again")["type"], "ack")
        self.assertEqual(self.join(late, "other")["type"], "ack")
        members[0].send_json({"type": "publish", "id": "p", "group": "club", "data": "hi"})
        self.assertEqual(self.reply_to(members[0], "p")["type"], "ack")
        self.assertNoFrame(late, lambda f: f.get("type") == "group", 0.3, "group frame")

    def test_durable_publish_too_large(self):
        # 3 members x (1000 + 64) bytes > 2000: refused before anything is
        # stored; a small payload passes.
        node = self.node(**{"max-fanout-bytes": "2000"})
        clients = [node.ws(u, query={"device": "d"}) for u in ("m1", "m2", "m3")]
        for c in clients:
            self.assertEqual(self.join(c, "crowd")["type"], "ack")
        big = "x" * 1000
        clients[0].send_json({"type": "publish", "id": "big", "group": "crowd", "data": big})
        reply = self.reply_to(clients[0], "big")
        self.assertEqual((reply["type"], reply.get("code")), ("error", "too_large"), reply)
        clients[0].send_json({"type": "publish", "id": "small", "group": "crowd", "data": "s"})
        self.assertEqual(self.reply_to(clients[0], "small")["type"], "ack")
        for c in clients:
            f = c.wait_for(lambda f: f.get("type") == "group", 5)
            self.assertEqual((f["data"], f["seq"]), ("s", 1))
        if self.redis:
            self.assertEqual(self.redis.command("XLEN", ukey("m2", "in")), 1)

    def test_volatile_publish_too_large(self):
        # Not stored, but 3 members online x (1000 + 64) bytes > 2000 still
        # produce too many bytes: refused by frame and by the API.
        node = self.node(**{"max-fanout-bytes": "2000", "volatile-types": "publish"})
        clients = [node.ws(u) for u in ("v1", "v2", "v3")]
        for c in clients:
            self.assertEqual(self.join(c, "loud")["type"], "ack")
        big = "x" * 1000
        clients[0].send_json({"type": "publish", "id": "big", "group": "loud", "data": big})
        reply = self.reply_to(clients[0], "big")
        self.assertEqual((reply["type"], reply.get("code")), ("error", "too_large"), reply)
        status, _, _ = node.http("POST", "/api/publish", {"group": "loud", "data": big})
        self.assertEqual(status, 413)
        for c in clients:
            self.assertNoFrame(c, lambda f: f.get("type") == "group", 0.3, "group frame")
        clients[0].send_json({"type": "publish", "id": "small", "group": "loud", "data": "s"})
        self.assertEqual(self.reply_to(clients[0], "small")["type"], "ack")
        for c in clients:
            f = c.wait_for(lambda f: f.get("type") == "group", 5)
            self.assertEqual(f["data"], "s")
            self.assertNotIn("seq", f)


    def test_a_replay_of_large_messages_comes_in_pages_bounded_in_bytes(self):
        # A replay page stays in memory until the client read the one before:
        # 64 messages of up to an API body each made a stalled resume hold
        # ~60 MB. Pages are cut at 256 KiB (at least one message), so these
        # 300 KB messages come one page each, all of them, in order.
        node = self.node()
        big = ["%d" % i + "x" * 300000 for i in range(6)]
        for value in big:
            status, _, body = node.api_send(["pia"], value)
            self.assertEqual(status, 200, body)
        server = None
        if self.redis:
            # The server that holds pia's inbox (a master of a Redis Cluster).
            inbox = ukey("pia", "in")
            server = (self.redis.owner(key_slot(inbox)) if hasattr(self.redis, "owner")
                      else self.redis)
            server.command("CONFIG", "RESETSTAT")
        pia = node.ws("pia", query={"device": "d"})
        self.assertEqual((pia.welcome["from"], pia.welcome["to"]), (1, 6))
        got = messages(pia, 6)
        self.assertEqual([(m["seq"], m["data"]) for m in got],
                         [(i + 1, v) for i, v in enumerate(big)])
        if server:
            stats = server.command("INFO", "commandstats")
            calls = int(re.search(r"cmdstat_xrange:calls=(\d+)", stats).group(1))
            self.assertGreaterEqual(calls, 6, stats)
            # Redis cuts the page too: each message leaves it about once
            # (1.8 MB), not a first page of all six and then each again.
            sent = int(re.search(r"total_net_output_bytes:(\d+)",
                                 server.command("INFO", "stats")).group(1))
            self.assertLess(sent, 2500000)


    def test_a_replay_reads_little_past_a_page_from_redis(self):
        # Found by a probe review: the inbox script read limit + 1 entries
        # with one XRANGE and cut the page to 256 KiB afterwards, so a
        # reconnect with device= copied nine 235 KB messages into Lua to send
        # one (~5 ms of Redis per handshake). It now reads in steps and stops
        # one entry past the page: here at most two entries per page.
        if not self.redis or hasattr(self.redis, "owner"):
            self.skipTest("watches the commands of one redis-server")
        node = self.node()
        big = ["%d" % i + "x" * 300000 for i in range(6)]
        for value in big:
            status, _, body = node.api_send(["pia"], value)
            self.assertEqual(status, 200, body)
        with RedisMonitor(self.redis) as monitor:
            pia = node.ws("pia", query={"device": "d"})
            got = messages(pia, 6)
            self.assertEqual([m["data"] for m in got], big)
        asked = [int(n) for n in re.findall(
            r'"XRANGE" "[^"]*:in" "\(?0-\d+" "\+" "COUNT" "(\d+)"', monitor.text())]
        self.assertTrue(asked, monitor.text()[-2000:])
        self.assertLessEqual(sum(asked), 2 * len(big), asked)

    def test_small_entries_before_large_ones_are_not_read_all_at_once(self):
        # Found in the 16th session: the steps were sized by the entries
        # seen, so a page that started with two small entries read the next
        # 62 at once (4 MB of 64 KB messages copied into Lua to send three).
        # A step now reads no more than twice a page of the largest entry a
        # client's message makes (max-message-bytes 65536: 8 entries).
        if not self.redis or hasattr(self.redis, "owner"):
            self.skipTest("watches the commands of one redis-server")
        node = self.node()
        small = ["s%d" % i for i in range(10)]
        large = ["%d" % i + "x" * 60000 for i in range(30)]
        for value in small + large:
            status, _, body = node.api_send(["ola"], value)
            self.assertEqual(status, 200, body)
        with RedisMonitor(self.redis) as monitor:
            ola = node.ws("ola", query={"device": "d"})
            got = messages(ola, len(small) + len(large))
            self.assertEqual([m["data"] for m in got], small + large)
        asked = [int(n) for n in re.findall(
            r'"XRANGE" "[^"]*:in" "\(?0-\d+" "\+" "COUNT" "(\d+)"', monitor.text())]
        self.assertTrue(asked, monitor.text()[-2000:])
        self.assertLessEqual(max(asked), 8, asked)

    def test_a_non_member_publish_reads_no_member_from_redis(self):
        # Found by a probe review: a volatile publish asked for membership
        # and the members together, so each refused publish to a
        # 10,000-member group copied them all (0.64 of Redis' core at 95
        # frames a second). Membership is now checked first, in a script.
        if not self.redis or hasattr(self.redis, "owner"):
            self.skipTest("watches the commands of one redis-server")
        node = self.node(**{"volatile-types": "publish"})
        members = ["m%d" % i for i in range(2000)]
        self.redis.command("SADD", "%s:{g:big}:m" % PREFIX, *members)
        eve = node.ws("eve")
        with RedisMonitor(self.redis) as monitor:
            for i in range(3):
                eve.send_json({"type": "publish", "id": i, "group": "big", "data": "x"})
                self.assertEqual(self.reply_to(eve, i).get("code"), "not_member")
        self.assertNotIn('"SMEMBERS"', monitor.text())
        self.assertNotIn('"HVALS"', monitor.text())
        # A member's publish still reaches the members online.
        m1 = node.ws("m1")
        m1.send_json({"type": "publish", "id": "p", "group": "big", "data": "hi"})
        self.assertEqual(self.reply_to(m1, "p")["type"], "ack")
        got = m1.wait_for(lambda f: f.get("type") == "group", timeout=5)
        self.assertEqual(got["data"], "hi")


class RedisMonitor:
    """Records what a redis-server runs (MONITOR), scripts' commands included."""

    def __init__(self, redis):
        self.sock = socket.create_connection((redis.host, redis.port), timeout=5)
        if redis.password:
            self.sock.sendall(b"AUTH %s\r\n" % redis.password.encode())
        self.sock.sendall(b"MONITOR\r\n")
        self.chunks = []
        self.reader = threading.Thread(target=self._read, daemon=True)

    def _read(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self.chunks.append(chunk)
        except OSError:
            return

    def text(self):
        return b"".join(self.chunks).decode("utf-8", "replace")

    def __enter__(self):
        self.reader.start()
        time.sleep(0.1)  # MONITOR is on before what is watched starts
        return self

    def __exit__(self, *exc):
        time.sleep(0.1)
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.reader.join(5)


class MemoryStoreTest(StoreBase, unittest.TestCase):
    state = "memory"

    def test_a_full_memory_store_refuses_sends_and_keeps_inboxes(self):
        # Each uid within its own budgets, many new uids grew the node's RAM
        # by 240 MB/s (probe helper-51): memory-store-max-bytes bounds all
        # inboxes together, as Redis' maxmemory does for the Redis store.
        node = self.node(**{"memory-store-max-bytes": "200000"})
        alice = node.ws("alice")
        self.send_all(alice, "olga", ["o1", "o2"])
        payload = "x" * 1000
        refused = None
        for i in range(400):
            alice.send_json({"type": "send", "id": i, "to": ["r%d-%d" % (i, k) for k in range(10)],
                             "data": payload})
            reply = self.reply_to(alice, i, 10)
            if reply["type"] == "error":
                refused = (i, reply)
                break
        self.assertIsNotNone(refused, "400 x 10 KB to new uids were all stored")
        i, reply = refused
        self.assertEqual(reply.get("code"), "unavailable", reply)
        self.assertIn("memory-store-max-bytes", reply.get("message", ""))
        self.assertGreater(i, 5)
        # What was stored stays; small sends to existing inboxes may still
        # fit, and the node serves everyone else.
        olga = node.ws("olga", query={"device": "d"})
        self.assertEqual([(m["seq"], m["data"]) for m in messages(olga, 2)],
                         [(1, "o1"), (2, "o2")])
        first = node.ws("r0-0", query={"device": "d"})
        self.assertEqual([m["data"] for m in messages(first, 1)], [payload])
        self.assertTrue(node.running())


class RedisStoreTest(StoreBase, unittest.TestCase):
    state = "redis"

    def test_per_uid_keys_have_ttls(self):
        node = self.node(**{"inbox-max-age": "1h"})
        alice = node.ws("alice")
        self.send_all(alice, "rita", ["r1"])
        rita = node.ws("rita", query={"device": "laptop"})
        messages(rita, 1)
        self.read(rita, 1)
        for key in ("in", "cur"):
            ttl = self.redis.command("PTTL", ukey("rita", key))
            self.assertTrue(3500 * 1000 < ttl <= 3600 * 1000, (key, ttl))
        # The seq hint: 30 days longer.
        ttl = self.redis.command("PTTL", ukey("rita", "last")) - 30 * 86400 * 1000
        self.assertTrue(3500 * 1000 < ttl <= 3600 * 1000, ttl)
        self.assertEqual(self.redis.command("GET", ukey("rita", "last")), "1,1")
        self.assertEqual(self.redis.command("GET", PREFIX + ":layout"), "4")
        # No counter at all: the inbox's entry ids `0-<seq>` count.
        self.assertEqual(self.redis.command("EXISTS", ukey("rita", "seq")), 0)
        self.assertEqual(self.redis.command("HGETALL", ukey("rita", "cur")),
                         ["laptop", "1"])
        # Stream ids are 0-<seq>; one field, the packed message, ts first.
        entries = self.redis.command("XRANGE", ukey("rita", "in"), "-", "+")
        self.assertEqual(entries[0][0], "0-1")
        self.assertEqual(entries[0][1][0], "m")
        ts, kind, rest = entries[0][1][1].split(",", 2)
        self.assertTrue(abs(int(ts) - time.time() * 1000) < 60000, ts)
        self.assertEqual(kind, "0")
        self.assertTrue(rest.endswith('alice"r1"'), rest)

    def test_a_foreign_seq_hint_fails_no_append(self):
        # Review helper-55, M3: the hint was a field of the cursors' hash, and
        # a hash that was not ours failed every 16th append after its XADD
        # went in. The hint key is SET, which replaces any type.
        node = self.node()
        alice = node.ws("alice")
        self.send_all(alice, "hal", ["h%d" % i for i in range(16)])
        self.redis.command("DEL", ukey("hal", "last"))
        self.redis.command("HSET", ukey("hal", "last"), "x", "1")
        self.send_all(alice, "hal", ["h16"])
        # The life's first seq could not be read back: unknown (0).
        self.assertEqual(self.redis.command("GET", ukey("hal", "last")), "17,0")
        self.assertEqual(entry_ids(self.redis, ukey("hal", "in"))[-1], "0-17")

    def test_read_moves_the_cursor_forward_up_to_the_last_seq(self):
        # A cursor moves forward only, never past the uid's last seq (its
        # newest entry), and a read that cannot move it costs one HGET: it
        # neither looks up the inbox's newest entry nor renews the cursors'
        # TTL (each append renews that with the inbox's).
        node = self.node()
        cur = ukey("rob", "cur")
        alice = node.ws("alice")
        self.send_all(alice, "rob", ["r1", "r2"])
        rob = node.ws("rob", query={"device": "d"})
        messages(rob, 2)
        self.read(rob, 99)
        self.assertEqual(self.redis.command("HGET", cur, "d"), "2")
        self.redis.command("PEXPIRE", cur, 500000)
        # The server that holds rob's keys (a master, with a Redis Cluster).
        server = self.redis.owner(key_slot(cur)) if hasattr(self.redis, "owner") else self.redis
        server.command("CONFIG", "RESETSTAT")
        for seq in (1, 2, 0):
            self.read(rob, seq)
        stats = server.command("INFO", "commandstats")
        self.assertNotIn("cmdstat_xrevrange", stats)
        self.assertNotIn("cmdstat_pexpire", stats)
        self.assertEqual(self.redis.command("HGET", cur, "d"), "2")
        self.assertTrue(self.redis.command("PTTL", cur) <= 500000)
        self.send_all(alice, "rob", ["r3"])
        messages(rob, 1)
        self.read(rob, 5)
        self.assertEqual(self.redis.command("HGET", cur, "d"), "3")

    def test_replay_reads_from_the_cursor_only(self):
        # An entry before the cursor that no replay may touch: a resume that
        # read the whole stream (XRANGE - +) would trip over it (the old
        # script failed with a Lua error, the resume was "unavailable").
        node = self.node(**{"inbox-max-messages": "5000"})
        self.redis.command("XADD", ukey("quinn", "in"), "0-1", "m", "junk")
        alice = node.ws("alice")
        self.send_all(alice, "quinn", ["q%d" % i for i in range(300)])
        self.redis.command("HSET", ukey("quinn", "cur"), "d", "296")
        self.redis.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        self.redis.command("SLOWLOG", "RESET")
        quinn = node.ws("quinn", query={"device": "d"})
        self.assertEqual((quinn.welcome["resumed"], quinn.welcome["from"], quinn.welcome["to"]),
                         (True, 297, 301))
        self.assertEqual([m["data"] for m in messages(quinn, 5)],
                         ["q295", "q296", "q297", "q298", "q299"])
        slow = self.redis.command("SLOWLOG", "GET", "1000")
        evals = [e[2] for e in slow if e[3][0].upper() == "EVALSHA"]
        self.assertTrue(evals, slow)
        print("\n  resume of 5 after 300: slowest EVALSHA %d us" % max(evals))

    def test_append_is_split_into_bounded_calls(self):
        node = self.node()
        uids = ["u%04d" % i for i in range(1200)]
        self.redis.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        self.redis.command("CONFIG", "SET", "slowlog-max-len", "10000")
        self.redis.command("SLOWLOG", "RESET")
        status, _, body = node.api_send(uids, "x" * 100)
        self.assertEqual(status, 200, body)
        for uid in ("u0000", "u0599", "u1199"):
            self.assertEqual(entry_ids(self.redis, ukey(uid, "in")), ["0-1"])
        slow = self.redis.command("SLOWLOG", "GET", "10000")
        appends = []
        for entry in slow:
            args = entry[3]
            if args[0].upper() != "EVALSHA":
                continue
            total = len(args)
            if args[-1].startswith("... ("):  # "... (N more arguments)"
                total = len(args) - 1 + int(args[-1].split("(")[1].split()[0])
            if total > 100:
                appends.append((total, entry[2]))
        self.assertEqual(len(appends), 3, appends)
        # EVALSHA sha 1 key, ARGV before the uids (prefix, 4 shared, entry,
        # count: 7), 500 uids.
        self.assertTrue(all(total <= 4 + 7 + 500 for total, _ in appends), appends)
        print("\n  append to 1200 uids: %d calls, slowest %d us"
              % (len(appends), max(us for _, us in appends)))

    def test_hostile_inbox_entries_are_dropped(self):
        node = self.node()
        alice = node.ws("alice")
        self.send_all(alice, "hugo", ["ok1"])
        key = ukey("hugo", "in")
        # Written straight into Redis: a kind out of range, a payload of
        # invalid UTF-8, a payload that is no JSON, huge numbers, lengths
        # past the end, an entry of layout 3 (seven fields, no `m`).
        self.redis.command("XADD", key, "0-2", "m", packed("1", "99", "m2", "x", "", '"boom"'))
        self.redis.command("XADD", key, "0-3", "m", packed("1", "0", "m3", "x", "", b'"\xff\xfe"'))
        self.redis.command("XADD", key, "0-4", "m", packed("1", "0", "m4", "x", "",
                                                           '1,"type":"bye"'))
        self.redis.command("XADD", key, "0-5", "m", packed("99999999999999999999999999",
                                                           "00000000000000000000000000",
                                                           "m5", "x", "", "1"))
        self.redis.command("XADD", key, "0-6", "m", "1,0,99999,0,0,m6")
        self.redis.command("XADD", key, "0-7", "s", "7", "i", "m7", "k", "0", "f", "x",
                           "g", "", "d", "1", "t", "1")
        self.send_all(alice, "hugo", ["ok2"])
        hugo = node.ws("hugo", query={"device": "d"})
        self.assertEqual((hugo.welcome["from"], hugo.welcome["to"]), (1, 8))
        got = messages(hugo, 2)
        self.assertEqual([(m["seq"], m["data"]) for m in got], [(1, "ok1"), (8, "ok2")])
        self.assertNoFrame(hugo, lambda f: f.get("type") == "message", 0.5, "hostile entry")
        # The bad entries are deleted; the node stays healthy and serves.
        wait_until(lambda: self.redis.command("XLEN", key) == 2, 5, what="bad entries deleted")
        self.assertEqual(node.http("GET", "/healthz")[0], 200)
        other = node.ws("hugo", query={"device": "e"})
        self.assertEqual([m["seq"] for m in messages(other, 2)], [1, 8])
        self.send_all(alice, "hugo", ["ok3"])
        self.assertEqual(messages(hugo, 1)[0]["seq"], 9)

    def test_hostile_keys_are_repaired(self):
        # Keys of the wrong type or with garbage: the scripts start the uid
        # over instead of failing half way.
        node = self.node()
        self.redis.command("SET", ukey("ivy", "in"), "not a stream")
        self.redis.command("SET", ukey("ivy", "cur"), "not a hash")
        self.redis.command("SADD", ukey("ivy", "b"), "not a hash")
        # Seq hints that are not ours: ignored (the life starts at 1), then
        # replaced.
        self.redis.command("HSET", ukey("ivy", "last"), "a", "1")
        self.redis.command("SET", ukey("ida", "last"), "40")
        self.redis.command("SET", ukey("ian", "last"), "9007199254740991,1")
        # Inboxes whose ids are not ours (layout 3's `<seq>-0`; a seq past
        # 2^53, or used up at 2^64 - 1) and the cursors beside them: the uid
        # starts over.
        for uid, last in (("ida", "5-0"), ("ian", "0-9007199254740991"),
                          ("iva", "0-18446744073709551615")):
            self.redis.command("XADD", ukey(uid, "in"), last, "m", "old")
            self.redis.command("HSET", ukey(uid, "cur"), "d", "7")
        alice = node.ws("alice")
        for uid in ("ivy", "ida", "ian", "iva"):
            self.send_all(alice, uid, [uid + "1"])
            client = node.ws(uid, query={"device": "d"})
            self.assertEqual([(m["seq"], m["data"]) for m in messages(client, 1)],
                             [(1, uid + "1")])
            self.read(client, 1)
            self.assertEqual(self.redis.command("HGETALL", ukey(uid, "cur")), ["d", "1"])
            self.assertEqual(self.redis.command("GET", ukey(uid, "last")), "1,1")
            self.assertEqual(entry_ids(self.redis, ukey(uid, "in")), ["0-1"])
        self.assertEqual(node.http("GET", "/healthz")[0], 200)

    def test_a_full_redis_refuses_sends_and_keeps_inboxes(self):
        # Redis at maxmemory (noeviction) refuses writes. The append script
        # once took that refusal of INCR/XADD for a key of a foreign type and
        # started the uid over, deleting its inbox: every stored message of
        # the receiver was lost. Now the send is refused and nothing else
        # changes.
        node = self.node()
        alice = node.ws("alice")
        self.send_all(alice, "olga", ["o1", "o2"])
        self.redis.command("CONFIG", "SET", "maxmemory", "1")
        try:
            alice.send_json({"type": "send", "id": "full", "to": "olga", "data": "o3"})
            reply = self.reply_to(alice, "full", 10)
        finally:
            self.redis.command("CONFIG", "SET", "maxmemory", "0")
        self.assertEqual((reply["type"], reply.get("code")), ("error", "unavailable"), reply)
        self.assertEqual(self.redis.command("XLEN", ukey("olga", "in")), 2)
        self.assertEqual(entry_ids(self.redis, ukey("olga", "in")), ["0-1", "0-2"])
        self.send_all(alice, "olga", ["o4"])
        olga = node.ws("olga", query={"device": "d"})
        self.assertEqual([(m["seq"], m["data"]) for m in messages(olga, 3)],
                         [(1, "o1"), (2, "o2"), (3, "o4")])

    def test_layout_guard(self):
        # A Redis with cursors of the old layout (strings cur:<uid>:<device>)
        # and no layout key: the node refuses to start, in one line.
        self.redis.command("SET", PREFIX + ":cur:acme:bob:phone", "3")
        args = ["--state=redis", "--redis=" + self.redis.url, "--listen=127.0.0.1:%d" % free_port()]
        proc = run_binary(args, timeout=15)
        lines = stderr_lines(proc.stderr)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertTrue(any("older key layout" in l for l in lines), lines)
        # Another layout version: refused too.
        self.redis.command("DEL", PREFIX + ":cur:acme:bob:phone")
        self.redis.command("SET", PREFIX + ":layout", "7")
        proc = run_binary(args, timeout=15)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertTrue(any("layout '7'" in l for l in stderr_lines(proc.stderr)), proc.stderr)
        # Layout 2 (the same names without hash tags) and layout 3 (a seq
        # key per uid, entries of seven fields): refused, pointing to the
        # README's migration note.
        for old in ("2", "3"):
            self.redis.command("SET", PREFIX + ":layout", old)
            proc = run_binary(args, timeout=15)
            self.assertEqual(proc.returncode, 1, proc.stderr)
            self.assertTrue(any("layout %s," % old in l and "Redis key layout" in l
                                for l in stderr_lines(proc.stderr)), proc.stderr)
        # Fresh: starts and writes the version.
        self.redis.command("DEL", PREFIX + ":layout")
        self.node()
        self.assertEqual(self.redis.command("GET", PREFIX + ":layout"), "4")

    def test_an_old_redis_is_refused(self):
        # The scripts add inbox entries `0-*` (Redis >= 7.0): an older Redis
        # is refused at start, in one line that names both versions.
        old = OldRedis("6.2.14")
        self.addCleanup(old.close)
        args = ["--state=redis", "--redis=" + old.url, "--listen=127.0.0.1:%d" % free_port()]
        proc = run_binary(args, timeout=15)
        lines = stderr_lines(proc.stderr)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertTrue(any("runs Redis 6.2.14" in l and "needs Redis >= 7.0" in l
                            for l in lines), lines)

    def test_every_master_of_a_cluster_is_asked_for_its_version(self):
        # A Redis Cluster of stand-ins whose master of P:layout's slot runs
        # 7.0 and whose other master runs 6.2: the scripts run on both, so
        # the node is refused (it asked only the first once).
        new, old = OldRedis("7.0.15"), OldRedis("6.2.14")
        for x in (new, old):
            self.addCleanup(x.close)
        s = key_slot(PREFIX + ":layout")
        self.assertTrue(0 < s < 16383, s)
        new.slots = old.slots = [(0, s - 1, old), (s, s, new), (s + 1, 16383, old)]
        args = ["--state=redis", "--redis=cluster://127.0.0.1:%d" % new.port,
                "--listen=127.0.0.1:%d" % free_port()]
        proc = run_binary(args, timeout=15)
        lines = stderr_lines(proc.stderr)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertTrue(any("runs Redis 6.2.14" in l and "master 127.0.0.1:%d" % old.port in l
                            for l in lines), lines)


class NodeIdsWrittenByOthersTest(HarnessMixin, unittest.TestCase):
    """Ids without a node entry written into P:nodes (probe 16): every node
    read the whole set and each id's entry at every heartbeat and never
    removed one. A read now takes at most max_node_ids (1,025) ids, and ids
    without an entry leave the set, so it shrinks back to the real nodes."""

    FAKE = 50000

    def node(self, i):
        return self.start_node({"node-id": "n%d" % i, "state": "redis", "redis": self.redis.url,
                                "heartbeat": "100ms", "node-timeout": "1s",
                                "rate-limit": "100000"}, name="n%d" % i)

    def listed(self, node):
        status, _, body = node.http("GET", "/api/nodes", timeout=5)
        return sorted(e["id"] for e in body) if status == 200 else None

    def test_ids_without_an_entry_are_removed_and_peers_still_found(self):
        self.redis = self.start_redis(cluster=False)
        n1, n2, n3 = self.node(1), self.node(2), self.node(3)
        wait_until(lambda: all(self.listed(n) == ["n1", "n2", "n3"] for n in (n1, n2, n3)),
                   15, what="the three nodes list each other")
        n3.kill()  # crashed: its entry stays until a survivor claims it
        self.redis.command(
            "EVAL", "for i = 1, tonumber(ARGV[1]) do "
            "redis.call('SADD', KEYS[1], string.format('fake%07d', i)) end",
            "1", PREFIX + ":nodes", str(self.FAKE))
        self.assertGreater(int(self.redis.command("SCARD", PREFIX + ":nodes")), self.FAKE)
        alice = n1.ws("alice")
        bob = n2.ws("bob")
        slowest, sends = 0.0, 0
        deadline = time.monotonic() + 30
        # The set shrinks back to the live nodes: the fake ids go, and n3's
        # id with its cleanup. Meanwhile the nodes stay healthy and fast.
        while time.monotonic() < deadline:
            for n in (n1, n2):
                status, _, _ = n.http("GET", "/healthz", timeout=5)
                self.assertEqual(status, 200)
            started = time.monotonic()
            alice.send_json({"type": "send", "id": sends, "to": "bob", "data": sends})
            self.assertEqual(self.reply_to(alice, sends, 5)["type"], "ack")
            slowest = max(slowest, time.monotonic() - started)
            sends += 1
            if sorted(self.redis.command("SMEMBERS", PREFIX + ":nodes")) == ["n1", "n2"]:
                break
            time.sleep(0.1)
        self.assertEqual(self.redis.command("SCARD", PREFIX + ":nodes"), 2)
        self.assertEqual(sorted(self.redis.command("SMEMBERS", PREFIX + ":nodes")), ["n1", "n2"])
        self.assertLess(slowest, 1.0)
        self.assertEqual(self.redis.command("EXISTS", "%s:{n:n3}:h" % PREFIX), 0)
        for n in (n1, n2):
            wait_until(lambda: self.listed(n) == ["n1", "n2"], 10, what="n3 claimed")
        # The survivors still deliver to each other.
        self.assertEqual(sorted(m["data"] for m in messages(bob, sends)), list(range(sends)))
        self.assertDelivers(bob, alice, "alice", "back", frame_id="back")

    def test_an_entry_with_a_heartbeat_from_the_future_is_declared_down(self):
        # helper-44's probe: an entry whose hb lay years ahead was never
        # silent, so it stayed in /api/nodes and /api/stats for good.
        self.redis = self.start_redis(cluster=False)
        n1 = self.node(1)
        wait_until(lambda: self.listed(n1) == ["n1"], 10, what="n1 lists itself")
        self.redis.command("HSET", "%s:{n:fake}:h" % PREFIX, "listen", "127.0.0.1:1",
                           "cluster", "127.0.0.1:2", "incarnation", "5",
                           "connections", "7", "hb", "4102444800000")
        self.redis.command("SADD", PREFIX + ":nodes", "fake")
        wait_until(lambda: self.listed(n1) == ["n1"], 10, 0.1, "the fake node declared down")
        wait_until(lambda: self.redis.command("EXISTS", "%s:{n:fake}:h" % PREFIX) == 0, 10, 0.1,
                   "the fake node's entry removed")


if __name__ == "__main__":
    unittest.main()

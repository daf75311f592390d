"""The PHP example backend (examples/php/) against a real node, with Debian's
php-cli: the HTTP API client (Wscluster.php, push.php), the webhook receiver
(webhook.php under ``php -S``: signatures, repeats, events, the fake mobile
push on ``unread``).

The webhook part needs the node options ``webhook-url``, ``webhook-secret``,
``webhook-events`` and ``unread-after`` (CONTRACT.md section 5); while the
binary does not list them in ``--help`` that test is skipped, naming what is
missing.  The receiver's own checks (signature, repeats, forged POSTs) need no
node and always run.

Run: /usr/bin/python3 -m unittest -v tests/integration/test_php_example.py
"""

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (HOST, REPO_ROOT, HarnessMixin, free_port, http_request,  # noqa: E402
                     run_binary, wait_until)

PHP_DIR = os.path.join(REPO_ROOT, "examples", "php")
WEBHOOK_OPTIONS = ("webhook-url", "webhook-secret", "webhook-events", "unread-after")
PHP_TIMEOUT = 20.0


def php_binary():
    path = shutil.which("php")
    if path is None:
        raise RuntimeError("php not found: the PHP example needs Debian's php-cli "
                           "(scripts/setup.sh installs it)")
    return path


def missing_options(names):
    """Those of ``names`` that the binary's --help does not list."""
    result = run_binary(["--help"], timeout=10)
    text = result.stdout + result.stderr
    return [name for name in names if "--%s=" % name not in text]


def sign(body, secret):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def read_jsonl(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


class PhpServer:
    """``php -S 127.0.0.1:<free port> examples/php/webhook.php``, stopped by its pid."""

    def __init__(self, workdir, secret):
        self.port = free_port()
        self.secret = secret
        self.data_dir = os.path.join(workdir, "data")
        self.log_path = os.path.join(workdir, "php-server.log")
        self.proc = None

    def start(self, timeout=10.0):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSC_")}
        env.update(WSC_WEBHOOK_SECRET=self.secret, WSC_DATA_DIR=self.data_dir)
        args = [php_binary(), "-S", "%s:%d" % (HOST, self.port),
                os.path.join(PHP_DIR, "webhook.php")]
        log = open(self.log_path, "ab")
        try:
            # cwd (the document root) is the data dir's parent: nothing of
            # examples/php is ever served as a static file.
            self.proc = subprocess.Popen(args, cwd=os.path.dirname(self.data_dir),
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        with harness._live_lock:
            harness._live_processes.add(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("php -S exited with %s:\n%s" % (self.proc.returncode,
                                                                     self.log_tail()))
            try:
                status, _, _ = self.http("GET", "/healthz", timeout=1.0)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("php -S not answering after %.0fs:\n%s" % (timeout, self.log_tail()))

    def http(self, method, path, body=None, headers=None, timeout=5.0):
        return http_request(HOST, self.port, method, path, body, headers, timeout)

    def post_webhook(self, body, signature):
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Wscluster-Signature"] = signature
        return self.http("POST", "/", body, headers)

    @property
    def url(self):
        return "http://%s:%d/" % (HOST, self.port)

    def events(self):
        return read_jsonl(os.path.join(self.data_dir, "events.jsonl"))

    def pushes(self):
        return read_jsonl(os.path.join(self.data_dir, "push.jsonl"))

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return "\n".join(f.read().splitlines()[-lines:])
        except OSError as e:
            return "<no log: %s>" % e

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with harness._live_lock:
            harness._live_processes.discard(self.proc)


class PhpExampleTest(HarnessMixin, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        php_binary()  # a missing php is an error, not a skip (CI installs php-cli)

    # -- helpers ----------------------------------------------------------------

    def run_php(self, args, env_extra=None):
        """Runs ``php <args>`` in examples/php; returns CompletedProcess."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSC")}
        env.update(env_extra or {})
        return subprocess.run([php_binary()] + args, cwd=PHP_DIR, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace",
                              timeout=PHP_TIMEOUT, env=env)

    def php_client(self, node, api_key, code):
        """Runs PHP ``code`` with ``$w`` a Wscluster client of ``node``; the
        code echoes JSON, which is returned decoded."""
        script = ("require 'Wscluster.php'; $w = new Wscluster(getenv('WSC_URL'), "
                  "getenv('WSC_API_KEY') ?: null); " + code)
        result = self.run_php(["-r", script], {"WSC_URL": "http://%s" % node.address,
                                               "WSC_API_KEY": api_key or ""})
        self.assertEqual(result.returncode, 0, "php -r failed:\n%s\n%s" % (result.stdout,
                                                                           result.stderr))
        return json.loads(result.stdout)

    def start_php_server(self, secret):
        server = PhpServer(self.make_tempdir(), secret)
        self.addCleanup(self._stop_php_server, server)
        return server.start()

    def _stop_php_server(self, server):
        if not self._test_ok():
            sys.stderr.write("\n----- php -S log tail [%s] -----\n%s\n-----\n"
                             % (self.id(), server.log_tail()))
        server.stop()

    # -- the HTTP API client ----------------------------------------------------

    def test_push_and_presence_with_api_key(self):
        key = "php-example-key"
        node = self.start_node({"api-key": key})
        bob = node.ws(uid="bob")
        data = {"text": "from PHP", "n": 7, "ünï": "cödé"}

        result = self.run_php(["push.php", "--url=http://%s" % node.address, "--api-key=" + key,
                               "--wait-ms=1000", "--presence", "bob,nobody", json.dumps(data)])
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        self.assertEqual(len(lines), 2, result.stdout)
        answer, presence = json.loads(lines[0]), json.loads(lines[1])
        self.assertIs(answer.get("ok"), True, answer)
        self.assertEqual(answer["receipts"]["bob"]["connections"], 1, answer)
        self.assertIs(answer["receipts"]["bob"]["stored"], True, answer)
        self.assertEqual(answer["receipts"]["nobody"]["connections"], 0, answer)
        self.assertEqual(presence, {"online": {"bob": True, "nobody": False}})

        frame = bob.wait_for(lambda f: f.get("type") == "message", 5, "the PHP push at bob")
        self.assertIn("from", frame)
        self.assertIsNone(frame["from"], frame)
        self.assertEqual(frame["data"], data, frame)

        # Plain text that is not JSON is sent as {"text": ...}.
        result = self.run_php(["push.php", "--url=http://%s" % node.address,
                               "--api-key=" + key, "bob", "hello there"])
        self.assertEqual(result.returncode, 0, result.stderr)
        frame = bob.wait_for(lambda f: f.get("type") == "message", 5, "the text push at bob")
        self.assertEqual(frame["data"], {"text": "hello there"}, frame)

        # A wrong key: exit 1, the status named; nothing delivered.
        result = self.run_php(["push.php", "--url=http://%s" % node.address,
                               "--api-key=wrong", "bob", "{}"])
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("HTTP 401", result.stderr)
        self.assertNoFrame(bob, lambda f: f.get("type") == "message", 0.3, "push with a wrong key")

        # Bad usage: exit 2.
        result = self.run_php(["push.php", "bob"])
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)

    def test_client_class(self):
        key = "k-" + os.urandom(6).hex()
        node = self.start_node({"api-key": key})
        alice, bob = node.ws(uid="alice"), node.ws(uid="bob")
        bob.send_json({"type": "join", "id": 1, "group": "g1"})
        self.assertEqual(self.reply_to(bob, 1).get("type"), "ack")

        out = self.php_client(node, key, """
            echo json_encode([
              'presence' => $w->presence(['alice', 'bob', 'carol']),
              'online' => $w->isOnline('alice'),
              'members' => $w->members('g1'),
              'publish' => $w->publish('g1', ['p' => 1]),
              'broadcast' => $w->broadcast(['b' => 2]),
              'send' => $w->send('alice', ['s' => 3], idem: 'order-42'),
            ]);""")
        self.assertEqual(out["presence"], {"alice": True, "bob": True, "carol": False})
        self.assertIs(out["online"], True)
        self.assertEqual(out["members"], ["bob"])
        for name in ("publish", "broadcast", "send"):
            self.assertIs(out[name].get("ok"), True, out)
        frame = bob.wait_for(lambda f: f.get("type") == "group", 5, "the publish at bob")
        self.assertEqual((frame["group"], frame["data"]), ("g1", {"p": 1}), frame)
        for c in (alice, bob):
            frame = c.wait_for(lambda f: f.get("type") == "broadcast", 5, "the broadcast")
            self.assertEqual(frame["data"], {"b": 2}, frame)
        frame = alice.wait_for(lambda f: f.get("type") == "message", 5, "the send at alice")
        self.assertEqual(frame["data"], {"s": 3}, frame)

        # disconnect: bob's connection is closed with 4001.
        out = self.php_client(node, key, "echo json_encode($w->disconnect('bob'));")
        self.assertIs(out.get("ok"), True, out)
        self.assertEqual(bob.wait_closed(5), 4001)

        # Errors are exceptions carrying the HTTP status and the node's error text.
        out = self.php_client(node, "wrong", """
            try { $w->presence(['alice']); echo json_encode(null); }
            catch (WsclusterException $e) {
              echo json_encode(['status' => $e->getStatus(), 'error' => $e->getError()]);
            }""")
        self.assertEqual(out["status"], 401, out)
        self.assertIsInstance(out["error"], str, out)
        out = self.php_client(node, key, """
            try { $w->send('bad uid', 1); echo json_encode(null); }
            catch (WsclusterException $e) { echo json_encode(['status' => $e->getStatus()]); }""")
        self.assertEqual(out, {"status": 400})

    def test_idempotent_push(self):
        if "idempotency-window" in missing_options(["idempotency-window"]):
            self.skipTest("the node does not have --idempotency-window yet (idempotent sends, "
                          "CONTRACT.md section 5)")
        node = self.start_node()
        bob = node.ws(uid="bob")
        # Assumption: an API send with "idem" is de-duplicated like a
        # client's (the API counting as one sender); the repeat answers ok.
        answers = []
        for _ in range(2):
            result = self.run_php(["push.php", "--url=http://%s" % node.address,
                                   "--idem=order-42-shipped", "bob", '{"order":42}'])
            self.assertEqual(result.returncode, 0, result.stderr)
            answers.append(json.loads(result.stdout))
            self.assertIs(answers[-1].get("ok"), True, answers)
        if all("msg_id" in a for a in answers):  # the node says which message it stored
            self.assertEqual(answers[0]["msg_id"], answers[1]["msg_id"], answers)
        frame = bob.wait_for(lambda f: f.get("type") == "message", 5, "the push at bob")
        self.assertEqual(frame["data"], {"order": 42}, frame)
        self.assertNoFrame(bob, lambda f: f.get("type") == "message", 0.5, "a second copy")

    def test_group_membership(self):
        if missing_options(["group-membership"]):
            self.skipTest("the node does not have --group-membership yet (persistent groups, "
                          "POST /api/groups/<g>/members, CONTRACT.md section 5)")
        node = self.start_node()
        erin = node.ws(uid="erin")
        erin.send_json({"type": "join", "id": 1, "group": "team"})
        self.assertEqual(self.reply_to(erin, 1).get("type"), "ack")
        out = self.php_client(node, None, """
            $w->changeMembers('team', add: ['dave', 'frank'], remove: ['erin']);
            $m = $w->members('team'); sort($m);
            echo json_encode($m);""")
        self.assertEqual(out, ["dave", "frank"])

    def test_stats(self):
        node = self.start_node()
        status, _, _ = node.http("GET", "/api/stats")
        if status == 404:
            self.skipTest("the node has no GET /api/stats yet (CONTRACT.md section 5)")
        for uid in ("alice", "alice", "bob"):
            node.ws(uid=uid)
        out = self.php_client(node, None, "echo json_encode($w->stats());")
        self.assertEqual(out, {"nodes": 1, "connections": 3, "users": 2})

    # -- the webhook receiver on its own ------------------------------------------------

    def test_receiver_verifies_signatures_and_drops_repeats(self):
        secret = "s-" + os.urandom(8).hex()
        php = self.start_php_server(secret)
        now = int(time.time() * 1000)
        body = json.dumps({"time_ms": now, "events": [
            {"id": "ev-1", "name": "online", "uid": "ann"},
            {"id": "ev-2", "name": "unread", "uid": "ann", "msg_id": "m-9", "seq": 4,
             "from": "ben"},
            {"id": "ev-3", "name": "some_future_event", "uid": "ann"},
        ]}).encode()

        # Forged: another secret, no header, a bare hex, a changed body.
        forged_body = body.replace(b'"ann"', b'"eve"')
        for what, data, signature in (
                ("wrong secret", body, sign(body, "not-the-secret")),
                ("no signature", body, None),
                ("no sha256= prefix", body, sign(body, secret)[len("sha256="):]),
                ("body changed after signing", forged_body, sign(body, secret))):
            with self.subTest(forged=what):
                status, _, answer = php.post_webhook(data, signature)
                self.assertEqual(status, 401, answer)
        self.assertEqual(php.events(), [])
        self.assertEqual(php.pushes(), [])

        status, _, answer = php.post_webhook(body, sign(body, secret))
        self.assertEqual(status, 200, answer)
        self.assertEqual((answer["handled"], answer["repeats"]), (3, 0), answer)
        # A retry of the same batch: every id is a repeat, nothing recorded twice.
        status, _, answer = php.post_webhook(body, sign(body, secret))
        self.assertEqual(status, 200, answer)
        self.assertEqual((answer["handled"], answer["repeats"]), (0, 3), answer)

        events = php.events()
        self.assertEqual([e["event"]["id"] for e in events], ["ev-1", "ev-2"], events)
        self.assertTrue(all(e["signature_verified"] is True for e in events), events)
        pushes = php.pushes()
        self.assertEqual(len(pushes), 1, pushes)
        self.assertEqual((pushes[0]["uid"], pushes[0]["msg_id"], pushes[0]["seq"],
                          pushes[0]["from"]), ("ann", "m-9", 4, "ben"), pushes)

        # Not a webhook: 404 / 405.
        self.assertEqual(php.http("GET", "/")[0], 405)
        self.assertEqual(php.http("GET", "/Wscluster.php")[0], 404)

    # -- webhooks from a real node -----------------------------------------------------

    def test_webhooks_from_node(self):
        missing = missing_options(WEBHOOK_OPTIONS)
        if missing:
            self.skipTest("the node does not have the option(s) %s yet (not in "
                          "`build/wscluster --help`): webhook part skipped"
                          % ", ".join("--" + m for m in missing))
        secret = "wh-" + os.urandom(8).hex()
        php = self.start_php_server(secret)
        # Assumption: `unread` must be listed in webhook-events to be posted
        # (the default list is online,offline).
        node = self.start_node({"webhook-url": php.url, "webhook-secret": secret,
                                "webhook-events": "online,offline,unread",
                                "unread-after": "1s"})

        def named(name, uid):
            return [e["event"] for e in php.events()
                    if e["event"].get("name") == name and e["event"].get("uid") == uid]

        # online / offline of one uid.
        alice = node.ws(uid="alice")
        wait_until(lambda: named("online", "alice"), 10, what="the online webhook for alice")
        alice.close()
        offline = wait_until(lambda: named("offline", "alice"), 10,
                             what="the offline webhook for alice")
        self.assertEqual(offline[0].get("reason"), "closed", offline)
        self.assertEqual(len(named("online", "alice")), 1, php.events())

        # unread: bob's only device (phone) reads a first message, then goes
        # offline; a second message is read by no device within 1s.
        carol = node.ws(uid="carol")
        bob = node.ws(uid="bob", query={"device": "phone"})
        carol.send_json({"type": "send", "id": "m1", "to": "bob", "data": {"text": "first"}})
        self.assertEqual(self.reply_to(carol, "m1").get("type"), "ack")
        first = bob.wait_for(lambda f: f.get("type") == "message", 5, "the first message")
        bob.send_json({"type": "read", "id": "r1", "seq": first["seq"]})
        self.assertEqual(self.reply_to(bob, "r1").get("type"), "ack")
        bob.close()
        wait_until(lambda: named("offline", "bob"), 10, what="the offline webhook for bob")

        carol.send_json({"type": "send", "id": "m2", "to": "bob", "data": {"text": "second"}})
        ack = self.reply_to(carol, "m2")
        self.assertEqual(ack.get("type"), "ack", ack)
        pushes = wait_until(lambda: [p for p in php.pushes() if p["uid"] == "bob"], 10,
                            what="the fake mobile push for bob's unread message")
        time.sleep(2.0)  # unread-after (1s) twice over: no second push, none for the read one
        pushes = [p for p in php.pushes() if p["uid"] == "bob"]
        self.assertEqual(len(pushes), 1, pushes)
        push = pushes[0]
        self.assertEqual(push["from"], "carol", push)
        self.assertEqual(push["seq"], first["seq"] + 1, push)
        self.assertIsInstance(push["msg_id"], str, push)
        self.assertTrue(push["msg_id"], push)
        if "msg_id" in ack:
            self.assertEqual(push["msg_id"], ack["msg_id"], (push, ack))
        self.assertEqual(len(named("unread", "bob")), 1, php.events())

        # Every recorded event passed the signature check and has its own id.
        events = php.events()
        self.assertTrue(all(e["signature_verified"] is True for e in events), events)
        ids = [e["event"]["id"] for e in events]
        self.assertEqual(len(ids), len(set(ids)), ids)

        # A forged webhook straight to the PHP server: 401, nothing recorded.
        before_events, before_pushes = len(php.events()), len(php.pushes())
        forged = json.dumps({"time_ms": int(time.time() * 1000), "events": [
            {"id": "forged-1", "name": "unread", "uid": "bob", "msg_id": "x", "seq": 99,
             "from": "mallory"}]}).encode()
        status, _, answer = php.post_webhook(forged, sign(forged, secret + "x"))
        self.assertEqual(status, 401, answer)
        self.assertEqual(len(php.events()), before_events)
        self.assertEqual(len(php.pushes()), before_pushes)


if __name__ == "__main__":
    unittest.main()

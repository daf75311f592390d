"""Embedding acceptance (issue 6): the library as an installed CMake package.

Once per run (setUpModule), ``cmake --install`` puts the build (the
directory of ``$WSC_BINARY``, or ``$WSC_BUILD_DIR``) into a temp prefix, and
a copy of ``tests/embedding`` and ``examples`` outside the source tree is
configured with ``find_package(wscluster)`` and built (-O0, lld when there is
one). Its ``wsc-embedding-node`` runs the three examples together (bot
behaviour on ``bot.*``, AUDIT event actor, ``no-scanner`` handshake
middleware) plus behaviours that fail on purpose (``fault.*`` with a factory,
``doomed.*`` without); the tests below talk to it.

The AUDIT actor's REGISTER/LOGOUT/DISCOVER/SHUTDOWN(graceful) are covered by
test_cluster.py with the in-tree build; here it is the out-of-tree build and
a SHUTDOWN by timeout.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import HarnessMixin, REPO_ROOT, binary_path, wait_until
from wsclient import HandshakeError

BUILD_TIMEOUT = 240
_built = {}


def build_dir():
    path = os.environ.get("WSC_BUILD_DIR") or os.path.dirname(binary_path())
    if not os.path.isabs(path):
        path = os.path.join(REPO_ROOT, path)
    return path


def _run(cmd, cwd, timeout):
    proc = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, errors="replace", timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s\n%s" % (" ".join(cmd), proc.returncode,
                                                      proc.stdout[-6000:], proc.stderr[-6000:]))
    return proc


def setUpModule():
    if not os.path.isfile(os.path.join(build_dir(), "cmake_install.cmake")):
        raise unittest.SkipTest("no CMake build directory at %s" % build_dir())
    if not shutil.which("cmake") or not shutil.which("ninja"):
        raise unittest.SkipTest("cmake and ninja are needed")
    work = tempfile.mkdtemp(prefix="wsc-embedding-")
    _built["work"] = work
    prefix = os.path.join(work, "prefix")
    _run(["cmake", "--install", build_dir(), "--prefix", prefix], work, 120)
    # Copies, so that nothing can reach into the source tree.
    shutil.copytree(os.path.join(REPO_ROOT, "tests", "embedding"),
                    os.path.join(work, "project"))
    shutil.copytree(os.path.join(REPO_ROOT, "examples"), os.path.join(work, "examples"),
                    ignore=shutil.ignore_patterns("*.ini"))
    configure = ["cmake", "-S", os.path.join(work, "project"), "-B", os.path.join(work, "build"),
                 "-G", "Ninja", "-DCMAKE_PREFIX_PATH=" + prefix,
                 "-DWSC_EXAMPLES_DIR=" + os.path.join(work, "examples"),
                 "-DCMAKE_BUILD_TYPE=", "-DCMAKE_CXX_FLAGS=-O0"]
    if shutil.which("ld.lld"):
        configure.append("-DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld")  # the link is the slow part
    _run(configure, work, 120)
    started = time.monotonic()
    _run(["cmake", "--build", os.path.join(work, "build"), "--", "-j2"], work, BUILD_TIMEOUT)
    _built["build_seconds"] = time.monotonic() - started
    _built["prefix"] = prefix
    _built["build"] = os.path.join(work, "build")


def tearDownModule():
    if "work" in _built and os.environ.get("WSC_KEEP_LOGS", "") in ("", "0"):
        shutil.rmtree(_built["work"], ignore_errors=True)


def embedding_binary(name="wsc-embedding-node"):
    if name == "wsc-embedding-node":
        return os.path.join(_built["build"], name)
    return os.path.join(_built["build"], "examples", name)


class EmbeddingBase(HarnessMixin, unittest.TestCase):
    def start_embedding_node(self, options=None, **kwargs):
        return self.start_node(options, binary=embedding_binary(), **kwargs)

    def ask(self, client, frame, timeout=5.0):
        client.send_json(frame)
        return self.reply_to(client, frame["id"], timeout)

    def audit_lines(self, node):
        return [json.loads(line) for line in node.log_text().splitlines()
                if line.startswith("{")]


# One static library per folder (CMakeLists.txt, wsc_folder_library).
FOLDER_LIBRARIES = ("util", "config", "protocol", "middleware", "loop", "flow", "http",
                    "actors", "adapters", "net", "app")


class PackageTest(EmbeddingBase):
    def test_installed_layout(self):
        prefix = _built["prefix"]
        for path in ("include/wscluster/app/node.hpp", "include/wscluster/app/run.hpp",
                     "include/wscluster/middleware/middleware.hpp",
                     "include/wscluster/actors/supervisor.hpp",
                     "include/wscluster/net/server.hpp",
                     "lib/cmake/wscluster/wsclusterConfig.cmake",
                     "lib/cmake/wscluster/wsclusterConfigVersion.cmake",
                     "lib/cmake/wscluster/FindCAF.cmake", "bin/wscluster") + tuple(
                         "lib/libwsc_%s.a" % folder for folder in FOLDER_LIBRARIES):
            self.assertTrue(os.path.exists(os.path.join(prefix, path)), path)
        # One include prefix: nothing else directly under include/.
        self.assertEqual(os.listdir(os.path.join(prefix, "include")), ["wscluster"])
        self.assertFalse(os.path.exists(os.path.join(
            prefix, "include/wscluster/adapters/redis_connection.hpp")))

    def test_examples_built_against_the_package(self):
        for name in ("wsc-bot-node", "wsc-audit-node", "wsc-guard-node", "wsc-embedding-node"):
            path = embedding_binary(name)
            self.assertTrue(os.access(path, os.X_OK), path)
        commands = _run(["ninja", "-C", _built["build"], "-t", "commands"], _built["work"], 30).stdout
        self.assertIn(os.path.join(_built["prefix"], "include", "wscluster"), commands)
        self.assertNotIn("-I" + REPO_ROOT + " ", commands)
        self.assertNotIn(os.path.join(REPO_ROOT, "examples"), commands)


class SingleNodeTest(EmbeddingBase):
    def setUp(self):
        self.node = self.start_embedding_node({"request-timeout": "1s"})

    def test_bot_answers_through_the_node(self):
        c = self.node.ws("ann")
        reply = self.ask(c, {"type": "bot.ask", "id": 1, "text": "hello bot"})
        self.assertFields(reply, {"type": "bot.answer", "id": 1, "text": "Hello, ann!",
                                  "node": c.welcome["node"]})
        reply = self.ask(c, {"type": "bot.ask", "id": "q2", "text": "who are you?"})
        self.assertEqual(reply["text"], "I am the bot of node %s." % c.welcome["node"])
        # Frame checks are the behaviour's: bad_frame, its own unknown_type.
        reply = self.ask(c, {"type": "bot.ask", "id": 3})
        self.assertFields(reply, {"type": "error", "code": "bad_frame"})
        reply = self.ask(c, {"type": "bot.dance", "id": 4})
        self.assertFields(reply, {"type": "error", "code": "unknown_type"})
        self.assertIn("bot.dance", reply["message"])
        # The prefix does not swallow types that merely start alike.
        reply = self.ask(c, {"type": "bots", "id": 5})
        self.assertFields(reply, {"type": "error", "code": "unknown_type"})
        # Built-ins are untouched.
        self.assertFields(self.ask(c, {"type": "ping", "id": 6}), {"type": "pong", "id": 6})

    def test_bot_sends_with_the_builtin_operations(self):
        ann, bob = self.node.ws("ann"), self.node.ws("bob")
        reply = self.ask(ann, {"type": "bot.tell", "id": 1, "to": "bob", "text": "lunch?"})
        self.assertFields(reply, {"type": "ack", "id": 1})
        msg = bob.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertFields(msg, {"from": "bot", "to": "bob",
                                "data": {"text": "lunch?", "for": "ann"}})

    def test_header_guard_rejects_with_its_status(self):
        with self.assertRaises(HandshakeError) as caught:
            self.node.ws("eve", headers={"X-Scanner": "yes"})
        self.assertEqual(caught.exception.status, 403)
        self.assertIn("scanners are not welcome here", caught.exception.text)
        self.node.ws("eve")  # without the header: welcome

    def test_failing_behaviour_answers_internal_and_is_restarted(self):
        c = self.node.ws("ann")
        first = self.ask(c, {"type": "fault.ping", "id": 1})["actor"]
        reply = self.ask(c, {"type": "fault.throw", "id": 2})
        self.assertFields(reply, {"type": "error", "id": 2, "code": "internal",
                                  "message": "behaviour for 'fault.throw' failed"})
        second = wait_until(lambda: self.ask(c, {"type": "fault.ping", "id": 3}).get("actor"),
                            5, what="a restarted fault behaviour")
        self.assertNotEqual(first, second)
        # Dying while holding the request: answered after request-timeout.
        started = time.monotonic()
        reply = self.ask(c, {"type": "fault.die", "id": 4}, timeout=5)
        self.assertFields(reply, {"type": "error", "id": 4, "code": "internal",
                                  "message": "behaviour for 'fault.die' failed"})
        self.assertLess(time.monotonic() - started, 3)
        third = self.ask(c, {"type": "fault.ping", "id": 5})["actor"]
        self.assertNotIn(third, (first, second))
        log = self.node.log_text()
        self.assertIn("behaviour for 'fault.*' failed", log)
        self.assertIn("restarted", log)
        # The node keeps serving, built-ins and all.
        bob = self.node.ws("bob")
        self.assertFields(self.ask(c, {"type": "send", "id": 6, "to": "bob", "data": 1}),
                          {"type": "ack"})
        bob.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertEqual(self.node.http("GET", "/healthz")[0], 200)

    def test_behaviour_without_factory_is_reported_and_removed(self):
        c = self.node.ws("ann")
        self.assertEqual(self.ask(c, {"type": "doomed.ping", "id": 1})["type"], "pong")
        reply = self.ask(c, {"type": "doomed.throw", "id": 2})
        self.assertFields(reply, {"type": "error", "code": "internal",
                                  "message": "behaviour for 'doomed.throw' failed"})
        wait_until(lambda: self.ask(c, {"type": "doomed.ping", "id": 3}).get("code")
                   == "unknown_type", 5, what="the doomed.* registration removed")
        self.assertIn("no longer handled", self.node.log_text())
        self.assertEqual(self.ask(c, {"type": "bot.ask", "id": 4, "text": "hi"})["type"],
                         "bot.answer")


class ClusterTest(EmbeddingBase):
    def setUp(self):
        self.redis = self.start_redis()
        self.nodes = [self.start_embedding_node({
            "node-id": "n%d" % i, "state": "redis", "redis": self.redis.url,
            "heartbeat": "500ms", "node-timeout": "2000ms"}, name="n%d" % i) for i in (1, 2)]
        ids = {"n1", "n2"}

        def meshed():
            for n in self.nodes:
                status, _, events = n.http("GET", "/api/events")
                if status != 200 or {e["node"] for e in events
                                     if e["event"] == "DISCOVER"} != ids - {n.name}:
                    return False
            return True

        wait_until(meshed, 15, what="both nodes connected")

    def test_bot_on_both_nodes_and_audit_sees_a_crash(self):
        n1, n2 = self.nodes
        ann = n1.ws("ann")
        bob = n2.ws("bob")
        reply = self.ask(bob, {"type": "bot.ask", "id": 1, "text": "who are you?"})
        self.assertFields(reply, {"type": "bot.answer", "node": "n2",
                                  "text": "I am the bot of node n2."})
        reply = self.ask(ann, {"type": "bot.ask", "id": 1, "text": "what time is it?"})
        self.assertEqual(reply["node"], "n1")
        self.assertRegex(reply["text"], r"^It is \d\d:\d\d:\d\d UTC\.$")
        # The bot on n2 reaches ann on n1 (REGISTRY -> peer -> connection).
        self.assertFields(self.ask(bob, {"type": "bot.tell", "id": 2, "to": "ann",
                                         "text": "from n2"}), {"type": "ack"})
        msg = ann.wait_for(lambda f: f.get("type") == "message", 5)
        self.assertFields(msg, {"from": "bot", "data": {"text": "from n2", "for": "bob"}})
        ann.close()
        wait_until(lambda: any(e["event"] == "LOGOUT" and e["uid"] == "ann"
                               for e in self.audit_lines(n1)), 5, what="LOGOUT of ann")
        # A crashed peer: SHUTDOWN with reason timeout, once.
        n2.kill()
        wait_until(lambda: any(e["event"] == "SHUTDOWN" for e in self.audit_lines(n1)), 10,
                   what="SHUTDOWN of n2 seen by AUDIT on n1")
        kinds = [(e["event"], e.get("node"), e.get("uid"), e.get("reason"))
                 for e in self.audit_lines(n1)]
        self.assertIn(("DISCOVER", "n2", None, None), kinds)
        self.assertIn(("REGISTER", "n1", "ann", None), kinds)
        self.assertIn(("SHUTDOWN", "n2", None, "timeout"), kinds)
        self.assertEqual(sum(1 for k in kinds if k[0] == "SHUTDOWN"), 1)


if __name__ == "__main__":
    unittest.main()

"""Command line: --help, unknown options, malformed values, a port in use,
--config-file (INI, command line wins), options that need each other.

Run: /usr/bin/python3 -m unittest tests/integration/test_cli.py
"""

import os
import re
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (HarnessMixin, Node, free_port, run_binary,  # noqa: E402
                     stderr_lines)

# Every option of the contract's table (plus config-file, which it names).
CONTRACT_OPTIONS = [
    "listen", "node-id", "state", "redis", "redis-prefix", "cluster-listen",
    "cluster-advertise", "heartbeat", "node-timeout", "cluster-tls-cert",
    "cluster-tls-key", "cluster-tls-ca", "cluster-insecure", "drain-period", "auth",
    "jwt-secret", "api-key", "allowed-origins", "client-broadcast", "max-message-bytes",
    "max-connections", "send-queue-limit", "rate-limit", "idle-timeout", "config-file",
]

# A run that wrongly starts a server must not grab a well-known port, and
# must not hang the test: every failing run gets its own free port and a
# bounded time.
FAIL_TIMEOUT = 10.0


class CliTest(HarnessMixin, unittest.TestCase):

    def run_failing(self, args, timeout=FAIL_TIMEOUT, one_line=True):
        """Run with ``args``; assert a non-zero exit, quickly, with one line
        on stderr (when ``one_line``).  Returns the CompletedProcess."""
        if not any(str(a).startswith("--listen=") for a in args):
            args = ["--listen=127.0.0.1:%d" % free_port()] + list(args)
        try:
            proc = run_binary(args, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("%s did not exit within %.0fs (it should refuse to start)"
                      % (" ".join(args), timeout))
        self.assertNotEqual(proc.returncode, 0, "%s exited 0; stderr: %r"
                            % (" ".join(args), proc.stderr))
        self.assertGreater(proc.returncode, 0, "%s died of a signal (%d); stderr: %r"
                           % (" ".join(args), proc.returncode, proc.stderr))
        lines = stderr_lines(proc.stderr)
        if one_line:
            self.assertEqual(len(lines), 1, "%s: expected exactly one line on stderr, got %r"
                             % (" ".join(args), proc.stderr))
        else:
            self.assertGreaterEqual(len(lines), 1, "%s: nothing on stderr" % " ".join(args))
        return proc

    # -- --help ---------------------------------------------------------------

    def test_help_lists_every_option_and_exits_0(self):
        proc = run_binary(["--help"], timeout=10)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        text = proc.stdout + proc.stderr
        missing = [name for name in CONTRACT_OPTIONS
                   if not re.search(r"(?<![\w-])--%s(?![\w-])" % re.escape(name), text)]
        self.assertEqual(missing, [], "options missing from --help:\n" + text)
        # "every option, its default and meaning": a few unambiguous defaults.
        for default in ("127.0.0.1:8080", "65536", "100000", "1024", "wscluster"):
            self.assertIn(default, text, "default %r missing from --help" % default)

    # -- refusals -------------------------------------------------------------

    def test_unknown_option(self):
        proc = self.run_failing(["--no-such-option=1"])
        self.assertIn("no-such-option", proc.stderr, "the line should name the bad option")

    def test_malformed_values(self):
        cases = [
            ["--heartbeat=abc"],
            ["--drain-period=-1s"],
            ["--max-connections=-1"],
            ["--max-connections=lots"],
            ["--max-message-bytes=12abc"],
            ["--rate-limit=-5"],
            ["--state=disk"],
            ["--auth=magic"],
            ["--client-broadcast=maybe"],
            ["--listen=not-an-address"],
            ["--listen=127.0.0.1:70000"],
            ["--node-timeout=11s"],       # at most 10 s
            ["--redis=http://127.0.0.1:6379", "--state=redis"],
        ]
        for args in cases:
            with self.subTest(args=args):
                self.run_failing(args)

    def test_options_that_need_each_other(self):
        cases = [
            ["--state=redis"],                                   # redis required
            ["--auth=jwt"],                                      # jwt-secret required
            ["--cluster-tls-cert=/nonexistent/cert.pem"],        # all three or none
        ]
        for args in cases:
            with self.subTest(args=args):
                self.run_failing(args)

    def test_unreachable_redis_at_start(self):
        dead = free_port()   # nothing listens there
        self.run_failing(["--state=redis", "--redis=redis://127.0.0.1:%d" % dead], timeout=30)

    def test_port_in_use(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen(1)
            port = holder.getsockname()[1]
            # Assumption: the error is "one clear line" naming the address
            # (other startup log lines may precede it).
            proc = self.run_failing(["--listen=127.0.0.1:%d" % port], one_line=False)
            self.assertIn(str(port), proc.stderr, "the error should name the port")

    # -- config file ----------------------------------------------------------

    def write_ini(self, text):
        path = os.path.join(self.make_tempdir(), "node.ini")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_from(self, port, options, pass_listen=False):
        node = Node(options, port=port, pass_listen=pass_listen, name="ini")
        self._nodes().append(node)
        self.addCleanup(self._cleanup_node, node)
        return node.start()

    def test_config_file_is_read(self):
        # Assumption: the INI file holds plain "name = value" lines (the
        # same names as the command line, no section header).
        port = free_port()
        ini = self.write_ini("listen = 127.0.0.1:%d\napi-key = fromfile\n"
                             "max-message-bytes = 1024\n" % port)
        node = self.start_from(port, {"config-file": ini})
        status, _, _ = node.http("GET", "/api/presence?uids=a")
        self.assertEqual(status, 401, "api-key from the file is not applied")
        status, _, _ = node.http("GET", "/api/presence?uids=a",
                                 headers={"Authorization": "Bearer fromfile"})
        self.assertEqual(status, 200)
        client = node.ws(uid="a")
        client.send_text('{"type":"ping","id":1,"pad":"%s"}' % ("x" * 2000))
        self.assertEqual(client.wait_closed(5), 1009, "max-message-bytes from the file")

    def test_command_line_wins_over_config_file(self):
        file_port, cli_port = free_port(), free_port()
        ini = self.write_ini("listen = 127.0.0.1:%d\napi-key = fromfile\n" % file_port)
        node = self.start_from(cli_port, {"config-file": ini, "api-key": "fromcli"},
                               pass_listen=True)
        status, _, _ = node.http("GET", "/api/presence?uids=a",
                                 headers={"Authorization": "Bearer fromcli"})
        self.assertEqual(status, 200, "--api-key on the command line must win")
        status, _, _ = node.http("GET", "/api/presence?uids=a",
                                 headers={"Authorization": "Bearer fromfile"})
        self.assertEqual(status, 401, "the file's api-key must be overridden")
        with socket.socket() as s:
            s.settimeout(1)
            self.assertNotEqual(s.connect_ex(("127.0.0.1", file_port)), 0,
                                "the file's listen address must be overridden")

    def test_config_file_errors(self):
        # Assumption: the file gets the same checks as the command line
        # ("unknown options, malformed values ... non-zero exit").
        cases = [
            ("heartbeat = abc\n", "malformed value in the file"),
            ("no-such-option = 1\n", "unknown option in the file"),
        ]
        for text, what in cases:
            with self.subTest(what=what):
                self.run_failing(["--config-file=" + self.write_ini(text)])
        with self.subTest(what="missing file"):
            self.run_failing(["--config-file=/nonexistent/wscluster-test.ini"])


if __name__ == "__main__":
    unittest.main()

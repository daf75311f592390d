"""Options from the environment and --version (issue 16, contract section 5).

Every option can be given as WSCLUSTER_<NAME> (upper case, '-' as '_');
precedence: command line > environment > INI file > default. A WSCLUSTER_
variable that names no option is an error like an unknown option (one line
on stderr, exit 2). `--version` prints `wscluster <major.minor.patch>`.

Run: WSC_BINARY=build/wscluster python3 -m unittest tests/integration/test_env_version.py
"""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (REPO_ROOT, HarnessMixin, free_port, run_binary,  # noqa: E402
                     stderr_lines)
from wsclient import HandshakeError  # noqa: E402


def env_with(**variables):
    """This process's environment without WSCLUSTER_* variables, plus
    ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSCLUSTER_")}
    env.update(variables)
    return env


def project_version():
    with open(os.path.join(REPO_ROOT, "CMakeLists.txt")) as f:
        return re.search(r"project\(wscluster VERSION (\d+\.\d+\.\d+)", f.read()).group(1)


class VersionTest(unittest.TestCase):

    def test_version_prints_the_project_version(self):
        proc = run_binary(["--version"], timeout=10, env=env_with())
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "wscluster %s\n" % project_version())
        self.assertEqual(proc.stderr, "")

    def test_version_wins_over_other_options(self):
        proc = run_binary(["--listen=127.0.0.1:%d" % free_port(), "--version"], timeout=10,
                          env=env_with(WSCLUSTER_NO_SUCH_OPTION="1"))
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertTrue(proc.stdout.startswith("wscluster "), proc.stdout)

    def test_help_documents_the_environment(self):
        proc = run_binary(["--help"], timeout=10, env=env_with())
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("WSCLUSTER_", proc.stdout)
        self.assertIn("command line > environment > config file > default", proc.stdout)
        self.assertIn("--version", proc.stdout)


class EnvironmentTest(HarnessMixin, unittest.TestCase):

    def assertCapped(self, node, allowed):
        """``allowed`` connections open; the next handshake gets 503."""
        for i in range(allowed):
            node.ws("u%d" % i)
        with self.assertRaises(HandshakeError) as cm:
            node.ws("over", welcome=False)
        self.assertEqual(cm.exception.status, 503, cm.exception.text)

    def write_ini(self, text):
        path = os.path.join(self.make_tempdir(), "node.ini")
        with open(path, "w") as f:
            f.write(text)
        return path

    def run_failing(self, env):
        proc = run_binary(["--listen=127.0.0.1:%d" % free_port()], timeout=10, env=env)
        self.assertEqual(proc.returncode, 2, "stdout %r stderr %r" % (proc.stdout, proc.stderr))
        lines = stderr_lines(proc.stderr)
        self.assertEqual(len(lines), 1, proc.stderr)
        return lines[0]

    def test_environment_sets_an_option(self):
        node = self.start_node(env=env_with(WSCLUSTER_MAX_CONNECTIONS="1"))
        self.assertCapped(node, 1)

    def test_command_line_beats_environment(self):
        node = self.start_node({"max-connections": 2},
                               env=env_with(WSCLUSTER_MAX_CONNECTIONS="1"))
        self.assertCapped(node, 2)

    def test_environment_beats_ini(self):
        ini = self.write_ini("max-connections = 5\n")
        node = self.start_node(["--config-file=" + ini],
                               env=env_with(WSCLUSTER_MAX_CONNECTIONS="1"))
        self.assertCapped(node, 1)

    def test_environment_listen_beats_ini_and_config_file_from_environment(self):
        port = free_port()
        ini = self.write_ini("listen = 127.0.0.1:%d\nmax-connections = 3\n" % free_port())
        node = self.start_node(pass_listen=False, port=port,
                               env=env_with(WSCLUSTER_CONFIG_FILE=ini,
                                            WSCLUSTER_LISTEN="127.0.0.1:%d" % port))
        self.assertCapped(node, 3)  # the rest of the INI still applies

    def test_unknown_variable_is_an_error(self):
        line = self.run_failing(env_with(WSCLUSTER_NO_SUCH_OPTION="1"))
        self.assertIn("WSCLUSTER_NO_SUCH_OPTION", line)

    def test_lower_case_spelling_is_not_an_option(self):
        line = self.run_failing(env_with(WSCLUSTER_max_connections="1"))
        self.assertIn("WSCLUSTER_max_connections", line)

    def test_bad_value_names_the_variable(self):
        line = self.run_failing(env_with(WSCLUSTER_MAX_CONNECTIONS="many"))
        self.assertIn("WSCLUSTER_MAX_CONNECTIONS", line)
        self.assertIn("max-connections", line)

    def test_other_variables_are_ignored(self):
        # Only the WSCLUSTER_ prefix is read (the test harness itself uses WSC_).
        node = self.start_node(env=env_with(WSC_SOMETHING="1", WSCLUSTERX="1"))
        node.ws("a")


if __name__ == "__main__":
    unittest.main()

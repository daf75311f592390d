"""The operator package (issue 16): `cpack -G DEB` builds a .deb that holds
the binary, the web root, the JS client, an example INI (a conffile) and the
systemd unit; unpacked with `dpkg -x` into a temporary root, the binary runs
from there and serves `/`, `/dashboard` and `/client/` from that root's files.

The .deb is built by cpack in the build folder of $WSC_BINARY (under
`flock /tmp/wsc-build.lock`, or $WSC_BUILD_LOCK, when flock exists: cpack
runs the build's `preinstall` target), or taken from $WSC_DEB.

The library package (issue 17): the custom frame codec example
(examples/custom_codec) builds against a `cmake --install` of the same build
and its node runs (CustomCodecPackageTest).

Run: WSC_BINARY=build/wscluster python3 -m unittest tests/integration/test_package.py
"""

import glob
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (HOST, KEEP_LOGS, REPO_ROOT, HarnessMixin,  # noqa: E402
                     binary_path)

UNIT = "lib/systemd/system/wscluster@.service"
INI = "etc/wscluster/example.ini"


def clean_env():
    """This process's environment without WSCLUSTER_* variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WSCLUSTER_")}


def project_version():
    with open(os.path.join(REPO_ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"project\(wscluster VERSION (\d+\.\d+\.\d+)", f.read())
    return m.group(1)


def get_bytes(port, path):
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class TempDirClassMixin:
    """A temporary folder for the whole class (`cls.tmp`), removed after it
    (unless WSC_KEEP_LOGS) or when `prepare` fails."""

    @classmethod
    def prepare_in_tmp(cls, prefix, prepare):
        cls.tmp = tempfile.mkdtemp(prefix=prefix)
        try:
            prepare()
        except BaseException:
            shutil.rmtree(cls.tmp, True)
            raise

    @classmethod
    def tearDownClass(cls):
        if not KEEP_LOGS:
            shutil.rmtree(cls.tmp, True)


class PackageTest(TempDirClassMixin, HarnessMixin, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if shutil.which("dpkg-deb") is None:
            raise unittest.SkipTest("dpkg-deb is missing (apt-get install dpkg): "
                                    "cannot unpack the .deb")
        cls.prepare_in_tmp("wsc-package-", cls.unpack)

    @classmethod
    def unpack(cls):
        cls.deb = os.environ.get("WSC_DEB") or cls.build_deb(cls.tmp)
        cls.root = os.path.join(cls.tmp, "root")
        subprocess.run(["dpkg-deb", "-x", cls.deb, cls.root], check=True, timeout=60)
        cls.control = os.path.join(cls.tmp, "control")
        subprocess.run(["dpkg-deb", "-e", cls.deb, cls.control], check=True, timeout=60)

    @staticmethod
    def build_deb(tmp):
        build_dir = os.path.dirname(os.path.abspath(binary_path()))
        if not os.path.isfile(os.path.join(build_dir, "CPackConfig.cmake")):
            raise AssertionError("no CPackConfig.cmake in %s (configure with CMake first)"
                                 % build_dir)
        out = os.path.join(tmp, "out")
        cmd = ["cpack", "-G", "DEB", "-B", out]
        if shutil.which("flock"):
            lock = os.environ.get("WSC_BUILD_LOCK", "/tmp/wsc-build.lock")
            cmd = ["flock", "-w", "600", lock] + cmd
        proc = subprocess.run(cmd, cwd=build_dir, capture_output=True, text=True,
                              errors="replace", timeout=900)
        if proc.returncode != 0:
            raise AssertionError("cpack failed (%d):\n%s%s"
                                 % (proc.returncode, proc.stdout, proc.stderr))
        debs = glob.glob(os.path.join(out, "wscluster_*.deb"))
        if len(debs) != 1:
            raise AssertionError("expected one wscluster_*.deb in %s, got %r\n%s"
                                 % (out, debs, proc.stdout))
        return debs[0]

    def path(self, rel):
        return os.path.join(self.root, rel)

    def field(self, name):
        return subprocess.run(["dpkg-deb", "-f", self.deb, name], capture_output=True,
                              text=True, check=True).stdout.strip()

    # -- contents -------------------------------------------------------------

    def test_layout(self):
        for rel in ("usr/bin/wscluster", "usr/share/wscluster/web/index.html",
                    "usr/share/wscluster/web/dashboard.html",
                    "usr/share/wscluster/web/assets/dashboard.js",
                    "usr/share/wscluster/clients/js/wscluster.js",
                    "usr/share/wscluster/clients/js/wscluster.d.ts", INI, UNIT):
            self.assertTrue(os.path.isfile(self.path(rel)), "%s missing from the .deb" % rel)
        self.assertTrue(os.access(self.path("usr/bin/wscluster"), os.X_OK))
        # Only the node: no static library, headers or CMake package files.
        for rel in ("usr/lib", "usr/include", "usr/local"):
            self.assertFalse(os.path.exists(self.path(rel)), "%s should not be packaged" % rel)
        self.assertEqual(self.field("Package"), "wscluster")
        self.assertEqual(self.field("Version"), project_version())
        depends = self.field("Depends")
        for lib in ("libcaf-core0.17", "libcaf-io0.17", "libcaf-openssl0.17",
                    "libhiredis0.14", "libspdlog1.10", "libssl3"):
            self.assertIn(lib, depends)
        # jemalloc is a dependency exactly when the binary links it.
        needed = subprocess.run(["readelf", "-d", self.path("usr/bin/wscluster")],
                                capture_output=True, text=True, check=True).stdout
        self.assertEqual("libjemalloc.so" in needed, "libjemalloc2" in depends)
        self.assertIn("redis-server", self.field("Recommends"))

    def test_example_ini_is_a_conffile(self):
        with open(os.path.join(self.control, "conffiles")) as f:
            self.assertIn("/" + INI, f.read().split())

    def test_systemd_unit(self):
        with open(self.path(UNIT)) as f:
            unit = f.read()
        settings = dict(line.split("=", 1) for line in unit.splitlines()
                        if "=" in line and not line.startswith("#"))
        self.assertIn("/usr/bin/wscluster", settings["ExecStart"])
        self.assertIn("--config-file=/etc/wscluster/%i.ini", settings["ExecStart"])
        self.assertEqual(settings["Restart"], "on-failure")
        self.assertGreaterEqual(int(settings["LimitNOFILE"]), 65536)
        self.assertEqual(settings["KillSignal"], "SIGTERM")
        self.assertEqual(settings["KillMode"], "mixed")
        # Longer than the example INI's drain period.
        stop = int(settings["TimeoutStopSec"].rstrip("s"))
        with open(self.path(INI)) as f:
            drain = re.search(r"^drain-period\s*=\s*(\d+)s", f.read(), re.M)
        self.assertGreater(stop, int(drain.group(1)) + 5)
        if shutil.which("systemd-analyze"):
            # Syntax only: the unit's user and ExecStart are not on this
            # machine, so report but do not fail on those.
            proc = subprocess.run(["systemd-analyze", "verify", self.path(UNIT)],
                                  capture_output=True, text=True, timeout=30)
            bad = [line for line in proc.stderr.splitlines()
                   if "Unknown key" in line or "Unknown section" in line
                   or "Failed to parse" in line]
            self.assertEqual(bad, [], proc.stderr)

    # -- the unpacked binary --------------------------------------------------

    def test_version(self):
        proc = subprocess.run([self.path("usr/bin/wscluster"), "--version"], env=clean_env(),
                              capture_output=True, text=True, timeout=10)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout, "wscluster %s\n" % project_version())

    def test_serves_its_own_files(self):
        # Mark the unpacked files, so that what is served can only come from
        # this root (the source tree's web/ also exists on a build machine).
        for rel in ("usr/share/wscluster/web/index.html",
                    "usr/share/wscluster/web/dashboard.html"):
            with open(self.path(rel), "ab") as f:
                f.write(b"\n<!-- unpacked by test_package -->\n")
        with open(self.path("usr/share/wscluster/clients/js/wscluster.js"), "ab") as f:
            f.write(b"\n// unpacked by test_package\n")
        # The example INI as an operator would start it; --listen wins.
        node = self.start_node(["--config-file=" + self.path(INI)],
                               binary=self.path("usr/bin/wscluster"), env=clean_env())
        for path, rel in (("/", "usr/share/wscluster/web/index.html"),
                          ("/dashboard", "usr/share/wscluster/web/dashboard.html"),
                          ("/assets/dashboard.js", "usr/share/wscluster/web/assets/dashboard.js"),
                          ("/client/wscluster.js",
                           "usr/share/wscluster/clients/js/wscluster.js")):
            status, body = get_bytes(node.port, path)
            self.assertEqual(status, 200, path)
            with open(self.path(rel), "rb") as f:
                self.assertEqual(body, f.read(), "%s is not %s of the unpacked root" % (path, rel))
        self.assertIn(b"unpacked by test_package", get_bytes(node.port, "/")[1])

    def test_web_root_option_still_wins(self):
        other = self.make_tempdir()
        with open(os.path.join(other, "index.html"), "w") as f:
            f.write("<p>elsewhere</p>")
        node = self.start_node({"web-root": other}, binary=self.path("usr/bin/wscluster"),
                               env=clean_env())
        self.assertEqual(get_bytes(node.port, "/"), (200, b"<p>elsewhere</p>"))


class CustomCodecPackageTest(TempDirClassMixin, HarnessMixin, unittest.TestCase):
    """The custom codec example (examples/custom_codec) builds against the
    installed package (`cmake --install` of the build of $WSC_BINARY into a
    temporary prefix, examples copied outside the source tree) and its node
    speaks the `line` codec."""

    @classmethod
    def setUpClass(cls):
        build_dir = os.path.dirname(os.path.abspath(binary_path()))
        if not os.path.isfile(os.path.join(build_dir, "cmake_install.cmake")):
            raise unittest.SkipTest("no CMake build directory at %s" % build_dir)
        if not shutil.which("cmake") or not shutil.which("ninja"):
            raise unittest.SkipTest("cmake and ninja are needed")
        cls.prepare_in_tmp("wsc-codec-package-", lambda: cls.build_example(build_dir))

    @classmethod
    def build_example(cls, build_dir):
        prefix = os.path.join(cls.tmp, "prefix")
        cls.run_step(["cmake", "--install", build_dir, "--prefix", prefix], 120)
        examples = os.path.join(cls.tmp, "examples")
        shutil.copytree(os.path.join(REPO_ROOT, "examples"), examples,
                        ignore=shutil.ignore_patterns("*.ini"))
        out = os.path.join(cls.tmp, "build")
        configure = ["cmake", "-S", examples, "-B", out, "-G", "Ninja",
                     "-DCMAKE_PREFIX_PATH=" + prefix, "-DCMAKE_BUILD_TYPE=",
                     "-DCMAKE_CXX_FLAGS=-O0"]
        if shutil.which("ld.lld"):
            configure.append("-DCMAKE_EXE_LINKER_FLAGS=-fuse-ld=lld")
        cls.run_step(configure, 120)
        cls.run_step(["cmake", "--build", out, "--target", "wsc-codec-node"], 600)
        cls.commands = cls.run_step(["ninja", "-C", out, "-t", "commands",
                                     "wsc-codec-node"], 30).stdout
        cls.prefix = prefix
        cls.binary = os.path.join(out, "wsc-codec-node")

    @classmethod
    def run_step(cls, cmd, timeout):
        proc = subprocess.run(cmd, cwd=cls.tmp, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace",
                              timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError("%s failed (%d):\n%s\n%s"
                                 % (" ".join(cmd), proc.returncode, proc.stdout[-4000:],
                                    proc.stderr[-4000:]))
        return proc

    def test_built_from_the_installed_headers(self):
        self.assertTrue(os.path.isfile(os.path.join(
            self.prefix, "include/wscluster/protocol/codec.hpp")))
        self.assertIn(os.path.join(self.prefix, "include", "wscluster"), self.commands)
        self.assertNotIn("-I" + REPO_ROOT + " ", self.commands)

    def test_line_codec_node_answers(self):
        node = self.start_node({"frame-codec": "line"}, binary=self.binary)
        ws = node.ws("ann", welcome=False)
        kind, _, frame = ws.recv(timeout=5)[1].decode().partition(" ")
        self.assertEqual(kind, "welcome")
        self.assertEqual(json.loads(frame)["uid"], "ann")
        ws.send_text('ping {"id":3}')
        opcode, payload = ws.recv(timeout=5)
        self.assertEqual(payload.decode(), 'pong {"id":3,"type":"pong"}')


if __name__ == "__main__":
    unittest.main()

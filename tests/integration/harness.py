"""Process helpers for the wscluster integration tests (standard library only).

* :func:`free_port` - a free TCP port on 127.0.0.1.
* :class:`Node` - runs the wscluster binary (``$WSC_BINARY``, default
  ``build/wscluster`` under the repository root) with
  ``--listen=127.0.0.1:<port>`` plus ``--name=value`` options, logs its
  stdout/stderr to a file, waits for ``GET /healthz`` = 200, and stops it by
  its own pid (SIGTERM, then SIGKILL after 10 s).
* :class:`RedisServer` - a throwaway ``redis-server`` on a free port.
* :class:`HarnessMixin` - a ``unittest.TestCase`` mixin that registers every
  node, Redis and client for cleanup, even when a test or its setUp fails, and
  prints the nodes' log tails when a test failed.

Every wait here is bounded in time.  Only 127.0.0.1 is used.
"""

import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from wsclient import WebSocket

HOST = "127.0.0.1"
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
HEALTH_TIMEOUT = float(os.environ.get("WSC_HEALTH_TIMEOUT", "15"))
STOP_TIMEOUT = 10.0
KEEP_LOGS = os.environ.get("WSC_KEEP_LOGS", "") not in ("", "0")

# Every process this module started and has not yet reaped: killed at exit
# if a test run is interrupted (by pid, never by name).
_live_processes = set()
_live_lock = threading.Lock()


def _kill_leftovers():
    with _live_lock:
        procs = list(_live_processes)
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.kill()
                proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass


atexit.register(_kill_leftovers)


def binary_path():
    """Path of the node binary: ``$WSC_BINARY`` or ``build/wscluster``.

    A relative path is taken from the repository root.
    """
    path = os.environ.get("WSC_BINARY", "build/wscluster")
    if not os.path.isabs(path):
        path = os.path.join(REPO_ROOT, path)
    return path


def require_binary():
    path = binary_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError("wscluster binary not found or not executable at %s "
                           "(build it, or set WSC_BINARY)" % path)
    return path


_given_ports = set()
_port_lock = threading.Lock()


def free_port():
    """A TCP port on 127.0.0.1 that is free now (and not handed out before
    by this process, so two nodes of one test never get the same one)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        with _port_lock:
            if port not in _given_ports:
                _given_ports.add(port)
                return port
    raise RuntimeError("could not find a free port")


def options_to_args(options):
    """``{"drain-period": "1s"}`` -> ``["--drain-period=1s"]``.

    ``options`` may be a dict (value None gives a bare ``--name``; True and
    False give ``true``/``false``) or a list of ready-made arguments.
    """
    if options is None:
        return []
    if isinstance(options, (list, tuple)):
        return [str(a) for a in options]
    args = []
    for name, value in options.items():
        if value is None:
            args.append("--%s" % name)
        elif isinstance(value, bool):
            args.append("--%s=%s" % (name, "true" if value else "false"))
        else:
            args.append("--%s=%s" % (name, value))
    return args


def run_binary(args, timeout=15.0, env=None):
    """Run the binary to completion (CLI tests); returns CompletedProcess
    with text stdout/stderr.  On timeout the process is killed (by pid) and
    ``subprocess.TimeoutExpired`` propagates."""
    cmd = [require_binary()] + options_to_args(args)
    return subprocess.run(cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, errors="replace", timeout=timeout, env=env)


def stderr_lines(text):
    """Non-empty lines of a process's stderr."""
    return [line for line in text.splitlines() if line.strip()]


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return "<no log: %s>" % e
    return "\n".join(data.splitlines()[-lines:])


def _decode_body(raw, headers):
    """JSON when it parses, else text, else bytes."""
    ctype = headers.get("content-type", "")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    if "json" in ctype or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def http_request(host, port, method, path, body=None, headers=None, timeout=10.0):
    """One HTTP request on a fresh connection.

    ``body``: dict/list (sent as JSON), str or bytes (sent as is), or None.
    Returns ``(status, headers, body)`` with lower-case header names and the
    body parsed as JSON when it is JSON, else text.
    """
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = bytes(body)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        rheaders = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, rheaders, _decode_body(raw, rheaders)
    finally:
        conn.close()


def rss_kb(pid):
    """Resident memory of process ``pid`` in KiB (0 if unknown)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_limited_binary(workdir, limit):
    """A wrapper script that runs the node binary with ``ulimit -n limit``."""
    wrapper = os.path.join(workdir, "wscluster-%dfd.sh" % limit)
    with open(wrapper, "w") as f:
        f.write('#!/bin/sh\nulimit -n %d\nexec "%s" "$@"\n' % (limit, require_binary()))
    os.chmod(wrapper, 0o755)
    return wrapper


def cpu_seconds(pid):
    """User + system CPU time process ``pid`` has used, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll ``predicate()`` until it returns a truthy value; return it.
    Raises AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s%s" % (
                timeout, what, "" if last_exc is None else " (last error: %r)" % last_exc))
        time.sleep(interval)


class Node:
    """One wscluster process.

    ``options``: dict or list of extra ``--name=value`` options.  ``port``:
    the HTTP/WS port (a free one by default).  With ``pass_listen=False`` no
    ``--listen`` is added (e.g. when it comes from a config file; ``port``
    must then say where the node will listen).
    """

    def __init__(self, options=None, port=None, pass_listen=True, name="node",
                 workdir=None, env=None, health_timeout=HEALTH_TIMEOUT, binary=None):
        self.options = options
        self.binary = binary
        self.port = port if port is not None else free_port()
        self.host = HOST
        self.pass_listen = pass_listen
        self.name = name
        self.env = env
        self.health_timeout = health_timeout
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="wsc-%s-" % name)
        self.log_path = os.path.join(self.workdir, "%s.log" % name)
        self.proc = None
        self.returncode = None
        self.clients = []
        self.args = []

    # -- lifecycle ----------------------------------------------------------

    def start(self, wait=True):
        binary = self.binary or require_binary()
        self.args = [binary]
        if self.pass_listen:
            self.args.append("--listen=%s:%d" % (self.host, self.port))
        self.args += ["--" + o for o in EXTRA_NODE_OPTIONS]
        self.args += options_to_args(self.options)
        log = open(self.log_path, "ab")
        try:
            log.write(("$ %s\n" % " ".join(self.args)).encode())
            log.flush()
            self.proc = subprocess.Popen(self.args, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env)
        finally:
            log.close()
        with _live_lock:
            _live_processes.add(self.proc)
        if wait:
            self.wait_healthy()
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout=None):
        """Wait until ``GET /healthz`` answers 200; raise with the log tail if
        the process exits or the time runs out."""
        timeout = self.health_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reap()
                raise RuntimeError("%s exited with %s before becoming healthy; log tail:\n%s"
                                   % (self.name, self.proc.returncode, self.log_tail()))
            try:
                status, _, body = self.http("GET", "/healthz", timeout=1.0)
                if status == 200:
                    return
                last = "HTTP %s %r" % (status, body)
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("%s not healthy after %.0fs (last: %s); log tail:\n%s"
                           % (self.name, timeout, last, self.log_tail()))

    def signal(self, sig):
        """Send ``sig`` to this node's own pid."""
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Wait for the process to exit; return its exit code.
        Raises ``subprocess.TimeoutExpired`` if it is still running."""
        rc = self.proc.wait(timeout)
        self._reap()
        return rc

    def _reap(self):
        self.returncode = self.proc.returncode
        with _live_lock:
            _live_processes.discard(self.proc)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL.  Returns the exit
        code (None if it was never started).  Clients are closed first."""
        for c in self.clients:
            try:
                c.close(timeout=0.5)
            except Exception:  # noqa: BLE001 - best effort
                pass
        self.clients = []
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reap()
        return self.returncode

    def kill(self):
        """SIGKILL this node's own pid (a crash, for cluster tests)."""
        if self.running():
            self.proc.kill()
            self.proc.wait(10)
        self._reap()

    def cleanup(self):
        self.stop()
        if self._own_dir and not KEEP_LOGS:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- logs -----------------------------------------------------------------

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines=40):
        return _tail(self.log_path, lines)

    # -- clients ----------------------------------------------------------------

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def http(self, method, path, body=None, headers=None, timeout=10.0):
        """``(status, headers, body)``; see :func:`http_request`."""
        return http_request(self.host, self.port, method, path, body, headers, timeout)

    def metric(self, name, labels="", default=None):
        """The value of one sample of GET /metrics, e.g.
        ``metric("wscluster_relayed_deliveries_total", 'direction="out"')``;
        ``default`` when it is missing, or AssertionError if that is None."""
        status, _, text = self.http("GET", "/metrics")
        if status != 200:
            raise AssertionError("GET /metrics of %s: HTTP %s" % (self.name, status))
        text = text if isinstance(text, str) else text.decode()
        selector = r"\{%s\}" % re.escape(labels) if labels else ""
        m = re.search(r"^%s%s (\S+)$" % (re.escape(name), selector), text, re.M)
        if m:
            value = float(m.group(1))
            return int(value) if value.is_integer() else value
        if default is None:
            raise AssertionError("%s{%s} missing in /metrics of %s" % (name, labels, self.name))
        return default

    def api_send(self, to, data, headers=None, **extra):
        body = dict(extra, to=to, data=data)
        return self.http("POST", "/api/send", body, headers)

    def presence(self, uids, headers=None):
        """``GET /api/presence?uids=...`` -> the ``online`` dict (asserts 200)."""
        q = urllib.parse.urlencode({"uids": ",".join(uids)})
        status, _, body = self.http("GET", "/api/presence?" + q, headers=headers)
        if status != 200:
            raise AssertionError("GET /api/presence -> %s %r" % (status, body))
        return body["online"]

    def ws(self, uid=None, query=None, headers=None, timeout=5.0, welcome=True, rcvbuf=None,
           path="/ws", source=None):
        """Open a WebSocket client to ``/ws`` (from the local address
        ``source``, e.g. ``127.0.0.2``, if given).

        ``uid`` goes in the query (``uid=``).  With ``welcome`` True the first
        frame is read and must be ``{"type":"welcome",...}``; it is kept in
        ``client.welcome``.  The client is closed by :meth:`stop`.
        """
        q = {}
        if isinstance(query, str):
            q = dict(urllib.parse.parse_qsl(query))
        elif query:
            q = dict(query)
        if uid is not None:
            q["uid"] = uid
        client = WebSocket(self.host, self.port, path, q or None, headers, timeout, rcvbuf,
                           source=source)
        self.clients.append(client)
        client.welcome = None
        if welcome:
            frame = client.recv_json(timeout)
            if not isinstance(frame, dict) or frame.get("type") != "welcome":
                raise AssertionError("first frame is not a welcome: %r" % (frame,))
            client.welcome = frame
        return client

    def __repr__(self):
        return "<Node %s pid=%s %s>" % (self.name, self.pid, self.address)


class RedisServer:
    """A ``redis-server`` on a free 127.0.0.1 port, no persistence, in a temp dir."""

    def __init__(self, port=None, password=None, extra_args=()):
        self.port = port if port is not None else free_port()
        self.host = HOST
        self.password = password
        # More redis-server options, e.g. ("--cluster-enabled", "yes").
        self.extra_args = list(extra_args)
        self.workdir = tempfile.mkdtemp(prefix="wsc-redis-")
        self.log_path = os.path.join(self.workdir, "redis.log")
        self.proc = None

    @property
    def url(self):
        auth = ":%s@" % self.password if self.password else ""
        return "redis://%s%s:%d" % (auth, self.host, self.port)

    def start(self, timeout=10.0):
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [exe, "--port", str(self.port), "--bind", self.host, "--save", "",
                "--appendonly", "no", "--dir", self.workdir, "--daemonize", "no",
                "--protected-mode", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(args, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        with _live_lock:
            _live_processes.add(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s:\n%s"
                                   % (self.proc.returncode, _tail(self.log_path)))
            try:
                if self.command("PING", timeout=0.5) == "PONG":
                    return self
            except (OSError, RuntimeError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server not ready after %.0fs:\n%s" % (timeout, _tail(self.log_path)))

    def command(self, *args, timeout=5.0):
        """Run one command with a minimal RESP client; returns str/int/list/None.
        A Redis error reply raises RuntimeError."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            f = s.makefile("rb")
            if self.password:
                s.sendall(_resp_encode(["AUTH", self.password]))
                _resp_read(f)
            s.sendall(_resp_encode(args))
            return _resp_read(f)

    def stop(self, timeout=STOP_TIMEOUT):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        with _live_lock:
            _live_processes.discard(self.proc)
        return self.proc.returncode

    def cleanup(self):
        self.stop()
        if not KEEP_LOGS:
            shutil.rmtree(self.workdir, ignore_errors=True)


# -- Redis Cluster for the suites -----------------------------------------------

#: ``WSC_TEST_REDIS=cluster`` makes :meth:`HarnessMixin.start_redis` start a
#: Redis Cluster (3 masters, ``WSC_TEST_REDIS_REPLICAS`` replicas each,
#: default 0) instead of one ``redis-server``: the same suites then run
#: against ``redis=cluster://...``.
REDIS_MODE = os.environ.get("WSC_TEST_REDIS", "single")

#: ``WSC_TEST_NODE_OPTIONS="scheduler-policy=loop io-threads=2"``: options
#: every node of a suite gets before its own (which win), so that the same
#: suites run under other thread settings (see tests/CMakeLists.txt).
EXTRA_NODE_OPTIONS = [o for o in os.environ.get("WSC_TEST_NODE_OPTIONS", "").split() if o]


def redis_is_cluster():
    return REDIS_MODE == "cluster"


def crc16_xmodem(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def key_slot(key):
    """The hash slot of ``key`` (str or bytes), hash tags included."""
    b = key if isinstance(key, bytes) else str(key).encode("utf-8")
    start = b.find(b"{")
    if start >= 0:
        end = b.find(b"}", start + 1)
        if end > start + 1:
            b = b[start + 1:end]
    return crc16_xmodem(b) % 16384


class RedisClusterServer:
    """``masters`` cluster-enabled redis-servers (+ replicas) joined by
    ``redis-cli --cluster create``, with the interface of :class:`RedisServer`
    that the suites use: ``url`` (``cluster://...``), ``command`` (routed by
    the key, ``KEYS``/``FLUSHALL`` on every master), ``stop``, ``cleanup``."""

    def __init__(self, masters=3, replicas=None, password=None, node_timeout_ms=1000,
                 extra_args=()):
        if replicas is None:
            replicas = int(os.environ.get("WSC_TEST_REDIS_REPLICAS", "0"))
        self.password = password
        self.replicas = replicas
        self.servers = [RedisServer(password=password, extra_args=[
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-port", str(free_port()),
            "--repl-diskless-sync-delay", "0"] + list(extra_args))
            for _ in range(masters * (1 + replicas))]
        self.masters = masters
        self.host = HOST
        self.port = self.servers[0].port

    @property
    def url(self):
        auth = ":%s@" % self.password if self.password else ""
        return "cluster://%s%s" % (auth, ",".join("%s:%d" % (HOST, s.port)
                                                  for s in self.servers[:3]))

    def start(self, timeout=60.0):
        for s in self.servers:
            s.start()
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        args = [cli]
        if self.password:
            args += ["-a", self.password, "--no-auth-warning"]
        out = subprocess.run(
            args + ["--cluster", "create"] + ["%s:%d" % (HOST, s.port) for s in self.servers]
            + ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError("redis-cli --cluster create failed:\n%s%s" % (out.stdout, out.stderr))
        wait_until(self._healthy, timeout, interval=0.1, what="cluster_state:ok on every node")
        return self

    def live(self):
        return [s for s in self.servers if s.proc is not None and s.proc.poll() is None]

    def _healthy(self):
        try:
            for s in self.live():
                if "cluster_state:ok" not in s.command("CLUSTER", "INFO"):
                    return False
                slots = s.command("CLUSTER", "SLOTS")
                if sum(last - first + 1 for first, last, *_ in slots) != 16384:
                    return False
            return True
        except (OSError, RuntimeError):
            return False

    def master_servers(self):
        seen = []
        for first, last, master, *_ in self.live()[0].command("CLUSTER", "SLOTS"):
            port = int(master[1])
            s = next(x for x in self.servers if x.port == port)
            if s not in seen:
                seen.append(s)
        return seen

    def owner(self, slot):
        for first, last, master, *_ in self.live()[0].command("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                port = int(master[1])
                return next(x for x in self.servers if x.port == port)
        raise RuntimeError("slot %d has no owner" % slot)

    def command(self, *args, timeout=5.0):
        name = str(args[0]).upper()
        if name == "KEYS":
            result = []
            for s in self.master_servers():
                result += s.command(*args, timeout=timeout) or []
            return result
        if name in ("FLUSHALL", "FLUSHDB"):
            replies = [s.command(*args, timeout=timeout) for s in self.master_servers()]
            return "OK" if all(r == "OK" for r in replies) else replies
        if len(args) < 2:
            return self.live()[0].command(*args, timeout=timeout)
        server = self.owner(key_slot(args[1]))
        for _ in range(5):
            try:
                return server.command(*args, timeout=timeout)
            except RuntimeError as e:
                text = str(e)
                if "MOVED" in text or "ASK" in text:
                    port = int(text.rsplit(":", 1)[1])
                    server = next(x for x in self.servers if x.port == port)
                    continue
                raise
        raise RuntimeError("too many redirects for %r" % (args,))

    def stop(self, timeout=STOP_TIMEOUT):
        for s in self.servers:
            s.stop(timeout)

    def cleanup(self):
        for s in self.servers:
            s.cleanup()


def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode("utf-8")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError("redis error: " + rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise OSError("bad RESP reply: %r" % line)


class HarnessMixin:
    """Mixin for ``unittest.TestCase``: start things, get them cleaned up.

    Everything made through :meth:`start_node`, :meth:`start_redis`,
    :meth:`make_tempdir` is stopped/removed by ``addCleanup``, so it also
    happens when setUp or the test fails.  When a test failed, the log tail
    of each of its nodes is written to stderr.
    """

    def start_node(self, options=None, **kwargs):
        node = Node(options, name=kwargs.pop("name", "node%d" % (len(self._nodes()) + 1)), **kwargs)
        self._nodes().append(node)
        self.addCleanup(self._cleanup_node, node)
        return node.start()

    def start_redis(self, cluster=None, **kwargs):
        """One ``redis-server``, or a Redis Cluster (:class:`RedisClusterServer`)
        when ``cluster`` is true or, by default, with ``WSC_TEST_REDIS=cluster``
        (then only ``password`` of the keyword arguments applies)."""
        if cluster is None:
            cluster = redis_is_cluster() and "port" not in kwargs
        if cluster:
            redis = RedisClusterServer(password=kwargs.get("password"))
            self.addCleanup(redis.cleanup)
            return redis.start()
        redis = RedisServer(**kwargs)
        self.addCleanup(redis.cleanup)
        return redis.start()

    def make_tempdir(self):
        path = tempfile.mkdtemp(prefix="wsc-test-")
        if not KEEP_LOGS:
            self.addCleanup(shutil.rmtree, path, True)
        return path

    def _nodes(self):
        if "_harness_nodes" not in self.__dict__:
            self._harness_nodes = []
        return self._harness_nodes

    def _cleanup_node(self, node):
        if not self._test_ok():
            sys.stderr.write("\n----- %s (%s) log tail [%s] -----\n%s\n-----\n"
                             % (node.name, " ".join(node.args[1:]), self.id(), node.log_tail()))
        node.cleanup()

    def _test_ok(self):
        """False when this test (or one of its subtests) has failed so far.
        Cleanups run before the result is final, so look at the result's
        error and failure lists (unittest keeps it in self._outcome)."""
        result = getattr(getattr(self, "_outcome", None), "result", None)
        for test, _ in list(getattr(result, "errors", [])) + list(getattr(result, "failures", [])):
            if test is self or getattr(test, "test_case", None) is self:
                return False
        return True

    # -- assertions used by several test files --------------------------------

    def assertTs(self, frame, slack_ms=5 * 60 * 1000):
        """``ts`` is an int of Unix-epoch milliseconds close to now."""
        ts = frame.get("ts")
        self.assertIsInstance(ts, int, "ts must be an integer (ms): %r" % (frame,))
        self.assertNotIsInstance(ts, bool)
        now = int(time.time() * 1000)
        self.assertLess(abs(now - ts), slack_ms,
                        "ts %r is not Unix-epoch milliseconds near now (%d)" % (ts, now))

    def assertFields(self, frame, expected):
        """Every key of ``expected`` is in ``frame`` with an equal value
        (extra keys in ``frame`` are allowed)."""
        self.assertIsInstance(frame, dict, frame)
        for key, value in expected.items():
            self.assertIn(key, frame, "missing %r in %r" % (key, frame))
            self.assertEqual(frame[key], value, "field %r of %r" % (key, frame))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.assertNotIsInstance(frame[key], bool, "field %r of %r" % (key, frame))

    def assertNoFrame(self, client, predicate, duration=0.5, what="frame"):
        """No frame matching ``predicate`` arrives within ``duration`` s.
        Other frames are kept for later reads."""
        frames = client.collect(duration)
        bad = [f for f in frames if predicate(f)]
        client._pending.extend(f for f in frames if not predicate(f))
        self.assertEqual(bad, [], "unexpected %s" % what)

    def assertDelivers(self, sender, receiver, to, data, frame_id=1, timeout=5.0):
        """``sender`` sends ``data`` to uid ``to``: acked, and ``receiver``
        (a connection of ``to``) gets it."""
        sender.send_json({"type": "send", "id": frame_id, "to": to, "data": data})
        self.assertEqual(self.reply_to(sender, frame_id, timeout)["type"], "ack")
        got = receiver.wait_for(lambda f: f.get("type") == "message", timeout)
        self.assertEqual(got["data"], data)

    def reply_to(self, client, frame_id, timeout=5.0):
        """The ack/error/... frame whose ``id`` is ``frame_id``."""
        return client.wait_for(lambda f: isinstance(f, dict) and "id" in f and f["id"] == frame_id
                               and type(f["id"]) is type(frame_id),
                               timeout, what="the reply with id %r" % (frame_id,))


def make_message_check(test, frm, to, data):
    """Predicate-style assertion helper for ``message`` frames."""
    def check(frame):
        test.assertEqual(frame.get("type"), "message", frame)
        test.assertIn("from", frame)
        test.assertEqual(frame["from"], frm, frame)
        test.assertEqual(frame.get("to"), to, frame)
        test.assertEqual(frame.get("data"), data, frame)
        test.assertTs(frame)
    return check

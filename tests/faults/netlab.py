"""Network namespaces for the partition scenario (Linux, root, iproute2).

Topology, all inside namespaces created here (nothing in the host's own
network namespace; names carry this process's pid):

    hub namespace  <P>h : bridge brc (node-to-node, 10.77.1.0/24)
                          bridge brs (Redis + clients, 10.77.2.0/24; hub = .254)
    node namespace <P>1..3: c0 = 10.77.1.i (veth to brc port c<i>)
                            s0 = 10.77.2.i (veth to brs port s<i>)

Taking bridge port ``c3`` down cuts node 3 off from the other nodes while
Redis and the clients still reach it: a node-to-node partition.
"""

import atexit
import os
import shutil
import subprocess

CLUSTER_NET = "10.77.1.%d"
SERVICE_NET = "10.77.2.%d"
HUB_IP = SERVICE_NET % 254


def available():
    """(True, "") when namespaces can be made here, else (False, why)."""
    if os.geteuid() != 0:
        return False, "not root"
    if not shutil.which("ip"):
        return False, "no ip (iproute2)"
    probe = "wsfprobe%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return False, "ip netns add failed: %s" % r.stderr.strip()
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return True, ""


class Lab:
    def __init__(self, count=3):
        p = "wsf%d" % (os.getpid() % 100000)
        self.hub = p + "h"
        self.nodes = ["%s%d" % (p, i + 1) for i in range(count)]
        self.count = count
        self.made = []

    def _ip(self, *args):
        r = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))

    def setup(self):
        atexit.register(self.teardown)
        for ns in [self.hub] + self.nodes:
            self._ip("netns", "add", ns)
            self.made.append(ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
        h = self.hub
        for br in ("brc", "brs"):
            self._ip("-n", h, "link", "add", br, "type", "bridge")
            self._ip("-n", h, "link", "set", br, "up")
        self._ip("-n", h, "addr", "add", HUB_IP + "/24", "dev", "brs")
        for i, ns in enumerate(self.nodes, start=1):
            for kind, br, net in (("c", "brc", CLUSTER_NET), ("s", "brs", SERVICE_NET)):
                hub_end = "%s%d" % (kind, i)
                self._ip("link", "add", hub_end, "netns", h, "type", "veth",
                         "peer", "name", kind + "0", "netns", ns)
                self._ip("-n", h, "link", "set", hub_end, "master", br)
                self._ip("-n", h, "link", "set", hub_end, "up")
                self._ip("-n", ns, "addr", "add", (net % i) + "/24", "dev", kind + "0")
                self._ip("-n", ns, "link", "set", kind + "0", "up")
        return self

    def describe(self):
        return {"hub": self.hub, "nodes": self.nodes}

    def teardown(self):
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self.made = []


def set_port(port, up, hub=None):
    """Bridge port ``c<i>`` up or down (run inside the hub namespace, or
    give ``hub`` to reach into it)."""
    cmd = ["ip"] + (["-n", hub] if hub else []) + ["link", "set", port, "up" if up else "down"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.strip()))

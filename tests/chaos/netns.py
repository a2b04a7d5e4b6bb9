"""netns.py -- a client network namespace behind a router namespace, and a
blackhole switch in the router.

    host  <name>h 10.x.y.1/30 ── <name>a 10.x.y.2/30  [router ns]  <name>b 10.x.y.5/30 ── <name>c 10.x.y.6/30  [client ns]

The chaos harness puts a client in a namespace of its own. Only interfaces
this module creates carry the addresses (a private 10.x.y.0/29 that nothing
on the machine uses), plus one host route to the client's /30 through the
router, which goes away with the host's veth end: the test talks to
nothing but loopback and what it created itself.

The blackhole: a `pfifo` qdisc with limit 0 on both router interfaces drops
every forwarded packet in both directions, silently (no RST, no ICMP, no
error for either end): a cable pulled somewhere in between. It has to be
the router: the same qdisc on an endpoint's own interface is a *local*
drop, which the endpoint's TCP counts as local congestion, retransmitting
every 500 ms and aborting the connection after ~8 s (measured) -- not what
a network fault looks like. (Debian's kernel here has no sch_netem and no tc
actions, and iptables/nft are not installed; pfifo is in every kernel.)
Deleting the qdiscs restores traffic; TCP retransmits what waited.
"""

import ipaddress
import os
import random
import re
import shutil
import subprocess


def _run(*args, check=True):
    return subprocess.run(list(args), check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def available():
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        return False
    name = "tcxprobe%d" % (os.getpid() % 100000)
    try:
        _run("ip", "netns", "add", name)
    except (subprocess.CalledProcessError, OSError):
        return False
    _run("ip", "netns", "del", name, check=False)
    return True


def remove_stale(prefix):
    """Deletes namespaces <prefix><pid>[r] left by a run that was killed
    before it could clean up (its pid, modulo 100000, no longer exists)."""
    out = _run("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"^%s(\d+)r?$" % re.escape(prefix), name)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            _run("ip", "netns", "del", name, check=False)


def _used_nets():
    out = _run("ip", "-4", "-o", "addr", "show").stdout + _run("ip", "-4", "route", "show", "table", "all").stdout
    nets = []
    for word in out.split():
        try:
            nets.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    return nets


class Pair:
    """The client namespace <name>, its router <name>r, and three veth ends
    named after them (<= 15 characters each)."""

    def __init__(self, name):
        self.name = name[:11]
        self.router = self.name + "r"
        self.ifs = {k: self.name + k for k in "habc"}
        used = _used_nets()
        for _ in range(200):
            net = ipaddress.ip_network("10.%d.%d.%d/29" % (random.randrange(200, 250), random.randrange(256),
                                                          8 * random.randrange(32)))
            if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
                break
        else:
            raise RuntimeError("no free 10.x.y.0/29 for the namespaces")
        a = [str(h) for h in net.hosts()]      # .1 .. .6
        self.host_ip, self.r_host_ip, self.r_ns_ip, self.ns_ip = a[0], a[1], a[4], a[5]
        self.ns_net = "%s/30" % ipaddress.ip_network("%s/30" % a[4], strict=False).network_address
        self.created = []
        self.holed = False

    def _in(self, ns, *args, check=True):
        return _run("ip", "netns", "exec", ns, *args, check=check)

    def up(self):
        i = self.ifs
        for ns in (self.router, self.name):
            _run("ip", "netns", "add", ns)
            self.created.append(ns)
        _run("ip", "link", "add", i["h"], "type", "veth", "peer", "name", i["a"])
        self.created.append("link")
        _run("ip", "link", "set", i["a"], "netns", self.router)
        _run("ip", "link", "add", i["b"], "type", "veth", "peer", "name", i["c"])
        _run("ip", "link", "set", i["b"], "netns", self.router)
        _run("ip", "link", "set", i["c"], "netns", self.name)
        _run("ip", "addr", "add", "%s/30" % self.host_ip, "dev", i["h"])
        _run("ip", "link", "set", i["h"], "up")
        self._in(self.router, "ip", "addr", "add", "%s/30" % self.r_host_ip, "dev", i["a"])
        self._in(self.router, "ip", "addr", "add", "%s/30" % self.r_ns_ip, "dev", i["b"])
        for x in ("a", "b"):
            self._in(self.router, "ip", "link", "set", i[x], "up")
        self._in(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self._in(self.name, "ip", "addr", "add", "%s/30" % self.ns_ip, "dev", i["c"])
        self._in(self.name, "ip", "link", "set", i["c"], "up")
        self._in(self.name, "ip", "link", "set", "lo", "up")
        self._in(self.name, "ip", "route", "add", "default", "via", self.r_ns_ip)
        # Deleted with the host's veth end.
        _run("ip", "route", "add", self.ns_net, "via", self.r_host_ip, "dev", i["h"])
        return self

    def exec_prefix(self):
        """argv prefix that runs a command in the client namespace (ip execs
        it in place: the child's pid is the command's)."""
        return ["ip", "netns", "exec", self.name]

    def blackhole(self, on):
        if on and not self.holed:
            for x in ("a", "b"):
                self._in(self.router, "tc", "qdisc", "add", "dev", self.ifs[x], "root", "pfifo", "limit", "0")
            self.holed = True
        elif not on and self.holed:
            for x in ("a", "b"):
                self._in(self.router, "tc", "qdisc", "del", "dev", self.ifs[x], "root", check=False)
            self.holed = False

    def close(self):
        if not self.created:
            return
        if "link" in self.created:
            _run("ip", "link", "del", self.ifs["h"], check=False)
        for ns in (self.name, self.router):
            if ns in self.created:
                _run("ip", "netns", "del", ns, check=False)
        self.created = []

"""Networking between namespaces the tests create: never to any outside address."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CORRAL, Corral


def ip_of(corral: Corral, name: str) -> str:
    return corral.info(name)["ip"].split("/")[0]


def serve(corral: Corral, name: str, text: str, port: int = 80) -> None:
    corral("exec", name, "--", "sh", "-c",
           f"mkdir -p /www && echo {text} > /www/index.html && httpd -p {port} -h /www")


def http(url: str) -> str:
    return urllib.request.urlopen(url, timeout=3).read().decode().strip()


def test_container_has_own_address_routes_and_dns_files(corral: Corral) -> None:
    corral("create", "a", "--template", "tiny", "--nameserver", "192.0.2.53",
           "--searchdomain", "example.test", "--start")
    info = corral.info("a")
    assert info["ip"].endswith("/24") and len(info["addresses"]) == 2
    addr = ip_of(corral, "a")
    assert f"inet {addr}/24" in corral("exec", "a", "--", "ip", "addr", "show", "eth0")
    assert "default via" in corral("exec", "a", "--", "ip", "route")
    assert corral("exec", "a", "--", "cat", "/etc/resolv.conf") == \
        "nameserver 192.0.2.53\nsearch example.test\n"
    assert f"{addr}\ta" in corral("exec", "a", "--", "cat", "/etc/hosts")
    # the address is leased at create and stays the same across restarts
    corral("restart", "a", "--timeout", "3")
    assert ip_of(corral, "a") == addr


def test_host_to_container_and_container_to_container(corral: Corral) -> None:
    corral("create", "web", "--template", "tiny", "--start")
    corral("create", "cli", "--template", "tiny", "--start")
    serve(corral, "web", "hello")
    web = ip_of(corral, "web")
    assert http(f"http://{web}/") == "hello"  # TCP host → container
    assert corral("exec", "cli", "--", "wget", "-qO-", f"http://{web}/").strip() == "hello"
    out = corral("exec", "cli", "--", "ping", "-c", "1", "-W", "2", web)  # ICMP
    assert "1 packets received" in out
    web6 = [a for a in corral.info("web")["addresses"] if ":" in a][0].split("/")[0]
    out = corral("exec", "cli", "--", "ping", "-6", "-c", "1", "-W", "2", web6)  # IPv6
    assert "1 packets received" in out
    # UDP: the container's resolver asks a DNS "server" of the test's on the gateway
    gw = corral("exec", "web", "--", "ip", "route").split("default via ")[1].split()[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((gw, 53))
        s.settimeout(5)
        corral("exec", "web", "--", "sh", "-c",
               f"nslookup probe-udp.test {gw} >/dev/null 2>&1 </dev/null &")
        data, peer = s.recvfrom(512)
    assert b"probe-udp" in data and peer[0] == web


def _name_of(index: int) -> str:
    return socket.if_indextoname(index)


def test_a_start_is_quiet_on_the_bridge(corral: Corral) -> None:
    """A start sends no duplicate detection or router solicitation onto the bridge
    (multicast there can reach every other container) and reports its groups with
    MLDv1, which the bridge, the link's querier, keeps from the other containers;
    the bridge's MAC is its own and stays put as ports come; the host end of a
    veth, a bridge port, has no IPv6 address of its own; neighbours reach each
    other."""
    corral("create", "q1", "--template", "tiny", "--start")
    bridge = _name_of(int(corral("exec", "q1", "--", "cat", "/sys/class/net/eth0/iflink")))
    bridge = os.path.basename(os.readlink(f"/sys/class/net/{bridge}/master"))
    mac = Path(f"/sys/class/net/{bridge}/address").read_text().strip()
    corral("create", "q2", "--template", "tiny", "--start")
    from corral.network.netlink import bridge_mac

    assert Path(f"/sys/class/net/{bridge}/address").read_text().strip() == mac == \
        bridge_mac(bridge)
    assert Path(f"/sys/class/net/{bridge}/addr_assign_type").read_text().strip() == "3"  # set
    assert Path(f"/sys/class/net/{bridge}/bridge/multicast_querier").read_text().strip() == "1"
    assert Path(f"/sys/class/net/{bridge}/bridge/hash_max").read_text().strip() == "65536"
    conf = corral("exec", "q1", "--", "cat", "/proc/sys/net/ipv6/conf/eth0/accept_dad",
                  "/proc/sys/net/ipv6/conf/eth0/router_solicitations",
                  "/proc/sys/net/ipv6/conf/eth0/force_mld_version").split()
    assert conf == ["0", "0", "1"]
    host_index = corral("exec", "q1", "--", "cat", "/sys/class/net/eth0/iflink").strip()
    host_addrs = subprocess.run(["ip", "-o", "-6", "addr", "show"], capture_output=True,
                                text=True, check=True).stdout.splitlines()
    assert host_index.isdigit()
    assert not [line for line in host_addrs if line.split(":")[0] == host_index]
    assert "addrgenmode none" in subprocess.run(
        ["ip", "-d", "link", "show", "dev", _name_of(int(host_index))], capture_output=True,
        text=True, check=True).stdout
    q2 = next(a for a in corral.info("q2")["addresses"] if ":" in a).split("/")[0]
    assert "1 packets received" in corral("exec", "q1", "--", "ping", "-6", "-c", "1", "-W",
                                          "2", q2)
    # The bridge learnt the containers' groups from their reports: solicitations
    # for an address go to its container's port only.
    mdb = subprocess.run(["bridge", "mdb", "show", "dev", bridge], capture_output=True,
                         text=True, check=True).stdout
    assert f"port {_name_of(int(host_index))} grp ff02::1:ff" in mdb


def _imports_of(corral: Corral, *args: str) -> set[str]:
    """The modules a command imports (the launcher run with -X importtime)."""
    import sys

    out = subprocess.run([sys.executable, "-IS", "-X", "importtime", CORRAL, "--root",
                          str(corral.root), *args], capture_output=True, text=True, check=True)
    return {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_a_networked_start_stop_and_run_need_no_netlink_library(corral: Corral) -> None:
    """pyroute2's import (~100-200 ms, more than the rest of a start) stays off the paths
    of a networked container's start, stop and `run --rm` once its network exists, and so
    do json's and socket's (regular expressions, enum); the veth of a destroyed container
    is gone when destroy returns."""
    corral("create", "np", "--template", "tiny")
    corral("start", "np")  # makes the network: pyroute2 allowed there
    corral("stop", "np", "--timeout", "2")
    heavy = {"pyroute2", "json", "socket", "ipaddress"}
    assert not heavy & _imports_of(corral, "start", "np")
    assert not heavy & _imports_of(corral, "stop", "np", "--timeout", "2")
    assert not heavy & _imports_of(corral, "run", "--rm", "--template", "tiny", "--", "true")
    corral("start", "np")
    port = _name_of(int(corral("exec", "np", "--", "cat", "/sys/class/net/eth0/iflink")))
    corral("destroy", "--force", "np")
    assert not os.path.exists(f"/sys/class/net/{port}")


def test_doctor_brings_a_bridge_of_an_earlier_version_up_to_date(corral: Corral) -> None:
    corral("create", "ob", "--template", "tiny", "--start")
    port = _name_of(int(corral("exec", "ob", "--", "cat", "/sys/class/net/eth0/iflink")))
    bridge = os.path.basename(os.readlink(f"/sys/class/net/{port}/master"))
    # As an earlier version made it: the kernel's MAC choice, no querier.
    subprocess.run(["ip", "link", "set", bridge, "address", "02:00:00:00:00:01", "type",
                    "bridge", "mcast_querier", "0"], check=True)
    found = subprocess.run([CORRAL, "--root", str(corral.root), "doctor"], capture_output=True,
                           text=True)
    assert found.returncode != 0 and f"bridge {bridge} without its fixed MAC" in found.stdout
    # A port the operator added to the bridge is theirs: doctor leaves it alone.
    dummy = f"crtd{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", dummy, "type", "veth", "peer", "name",
                    f"crtp{os.getpid() % 100000}"], check=True)
    try:
        subprocess.run(["ip", "link", "set", dummy, "master", bridge], check=True)
        corral("doctor", "--fix")
        assert os.path.exists(f"/sys/class/net/{dummy}")
    finally:
        subprocess.run(["ip", "link", "del", dummy], capture_output=True, check=False)
    from corral.network.netlink import bridge_mac

    assert Path(f"/sys/class/net/{bridge}/address").read_text().strip() == bridge_mac(bridge)
    assert Path(f"/sys/class/net/{bridge}/bridge/multicast_querier").read_text().strip() == "1"
    assert "packets received" in corral("exec", "ob", "--", "ping", "-c", "1", "-W", "2",
                                        corral.info("ob")["addresses"][0].rsplit(".", 1)[0]
                                        + ".1")


def test_port_forward_from_loopback_and_another_namespace(corral: Corral) -> None:
    corral("create", "pf", "--template", "tiny", "--publish", "18081:80", "--start")
    serve(corral, "pf", "forwarded")
    assert http("http://127.0.0.1:18081/") == "forwarded"
    # a separate test namespace (a sleeping process's), linked to the host by a veth pair
    holder = subprocess.Popen(["unshare", "--net", "sleep", "120"])
    enter = ["nsenter", f"--net=/proc/{holder.pid}/ns/net"]
    host_if, peer_if = f"crt{os.getpid() % 100000}h", f"crt{os.getpid() % 100000}p"
    try:
        time.sleep(0.1)
        subprocess.run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if],
                       check=True)
        subprocess.run(["ip", "link", "set", peer_if, "netns", str(holder.pid)], check=True)
        subprocess.run(["ip", "addr", "add", "10.199.250.1/30", "dev", host_if], check=True)
        subprocess.run(["ip", "link", "set", host_if, "up"], check=True)
        for cmd in (["ip", "addr", "add", "10.199.250.2/30", "dev", peer_if],
                    ["ip", "link", "set", peer_if, "up"], ["ip", "link", "set", "lo", "up"]):
            subprocess.run([*enter, *cmd], check=True)
        out = subprocess.run([*enter, sys_python(), "-c",
                              "import urllib.request as u; print(u.urlopen("
                              "'http://10.199.250.1:18081/', timeout=3).read().decode())"],
                             capture_output=True, text=True, timeout=20)
        assert out.stdout.strip() == "forwarded", out.stderr[-300:]
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        holder.kill()
        holder.wait()
    # unpublished when stopped
    corral("stop", "pf", "--timeout", "2")
    with pytest.raises(OSError):
        http("http://127.0.0.1:18081/")


def sys_python() -> str:
    import sys

    return sys.executable


def test_isolated_reaches_gateway_not_neighbours(corral: Corral) -> None:
    corral("create", "open", "--template", "tiny", "--start")
    corral("create", "iso", "--template", "tiny", "--isolated", "--start")
    other = ip_of(corral, "open")
    gw = corral("exec", "iso", "--", "ip", "route").split("default via ")[1].split()[0]
    assert corral.run("exec", "iso", "--", "ping", "-c", "1", "-W", "1", gw,
                      check=False).returncode == 0
    assert corral.run("exec", "iso", "--", "ping", "-c", "1", "-W", "1", other,
                      check=False).returncode != 0
    assert corral.run("exec", "open", "--", "ping", "-c", "1", "-W", "1",
                      ip_of(corral, "iso"), check=False).returncode != 0


def test_addresses_explicit_refused_and_concurrent(corral: Corral) -> None:
    corral("create", "first", "--template", "tiny")
    first = ip_of(corral, "first")
    subnet = first.rsplit(".", 1)[0]
    corral("create", "fixed", "--template", "tiny", "--ip", f"{subnet}.200")
    assert ip_of(corral, "fixed") == f"{subnet}.200"
    p = corral.run("create", "dup", "--template", "tiny", "--ip", f"{subnet}.200", check=False)
    assert p.returncode != 0 and "in use" in p.stderr
    p = corral.run("create", "out", "--template", "tiny", "--ip", "192.0.2.77", check=False)
    assert p.returncode != 0 and "outside" in p.stderr
    procs = [subprocess.Popen([CORRAL, "--root", str(corral.root), "create", f"c{i}",
                               "--template", "tiny"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for i in range(8)]
    assert all(p.wait() == 0 for p in procs)
    addrs = [ip_of(corral, f"c{i}") for i in range(8)] + [first, f"{subnet}.200"]
    assert len(set(addrs)) == len(addrs)
    corral("destroy", "c0")
    corral("create", "again", "--template", "tiny")
    assert ip_of(corral, "again") not in addrs[1:]


def test_no_network_mode(corral: Corral) -> None:
    corral("create", "nn", "--template", "tiny", "--net", "none", "--start")
    assert corral.info("nn")["ip"] is None
    assert corral("exec", "nn", "--", "sh", "-c", "ls /sys/class/net").split() == ["lo"]
    # "loopback only" is a loopback that works, also when the command is the init
    for probe in (["exec", "nn", "--"], ["run", "--rm", "--net", "none", "--template", "tiny",
                                          "--"]):
        out = corral(*probe, "sh", "-c", "ip -o -4 addr show dev lo; ping -c1 -W1 127.0.0.1")
        assert "inet 127.0.0.1/8" in out and "1 packets received" in out, out


def test_publish_and_unpublish_live(corral: Corral) -> None:
    corral("create", "lv", "--template", "tiny", "--start")
    serve(corral, "lv", "live")
    with pytest.raises(OSError):
        http("http://127.0.0.1:18083/")
    corral("set", "lv", "--publish", "18083:80")
    assert http("http://127.0.0.1:18083/") == "live"
    corral("set", "lv", "--unpublish", "18083")
    with pytest.raises(OSError):
        http("http://127.0.0.1:18083/")
    assert corral.json("info", "lv")  # still fine
    p = corral.run("set", "lv", "--publish", "nope", check=False)
    assert p.returncode != 0 and "invalid --publish" in p.stderr


def _download_rate(corral: Corral, name: str, mib: int) -> float:
    """MiB/s of a bounded transfer host → container (the container's download)."""
    corral("exec", name, "--", "sh", "-c", "nc -l -p 5009 >/dev/null 2>&1 </dev/null &")
    time.sleep(0.3)
    buf = b"\0" * 65536
    with socket.create_connection((ip_of(corral, name), 5009)) as s:
        t0 = time.perf_counter()
        for _ in range(mib * 16):
            s.sendall(buf)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # returns at EOF, once the container has read everything
    return mib / (time.perf_counter() - t0)


def test_rate_limit_measured_and_changed_live(corral: Corral) -> None:
    corral("create", "rl", "--template", "tiny", "--net-rate", "40mbit", "--start")
    rate = _download_rate(corral, "rl", 8) * 8 * 1.048576  # → mbit/s
    assert 40 * 0.8 <= rate <= 40 * 1.2, rate
    corral("set", "rl", "--net-rate", "80mbit")
    rate = _download_rate(corral, "rl", 16) * 8 * 1.048576
    assert 80 * 0.8 <= rate <= 80 * 1.2, rate


def test_routed_mode_end_to_end(corral: Corral) -> None:
    corral("create", "r1", "--template", "tiny", "--net", "routed", "--start")
    corral("create", "r2", "--template", "tiny", "--net", "routed", "--start")
    corral("create", "br", "--template", "tiny", "--start")
    info = corral.info("r1")
    assert info["ip"].endswith("/32")
    routes = corral("exec", "r1", "--", "ip", "route")
    assert "default via 169.254.0.1 dev eth0" in routes
    serve(corral, "r2", "routed")
    r2 = ip_of(corral, "r2")
    assert http(f"http://{r2}/") == "routed"  # host → container over its /32 route
    assert corral("exec", "r1", "--", "wget", "-qO-", f"http://{r2}/").strip() == "routed"
    assert "1 packets received" in corral("exec", "r1", "--", "ping", "-c", "1", "-W", "2",
                                          ip_of(corral, "br"))
    r1_6 = [a for a in corral.info("r1")["addresses"] if ":" in a][0]
    assert r1_6.endswith("/128")
    assert "default via fe80::1 dev eth0" in corral("exec", "r1", "--", "ip", "-6", "route")
    r2_6 = [a for a in corral.info("r2")["addresses"] if ":" in a][0].split("/")[0]
    assert "1 packets received" in corral("exec", "r1", "--", "ping", "-6", "-c", "1", "-W", "2",
                                          r2_6)
    # the host answers ARP/NDP for routed containers on its uplink (no traffic sent)
    proxies = subprocess.run(["ip", "neigh", "show", "proxy"], capture_output=True,
                             text=True).stdout
    assert r2 in proxies
    corral("stop", "r2", "--timeout", "2")
    proxies = subprocess.run(["ip", "neigh", "show", "proxy"], capture_output=True,
                             text=True).stdout
    assert r2 not in proxies
    nets = {n["name"]: n for n in corral.json("network", "list")}  # type: ignore[union-attr]
    assert nets["routed"]["bridge"] is None
    p = corral.run("create", "bad", "--template", "tiny", "--net", "routed", "--publish",
                   "8080:80", check=False)
    assert p.returncode != 0 and "routed" in p.stderr


def test_two_networks(corral: Corral) -> None:
    corral("network", "create", "backend")
    corral("create", "m", "--template", "tiny", "--network", "default", "--network", "backend",
           "--start")
    corral("create", "only", "--template", "tiny", "--network", "backend", "--start")
    links = corral("exec", "m", "--", "ls", "/sys/class/net").split()
    assert sorted(links) == ["eth0", "eth1", "lo"]
    assert len([a for a in corral.info("m")["addresses"] if ":" not in a]) == 2
    assert "1 packets received" in corral("exec", "m", "--", "ping", "-c", "1", "-W", "2",
                                          ip_of(corral, "only"))
    # IPv6 is routed between networks too: a container only on 'default' reaches one
    # only on 'backend' through the host
    corral("create", "front", "--template", "tiny", "--start")
    only6 = [a for a in corral.info("only")["addresses"] if ":" in a][0].split("/")[0]
    assert "1 packets received" in corral("exec", "front", "--", "ping", "-6", "-c", "1",
                                          "-W", "2", only6)
    p = corral.run("network", "delete", "backend", check=False)
    assert p.returncode != 0 and "used by" in p.stderr


def test_network_subnet_and_bridge_configurable(corral: Corral) -> None:
    corral("network", "create", "lab", "--subnet", "10.199.77.0/24", "--bridge", "crtestlab0")
    info = corral.json("network", "info", "lab")
    assert info["subnet"] == "10.199.77.0/24" and info["bridge"] == "crtestlab0"  # type: ignore[index]
    corral("create", "l1", "--template", "tiny", "--network", "lab")
    assert ip_of(corral, "l1") == "10.199.77.2"
    for args, text in ((("overlap", "--subnet", "10.199.77.128/25"), "overlaps"),
                       (("bad", "--subnet", "nonsense"), "invalid --subnet"),
                       (("lab",), "already exists")):
        p = corral.run("network", "create", *args, check=False)
        assert p.returncode != 0 and text in p.stderr, p.stderr


def test_veth_requests_in_one_write_report_errors_and_undo() -> None:
    """The start path sends a container's link requests in one write per namespace:
    the first failure is reported (errno and all), and a half-made pair removed."""
    from corral.errors import KernelError
    from corral.network import netlink

    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    host_if = f"crt{os.getpid() % 100000}"
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        netlink.attach_veth(host_if, None, holder.pid, "02:00:00:00:00:42",
                            ["10.77.0.2/24", "fd00:77::2/64"], ["10.77.0.1"])
        inside = subprocess.run(["nsenter", "-t", str(holder.pid), "-n", "ip", "-o", "addr"],
                                capture_output=True, text=True, check=True).stdout
        assert "eth0" in inside and "10.77.0.2/24" in inside and "fd00:77::2/64" in inside
        route = subprocess.run(["nsenter", "-t", str(holder.pid), "-n", "ip", "route"],
                               capture_output=True, text=True, check=True).stdout
        assert "default via 10.77.0.1 dev eth0" in route
        with pytest.raises(KernelError, match="File exists"):
            netlink.attach_veth(host_if, None, holder.pid, "02:00:00:00:00:43",
                                ["10.77.0.3/24"], [])
        netlink.delete_link(host_if)
        # a gateway off the container's subnet: the route is refused, the pair undone
        with pytest.raises(KernelError, match="cannot configure eth0"):
            netlink.attach_veth(host_if, None, holder.pid, "02:00:00:00:00:44",
                                ["10.77.0.2/24"], ["10.99.0.1"])
        assert not os.path.exists(f"/sys/class/net/{host_if}")
    finally:
        netlink.delete_link(host_if)
        holder.kill()
        holder.wait()

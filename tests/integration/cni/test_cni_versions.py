"""CNI versions, conflist chaining (prevResult), CNI_NETNS forms, CNI_ARGS forms, IPv6, non-k8s."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.ipam.client import IPAMClient
from tests.integration.cni.conftest import DEBIAN_CNI, Node, ip_json
from tests.nsnet import ping, tcp_roundtrip

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "0.4.0", "1.0.0"])
def test_result_per_version(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    version: str,
) -> None:
    node = make_node("node1")
    ns = make_netns()
    conf = node.conf(cniVersion=version)
    r = node.run(
        "ADD",
        conf,
        container_id="c1",
        netns=f"/var/run/netns/{ns}",
        args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1",
    )
    assert r.rc == 0, r.stdout + r.stderr
    assert r.answer["cniVersion"] == version
    if version == "0.2.0":
        ip = r.answer["ip4"]["ip"].split("/")[0]
        assert "interfaces" not in r.answer
    else:
        [entry] = r.answer["ips"]
        ip = entry["address"].split("/")[0]
        assert ("version" in entry) == (version != "1.0.0")
        assert r.answer["interfaces"][entry["interface"]]["sandbox"] == f"/var/run/netns/{ns}"
        assert r.answer["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
    assert tcp_roundtrip(node.netns, ns, ip) == b"echo:hello"
    if version in ("0.4.0", "1.0.0"):
        chk = node.run(
            "CHECK",
            {**conf, "prevResult": r.out},
            container_id="c1",
            netns=f"/var/run/netns/{ns}",
            args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1",
        )
        assert chk.rc == 0, chk.stdout
    else:
        chk = node.run("CHECK", conf, container_id="c1", netns=f"/var/run/netns/{ns}")
        assert chk.rc == 1
        assert chk.answer["code"] == 1
    d = node.run(
        "DEL",
        conf,
        container_id="c1",
        netns=f"/var/run/netns/{ns}",
        args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=p1",
    )
    assert d.rc == 0, d.stdout


def test_conflist_chain_with_tuning_and_check_detects_damage(
    make_node: Callable[[str], Node], make_netns: Callable[[], str], pool: dict[str, Any]
) -> None:
    """A runtime's conflist: calico then Debian's tuning plugin, fed calico's prevResult."""
    node = make_node("node1")
    ns = make_netns()
    netns = f"/var/run/netns/{ns}"
    conflist: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "plugins": [
            {
                "type": "calico",
                "etcd_endpoints": node.endpoint,
                "nodename": "node1",
                "ipam": {"type": "calico-ipam"},
                "mtu": 1400,
            },
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.accept_local": "1"}},
        ],
    }
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"

    def conf_for(i: int, prev: dict[str, Any] | None) -> dict[str, Any]:
        c: dict[str, Any] = {
            "cniVersion": conflist["cniVersion"],
            "name": conflist["name"],
            **conflist["plugins"][i],
        }
        if prev is not None:
            c["prevResult"] = prev
        return c

    prev: dict[str, Any] | None = None
    for i, plugin in enumerate(conflist["plugins"]):
        r = node.run(
            "ADD",
            conf_for(i, prev),
            container_id="cc",
            netns=netns,
            args=args,
            plugin=plugin["type"] if plugin["type"] == "calico" else f"../{plugin['type']}",
        )
        assert r.rc == 0, r.stdout + r.stderr
        prev = r.answer
    assert prev is not None
    assert prev["interfaces"][1]["name"] == "eth0"
    assert ip_json(ns, "link", "show", "eth0")[0]["mtu"] == 1400
    accept_local = subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.conf.eth0.accept_local"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert accept_local == "1"
    # CHECK with the final cached result passes, then fails once the pod's route is gone
    for i in range(2):
        r = node.run(
            "CHECK",
            conf_for(i, prev),
            container_id="cc",
            netns=netns,
            args=args,
            plugin="calico" if i == 0 else "../tuning",
        )
        assert r.rc == 0, r.stdout + r.stderr
    subprocess.run(["ip", "-n", ns, "route", "del", "default"], check=True)
    r = node.run("CHECK", conf_for(0, prev), container_id="cc", netns=netns, args=args)
    assert r.rc == 1
    assert r.answer["code"] == 102
    assert "default route" in r.answer["msg"]
    for i in (1, 0):  # DEL runs the list in reverse
        r = node.run(
            "DEL",
            conf_for(i, prev),
            container_id="cc",
            netns=netns,
            args=args,
            plugin="calico" if i == 0 else "../tuning",
        )
        assert r.rc == 0, r.stdout + r.stderr


@pytest.fixture
def bin_dir(tmp_path):
    """Our plugins plus symlinks to Debian's, so '../tuning' style names resolve in one dir."""
    from calico.cni import install

    d = tmp_path / "x" / "bin"
    install.install_binaries(d, socket_path="")
    for name in ("tuning", "host-local"):
        os.symlink(f"{DEBIAN_CNI}/{name}", tmp_path / "x" / name)
    return d


@pytest.mark.parametrize("form", ["proc-pid", "proc-fd"])
def test_netns_as_proc_path(
    make_node: Callable[[str], Node], make_netns: Callable[[], str], pool: dict[str, Any], form: str
) -> None:
    node = make_node("node1")
    ns = make_netns()
    holder = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "60"])
    try:
        for _ in range(100):  # wait until the sleeper is inside the namespace
            if _same_ns(holder.pid, ns):
                break
            time.sleep(0.02)
        if form == "proc-pid":
            path = f"/proc/{holder.pid}/ns/net"
        else:
            # a runtime holding the namespace open: /proc/<its pid>/fd/<n>
            fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
            path = f"/proc/{os.getpid()}/fd/{fd}"
        r = node.run("ADD", node.conf(), container_id="cp", netns=path)
        assert r.rc == 0, r.stdout + r.stderr
        ip = r.answer["ips"][0]["address"].split("/")[0]
        assert ping(node.netns, ip)
        assert r.answer["interfaces"][1]["sandbox"] == path
        r = node.run("DEL", node.conf(), container_id="cp", netns=path)
        assert r.rc == 0, r.stdout + r.stderr
        if form == "proc-fd":
            os.close(fd)
    finally:
        holder.kill()
        holder.wait()


def _same_ns(pid: int, ns: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/var/run/netns/{ns}").st_ino
    except OSError:
        return False


@pytest.mark.parametrize(
    "args",
    [
        "",
        "IgnoreUnknown=1",
        "K8S_POD_NAMESPACE=ns2;K8S_POD_NAME=db-0",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns2;K8S_POD_NAME=db-0;K8S_POD_INFRA_CONTAINER_ID=x;FOO=bar",
        "IgnoreUnknown=1;K8S_POD_NAME=db-0",  # podman's: a name alone is not Kubernetes
        "K8S_POD_NAMESPACE=ns2",
    ],
)
def test_cni_args_forms(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    datastore: Client,
    args: str,
) -> None:
    node = make_node("node1")
    ns = make_netns()
    r = node.run("ADD", node.conf(), container_id="c-9", netns=f"/var/run/netns/{ns}", args=args)
    assert r.rc == 0, r.stdout + r.stderr
    weps = datastore.list("WorkloadEndpoint")
    assert len(weps) == 1
    wep = weps[0]
    if "K8S_POD_NAME=" in args and "K8S_POD_NAMESPACE=" in args:
        assert wep["metadata"]["name"] == "node1-k8s-db--0-eth0"
        assert wep["metadata"]["namespace"] == "ns2"
        assert wep["spec"]["profiles"] == ["kns.ns2"]
    else:
        assert wep["metadata"]["name"] == "node1-cni-c--9-eth0"
        assert wep["metadata"]["namespace"] == "default"
        assert wep["metadata"]["labels"] == {
            "projectcalico.org/namespace": "default",
            "projectcalico.org/orchestrator": "cni",
        }
        assert wep["spec"]["orchestrator"] == "cni"
        assert wep["spec"]["workload"] == "c-9"
        assert "pod" not in wep["spec"]
        assert wep["spec"]["profiles"] == ["net1"]
        profile = datastore.get("Profile", "net1")
        assert profile["spec"]["labelsToApply"] == {"net1": ""}
    r = node.run("DEL", node.conf(), container_id="c-9", netns=f"/var/run/netns/{ns}", args=args)
    assert r.rc == 0, r.stdout + r.stderr
    assert datastore.list("WorkloadEndpoint") == []


def test_unknown_cni_arg_without_ignore_unknown(
    make_node: Callable[[str], Node], make_netns: Callable[[], str], pool: dict[str, Any]
) -> None:
    node = make_node("node1")
    ns = make_netns()
    r = node.run("ADD", node.conf(), container_id="c", netns=f"/var/run/netns/{ns}", args="FOO=1")
    assert r.rc == 1
    assert r.answer["code"] == 4
    assert "FOO" in r.answer["msg"]


def test_dual_stack(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    pool6: dict[str, Any],
    etcd: EtcdClient,
) -> None:
    node = make_node("node1")
    ns = make_netns()
    conf = node.conf()
    conf["ipam"]["assign_ipv6"] = "true"
    r = node.run("ADD", conf, container_id="c6", netns=f"/var/run/netns/{ns}")
    assert r.rc == 0, r.stdout + r.stderr
    addrs = [e["address"] for e in r.answer["ips"]]
    v6 = next(a for a in addrs if ":" in a)
    assert v6.endswith("/128")
    ip6 = v6.split("/")[0]
    assert ping(node.netns, ip6)
    assert tcp_roundtrip(node.netns, ns, ip6) == b"echo:hello"
    chk = node.run(
        "CHECK", {**conf, "prevResult": r.out}, container_id="c6", netns=f"/var/run/netns/{ns}"
    )
    assert chk.rc == 0, chk.stdout
    d = node.run("DEL", conf, container_id="c6", netns=f"/var/run/netns/{ns}")
    assert d.rc == 0
    assert IPAMClient(etcd).ip_info(ip6) is None


def test_delegates_to_host_local(
    make_node: Callable[[str], Node], make_netns: Callable[[], str], tmp_path: Path
) -> None:
    """ipam.type other than calico-ipam: the plugin execs it from CNI_PATH (Debian's host-local)."""
    node = make_node("node1")
    ns = make_netns()
    conf = node.conf(
        ipam={"type": "host-local", "subnet": "10.123.0.0/24", "dataDir": str(tmp_path / "hl")}
    )
    r = node.run("ADD", conf, container_id="hl1", netns=f"/var/run/netns/{ns}")
    assert r.rc == 0, r.stdout + r.stderr
    ip = r.answer["ips"][0]["address"].split("/")[0]
    assert ip.startswith("10.123.0.")
    assert ping(node.netns, ip)
    assert node.run("DEL", conf, container_id="hl1", netns=f"/var/run/netns/{ns}").rc == 0
    assert not (tmp_path / "hl" / "net1" / ip).exists()
    assert json.dumps(r.out)


def test_ipv4_pools_and_v6_only(
    make_node: Callable[[str], Node],
    make_netns: Callable[[], str],
    pool: dict[str, Any],
    pool6: dict[str, Any],
    datastore: Client,
) -> None:
    datastore.create(
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "other"},
         "spec": {"cidr": "10.68.0.0/24", "blockSize": 28}}, validate=False)  # fmt: skip
    node = make_node("node1")
    ns = make_netns()
    conf = node.conf(ipam={"type": "calico-ipam", "ipv4_pools": ["other"]})
    r = node.run("ADD", conf, container_id="a", netns=f"/var/run/netns/{ns}")
    assert r.rc == 0, r.stdout
    assert r.answer["ips"][0]["address"].startswith("10.68.0.")
    ns2 = make_netns()
    conf6 = node.conf(ipam={"type": "calico-ipam", "assign_ipv4": "false", "assign_ipv6": "true"})
    r = node.run("ADD", conf6, container_id="b", netns=f"/var/run/netns/{ns2}")
    assert r.rc == 0, r.stdout
    assert [e["address"][:6] for e in r.answer["ips"]] == ["fd65::"]
    assert r.answer["routes"] == [{"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"}]
    assert ping(node.netns, r.answer["ips"][0]["address"].split("/")[0])
    bad = node.conf(ipam={"type": "calico-ipam", "ipv4_pools": ["10.1.0.0/16"]})
    r = node.run("ADD", bad, container_id="c", netns=f"/var/run/netns/{ns2}")
    assert r.rc == 1
    assert r.answer["code"] == 100
    assert "'10.1.0.0/16' does not exist" in r.answer["msg"]

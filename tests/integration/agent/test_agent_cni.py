"""The agent with the real CNI plugin: pods added by ``calico`` (non-Kubernetes mode: the network's
profile allows from members of the network) are reachable as the profile says; an interface the
plugin made but whose endpoint never reached the datastore stays isolated (fail closed); DEL
removes the endpoint's chains and route."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from calico.cni import install
from tests.integration.agent.harness import NODENAME, Matrix, Node, Prober, Workload, sh

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


def cni(node: Node, bin_dir: Path, command: str, container: str, netns: str) -> dict[str, Any]:
    conf = install.conf(
        etcd_endpoints=node.etcd.endpoint, nodename=NODENAME, name="net1", cni_version="1.0.0"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": f"/var/run/netns/{netns}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(bin_dir),
    }
    proc = subprocess.run(
        ["ip", "netns", "exec", node.ns, str(bin_dir / "calico")],
        input=json.dumps(conf),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


def test_agent_with_cni_plugin(node: Node, make_netns: Callable[[], str], tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    install.install_binaries(bin_dir, socket_path="")
    node.apply(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "pool1"},
            "spec": {"cidr": "10.65.0.0/16", "blockSize": 26},
        }
    )
    node.start_agent()
    pods = {}
    for name in ("p1", "p2"):
        ns = make_netns()
        result = cni(node, bin_dir, "ADD", f"c-{name}", ns)
        ip = result["ips"][0]["address"].split("/")[0]
        iface = next(i["name"] for i in result["interfaces"] if i["name"].startswith("cali"))
        wl = Workload(name, ns, iface, ip, {})
        wl.prober = Prober(ns)
        node.workloads[name] = wl
        pods[name] = wl
    orphan = node.add_workload("orphan", "10.65.200.9", {}, write=False)  # no endpoint: isolated
    # Routable (as if the plugin had got that far), so only the policy can stop it.
    sh("ip", "-n", node.ns, "route", "add", f"{orphan.ip}/32", "dev", orphan.iface, "scope", "link")
    mx = Matrix(node)
    mx.expect("p1", "p2", ok=True)
    mx.expect("p2", "p1", "udp", 53, ok=True)
    mx.expect("ext", "p1", ok=False)  # the network profile allows only members of net1
    mx.expect("p1", "ext", ok=True)  # egress allowed
    mx.expect("p1", "orphan", ok=False)
    mx.expect("orphan", "p1", ok=False)
    mx.check()

    cni(node, bin_dir, "DEL", "c-p2", pods["p2"].ns)
    deadline = time.monotonic() + 10
    while f"cali-tw-{pods['p2'].iface}" in node.nft("list", "table", "inet", "calico"):
        assert time.monotonic() < deadline, node.log_tail()
        time.sleep(0.1)
    mx = Matrix(node)
    mx.expect("p1", "ext", ok=True)
    mx.check()
    table = node.nft("list", "table", "inet", "calico")
    assert f"cali-tw-{pods['p2'].iface}" not in table
    assert f"cali-tw-{pods['p1'].iface}" in table
    assert pods["p2"].ip not in sh("ip", "-n", node.ns, "route", "show", "proto", "80")
    assert orphan.iface not in table

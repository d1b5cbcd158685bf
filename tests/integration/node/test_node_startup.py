"""calico-node start-up against a real etcd: Node, default pool, ClusterInformation; idempotent;
conflicts and bad input write nothing. Autodetection runs in a real namespace."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.node import startup
from tests.nsnet import Forwarder

pytestmark = [pytest.mark.etcd]


def env(**kw: str) -> dict[str, str]:
    # IPIP Never unless a test says otherwise: these tests are about the Node, not tunnels
    return {"NODENAME": "n1", "IP": "10.0.0.1/24", "CALICO_IPV4POOL_IPIP": "Never", **kw}


def test_first_start_registers_everything(datastore: Client) -> None:
    calico_defaults = {"NODENAME": "n1", "IP": "10.0.0.1/24", "AS": "65001"}
    node = startup.run_startup(datastore, calico_defaults)
    bgp = dict(node["spec"]["bgp"])
    tunnel = bgp.pop("ipv4IPIPTunnelAddr")  # the default pool is IPIP Always: n1 got an address
    assert bgp == {"ipv4Address": "10.0.0.1/24", "asNumber": 65001}
    assert ipaddress.ip_address(tunnel) in ipaddress.ip_network("192.168.0.0/16")
    stored = datastore.get("Node", "n1")
    assert stored["spec"]["bgp"]["ipv4Address"] == "10.0.0.1/24"
    assert stored["spec"]["bgp"]["ipv4IPIPTunnelAddr"] == tunnel
    pools = datastore.list("IPPool")
    assert [
        (
            p["metadata"]["name"],
            p["spec"]["cidr"],
            p["spec"]["natOutgoing"],
            p["spec"]["ipipMode"],
            p["spec"]["vxlanMode"],
        )
        for p in pools
    ] == [("default-ipv4-ippool", "192.168.0.0/16", True, "Always", "Never")]
    info = datastore.get("ClusterInformation", "default")["spec"]
    assert info["datastoreReady"] is True
    assert info["calicoVersion"] == startup.CALICO_VERSION
    assert len(info["clusterGUID"]) == 32
    tiers = {t["metadata"]["name"]: t["spec"] for t in datastore.list("Tier")}
    assert tiers == {  # Calico's built-in tiers with their fixed values
        "default": {"order": 1000000, "defaultAction": "Deny"},
        "kube-admin": {"order": 1000, "defaultAction": "Pass"},
        "kube-baseline": {"order": 10000000, "defaultAction": "Pass"},
    }

    # a restart changes nothing that is already right, and keeps the GUID and tunnel address
    startup.run_startup(datastore, {**calico_defaults, "IP": ""})
    assert datastore.get("Node", "n1")["spec"]["bgp"]["ipv4Address"] == "10.0.0.1/24"
    assert datastore.get("Node", "n1")["spec"]["bgp"]["ipv4IPIPTunnelAddr"] == tunnel
    assert (
        datastore.get("ClusterInformation", "default")["spec"]["clusterGUID"] == info["clusterGUID"]
    )
    assert len(datastore.list("IPPool")) == 1
    assert {t["metadata"]["name"]: t["spec"] for t in datastore.list("Tier")} == tiers


def test_admin_datastore_ready_false_is_kept(datastore: Client) -> None:
    datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "ClusterInformation",
            "metadata": {"name": "default"},
            "spec": {"clusterGUID": "abc", "datastoreReady": False},
        }
    )
    startup.run_startup(datastore, env())
    spec = datastore.get("ClusterInformation", "default")["spec"]
    assert spec["datastoreReady"] is False
    assert spec["clusterGUID"] == "abc"


def test_pool_options(datastore: Client) -> None:
    startup.run_startup(
        datastore,
        env(
            CALICO_IPV4POOL_CIDR="10.244.0.0/16",
            CALICO_IPV4POOL_IPIP="",  # empty = unset; VXLAN on makes IPIP's default Never
            CALICO_IPV4POOL_VXLAN="crosssubnet",
            CALICO_IPV4POOL_NAT_OUTGOING="false",
        ),
    )
    (pool,) = datastore.list("IPPool")
    assert pool["spec"]["cidr"] == "10.244.0.0/16"
    assert (pool["spec"]["ipipMode"], pool["spec"]["vxlanMode"]) == ("Never", "CrossSubnet")
    assert pool["spec"]["natOutgoing"] is False
    spec = datastore.get("Node", "n1")["spec"]
    assert ipaddress.ip_address(spec["ipv4VXLANTunnelAddr"]) in ipaddress.ip_network(
        "10.244.0.0/16"
    )
    assert "ipv4IPIPTunnelAddr" not in spec["bgp"]
    assert spec["vxlanTunnelMACAddr"]


def test_ipip_and_vxlan_both_on_writes_nothing(datastore: Client) -> None:
    both = env(CALICO_IPV4POOL_IPIP="Always", CALICO_IPV4POOL_VXLAN="Always")
    with pytest.raises(startup.StartupError) as exc:
        startup.run_startup(datastore, both)
    assert "CALICO_IPV4POOL_IPIP='Always'" in str(exc.value)
    assert "CALICO_IPV4POOL_VXLAN='Always'" in str(exc.value)
    assert datastore.list("Node") == []
    assert datastore.list("IPPool") == []


def test_backend_none_allocates_no_tunnel_address(datastore: Client) -> None:
    node = startup.run_startup(
        datastore, env(CALICO_IPV4POOL_IPIP="Always", CALICO_NETWORKING_BACKEND="none")
    )
    assert node["spec"]["bgp"] == {"ipv4Address": "10.0.0.1/24"}
    assert datastore.list("IPPool")[0]["spec"]["ipipMode"] == "Always"


def test_no_default_pools_and_existing_pool(datastore: Client) -> None:
    startup.run_startup(datastore, env(NO_DEFAULT_POOLS="true"))
    assert datastore.list("IPPool") == []
    datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": "mine"},
            "spec": {"cidr": "10.50.0.0/16"},
        }
    )
    startup.run_startup(datastore, env())
    assert [p["metadata"]["name"] for p in datastore.list("IPPool")] == ["mine"]


def test_address_conflict_is_an_error(datastore: Client) -> None:
    startup.run_startup(datastore, env())
    taken = r"'n1' is already using the address 10\.0\.0\.1"
    with pytest.raises(startup.StartupError, match=taken):
        startup.run_startup(datastore, env(NODENAME="n2"))
    assert [n["metadata"]["name"] for n in datastore.list("Node")] == ["n1"]


def test_bad_input_writes_nothing(datastore: Client) -> None:
    with pytest.raises(startup.StartupError, match="CALICO_IPV4POOL_CIDR"):
        startup.run_startup(datastore, env(CALICO_IPV4POOL_CIDR="banana"))
    assert datastore.list("Node") == []
    assert datastore.list("IPPool") == []
    assert datastore.list("ClusterInformation") == []


def test_ip_none_and_as_update(datastore: Client) -> None:
    startup.run_startup(datastore, env(AS="65001"))
    node = startup.run_startup(datastore, env(IP="none", AS="65002"))
    assert node["spec"]["bgp"] == {"asNumber": 65002}


@pytest.mark.netns
@pytest.mark.parametrize(
    ("method", "want"),
    [
        ("first-found", "10.1.0.1/24"),
        ("interface=ens.*", "10.2.0.1/16"),
        ("cidr=10.2.0.0/16", "10.2.0.1/16"),
        ("can-reach=10.2.200.200", "10.2.0.1/16"),
        ("can-reach=10.1.0.77", "10.1.0.1/24"),
    ],
)
def test_autodetect_in_a_namespace(make_netns: Callable[[], str], method: str, want: str) -> None:
    ns = make_netns()
    for cmd in (
        # docker0 comes first (lowest ifindex) but first-found must skip it
        "link add docker0 type veth peer name dockp",
        "link add eth0 type veth peer name eth0p",
        "link add ens5 type veth peer name ens5p",
        "addr add 172.17.0.1/16 dev docker0",
        "addr add 10.1.0.1/24 dev eth0",
        "addr add 10.2.0.1/16 dev ens5",
        *(f"link set {i} up" for i in ("docker0", "dockp", "eth0", "eth0p", "ens5", "ens5p")),
    ):
        subprocess.run(["ip", "-n", ns, *cmd.split()], check=True)
    code = f"from calico.node import autodetect; print(autodetect.detect({method!r}, 4).cidr)"
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == want


def test_cni_install(datastore: Client, tmp_path: Path) -> None:
    e = env(
        CNI_BIN_DIR=str(tmp_path / "bin"),
        CNI_NET_DIR=str(tmp_path / "net"),
        ETCD_ENDPOINTS="http://10.0.0.9:2379",
    )
    startup.run_startup(datastore, e)
    assert os.access(tmp_path / "bin" / "calico", os.X_OK)
    assert os.access(tmp_path / "bin" / "calico-ipam", os.X_OK)
    conf = json.loads((tmp_path / "net" / "10-calico.conf").read_text())
    assert conf["type"] == "calico"
    assert conf["nodename"] == "n1"
    assert conf["etcd_endpoints"] == "http://10.0.0.9:2379"
    assert conf["ipam"]["type"] == "calico-ipam"

    raw = '{"name": "k8s-pod-network", "cniVersion": "0.3.1", "plugins": []}'
    startup.run_startup(
        datastore,
        env(
            CNI_NET_DIR=str(tmp_path / "net"),
            CNI_CONF_NAME="10-calico.conflist",
            CNI_NETWORK_CONFIG=raw,
        ),
    )
    assert (tmp_path / "net" / "10-calico.conflist").read_text() == raw + "\n"
    with pytest.raises(startup.StartupError, match="CNI_NETWORK_CONFIG"):
        startup.run_startup(
            datastore, env(CNI_NET_DIR=str(tmp_path / "x"), CNI_NETWORK_CONFIG="{nope")
        )
    assert not (tmp_path / "x").exists()


@pytest.mark.netns
def test_explicit_ip_is_stored_with_its_interface_prefix(
    make_netns: Callable[[], str], etcd_server: EtcdServer
) -> None:
    """CrossSubnet needs the node's subnet: IP without a prefix takes the interface's (/16 here);
    with one, it is kept as given."""
    ns = make_netns()
    for cmd in ("link add ens5 type veth peer name ens5p", "addr add 10.2.0.1/16 dev ens5"):
        subprocess.run(["ip", "-n", ns, *cmd.split()], check=True)
    fwd = Forwarder(ns, etcd_server.port)
    try:
        for ip, want in (("10.2.0.1", "10.2.0.1/16"), ("10.2.0.1/24", "10.2.0.1/24")):
            env = {
                **os.environ,
                "NODENAME": "n1",
                "IP": ip,
                "CALICO_IPV4POOL_IPIP": "Never",
                "ETCD_ENDPOINTS": f"http://127.0.0.1:{etcd_server.port}",
            }
            out = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    str(Path(sys.executable).parent / "calico-node"),
                    "--startup",
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            assert out.returncode == 0, out.stderr
            node = Client(EtcdClient([etcd_server.endpoint])).get("Node", "n1")
            assert node["spec"]["bgp"]["ipv4Address"] == want
    finally:
        fwd.close()

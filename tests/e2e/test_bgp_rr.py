"""Route reflector topology: three hosts start in the default full mesh, then the datastore switches
them to one route reflector (mesh off, BGPPeer selectors) while they run; calico-bgp re-renders and
BIRD is reconfigured live. Every host still reaches every other host's pods."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer

from .bgp_fabric import BGP_E2E_MARKS, Fabric, Host, echoes, running_fabric, wait_for

pytestmark = BGP_E2E_MARKS


@pytest.fixture
def fabric(
    make_netns: Callable[[], str], tmp_path: Path, etcd_server: EtcdServer, etcd: EtcdClient
) -> Iterator[Fabric]:
    with running_fabric(make_netns, tmp_path, etcd_server.port, etcd, 3) as fab:
        yield fab


def _client_of(host: Host, reflector: Host) -> Callable[[], bool]:
    """For wait_for: ``host``'s one session is to ``reflector``, as its route-reflector client."""
    return lambda: (
        _peer_types(host.node_status()) == {reflector.ip: "node specific"}
        and host.established() == [reflector.ip]
    )


def _peer_types(status: str) -> dict[str, str]:
    rows = [line.split("|") for line in status.splitlines() if line.startswith("| 10.")]
    return {r[1].strip(): r[2].strip() for r in rows}


def test_bgp_route_reflector(
    fabric: Fabric, make_netns: Callable[[], str], datastore: Client
) -> None:
    fab = fabric
    h1, h2, h3 = fab.hosts
    for h in fab.hosts:
        fab.start(h)
        fab.add_pod(make_netns, h, h.block.replace(".0/26", ".2"))
    try:
        wait_for("mesh up", lambda: sorted(h2.established()) == [h1.ip, h3.ip], 60)

        # host1 becomes the reflector; everyone peers with the nodes labelled route-reflector
        rr = datastore.get("Node", "host1")
        rr["metadata"]["labels"] = {"route-reflector": "true"}
        rr["spec"]["bgp"]["routeReflectorClusterID"] = "224.0.0.1"
        datastore.update(rr)
        datastore.apply(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "BGPPeer",
                "metadata": {"name": "peer-with-route-reflectors"},
                "spec": {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"},
            }
        )
        datastore.apply(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "BGPConfiguration",
                "metadata": {"name": "default"},
                "spec": {"nodeToNodeMeshEnabled": False, "logSeverityScreen": "Info"},
            }
        )

        # clients: one session, to the reflector; the reflector: one per client
        for h in (h2, h3):
            wait_for(
                f"{h.name} -> RR only",
                _client_of(h, h1),
                60,
            )
        wait_for("RR sessions", lambda: sorted(h1.established()) == [h2.ip, h3.ip], 60)
        assert _peer_types(h1.node_status()) == {h2.ip: "node specific", h3.ip: "node specific"}
        assert "rr client" in (h1.run_dir / "bird.cfg").read_text()
        assert "rr client" not in (h2.run_dir / "bird.cfg").read_text()

        # routes reflected between the clients keep the originating host as next hop
        wait_for("host2 learns host3's block", lambda: h3.block in h2.routes(), 30)
        assert h2.routes()[h3.block]["gateway"] == h3.ip
        assert h3.routes()[h2.block]["gateway"] == h2.ip
        for src in fab.hosts:
            for dst in fab.hosts:
                if src is not dst:
                    pod, ip = src.pods[0][0], dst.pods[0][1]
                    wait_for(f"{src.name} pod -> {ip}", echoes(pod, ip), 30)
    except AssertionError as exc:
        dump = "\n".join(f"== {h.name}\n{h.node_status()}\n{h.log_tail()}" for h in fab.hosts)
        raise AssertionError(f"{exc}\n{dump}") from None

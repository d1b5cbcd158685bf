"""calico-bgp's renderer against a real etcd and a real BIRD in a namespace: it renders once synced,
re-renders and reconfigures BIRD only when the model changes, and keeps a good config when the
datastore describes a bad one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from calico.bgp import birdctl
from calico.bgp.main import BgpRenderer, watched_prefixes
from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.syncer import Syncer

pytestmark = [pytest.mark.etcd, pytest.mark.bird, pytest.mark.netns]


def _node(name: str, ip: str, **bgp: object) -> dict[str, object]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"bgp": {"ipv4Address": ip, **bgp}},
    }


def _wait(what: str, pred: Callable[[], object], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def running(
    tmp_path: Path, etcd: EtcdClient, datastore: Client, make_netns: Callable[[], str]
) -> Iterator[tuple[BgpRenderer, str]]:
    ns = make_netns()
    subprocess.run(["ip", "-n", ns, "addr", "add", "10.0.0.1/24", "dev", "lo"], check=True)
    datastore.create(_node("me", "10.0.0.1/24"))
    datastore.create(_node("other", "10.0.0.2/24"))
    r = BgpRenderer("me", cfg_path=tmp_path / "bird.cfg", sock_path=tmp_path / "bird.ctl")
    syncer = Syncer(etcd, watched_prefixes("me"), on_updates=r.on_updates, on_status=r.on_status)
    stop = threading.Event()
    syncer.start()
    loop = threading.Thread(target=r.run, args=(stop,), daemon=True)
    loop.start()
    bird: subprocess.Popen[bytes] | None = None
    try:
        _wait("first render", r.cfg_path.exists)
        bird = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "bird",
                "-f",
                "-c",
                str(r.cfg_path),
                "-s",
                str(r.sock_path),
            ],
            stderr=subprocess.DEVNULL,
        )
        _wait("bird socket", r.sock_path.exists)
        yield r, ns
    finally:
        stop.set()
        syncer.stop()
        if bird is not None:
            bird.terminate()
            bird.wait(10)


def _protocols(r: BgpRenderer) -> list[str]:
    return [p.name for p in birdctl.protocols(r.sock_path) if p.proto == "BGP"]


def test_render_reconfigure_only_on_model_change(
    running: tuple[BgpRenderer, str], datastore: Client, etcd: EtcdClient
) -> None:
    r, _ = running
    assert _protocols(r) == ["Mesh_10_0_0_2"]
    renders = r.renders

    # a change outside the model (a label on another node) does not re-render
    other = datastore.get("Node", "other")
    other["metadata"]["labels"] = {"rack": "9"}
    datastore.update(other)
    time.sleep(0.5)
    assert r.renders == renders
    datastore.create(_node("third", "10.0.0.3/24"))
    _wait("third peer", lambda: _protocols(r) == ["Mesh_10_0_0_2", "Mesh_10_0_0_3"])
    assert r.renders == renders + 1

    # a block affinity for this host -> blackhole route; a global peer; mesh off
    etcd.put(
        "/calico/ipam/v2/host/me/ipv4/block/192.168.7.0-26", '{"state":"confirmed","deleted":false}'
    )
    etcd.put(
        "/calico/ipam/v2/host/other/ipv4/block/192.168.8.0-26",
        '{"state":"confirmed","deleted":false}',
    )
    datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": "tor"},
            "spec": {"peerIP": "10.0.0.254", "asNumber": 65000},
        }
    )
    datastore.create(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": False, "asNumber": 65100},
        }
    )
    _wait("global peer only", lambda: _protocols(r) == ["Global_10_0_0_254"])
    text = r.cfg_path.read_text()
    assert "route 192.168.7.0/26 blackhole;" in text
    assert "192.168.8.0" not in text  # another host's block
    assert "local as 65100;" in text
    _wait("configured", lambda: not r.configure_pending)


def test_unusable_model_keeps_the_last_good_config(
    running: tuple[BgpRenderer, str], datastore: Client
) -> None:
    r, _ = running
    good = r.cfg_path.read_text()
    me = datastore.get("Node", "me")
    del me["spec"]["bgp"]["ipv4Address"]
    datastore.update(me)
    time.sleep(0.5)
    assert r.cfg_path.read_text() == good
    assert _protocols(r) == ["Mesh_10_0_0_2"]
    # and it recovers when the address comes back (with a different peer set)
    me["spec"]["bgp"]["ipv4Address"] = "10.0.0.1/24"
    me["metadata"].pop("resourceVersion")
    datastore.update(me)
    datastore.delete("Node", "other")
    _wait("no peers", lambda: _protocols(r) == [])


def test_calico_bgp_once(tmp_path: Path, etcd_server: object, datastore: Client) -> None:
    datastore.create(_node("me", "10.0.0.1/24"))
    datastore.create(_node("other", "10.0.0.2/24"))
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "ETCD_ENDPOINTS": getattr(etcd_server, "endpoint", ""),
        "NODENAME": "me",
        "CALICO_RUN_DIR": str(tmp_path),
    }
    exe = Path(sys.executable).parent / "calico-bgp"
    out = subprocess.run(
        [str(exe), "--once"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "protocol bgp Mesh_10_0_0_2" in (tmp_path / "bird.cfg").read_text()
    out = subprocess.run(
        [str(exe), "--once", "--node-name", "ghost"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert "Node 'ghost' does not exist" in out.stderr

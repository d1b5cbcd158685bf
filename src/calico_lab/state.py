"""LabState: what a lab is made of, as one JSON file, plus the names and paths derived from it.

Every namespace, process and directory a lab makes is recorded here *before* it is made
(write-ahead), so ``calico-lab down`` can remove exactly what exists, also after a failed or
interrupted ``up``. Nothing is ever cleaned up by pattern: only names read back from this file.

Layout (``CALICO_LAB_ROOT``, default ``/var/lib/calico-lab``)::

    <root>/<lab>.lock               flock held by every mutating command
    <root>/<lab>/state.json         this file
    <root>/<lab>/etcd/              etcd data;  <root>/<lab>/etcd.log (one member; with
                                    --etcd-members N: etcd/member<i>/ and etcd/member<i>.log)
    <root>/<lab>/pki/               --etcd-tls: the lab's CA and certificates (calico_lab.pki)
    <root>/<lab>/typha.log          --typha: calico-typha's log (calico_lab.typha)
    <root>/<lab>/bin/               CNI plugins + lab wrappers (birdc)
    <root>/<lab>/nodes/<node>/{log,net.d}       per-node CALICO_LOG_DIR, CNI net dir
    /run/calico-lab/<hash>-<lab>/<node>/        per-node CALICO_RUN_DIR (bird.ctl must fit
                                                the 108-byte socket path limit)
    <root>/<lab>/pods/<ns>_<pod>.log            responder logs (outside.log: the outside host's)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from calico.datastore.etcd import TLSFiles
from calico_lab import network
from calico_lab.datastore import EtcdOptions
from calico_lab.errors import LabError
from calico_lab.network import Network

__all__ = ["LabError", "LabState", "Network", "NodeState", "PodState"]

DEFAULT_ROOT = "/var/lib/calico-lab"
NETNS_PREFIX = "calab-"
SUBNET_PREFIX = "10.99.0"  # subnet 0: etcd and the pod API (exists only inside the lab)
BRIDGE = "br0"
ETCD_PORT = 2379
API_PORT = 8080  # the lab's read-only pod API for the CNI plugin (core namespace only)
POOL_CIDR = "192.168.0.0/16"
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9]{0,14})$")


def root_dir() -> Path:
    return Path(os.environ.get("CALICO_LAB_ROOT", DEFAULT_ROOT))


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise LabError(f"lab name {name!r} is invalid: use 1-15 lower-case letters and digits")
    return name


def netns_prefix(lab: str) -> str:
    return f"{NETNS_PREFIX}{lab}-"


def core_netns(lab: str) -> str:
    return f"{netns_prefix(lab)}core"


def node_netns(lab: str, node: str) -> str:
    return f"{netns_prefix(lab)}{node}"


def pod_netns(lab: str, namespace: str, pod: str) -> str:
    digest = hashlib.sha1(f"{namespace}/{pod}".encode()).hexdigest()[:10]
    return f"{netns_prefix(lab)}p-{digest}"


def outside_netns(lab: str) -> str:
    return f"{netns_prefix(lab)}outside"


def node_ip(index: int, subnets: int = 1) -> str:
    """Address of node ``index`` (1-based): ``10.99.<its subnet>.(10 + index)``."""
    return network.node_ip(index, subnets)


def bridge_ip() -> str:
    """``10.99.0.1``: the router on subnet 0, where etcd and the pod API listen."""
    return network.router_ip(0)


@dataclass
class NodeState:
    name: str
    netns: str
    ip: str
    pid: int = 0
    subnet: int = 0  # k of 10.99.<k>.0/24


@dataclass
class PodState:
    namespace: str
    name: str
    node: str
    netns: str
    container_id: str
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)
    ip: str = ""
    responder_pid: int = 0
    service_account: str = "default"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class LabState:
    name: str
    dir: str
    netns: list[str] = field(default_factory=list)  # every namespace made (write-ahead)
    nodes: list[NodeState] = field(default_factory=list)
    etcd_pids: list[int] = field(default_factory=list)  # one per member, member 0 first
    apiserver_pid: int = 0
    kube_pid: int = 0  # the --kubeconfig sync daemon (root namespace)
    kube_config: str = ""  # its kubeconfig (down removes the Nodes it registered)
    pods: dict[str, PodState] = field(default_factory=dict)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # k8s ns -> labels
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # "ns/name" -> k8s object
    round_robin: int = 0
    ready: bool = False
    run_root: str = ""  # per-node run dirs (short path: BIRD's socket must fit sun_path)
    network: Network = field(default_factory=Network)  # up's --subnets/--ipip/... options
    outside_pid: int = 0  # the outside host's server
    etcd: EtcdOptions = field(default_factory=EtcdOptions)  # up's --etcd-members/--etcd-tls
    kubernetes: dict[str, Any] = field(default_factory=dict)  # up --kubernetes (k8s_state)
    kdd: dict[str, Any] = field(default_factory=dict)  # up --datastore kubernetes (calico_lab.kdd)
    typha: bool = False  # up's --typha: the agents sync from a calico-typha in the core
    typha_pid: int = 0

    # ---- paths -------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def core(self) -> str:
        return core_netns(self.name)

    @property
    def outside(self) -> str:
        return outside_netns(self.name)

    @property
    def etcd_pid(self) -> int:
        """Member 0's process (the only one in a one-member lab)."""
        return self.etcd_pids[0] if self.etcd_pids else 0

    @property
    def etcd_endpoint(self) -> str:
        """``ETCD_ENDPOINTS``: every member, comma-separated (one URL for a one-member lab)."""
        return self.etcd.endpoints_text()

    @property
    def pki_dir(self) -> Path:
        return self.path / "pki"

    def etcd_tls(self, component: str) -> TLSFiles | None:
        """The CA and ``component``'s certificate and key with ``--etcd-tls`` (else None):
        ``calico-node-<node>``, ``cni-<node>`` or ``calico-lab`` (see :mod:`calico_lab.pki`)."""
        if not self.etcd.tls:
            return None
        pki = self.pki_dir
        return TLSFiles(
            str(pki / "ca.crt"), str(pki / f"{component}.crt"), str(pki / f"{component}.key")
        )

    @property
    def api_root(self) -> str:
        return f"http://{bridge_ip()}:{API_PORT}"

    @property
    def api_dir(self) -> Path:
        return self.path / "api"

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    def node_dir(self, node: str) -> Path:
        return self.path / "nodes" / node

    def node(self, name: str) -> NodeState:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes) or "none"
        raise LabError(f"node {name!r} is not in lab {self.name!r} (nodes: {known})")

    def pod(self, key: str) -> PodState:
        if key not in self.pods:
            raise LabError(f"pod {key!r} is not in lab {self.name!r} (use NAMESPACE/NAME)")
        return self.pods[key]

    # ---- persistence -------------------------------------------------------------------------

    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))
        tmp.replace(self.path / "state.json")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        nodes = [NodeState(**n) for n in data.pop("nodes", [])]
        pods = {k: PodState(**p) for k, p in data.pop("pods", {}).items()}
        net = Network(**data.pop("network", {}))
        etcd = EtcdOptions(**data.pop("etcd", {}))
        if "etcd_pid" in data:  # a state file from before --etcd-members
            old = data.pop("etcd_pid")
            data.setdefault("etcd_pids", [old] if old else [])
        return cls(nodes=nodes, pods=pods, network=net, etcd=etcd, **data)


RUN_BASE = "/run/calico-lab"


def run_root_for(name: str) -> str:
    """``/run/calico-lab/<hash of the state root>-<lab>``: short, and distinct per state root."""
    digest = hashlib.sha1(str(root_dir().resolve()).encode()).hexdigest()[:8]
    return f"{RUN_BASE}/{digest}-{name}"


def lab_dir(name: str) -> Path:
    return root_dir() / check_name(name)


def load(name: str) -> LabState | None:
    """The lab's state, or None when no lab of that name exists."""
    path = lab_dir(name) / "state.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"lab {name!r}: cannot read {path}: {exc}") from exc
    return LabState.from_json(data)


def require(name: str) -> LabState:
    state = load(name)
    if state is None:
        raise LabError(f"lab {name!r} is not up (run: calico-lab up --name {name})")
    return state


def existing_labs() -> list[str]:
    root = root_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "state.json").is_file())


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Serialise mutating commands on one lab (an flock on ``<root>/<lab>.lock``)."""
    root = root_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{check_name(name)}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_lock(name: str) -> None:
    root = root_dir()
    with contextlib.suppress(FileNotFoundError):
        (root / f"{name}.lock").unlink()
    with contextlib.suppress(OSError):
        root.rmdir()  # only when empty: other labs keep it

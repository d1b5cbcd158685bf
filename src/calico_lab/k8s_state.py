"""What a Kubernetes lab (``calico-lab up --kubernetes``) is made of, and where its files live.

Recorded in the lab's ``state.json`` under ``kubernetes`` (write-ahead, as everything else the lab
makes): the Calico form (``hosted``: the DaemonSet from ``manifests/calico.yaml``; ``host``: the
lab's own calico-node processes), the Kubernetes binaries' directory, and per *host* (the control
plane in the core namespace, and every node) its init process (PID 1 of the host's PID and mount
namespace, see :mod:`calico_lab.k8s_init`), the daemons started in it and the cgroup root made for
it. An empty ``kubernetes`` entry is a lab without Kubernetes.

Files (``<lab>/k8s/``)::

    pki/                    the cluster's CA, certificates and service-account key (openssl)
    kubeconfig/<user>.conf  admin, kubelet-<node>, kube-proxy, controller-manager, scheduler, calico
    images/                 the lab's pause and responder images (k8s_images)
    hosts/<host>/           per host: log/<daemon>.log, containerd/, kubelet/, the directories
                            bind-mounted over the machine's paths inside the host (see k8s_node)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from calico_lab import network
from calico_lab.state import LabState

CONTROL_PLANE = "control-plane"  # the host name of the core namespace's Kubernetes daemons
CALICO_FORMS = ("hosted", "host")
API_PORT = 6443
SERVICE_CIDR = "10.96.0.0/24"  # exists only inside the lab's namespaces
KUBERNETES_SERVICE_IP = "10.96.0.1"
CLUSTER_DOMAIN = "cluster.local"


@dataclass
class KubeHost:
    netns: str
    unshare_pid: int = 0  # ``unshare --pid --fork`` (session leader; its child is the init)
    init_pid: int = 0  # PID 1 of the host's PID namespace, as the machine numbers it
    daemons: dict[str, int] = field(default_factory=dict)  # name -> nsenter PID (its group)
    cgroup: str = ""  # cgroup root (``calab-<lab>-<node>``) made in every hierarchy, nodes only
    images: list[str] = field(default_factory=list)  # image IDs imported into its containerd


@dataclass
class KubeState:
    calico: str = "hosted"
    kube_bin: str = ""
    hosts: dict[str, KubeHost] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KubeState:
        hosts = {k: KubeHost(**v) for k, v in (data.get("hosts") or {}).items()}
        return cls(calico=data.get("calico", "hosted"), kube_bin=data.get("kube_bin", ""),
                   hosts=hosts)  # fmt: skip


def load(lab: LabState) -> KubeState | None:
    """The lab's Kubernetes state; None for a lab without Kubernetes."""
    return KubeState.from_json(lab.kubernetes) if lab.kubernetes else None


def require(lab: LabState) -> KubeState:
    ks = load(lab)
    if ks is None:
        raise ValueError(f"lab {lab.name!r} was not made with --kubernetes")
    return ks


def save(lab: LabState, ks: KubeState) -> None:
    lab.kubernetes = asdict(ks)
    lab.save()


def is_kubernetes(lab: LabState) -> bool:
    return bool(lab.kubernetes)


# ---- paths ------------------------------------------------------------------------------------


def kube_dir(lab: LabState) -> Path:
    return lab.path / "k8s"


def pki_dir(lab: LabState) -> Path:
    return kube_dir(lab) / "pki"


def kubeconfig(lab: LabState, user: str) -> Path:
    return kube_dir(lab) / "kubeconfig" / f"{user}.conf"


def images_dir(lab: LabState) -> Path:
    return kube_dir(lab) / "images"


def host_dir(lab: LabState, host: str) -> Path:
    return kube_dir(lab) / "hosts" / host


def log_file(lab: LabState, host: str, daemon: str) -> Path:
    return host_dir(lab, host) / "log" / f"{daemon}.log"


def apiserver_url() -> str:
    """The API server, on the router's subnet-0 address next to etcd (reached from every node)."""
    return f"https://{network.router_ip(0)}:{API_PORT}"


def cgroup_root(lab: LabState, node: str) -> str:
    """The kubelet's ``cgroupRoot`` for ``node``: one per node, since the kubelets share the
    machine's cgroup hierarchies (each would otherwise treat the others' pods as orphans)."""
    return f"calab-{lab.name}-{node}"

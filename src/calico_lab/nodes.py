"""The lab's "hosts": per-node directories, CNI install, the calico-node process and its health.

Each node is configured exactly as a real host would be: environment for calico-node (``NODENAME``,
``IP``, ``ETCD_ENDPOINTS`` — every member —, with ``--etcd-tls`` ``ETCD_CA_CERT_FILE``/
``ETCD_CERT_FILE``/``ETCD_KEY_FILE``, ``CALICO_RUN_DIR``/``CALICO_LOG_DIR`` — per node, since every
lab node shares one filesystem), and a CNI network config in the node's own ``net.d`` that names
the node and the lab's etcd (``etcd_endpoints``, ``etcd_*_file``). The CNI binaries are installed
once per lab into ``<lab>/bin``. With ``--typha`` the agent is pointed at the lab's Typha
(``FELIX_TYPHAADDR``, :mod:`calico_lab.typha`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from calico.lib.cmd import netns_argv, run
from calico_lab import daemons, network, typha
from calico_lab.state import POOL_CIDR, LabState, NodeState

CNI_CONF_NAME = "10-calico.conflist"
NETWORK_NAME = "k8s-pod-network"
LOOPBACK_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


def run_dir(state: LabState, node: str) -> Path:
    if state.run_root:
        return Path(state.run_root) / node
    return state.node_dir(node) / "run"


def cni_socket(state: LabState) -> str:
    """The CNI server socket template shared by the lab's launchers and its nodes' calico-node
    ({netns}: each node namespace's inode), under the lab's own run root."""
    root = Path(state.run_root) if state.run_root else Path(state.dir) / "run"
    return str(root / "cni-{netns}.sock")


def log_dir(state: LabState, node: str) -> Path:
    return state.node_dir(node) / "log"


def net_dir(state: LabState, node: str) -> Path:
    return state.node_dir(node) / "net.d"


def cni_path(state: LabState) -> str:
    """CNI_PATH as kubelet would pass it: the lab's plugins first, then the distro's (loopback)."""
    return ":".join([str(state.bin_dir), *LOOPBACK_DIRS])


def conflist_path(state: LabState, node: str) -> Path:
    return net_dir(state, node) / CNI_CONF_NAME


def node_env(state: LabState, node: NodeState) -> dict[str, str]:
    """What a node's processes (calico-node, calicoctl, exec'd commands) see: the node's address
    with its prefix (it defines the node's subnet for CrossSubnet) and the lab's network options
    as the default pool's settings (``CALICO_IPV4POOL_*``, ``CALICO_NETWORKING_BACKEND``)."""
    return {
        **datastore_env(state, node),
        "NODENAME": node.name,
        "HOSTNAME": node.name,
        "IP": f"{node.ip}/{network.PREFIX_LEN}",
        "CALICO_RUN_DIR": str(run_dir(state, node.name)),
        "CALICO_LOG_DIR": str(log_dir(state, node.name)),
        "CALICO_IPV4POOL_CIDR": POOL_CIDR,
        # the lab's options (IPIP Never by default, where Calico's default is Always)
        **state.network.node_env(),
        "FELIX_DEFAULTENDPOINTTOHOSTACTION": "ACCEPT",
        "FELIX_LOGSEVERITYSCREEN": "info",
        # the lab installs the CNI plugins itself; calico-node only runs the per-node CNI server
        "CALICO_CNI_SERVER": "true",
        "CALICO_CNI_SOCKET": cni_socket(state),
        **typha.node_env(state),  # --typha: the agent syncs from the lab's Typha
    }


def datastore_env(state: LabState, node: NodeState) -> dict[str, str]:
    """etcd (every member, the node's certificate) or, in a Kubernetes-datastore lab,
    ``DATASTORE_TYPE=kubernetes`` and the lab's kubeconfig (nothing of etcd)."""
    if state.kdd:
        from calico_lab import kdd_server

        return {"DATASTORE_TYPE": "kubernetes", "KUBECONFIG": kdd_server.kubeconfig(state)}
    return {
        "ETCD_ENDPOINTS": state.etcd_endpoint,
        **etcd_tls_env(state, f"calico-node-{node.name}"),
        "DATASTORE_TYPE": "etcdv3",
    }


def etcd_tls_env(state: LabState, component: str) -> dict[str, str]:
    """``ETCD_CA_CERT_FILE``/``ETCD_CERT_FILE``/``ETCD_KEY_FILE`` for ``component`` with
    ``--etcd-tls`` (else nothing)."""
    tls = state.etcd_tls(component)
    if tls is None:
        return {}
    return {
        "ETCD_CA_CERT_FILE": str(tls.ca_file),
        "ETCD_CERT_FILE": str(tls.cert_file),
        "ETCD_KEY_FILE": str(tls.key_file),
    }


def make_dirs(state: LabState, node: str) -> None:
    for d in (run_dir(state, node), log_dir(state, node), net_dir(state, node)):
        d.mkdir(parents=True, exist_ok=True)


def conflist(state: LabState, node: NodeState) -> dict[str, Any]:
    """The node's CNI network config list, as an admin would put in /etc/cni/net.d."""
    if state.kdd:
        return _conflist(state, node, _kdd_conf(state))
    tls = state.etcd_tls(f"cni-{node.name}")
    tls_conf = (
        {}
        if tls is None
        else {
            "etcd_ca_cert_file": tls.ca_file,
            "etcd_cert_file": tls.cert_file,
            "etcd_key_file": tls.key_file,
        }
    )
    store_conf = {
        "etcd_endpoints": state.etcd_endpoint,
        **tls_conf,
        "kubernetes": {"k8s_api_root": state.api_root},
    }
    return _conflist(state, node, store_conf)


def _kdd_conf(state: LabState) -> dict[str, Any]:
    from calico_lab import kdd_server

    return {"datastore_type": "kubernetes",
            "kubernetes": {"kubeconfig": kdd_server.kubeconfig(state)}}  # fmt: skip


def _conflist(state: LabState, node: NodeState, store_conf: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": NETWORK_NAME,
        "cniVersion": "0.3.1",
        "plugins": [
            {
                "type": "calico",
                **store_conf,
                "nodename": node.name,
                "log_level": "info",
                "log_file_path": str(log_dir(state, node.name) / "cni.log"),
                "mtu": state.network.mtu,
                "ipam": {"type": "calico-ipam"},
                "policy": {"type": "k8s"},
            }
        ],
    }


def install_cni(state: LabState) -> None:
    """The calico + calico-ipam plugins into ``<lab>/bin``, a conflist per node."""
    from calico.cni import install

    state.bin_dir.mkdir(parents=True, exist_ok=True)
    install.install_binaries(state.bin_dir, socket_path=cni_socket(state))
    write_birdc_wrapper(state.bin_dir)
    for node in state.nodes:
        path = conflist_path(state, node.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(conflist(state, node), indent=2) + "\n")


def write_birdc_wrapper(bin_dir: Path) -> None:
    """``birdc`` that talks to this node's BIRD (socket under ``$CALICO_RUN_DIR``)."""
    wrapper = bin_dir / "birdc"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# calico-lab: birdc for the node this shell is in\n"
        'exec /usr/sbin/birdc -s "${CALICO_RUN_DIR:-/var/run/calico}/bird.ctl" "$@"\n'
    )
    wrapper.chmod(0o755)


def load_conflist(state: LabState, node: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(conflist_path(state, node).read_text())
    return data


def start(state: LabState, node: NodeState) -> int:
    """Start calico-node in the node's namespace; return its PID."""
    make_dirs(state, node.name)
    env = daemons.child_env(node_env(state, node))
    env["PATH"] = f"{state.bin_dir}:{env['PATH']}"
    return daemons.spawn(
        [daemons.executable("calico-node")],
        netns=node.netns,
        log_file=log_dir(state, node.name) / "calico-node.log",
        env=env,
    )


_PROTO_RE = re.compile(r"^(\S+)\s+BGP\s+\S+\s+(\S+)\s+\S+\s*(.*)$")


def bgp_sessions(state: LabState, node: NodeState) -> list[dict[str, str]]:
    """BIRD's BGP protocols on ``node``: name, state and info (empty when BIRD is not reachable)."""
    sock = run_dir(state, node.name) / "bird.ctl"
    argv = netns_argv(node.netns, ["birdc", "-s", str(sock), "show", "protocols"])
    try:
        proc = run(argv, check=False, timeout=5)
    except Exception:
        return []
    sessions = []
    for line in proc.stdout.splitlines():
        m = _PROTO_RE.match(line.strip())
        if m:
            info = m.group(3).strip()
            sessions.append({"name": m.group(1), "state": m.group(2), "info": info})
    return sessions


def established(sessions: list[dict[str, str]]) -> int:
    return sum(1 for s in sessions if "Established" in s["info"])


def services(state: LabState, node: NodeState) -> dict[str, Any]:
    """calico-node's own report (``health.json``): per service running/restarts; {} when absent."""
    try:
        health: dict[str, Any] = json.loads((run_dir(state, node.name) / "health.json").read_text())
    except (OSError, ValueError):
        return {}
    services_: dict[str, Any] = health.get("services") or {}
    return services_

"""Calico on a Kubernetes lab, in one of two forms (``calico-lab up --kubernetes --calico FORM``).

``hosted`` (default): the hosted install, as a user runs it. The images from ``make images``
(``build/images/{node,cni,kube-controllers}.tar``) are imported into every node's containerd and
``manifests/calico.yaml`` is applied with ``kubectl``, edited only where a user would edit it: the
ConfigMap's ``etcd_endpoints`` (the lab's etcd), ``calico_backend`` and ``veth_mtu``, and the
default pool's variables on calico-node (the lab's ``--ipip``/``--vxlan``/``--nat-outgoing``).
install-cni then puts the plugins and the conflist into each node's ``/opt/cni/bin`` and
``/etc/cni/net.d``; calico-node runs in the DaemonSet's pod, calico-kube-controllers in its
Deployment's.

``host``: today's lab processes on a real cluster, for fast iteration (no image rebuild after a
code change): the lab installs the plugins (the compiled launchers, for the node's CNI server) and
a conflist whose plugin reads pods with the lab's ``calico`` kubeconfig; calico-node runs from this
checkout inside each node's namespaces, calico-kube-controllers in the control-plane host.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import yaml

import calico
from calico_lab import daemons, k8s_api, k8s_host, k8s_node, k8s_state, nodes
from calico_lab.k8s_state import CONTROL_PLANE, KubeState
from calico_lab.state import LabError, LabState, NodeState

CALICO_IMAGES = ("node", "cni", "kube-controllers")
DISTRO_PLUGINS = ("loopback", "portmap", "ptp", "host-local")  # Debian's, for host mode and bench
DISTRO_CNI_DIR = Path("/usr/lib/cni")


def checkout() -> Path:
    """The project checkout this lab runs from (``src/calico`` -> the repository)."""
    return Path(calico.__file__).resolve().parents[2]


def images_dir() -> Path:
    return Path(os.environ.get("CALICO_LAB_IMAGES") or checkout() / "build" / "images")


def manifest_path() -> Path:
    return Path(os.environ.get("CALICO_LAB_MANIFEST") or checkout() / "manifests" / "calico.yaml")


def calico_archives() -> dict[str, Path]:
    """{image ID: archive} of ``make images``' node, cni and kube-controllers images."""
    where = images_dir()
    try:
        meta = json.loads((where / "images.json").read_text())
    except (OSError, ValueError):
        raise LabError(f"--calico hosted needs the images of `make images` ({where}/images.json "
                       "not found): run make images, or use --calico host") from None  # fmt: skip
    out = {}
    for image in meta.get("images") or []:
        archive = where / image["archive"]
        if not archive.is_file():
            raise LabError(f"{archive} ({image['ref']}) is missing: run make images")
        out[image["id"]] = archive
    names = {Path(a).stem for a in out.values()}
    if missing := [n for n in CALICO_IMAGES if n not in names]:
        raise LabError(f"{where}/images.json lists no {', '.join(missing)} image: run make images")
    return out


# ---- hosted ------------------------------------------------------------------------------------


def _env(container: dict[str, Any], values: dict[str, str]) -> None:
    env = container.setdefault("env", [])
    for name, value in values.items():
        env[:] = [e for e in env if e.get("name") != name]
        env.append({"name": name, "value": value})


ETCD_CLIENT = "calico-hosted"  # the hosted install's etcd client certificate (--etcd-tls)
SECRET_FILES = {"etcd_ca": "etcd-ca", "etcd_cert": "etcd-cert", "etcd_key": "etcd-key"}


def etcd_secret(lab: LabState) -> dict[str, str]:
    """The ``calico-etcd-secrets`` data as a user fills it in (base64 of each file) with
    ``--etcd-tls``; {} without."""
    tls = lab.etcd_tls(ETCD_CLIENT)
    if tls is None:
        return {}
    from calico_lab import pki

    pki.issue(lab.pki_dir, ETCD_CLIENT)
    files = {"etcd-ca": tls.ca_file, "etcd-cert": tls.cert_file, "etcd-key": tls.key_file}
    return {k: base64.b64encode(Path(str(v)).read_bytes()).decode() for k, v in files.items()}


def hosted_manifest(lab: LabState, text: str) -> str:
    """``manifests/calico.yaml`` with the lab's etcd (every member; its TLS Secret and paths with
    ``--etcd-tls``) and network options filled in, where the manifest tells a user to."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    net = lab.network
    secret = etcd_secret(lab)
    for doc in docs:
        meta = doc.get("metadata") or {}
        if doc.get("kind") == "Secret" and meta.get("name") == "calico-etcd-secrets" and secret:
            doc["data"] = secret
        if doc.get("kind") == "ConfigMap" and meta.get("name") == "calico-config":
            doc["data"]["etcd_endpoints"] = lab.etcd_endpoint
            doc["data"]["calico_backend"] = net.backend
            doc["data"]["veth_mtu"] = str(net.mtu)
            if secret:
                for key, name in SECRET_FILES.items():
                    doc["data"][key] = f"/calico-secrets/{name}"
        if doc.get("kind") == "DaemonSet" and meta.get("name") == "calico-node":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if container["name"] == "calico-node":
                    pool = {k: v for k, v in net.node_env().items() if "IPV4POOL" in k}
                    _env(container, pool)
    return yaml.safe_dump_all(docs, sort_keys=False)


def install_hosted(lab: LabState) -> None:
    path = manifest_path()
    try:
        text = path.read_text()
    except OSError as exc:
        raise LabError(f"the hosted install needs {path}: {exc.strerror}") from None
    k8s_api.kubectl(lab, ["apply", "-f", "-"], input=hosted_manifest(lab, text))


def hosted_ready(api: k8s_api.Api, lab: LabState) -> str:
    """ "" when calico-node is Ready on every node and calico-kube-controllers is available;
    else what is missing."""
    pods = api.pods(
        namespace="kube-system", selector="k8s-app in (calico-node,calico-kube-controllers)"
    )
    ready_nodes = {
        (p.get("spec") or {}).get("nodeName")
        for p in pods
        if p["metadata"]["labels"].get("k8s-app") == "calico-node" and k8s_api.condition(p, "Ready")
    }
    missing = [n.name for n in lab.nodes if n.name not in ready_nodes]
    if missing:
        return f"calico-node Ready on {', '.join(missing)}"
    controllers = [
        p for p in pods if p["metadata"]["labels"].get("k8s-app") == "calico-kube-controllers"
    ]
    if not any(k8s_api.condition(p, "Ready") for p in controllers):
        return "calico-kube-controllers Ready"
    return ""


# ---- host ----------------------------------------------------------------------------------------


def host_conflist(lab: LabState, node: NodeState) -> dict[str, Any]:
    conf = nodes.conflist(lab, node)
    plugin = conf["plugins"][0]
    plugin["kubernetes"] = {"kubeconfig": str(k8s_state.kubeconfig(lab, "calico"))}
    conf["plugins"].append(
        {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}}
    )
    return conf


def install_host_cni(lab: LabState, node: NodeState) -> None:
    from calico.cni import install

    bin_dir = k8s_node.node_dir(lab, node.name, "cni-bin")
    install.install_binaries(bin_dir)  # the default socket: /var/run/calico in the node
    for plugin in DISTRO_PLUGINS:
        link = bin_dir / plugin
        if not link.exists():
            link.symlink_to(DISTRO_CNI_DIR / plugin)
    net_d = k8s_node.node_dir(lab, node.name, "cni-net.d")
    tmp = net_d / f".{nodes.CNI_CONF_NAME}.tmp"
    tmp.write_text(json.dumps(host_conflist(lab, node), indent=2) + "\n")
    tmp.replace(net_d / nodes.CNI_CONF_NAME)


def host_node_env(lab: LabState, node: NodeState) -> dict[str, str]:
    """calico-node's environment inside the node: a host's default paths (bind-mounted there)."""
    env = nodes.node_env(lab, node)
    env.pop("CALICO_CNI_SOCKET")
    env["CALICO_K8S_NODE_REF"] = node.name  # the Node kubelet registered (as the DaemonSet's)
    env["CALICO_RUN_DIR"] = "/var/run/calico"
    env["CALICO_LOG_DIR"] = "/var/log/calico"
    env["PATH"] = f"{daemons.venv_bin()}:{k8s_host.HOST_PATH}"
    return env


def start_host(lab: LabState, ks: KubeState) -> None:
    for node in lab.nodes:
        install_host_cni(lab, node)
        if k8s_host.ensure_daemon(lab, ks, node.name, "calico-node",
                                  [daemons.executable("calico-node")],
                                  env=host_node_env(lab, node)):  # fmt: skip
            node.pid = ks.hosts[node.name].daemons["calico-node"]
            lab.save()
    env = {
        "DATASTORE_TYPE": "etcdv3",
        "ETCD_ENDPOINTS": lab.etcd_endpoint,
        **nodes.etcd_tls_env(lab, "calico-lab"),
        "KUBECONFIG": str(k8s_state.kubeconfig(lab, "calico")),
        "ENABLED_CONTROLLERS": "node,policy,namespace,serviceaccount,workloadendpoint",
        "LOG_LEVEL": "info",
        "PATH": f"{daemons.venv_bin()}:{k8s_host.HOST_PATH}",
    }
    k8s_host.ensure_daemon(lab, ks, CONTROL_PLANE, "calico-kube-controllers",
                           [daemons.executable("calico-kube-controllers")], env=env)  # fmt: skip


def host_ready(lab: LabState, ks: KubeState) -> str:
    for node in lab.nodes:
        if not daemons.alive(ks.hosts[node.name].daemons.get("calico-node", 0)):
            log = k8s_state.log_file(lab, node.name, "calico-node")
            raise LabError(f"calico-node on {node.name} exited; see {log}")
    if not daemons.alive(ks.hosts[CONTROL_PLANE].daemons.get("calico-kube-controllers", 0)):
        log = k8s_state.log_file(lab, CONTROL_PLANE, "calico-kube-controllers")
        raise LabError(f"calico-kube-controllers exited; see {log}")
    return ""

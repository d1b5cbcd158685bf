"""calico-node start-up: register this host in the datastore, as calico/node's ``startup`` does.

Steps, in order (each is idempotent, so a restart repeats them safely):

1. the Node resource: name ``NODENAME`` (else the hostname), ``spec.bgp.ipv4Address`` from ``IP``
   (explicit, ``autodetect``, ``none``, or empty = keep the stored one, else autodetect), likewise
   ``IP6`` (default: none), ``spec.bgp.asNumber`` from ``AS`` (empty: keep; absent: global AS),
   ``spec.orchRefs`` ``{nodeName, orchestrator: k8s}`` from ``CALICO_K8S_NODE_REF`` (the hosted
   install sets it to the pod's ``spec.nodeName``); another node already using the address is an
   error;
2. default IP pools unless ``NO_DEFAULT_POOLS`` is set or a pool of that family exists (see
   :mod:`calico.node.pools`: ``CALICO_IPV4POOL_CIDR``, ``_IPIP``, ``_VXLAN``, ``_NAT_OUTGOING``);
3. ClusterInformation ``default``: clusterGUID (kept once set), calicoVersion, datastoreReady true
   unless an admin already set it; the built-in Tiers ``default`` (order 1,000,000, Deny),
   ``kube-admin`` (1,000, Pass) and ``kube-baseline`` (10,000,000, Pass) when absent, as
   Calico's start-up does;
4. CNI binaries and config when ``CNI_BIN_DIR`` / ``CNI_NET_DIR`` / ``CNI_CONF_NAME`` are set;
5. this node's tunnel addresses (:mod:`calico.node.tunnels`), unless the networking backend is
   ``none``; an IPAM failure here is logged, not fatal (the ``allocate-tunnel-addrs`` service
   keeps trying).

Bad environment values raise :class:`StartupError` naming the variable before anything is written.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico import __version__ as _pkg_version
from calico.datastore.client import AlreadyExists, Client, Conflict, NotFound
from calico.node import autodetect, pools

logger = logging.getLogger(__name__)

CALICO_VERSION = f"v{_pkg_version}"
_TRUE = {"1", "true", "yes", "on", "t", "y"}
BACKENDS = ("bird", "vxlan", "none")  # vxlan: no BIRD, no calico-bgp (Calico's VXLAN-only mode)


class StartupError(ValueError):
    """Bad configuration or a conflict with another node (message names the variable or node)."""


@dataclass(frozen=True, slots=True)
class NodeSettings:
    name: str
    ip: str  # "" keep, "autodetect", "none", or an address
    ip6: str
    ip_method: str
    ip6_method: str
    as_number: int | None
    no_default_pools: bool
    pools: pools.PoolSettings
    backend: str  # "bird" | "vxlan" | "none"
    k8s_node_ref: str = ""  # CALICO_K8S_NODE_REF: the Kubernetes Node this host is


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def _addr_setting(var: str, value: str, version: int) -> str:
    value = value.strip()
    if value.lower() in ("", "autodetect", "none"):
        return value.lower()
    try:
        ip = ipaddress.ip_interface(value)
    except ValueError:
        raise StartupError(
            f"{var}: {value!r} is not an IP address, 'autodetect' or 'none'"
        ) from None
    if ip.version != version:
        raise StartupError(f"{var}: {value!r} is not an IPv{version} address")
    return value


def settings_from_env(env: Mapping[str, str]) -> NodeSettings:
    """Parse and check every variable first, so bad input writes nothing."""
    as_text = env.get("AS", "").strip()
    as_number: int | None = None
    if as_text:
        if not as_text.isdigit() or not 0 < int(as_text) <= 4294967295:
            raise StartupError(f"AS: {as_text!r} is not an AS number (1-4294967295)")
        as_number = int(as_text)
    backend = env.get("CALICO_NETWORKING_BACKEND", "bird").strip() or "bird"
    if backend not in BACKENDS:
        raise StartupError(
            f"CALICO_NETWORKING_BACKEND: {backend!r} is not one of {', '.join(BACKENDS)}"
        )
    try:
        pool_settings = pools.settings_from_env(env)
    except pools.PoolSettingError as exc:
        raise StartupError(str(exc)) from None
    if env.get("CNI_NETWORK_CONFIG"):
        try:
            json.loads(env["CNI_NETWORK_CONFIG"])
        except ValueError as exc:
            raise StartupError(f"CNI_NETWORK_CONFIG: not valid JSON ({exc})") from None
    return NodeSettings(
        name=(env.get("NODENAME") or env.get("HOSTNAME") or socket.gethostname().lower()).strip(),
        ip=_addr_setting("IP", env.get("IP", ""), 4),
        ip6=_addr_setting("IP6", env.get("IP6", ""), 6),
        ip_method=env.get("IP_AUTODETECTION_METHOD", "first-found"),
        ip6_method=env.get("IP6_AUTODETECTION_METHOD", "first-found"),
        as_number=as_number,
        no_default_pools=truthy(env.get("NO_DEFAULT_POOLS")),
        pools=pool_settings,
        backend=backend,
        k8s_node_ref=env.get("CALICO_K8S_NODE_REF", "").strip(),
    )


def _resolve(setting: str, current: str, version: int, method: str, var: str) -> str:
    if setting == "none":
        return ""
    if setting == "" and current:
        return current
    if setting in ("", "autodetect"):
        if setting == "" and version == 6:
            return ""  # IPv6 is opt-in, as in Calico
        try:
            return autodetect.detect(method, version, var=var).cidr
        except autodetect.AutodetectError as exc:
            raise StartupError(str(exc)) from None
    return autodetect.with_prefix(setting, version)


def _check_unique(client: Client, name: str, field: str, cidr: str) -> None:
    if not cidr:
        return
    ip = cidr.split("/", maxsplit=1)[0]
    for other in client.list("Node"):
        other_name = other["metadata"]["name"]
        other_ip = str(((other.get("spec") or {}).get("bgp") or {}).get(field) or "").split("/")[0]
        if other_name != name and other_ip == ip:
            raise StartupError(f"Calico node {other_name!r} is already using the address {ip}")


def configure_node(client: Client, s: NodeSettings) -> dict[str, Any]:
    """Create or update this host's Node resource (CAS, retried on conflict)."""
    for _ in range(10):
        try:
            node = client.get("Node", s.name)
        except NotFound:
            node = {
                "apiVersion": "projectcalico.org/v3",
                "kind": "Node",
                "metadata": {"name": s.name},
                "spec": {},
            }
        spec = node.setdefault("spec", {})
        bgp = dict(spec.get("bgp") or {})
        v4 = _resolve(
            s.ip, str(bgp.get("ipv4Address") or ""), 4, s.ip_method, "IP_AUTODETECTION_METHOD"
        )
        v6 = _resolve(
            s.ip6, str(bgp.get("ipv6Address") or ""), 6, s.ip6_method, "IP6_AUTODETECTION_METHOD"
        )
        _check_unique(client, s.name, "ipv4Address", v4)
        _check_unique(client, s.name, "ipv6Address", v6)
        for field, value in (("ipv4Address", v4), ("ipv6Address", v6)):
            if value:
                bgp[field] = value
            else:
                bgp.pop(field, None)
        if s.as_number is not None:
            bgp["asNumber"] = s.as_number
        if bgp:
            spec["bgp"] = bgp
        else:
            spec.pop("bgp", None)
        if s.k8s_node_ref:
            _set_k8s_ref(spec, s.k8s_node_ref)
        try:
            if node["metadata"].get("resourceVersion"):
                return client.update(node)
            return client.create(node)
        except (Conflict, AlreadyExists, NotFound):
            continue
    raise StartupError(f"Node {s.name!r}: kept changing while being updated; gave up")


def _set_k8s_ref(spec: dict[str, Any], k8s_node: str) -> None:
    """``spec.orchRefs``: the Kubernetes Node (orchestrator ``k8s``), other orchestrators kept;
    the kube-controllers' node controller cleans up after this node when that Node is deleted."""
    refs = [r for r in spec.get("orchRefs") or [] if r.get("orchestrator") != "k8s"]
    spec["orchRefs"] = [*refs, {"nodeName": k8s_node, "orchestrator": "k8s"}]


def ensure_default_pools(client: Client, s: NodeSettings) -> list[str]:
    """Create the default pools that are missing; returns the names created."""
    if s.no_default_pools:
        return []
    return pools.ensure_default_pools(client, s.pools)


def ensure_cluster_information(client: Client) -> dict[str, Any]:
    for _ in range(10):
        try:
            info = client.get("ClusterInformation", "default")
        except NotFound:
            info = {
                "apiVersion": "projectcalico.org/v3",
                "kind": "ClusterInformation",
                "metadata": {"name": "default"},
                "spec": {},
            }
        spec = info.setdefault("spec", {})
        before = dict(spec)
        spec.setdefault("clusterGUID", uuid.uuid4().hex)
        spec["calicoVersion"] = CALICO_VERSION
        spec.setdefault("datastoreReady", True)
        if spec == before and info["metadata"].get("resourceVersion"):
            return info
        try:
            if info["metadata"].get("resourceVersion"):
                return client.update(info)
            return client.create(info)
        except (Conflict, AlreadyExists, NotFound):
            continue
    raise StartupError("ClusterInformation default: kept changing; gave up")


def ensure_tiers(client: Client) -> list[str]:
    """Create the built-in tiers that are missing (Calico's fixed values); the names created."""
    from calico.model import tiers  # the facts live with the model's Tier checks

    made = []
    for name, (order, action) in tiers.BUILT_IN.items():
        tier = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Tier",
            "metadata": {"name": name},
            "spec": {"order": int(order), "defaultAction": action},
        }
        try:
            client.create(tier)
            made.append(name)
        except AlreadyExists:
            pass
    return made


def install_cni(env: Mapping[str, str], node_name: str) -> list[str]:
    """Install the CNI plugin and/or its network config when the CNI_* variables ask for it.

    ``CNI_BIN_DIR``: the ``calico`` and ``calico-ipam`` executables. ``CNI_NET_DIR`` /
    ``CNI_CONF_NAME`` (default /etc/cni/net.d, 10-calico.conf): ``CNI_NETWORK_CONFIG`` verbatim
    when set (it must be JSON), else the integration guide's config for this node and datastore.
    Returns the paths written.
    """
    bin_dir, net_dir, conf_name = (
        env.get(v) for v in ("CNI_BIN_DIR", "CNI_NET_DIR", "CNI_CONF_NAME")
    )
    if not (bin_dir or net_dir or conf_name):
        return []
    from calico.cni import install  # only when asked: the node does not need it otherwise

    written: list[str] = []
    if bin_dir:
        written += [str(p) for p in install.install_binaries(bin_dir)]
    if net_dir or conf_name:
        path = Path(net_dir or "/etc/cni/net.d") / (conf_name or "10-calico.conf")
        raw = env.get("CNI_NETWORK_CONFIG")
        if raw:  # checked to be JSON by settings_from_env
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(raw if raw.endswith("\n") else raw + "\n")
        else:
            install.write_conf(
                path,
                etcd_endpoints=env.get("ETCD_ENDPOINTS") or "http://127.0.0.1:2379",
                nodename=node_name,
                kubeconfig=env.get("KUBECONFIG") or None,
            )
        written.append(str(path))
    return written


def run_startup(client: Client, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """All start-up steps; returns the Node resource as stored."""
    env = os.environ if env is None else env
    s = settings_from_env(env)
    node = configure_node(client, s)
    logger.info("node %s: %s", s.name, (node.get("spec") or {}).get("bgp"))
    made = ensure_default_pools(client, s)
    if made:
        logger.info("created default IP pools: %s", ", ".join(made))
    ensure_cluster_information(client)
    made = ensure_tiers(client)
    if made:
        logger.info("created built-in tiers: %s", ", ".join(made))
    for path in install_cni(env, s.name):
        logger.info("installed %s", path)
    if s.backend != "none":
        from calico.node import tunnels

        if tunnels.reconcile_logged(tunnels.TunnelAllocator(client.backend, s.name, client=client)):
            node = client.get("Node", s.name)
    return node

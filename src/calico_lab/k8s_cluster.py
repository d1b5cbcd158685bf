"""``calico-lab up --kubernetes``: the lab as a real multi-node Kubernetes cluster.

On top of the lab's network (router core, node namespaces, outside host, etcd)::

    build: certificates + kubeconfigs -> the lab's pause/responder images -> control plane in the
           core (kube-apiserver /readyz, kube-controller-manager, kube-scheduler) -> per node: init
           (mounts), cgroup root, containerd -> images imported into every node (in parallel) ->
           kubelet + kube-proxy -> Node objects registered -> Calico (hosted: kubectl apply
           manifests/calico.yaml; host: the lab's processes) -> every node Ready, Calico ready,
           Calico Node resources, a full BGP mesh (with BIRD) -> the default ServiceAccount
    teardown: per node (kubelet, kube-proxy, calico-node, containerd, then the init: the kernel
           ends the containers) and its cgroup root -> the control plane -> the machine's mount
           points, when this was the last Kubernetes lab; the lab's own down does the rest

Each step checks before it acts (``up`` again repairs: a dead daemon is restarted, images already
imported are not imported again). The Kubernetes binaries come from ``--kube-bin DIR`` (any 1.20+
install: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl),
default ``make kube``'s cache.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from calico.lib.cmd import CmdError, run
from calico_lab import (
    daemons,
    k8s_api,
    k8s_calico,
    k8s_control,
    k8s_host,
    k8s_images,
    k8s_node,
    k8s_pki,
    k8s_state,
    network,
    nodes,
)
from calico_lab.k8s_state import KubeHost, KubeState
from calico_lab.state import LabError, LabState
from calico_lab.store import LabStore

Step = Callable[[str], None]
KUBE_BIN = "/var/cache/calico-py/kube/v1.20.2/bin"  # make kube (KUBE_DIR)
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
            "kubectl")  # fmt: skip


def default_kube_bin() -> str:
    kube_dir = os.environ.get("KUBE_DIR")
    return f"{kube_dir}/bin" if kube_dir else KUBE_BIN


def check_kube_bin(path: str) -> str:
    """``path`` resolved, holding every binary at version 1.20 or later; else a LabError."""
    where = Path(path).resolve()
    missing = [b for b in BINARIES if not os.access(where / b, os.X_OK)]
    if missing:
        raise LabError(f"--kube-bin {path}: no {', '.join(missing)} there (make kube builds them "
                       f"into {KUBE_BIN})")  # fmt: skip
    try:
        out = run([str(where / "kubelet"), "--version"], timeout=30).stdout
    except (CmdError, OSError) as exc:
        raise LabError(f"--kube-bin {path}: kubelet --version: {exc}") from None
    found = re.search(r"v(\d+)\.(\d+)", out)
    if not found or (int(found[1]), int(found[2])) < (1, 20):
        raise LabError(f"--kube-bin {path}: {out.strip()!r}: Kubernetes 1.20 or later is needed")
    return str(where)


def new_state(*, kube_bin: str, calico: str) -> dict[str, Any]:
    """A new Kubernetes lab's state, once everything it needs is known to be there (nothing is
    made before: a missing binary or image is an error naming it)."""
    if calico not in k8s_state.CALICO_FORMS:
        raise LabError(f"--calico {calico!r}: use one of {', '.join(k8s_state.CALICO_FORMS)}")
    from dataclasses import asdict

    state = asdict(KubeState(calico=calico, kube_bin=check_kube_bin(kube_bin)))
    k8s_images.check_tools()
    if calico == "hosted":
        k8s_calico.calico_archives()
    return state


def lab_images(lab: LabState) -> dict[str, Path]:
    out = k8s_state.images_dir(lab)
    return {image.image_id: image.archive for image in k8s_images.build(out)}


def build(lab: LabState, step: Step, timeout: float) -> None:
    ks = k8s_state.require(lab)
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        return max(10.0, deadline - time.monotonic())

    step("Kubernetes: certificates and kubeconfigs; the lab's pause and responder images")
    k8s_pki.ensure(lab, network.router_ip(0))
    lab.bin_dir.mkdir(parents=True, exist_ok=True)
    nodes.write_birdc_wrapper(lab.bin_dir)  # calico-lab exec NODE -- birdc ...
    archives = lab_images(lab)
    if ks.calico == "hosted":
        archives.update(k8s_calico.calico_archives())
    step(f"control plane in {lab.core}: kube-apiserver, kube-controller-manager, kube-scheduler")
    k8s_control.start(lab, ks, timeout=remaining())
    _nodes(lab, ks, archives, step)
    step("waiting for every node to register")
    _wait(lab, ks, lambda api: _unregistered(api, lab), remaining(), "Node objects")
    _calico(lab, ks, step, remaining())
    _wait_calico(lab, step, remaining())
    k8s_control.wait_for_default_serviceaccount(lab, timeout=remaining())


def _nodes(lab: LabState, ks: KubeState, archives: dict[str, Path], step: Step) -> None:
    """Every node's init, cgroup root and containerd; the images; kubelet and kube-proxy."""
    k8s_host.claim_mount_points(lab, k8s_node.MOUNT_POINTS)
    for node in lab.nodes:
        ks.hosts.setdefault(node.name, KubeHost(netns=node.netns))
        step(f"{node.name}: its own mounts, cgroup root and containerd")
        k8s_node.start_runtime(lab, ks, node)
    step(f"importing {len(archives)} image(s) into every node's containerd")
    try:
        with ThreadPoolExecutor(max_workers=len(lab.nodes)) as pool:
            list(pool.map(lambda n: k8s_node.import_images(ks, n.name, archives), lab.nodes))
    finally:
        k8s_state.save(lab, ks)
    for node in lab.nodes:
        step(f"{node.name}: kubelet, kube-proxy")
        k8s_node.start_kubelet(lab, ks, node)


def _calico(lab: LabState, ks: KubeState, step: Step, timeout: float) -> None:
    """Calico in the lab's form; then every node Ready and Calico ready."""
    if ks.calico == "hosted":
        step("Calico: kubectl apply -f manifests/calico.yaml (etcd_endpoints: the lab's etcd)")
        k8s_calico.install_hosted(lab)
    else:
        step("Calico: calico-node per node, calico-kube-controllers (the lab's processes)")
        k8s_calico.start_host(lab, ks)

    def unready(api: k8s_api.Api) -> str:
        if missing := _not_ready(api, lab):
            return missing
        if ks.calico == "hosted":
            return k8s_calico.hosted_ready(api, lab)
        return k8s_calico.host_ready(lab, ks)

    step("waiting for every node Ready and Calico ready")
    _wait(lab, ks, unready, timeout, "the cluster")


def _daemons_alive(lab: LabState, ks: KubeState) -> None:
    for name, host in ks.hosts.items():
        for daemon, pid in host.daemons.items():
            if not daemons.alive(pid):
                raise LabError(f"{daemon} on {name} exited; see "
                               f"{k8s_state.log_file(lab, name, daemon)}")  # fmt: skip


def _wait(
    lab: LabState, ks: KubeState, missing: Callable[[k8s_api.Api], str], timeout: float, what: str
) -> None:
    last = ""
    with k8s_api.Api(lab) as api:

        def done() -> bool:
            nonlocal last
            _daemons_alive(lab, ks)
            try:
                last = missing(api)
            except LabError as exc:
                last = str(exc)
            return not last

        try:
            daemons.wait_until(done, timeout=timeout, interval=1.0, what=what)
        except TimeoutError as exc:
            raise LabError(f"{exc}: still waiting for {last}; logs in "
                           f"{k8s_state.kube_dir(lab) / 'hosts'}") from None  # fmt: skip


def _unregistered(api: k8s_api.Api, lab: LabState) -> str:
    names = {n["metadata"]["name"] for n in api.nodes()}
    missing = [n.name for n in lab.nodes if n.name not in names]
    return f"Node {', '.join(missing)}" if missing else ""


def _not_ready(api: k8s_api.Api, lab: LabState) -> str:
    ready = {n["metadata"]["name"] for n in api.nodes() if k8s_api.condition(n, "Ready")}
    missing = [n.name for n in lab.nodes if n.name not in ready]
    return f"Ready on {', '.join(missing)}" if missing else ""


def _wait_calico(lab: LabState, step: Step, timeout: float) -> None:
    """Every Calico Node resource, and with BIRD a full BGP mesh."""
    store = LabStore.of(lab)
    try:
        daemons.wait_until(
            lambda: (
                {n.name for n in lab.nodes}
                <= {(r.get("metadata") or {}).get("name") for r in store.list("nodes")}
            ),
            timeout=timeout,
            what="Calico Node resources",
        )
    finally:
        store.close()
    if len(lab.nodes) > 1 and lab.network.bgp:
        want = len(lab.nodes) - 1
        step(f"waiting for the BGP mesh ({want} session(s) per node)")
        daemons.wait_until(
            lambda: all(nodes.established(nodes.bgp_sessions(lab, n)) >= want for n in lab.nodes),
            timeout=timeout,
            interval=0.5,
            what="BGP sessions to establish",
        )


def teardown(lab: LabState, step: Step) -> None:
    ks = k8s_state.load(lab)
    if ks is None:
        return
    left = []
    for node in lab.nodes:
        if node.name in ks.hosts:
            step(f"stopping {node.name}: kubelet, kube-proxy, calico-node, containerd, containers")
            left += k8s_node.stop(lab, ks, node.name)
    step("stopping the control plane")
    k8s_control.stop(ks)
    left += k8s_host.release_mount_points(lab)
    for item in left:
        step(f"WARNING: could not remove {item}")


def amend_status(lab: LabState, snap: dict[str, Any]) -> None:
    """``calico-lab status`` of a Kubernetes lab: the API server's view of nodes and pods (and,
    for the hosted install, calico-node's readiness as its pods report it)."""
    from calico_lab import k8s_pods

    ks = k8s_state.require(lab)
    info: dict[str, Any] = {"apiserver": k8s_state.apiserver_url(), "calico": ks.calico,
                            "kube_bin": ks.kube_bin}  # fmt: skip
    snap["kubernetes"] = info
    try:
        found, _, items = k8s_pods.live(lab)
        with k8s_api.Api(lab) as api:
            ready = {n["metadata"]["name"]: k8s_api.condition(n, "Ready") for n in api.nodes()}
    except LabError as exc:
        info["error"] = str(exc)
        return
    info["nodes_ready"] = ready
    calico_ready = {
        str((p.get("spec") or {}).get("nodeName")): k8s_api.condition(p, "Ready")
        for p in items
        if (p["metadata"].get("labels") or {}).get("k8s-app") == "calico-node"
    }
    for node in snap["nodes"]:
        node["kubelet"] = "Ready" if ready.get(node["name"]) else "NotReady"
        if ks.calico == "hosted":
            node["running"] = calico_ready.get(node["name"], False)
    by_key = {f"{i['metadata']['namespace']}/{i['metadata']['name']}": i for i in items}
    snap["pods"] = [
        {
            "pod": p.key,
            "node": p.node,
            "ip": p.ip,
            "netns": p.netns,
            "responder": k8s_api.condition(by_key[p.key], "Ready"),
            "labels": p.labels,
            "phase": (by_key[p.key].get("status") or {}).get("phase", ""),
        }
        for p in sorted(found.values(), key=lambda p: p.key)
    ]

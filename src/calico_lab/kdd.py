"""A lab in Calico's Kubernetes datastore mode (``up --datastore kubernetes [--kubeconfig FILE]``).

Every Calico component of the lab runs with ``DATASTORE_TYPE=kubernetes`` and the lab's
kubeconfig (:mod:`calico_lab.kdd_server`: a real kube-apiserver in the core, the stand-in, or the
user's API server through a relay); nothing of Calico's is in etcd. What the lab plays besides:

- the cluster admin: Calico's CRDs (``manifests/kdd/crds.yaml``) created at ``up``, waited for
  until Established;
- the kubelet: a ``Node`` per lab node registered before its calico-node starts (in this mode the
  Calico Node *is* the Kubernetes Node: calico-node only adds its annotations), labelled
  :data:`LAB_LABEL` so the lab never takes over a Node it did not make; a Pod object per lab pod,
  bound to its node (``spec.nodeName``) before CNI ADD, which annotates it;
- the user: Namespaces (each with its ``default`` ServiceAccount, as the controller manager would
  make it), NetworkPolicies and pod/namespace label changes go to the API server as they are:
  the datastore reads them directly (profiles ``kns.*``/``ksa.*``, policies ``knp.default.*``),
  so no conversion and no kube-controllers are involved.

Options are checked before anything is made, recorded in ``lab.kdd``, kept by a later ``up`` and
refused there when different.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from calico_lab import kdd_server
from calico_lab.kubenode import LAB_LABEL, LEASE_NAMESPACE  # the Nodes (Leases) labs register
from calico_lab.state import LabError, LabState
from calico_lab.store import LabStore

DATASTORES = ("etcdv3", "kubernetes")
APISERVERS = ("kube-apiserver", "stand-in")
CRDS = Path(__file__).resolve().parents[2] / "manifests" / "kdd" / "crds.yaml"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def requested(
    datastore: str | None, *, kubeconfig: str | None, apiserver: str | None
) -> dict[str, Any] | None:
    """``lab.kdd`` for the options given; None when the datastore is etcd (or not given)."""
    dtype = (datastore or "").lower()
    if dtype and dtype not in DATASTORES:
        raise LabError(f"--datastore {datastore}: use etcdv3 or kubernetes")
    if dtype != "kubernetes":
        if apiserver:
            raise LabError("--apiserver goes with --datastore kubernetes")
        return None
    if kubeconfig:
        if apiserver:
            raise LabError("--apiserver: with --kubeconfig the API server is the one it names")
        from calico_lab import kdd_relay

        path = str(Path(kubeconfig).resolve())
        kdd_relay.target(path)  # loadable, and on this machine's loopback
        return {"apiserver": "external", "kubeconfig": path, "chosen": True}
    kind = (apiserver or "").lower()
    if kind and kind not in APISERVERS:
        raise LabError(f"--apiserver {apiserver}: use kube-apiserver or stand-in")
    missing = kdd_server.real_available()
    if kind == "kube-apiserver" and missing:
        raise LabError(f"--apiserver kube-apiserver: {missing}")
    default = "stand-in" if missing else "kube-apiserver"
    return {"apiserver": kind or default, "chosen": bool(kind)}


def resolve(lab: LabState, given: dict[str, Any] | None, *, new: bool) -> None:
    """A new lab takes ``given`` (None or {}: etcd); an existing one keeps its mode, and a
    ``--datastore`` (``given`` not None) asking for another one is refused. The API server's kind
    is compared only when it was chosen (``--apiserver``, ``--kubeconfig``)."""
    given = dict(given) if given is not None else None
    chosen = bool(given and given.pop("chosen", False))
    if new:
        lab.kdd = given or {}
        return
    if given is None:
        return
    have = lab.kdd.get("apiserver") if lab.kdd else None
    want = given.get("apiserver")
    if bool(have) != bool(want) or (chosen and have != want):
        made = f"--datastore kubernetes ({have})" if have else "--datastore etcdv3"
        raise LabError(f"lab {lab.name!r} was made with {made} (run: calico-lab down "
                       f"--name {lab.name})")  # fmt: skip


def describe(lab: LabState) -> str:
    if not lab.kdd:
        return "datastore etcdv3"
    kind = lab.kdd["apiserver"]
    where = lab.kdd.get("kubeconfig") if kind == "external" else kdd_server.url()
    return f"datastore kubernetes ({kind} {where})"


# ---- bring-up ------------------------------------------------------------------------------


def ensure(lab: LabState, step: Any, *, timeout: float) -> None:
    """The API server (or relay), Calico's CRDs and a Node per lab node."""
    kind = lab.kdd["apiserver"]
    step(f"Kubernetes API server for the datastore: {kind}")
    kdd_server.ensure(lab, timeout=timeout)
    store = LabStore.of(lab)
    try:
        step("Calico's CustomResourceDefinitions (manifests/kdd/crds.yaml)")
        ensure_crds(store, timeout=timeout)
        step("a Kubernetes Node per lab node")
        for node in lab.nodes:
            ensure_node(store, lab, node.name, node.ip)
    finally:
        store.close()


def _crds() -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(CRDS.read_text()) if d]


def ensure_crds(store: LabStore, *, timeout: float) -> None:
    names = []
    for crd in _crds():
        status, doc = store.kube("POST", CRD_PATH, crd)
        if status not in (201, 409):
            raise LabError(f"creating CRD {crd['metadata']['name']}: HTTP {status}: "
                           f"{doc.get('message', '')}")  # fmt: skip
        names.append(crd["metadata"]["name"])
    deadline = time.monotonic() + timeout
    for name in names:
        while not _established(store, name):
            if time.monotonic() > deadline:
                raise LabError(f"CRD {name} did not become Established")
            time.sleep(0.2)


def _established(store: LabStore, name: str) -> bool:
    status, doc = store.kube("GET", f"{CRD_PATH}/{name}")
    if status != 200:
        return False
    conditions = (doc.get("status") or {}).get("conditions")
    if conditions is None:  # the stand-in serves a CRD's resources as soon as it exists
        return True
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def node_object(lab: str, name: str, ip: str) -> dict[str, Any]:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "calico-lab is posting ready status", "lastHeartbeatTime": at,
             "lastTransitionTime": at}  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                              "kubernetes.io/os": "linux", LAB_LABEL: lab}},
        "spec": {},
        "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                 {"type": "Hostname", "address": name}],
                   "conditions": [ready]},
    }  # fmt: skip


def ensure_node(store: LabStore, lab: LabState, name: str, ip: str) -> None:
    """Register the Node (kubelet's part); one this lab did not make is refused, not taken."""
    status, doc = store.kube("POST", "/api/v1/nodes", node_object(lab.name, name, ip))
    if status == 201:
        return
    if status != 409:
        raise LabError(f"registering Node {name}: HTTP {status}: {doc.get('message', '')}")
    status, doc = store.kube("GET", f"/api/v1/nodes/{name}")
    owner = ((doc.get("metadata") or {}).get("labels") or {}).get(LAB_LABEL)
    if owner != lab.name:
        who = f"lab {owner!r}" if owner else "something other than a calico-lab"
        raise LabError(f"Node {name} already exists in the API server, registered by {who}; "
                       "delete it or give this lab's nodes other names")  # fmt: skip


def remove_nodes(lab: LabState) -> None:
    """``down`` with the user's API server (calico-node stopped): each Node this lab registered is
    cleaned up as ``calicoctl delete node`` does (tunnel addresses released, affine blocks
    released, Calico's annotations removed), then deleted with its Lease."""
    from calico.datastore.client import NotFound
    from calico.ipam.node_cleanup import delete_node

    store = LabStore.of(lab)
    try:
        for node in lab.nodes:
            status, doc = store.kube("GET", f"/api/v1/nodes/{node.name}")
            labels = (doc.get("metadata") or {}).get("labels") or {}
            if status != 200 or labels.get(LAB_LABEL) != lab.name:
                continue  # gone already, or not this lab's
            try:
                store.call(delete_node, store.client, node.name)
            except NotFound:
                pass
            store.kube("DELETE", f"/api/v1/nodes/{node.name}")
            lease = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{node.name}"
            store.kube("DELETE", lease)  # the sync daemon's heartbeat (404: none)
    finally:
        store.close()

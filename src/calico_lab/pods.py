"""The lab's kubelet: make a pod's namespace, CNI ADD it on its node, start its responder; and undo.

A pod is recorded in the state file (with its namespace name) before anything is made, so a failure
at any step leaves something ``delete`` or ``down`` can remove. Labels and ports the CNI plugin
could only learn from a Kubernetes API server are written onto the WorkloadEndpoint here, through
the same k8s conversion the plugin uses (see :mod:`calico_lab.endpoints`).
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calico.lib import netns
from calico_lab import cni_runner, daemons, endpoints, kdd_objects, nodes
from calico_lab.state import LabError, LabState, PodState, pod_netns
from calico_lab.store import LabStore

RESPONDER = Path(__file__).with_name("responder.py")
PROTOCOLS = ("TCP", "UDP", "SCTP")
ADD_ATTEMPTS = 5
ADD_BACKOFF = 1.0  # seconds, times the attempt number
ERR_DATAPLANE = 101  # the calico plugin's "kernel refused a link/address/route change"
ERR_TRY_AGAIN = 11  # the spec's "try again later": e.g. etcd electing a leader
RETRIED = (ERR_DATAPLANE, ERR_TRY_AGAIN)


def container_ports(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """Every containerPort of the pod as {name?, containerPort, protocol} (protocol upper-case)."""
    out = []
    for ci, container in enumerate((pod.get("spec") or {}).get("containers") or []):
        for pi, port in enumerate(container.get("ports") or []):
            where = f"spec.containers[{ci}].ports[{pi}]"
            number = port.get("containerPort")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                raise LabError(f"{where}.containerPort: {number!r} is not a port number")
            proto = str(port.get("protocol", "TCP")).upper()
            if proto not in PROTOCOLS:
                raise LabError(f"{where}.protocol: {proto!r} is not TCP, UDP or SCTP")
            entry: dict[str, Any] = {"containerPort": number, "protocol": proto}
            if port.get("name"):
                entry["name"] = str(port["name"])
            out.append(entry)
    return out


def place(lab: LabState, pod: dict[str, Any]) -> str:
    """``spec.nodeName`` when set (must be a lab node), else the next node round robin."""
    wanted = (pod.get("spec") or {}).get("nodeName")
    if wanted:
        return lab.node(str(wanted)).name
    node = lab.nodes[lab.round_robin % len(lab.nodes)].name
    lab.round_robin += 1
    return node


def create(lab: LabState, store: LabStore, pod: dict[str, Any]) -> PodState:
    meta = pod["metadata"]
    ns, name = str(meta.get("namespace") or "default"), str(meta["name"])
    ports = container_ports(pod)
    node = place(lab, pod)
    p = PodState(
        namespace=ns,
        name=name,
        node=node,
        netns=pod_netns(lab.name, ns, name),
        container_id=secrets.token_hex(32),
        labels=dict(meta.get("labels") or {}),
        ports=ports,
        service_account=str((pod.get("spec") or {}).get("serviceAccountName") or "default"),
    )
    lab.pods[p.key] = p
    if p.netns not in lab.netns:
        lab.netns.append(p.netns)
    lab.save()
    try:
        _start(lab, store, p, pod.get("spec"))
    except BaseException:
        # Undo what was made (CNI DEL releases the address) so a retry starts clean.
        with contextlib.suppress(Exception):
            delete(lab, store, p.key)
        raise
    return p


def _start(lab: LabState, store: LabStore, p: PodState, spec: dict[str, Any] | None) -> None:
    netns.add(p.netns)
    if lab.kdd:  # the Pod object the plugin reads and annotates (its endpoint, in this mode)
        kdd_objects.create_pod(store, lab, p, spec)
    else:
        endpoints.publish(lab, p)
    result = cni_add(lab, p)
    p.ip = cni_runner.pod_ip(result)
    lab.save()
    if not lab.kdd:
        endpoints.sync(store, lab, p)
    start_responder(lab, p)
    lab.save()


def cni_add(lab: LabState, p: PodState) -> dict[str, Any]:
    """CNI ADD as kubelet runs a sandbox: a dataplane failure or "try again later" is followed
    by DEL, a back-off (1 s × attempt) and another ADD, up to ADD_ATTEMPTS; the result."""
    conflist, host = nodes.load_conflist(lab, p.node), lab.node(p.node).netns
    for attempt in range(1, ADD_ATTEMPTS + 1):
        try:
            return cni_runner.add(conflist, _ref(p), cni_path=nodes.cni_path(lab), host_netns=host)
        except cni_runner.CNIError as exc:
            if attempt == ADD_ATTEMPTS or exc.code not in RETRIED:
                raise
            print(f"calico-lab: pod {p.key}: {exc}; retrying", file=sys.stderr)
            with contextlib.suppress(cni_runner.CNIError):
                cni_runner.delete(conflist, _ref(p), cni_path=nodes.cni_path(lab), host_netns=host)
            time.sleep(ADD_BACKOFF * attempt)
    raise AssertionError("unreachable")  # the last attempt returned or raised


def _ref(p: PodState) -> cni_runner.PodRef:
    return cni_runner.PodRef(
        namespace=p.namespace, name=p.name, container_id=p.container_id, netns=p.netns
    )


def start_responder(lab: LabState, p: PodState) -> None:
    daemons.stop(p.responder_pid, grace=1)
    by_proto: dict[str, list[str]] = {proto: [] for proto in PROTOCOLS}
    for port in p.ports:
        by_proto[port["protocol"]].append(str(port["containerPort"]))
    args = ["--identity", p.key]
    for proto, numbers in by_proto.items():
        if numbers:
            args += [f"--{proto.lower()}", ",".join(sorted(set(numbers), key=int))]

    def record(pid: int) -> None:
        p.responder_pid = pid
        lab.save()

    run_responder(
        lab,
        what=f"pod {p.key}",
        netns_name=p.netns,
        log_name=f"{p.namespace}_{p.name}",
        args=args,
        record=record,
    )


def run_responder(
    lab: LabState,
    *,
    what: str,
    netns_name: str,
    log_name: str,
    args: list[str],
    record: Callable[[int], None],
) -> None:
    """Start ``responder.py ARGS`` in ``netns_name``; ``record`` its PID (write-ahead), then wait
    until every socket is bound (its ready file)."""
    logs = lab.path / "pods"
    ready = logs / f"{log_name}.ready"
    ready.unlink(missing_ok=True)
    argv = [sys.executable, "-I", "-S", str(RESPONDER), *args, "--ready-file", str(ready)]
    pid = daemons.spawn(argv, netns=netns_name, log_file=logs / f"{log_name}.log", env=None)
    record(pid)
    deadline = time.monotonic() + 10
    while not ready.exists():
        if not daemons.alive(pid) or time.monotonic() > deadline:
            raise LabError(f"{what}: responder did not start; see {logs / log_name}.log")
        time.sleep(0.01)
    ready.unlink()


def delete(lab: LabState, store: LabStore | None, key: str) -> None:
    """CNI DEL, stop the responder, remove the namespace; forget the pod."""
    p = lab.pod(key)
    daemons.stop(p.responder_pid, grace=1)
    errors = []
    if netns.exists(p.netns) and netns.exists(lab.node(p.node).netns):
        try:
            cni_runner.delete(
                nodes.load_conflist(lab, p.node),
                _ref(p),
                cni_path=nodes.cni_path(lab),
                host_netns=lab.node(p.node).netns,
            )
        except (cni_runner.CNIError, OSError) as exc:
            errors.append(str(exc))
    if store is not None and lab.kdd:
        kdd_objects.delete_pod(store, p)
    elif store is not None:
        endpoints.remove(store, lab, p)
    endpoints.unpublish(lab, p)
    netns.delete(p.netns)
    for suffix in (".log", ".ready"):
        (lab.path / "pods" / f"{p.namespace}_{p.name}{suffix}").unlink(missing_ok=True)
    del lab.pods[key]
    if p.netns in lab.netns:
        lab.netns.remove(p.netns)
    lab.save()
    if errors:
        raise LabError(f"pod {key} removed, but CNI DEL reported: {'; '.join(errors)}")


def update(lab: LabState, store: LabStore, existing: PodState, pod: dict[str, Any]) -> bool:
    """Apply a changed Pod: labels and ports change live; True when something changed."""
    spec_node = (pod.get("spec") or {}).get("nodeName")
    if spec_node and spec_node != existing.node:
        raise LabError(
            f"pod {existing.key}: spec.nodeName is immutable "
            f"(running on {existing.node}; delete the pod first)"
        )
    labels = dict(pod["metadata"].get("labels") or {})
    ports = container_ports(pod)
    if labels == existing.labels and ports == existing.ports:
        return False
    ports_changed = ports != existing.ports
    existing.labels, existing.ports = labels, ports
    lab.save()
    _sync_labels(store, lab, existing)
    if ports_changed:
        start_responder(lab, existing)
    return True


def relabel(lab: LabState, store: LabStore, key: str, changes: dict[str, str | None]) -> PodState:
    p = lab.pod(key)
    labels = dict(p.labels)
    for k, v in changes.items():
        if v is None:
            labels.pop(k, None)
        else:
            labels[k] = v
    old, p.labels = p.labels, labels
    try:
        endpoints.desired_labels(lab, p)  # validates: a bad label changes nothing
    except ValueError as exc:
        p.labels = old
        raise LabError(f"pod {key}: {exc}") from None
    lab.save()
    _sync_labels(store, lab, p)
    return p


def _sync_labels(store: LabStore, lab: LabState, p: PodState) -> None:
    if lab.kdd:
        kdd_objects.relabel_pod(store, p)  # the datastore derives the endpoint's labels
    else:
        endpoints.sync(store, lab, p)

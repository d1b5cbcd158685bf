"""``calico-lab up --kubeconfig``: the lab as scheduler and kubelet for a real API server's pods.

A daemon (``python -m calico_lab.kube``, in the root namespace where the API server is reachable;
it listens on nothing) follows Namespaces, NetworkPolicies and Pods with the kube-controllers'
informers (:mod:`calico_lab.kubewatch`: list, then watch from the list's resourceVersion; 410 Gone
lists again) and reconciles the lab with those caches, level-triggered, whenever any changes:

- namespaces and policies through the same conversions as ``calico-lab apply``;
- scheduler: each pending pod the lab may schedule (:mod:`calico_lab.scheduler`) is bound to the
  lab node with the fewest pods by POSTing a Binding, as kube-scheduler does;
- kubelet: pods bound to a lab node are started (namespace, CNI ADD, responder), then
  ``status.podIP``/``podIPs``/``hostIP``/``phase: Running`` are written back; a pod that is gone, or
  has a ``deletionTimestamp`` (graceful deletion), gets CNI DEL and is removed from the lab, and in
  the second case its deletion is confirmed with a grace-period-0 DELETE, as kubelet does.

Pods bound to nodes outside the lab are left alone. There is no polling: a pass runs on watch
events only, plus a safety-net pass every ``--resync`` seconds (default 60) that also retries
objects whose last attempt failed (a failure is otherwise retried only when the object changes).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from calico_lab import cluster, daemons, kubenode, objects, scheduler, state
from calico_lab.kubewatch import KubeWatch
from calico_lab.state import LabError, LabState

logger = logging.getLogger("calico_lab.kube")
SYNCED = "kube.synced"
RESYNC_SECONDS = 60.0


def start(lab: LabState, kubeconfig: str, *, timeout: float = 60) -> None:
    """Start the sync daemon (unless running) and wait for its first full pass."""
    with state.locked(lab.name):
        current = state.require(lab.name)
        if daemons.alive(current.kube_pid):
            return
        marker = current.path / SYNCED
        marker.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "calico_lab.kube",
            "--name",
            lab.name,
            "--kubeconfig",
            str(Path(kubeconfig).resolve()),
        ]
        current.kube_pid = daemons.spawn(
            argv, netns=None, log_file=current.path / "kube.log", env=daemons.child_env({})
        )
        current.kube_config = str(Path(kubeconfig).resolve())  # down removes the lab's Nodes
        current.save()
    daemons.wait_until(
        lambda: _synced(current, marker),
        timeout=timeout,
        what=f"the first Kubernetes sync (see {current.path / 'kube.log'})",
    )


def _synced(lab: LabState, marker: Path) -> bool:
    if not daemons.alive(lab.kube_pid):
        log = lab.path / "kube.log"
        errors = [ln for ln in _read(log).splitlines() if "[ERROR]" in ln]
        why = errors[-1].split("] ", 1)[-1].removeprefix("calico-lab kube: ") if errors else ""
        raise LabError(f"Kubernetes sync exited{': ' + why if why else ''}; see {log}")
    return marker.exists()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def unregister(lab: LabState, step: Any) -> None:
    """``down``: remove the Nodes (and Leases) the sync daemon registered."""
    if lab.kube_config:
        kubenode.unregister(lab.kube_config, lab.name, [n.name for n in lab.nodes], step)


class KubeSync:
    def __init__(self, name: str, kubeconfig: str) -> None:
        self.name = name
        self.kubeconfig = kubeconfig
        self.client = self._new_client()
        self.status_subresource = True
        self.failed: dict[str, str] = {}  # key -> resourceVersion that failed (not retried)
        self.watch: KubeWatch | None = None
        self.sched: scheduler.Scheduler | None = None

    def _new_client(self) -> Any:
        from lightkube import Client, KubeConfig

        return Client(KubeConfig.from_file(self.kubeconfig))

    def start_informers(self, on_change: Any) -> None:
        self.watch = KubeWatch(self.kubeconfig, on_change=on_change).start()

    def wait_synced(self, timeout: float | None = None) -> bool:
        assert self.watch is not None
        return self.watch.wait_synced(timeout)

    def snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        assert self.watch is not None
        items = self.watch.items
        return items("Namespace"), items("NetworkPolicy"), items("Pod")

    def run_pass(self) -> None:
        nss, nps, pods = self.snapshot()
        pods = self._schedule(pods)
        with cluster.session(self.name) as (lab, store):
            self._namespaces(lab, store, nss)
            self._policies(lab, store, nps)
            statuses, confirm = self._pods(lab, store, pods)
        for ns, name, status in statuses:
            try:  # compared with the cache on every pass: a failed write is retried on the next
                self._write_status(ns, name, status)
            except Exception as exc:
                logger.error("pod %s/%s: writing status: %s", ns, name, exc)
        for ns, name in confirm:
            self._confirm_deleted(ns, name)

    def _try(self, key: str, version: str, fn: Any) -> None:
        if self.failed.get(key) == version:
            return
        try:
            fn()
            self.failed.pop(key, None)
        except (LabError, ValueError, OSError) as exc:
            logger.error("%s: %s", key, exc)
            self.failed[key] = version

    def _namespaces(self, lab: LabState, store: Any, nss: list[dict[str, Any]]) -> None:
        seen = set()
        for ns in nss:
            name = ns["metadata"]["name"]
            seen.add(name)
            labels = dict(ns["metadata"].get("labels") or {})
            labels[objects.NS_NAME_LABEL] = name
            if lab.namespaces.get(name) != labels:
                self._try(
                    f"namespace {name}",
                    ns["metadata"].get("resourceVersion", ""),
                    lambda n=name, lb=labels: objects.ensure_namespace(lab, store, n, lb),
                )
        for name in [n for n in lab.namespaces if n not in seen]:
            objects.delete_namespace(lab, store, name)

    def _policies(self, lab: LabState, store: Any, nps: list[dict[str, Any]]) -> None:
        seen = set()
        for np in nps:
            np = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **np}
            meta = np["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            seen.add(key)
            wanted = {
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "spec": np.get("spec") or {},
            }
            have = lab.policies.get(key)
            if have is None or have.get("spec") != wanted["spec"]:
                doc = {"apiVersion": np["apiVersion"], "kind": "NetworkPolicy", **wanted}
                self._try(
                    f"networkpolicy {key}",
                    meta.get("resourceVersion", ""),
                    lambda d=doc: objects.apply(lab, store, [objects.Doc(d, "kube")], logger.info),
                )
        for key in [k for k in lab.policies if k not in seen]:
            objects.delete(lab, store, [objects.Doc(lab.policies[key], "kube")], logger.info)

    def _schedule(self, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bind every pod the lab may schedule; the result shows them bound (the API server's
        MODIFIED event will say the same)."""
        pending = [p for p in pods if scheduler.wants_scheduling(p)]
        if not pending:
            return pods
        if self.sched is None:  # kept across passes, so round robin continues
            self.sched = scheduler.Scheduler([n.name for n in state.require(self.name).nodes])
        sched = self.sched
        sched.observe(pods)
        out = []
        for pod in pods:
            if scheduler.wants_scheduling(pod):
                pod = self._bind(sched, pod)
            out.append(pod)
        return out

    def _bind(self, sched: scheduler.Scheduler, pod: dict[str, Any]) -> dict[str, Any]:
        meta = pod["metadata"]
        key, version = f"binding {meta['namespace']}/{meta['name']}", meta.get("resourceVersion")
        if self.failed.get(key) == version:
            return pod
        node = sched.pick()
        try:
            bound = scheduler.bind(self.client, pod, node)
        except Exception as exc:  # ApiError other than 409, connection errors
            logger.error("%s: %s", key, exc)
            self.failed[key] = str(version)
            return pod
        if not bound:
            logger.info("%s: already bound (409); waiting for the watch", key)
            return pod
        logger.info("bound pod %s/%s to %s", meta["namespace"], meta["name"], node)
        pod = copy.deepcopy(pod)
        pod["spec"]["nodeName"] = node
        return pod

    def _pods(
        self, lab: LabState, store: Any, pods: list[dict[str, Any]]
    ) -> tuple[list[tuple[str, str, dict[str, Any]]], list[tuple[str, str]]]:
        """Start/update/remove lab pods; (status patches to write, deletions to confirm)."""
        nodes = {n.name: n for n in lab.nodes}
        seen: set[str] = set()
        statuses: list[tuple[str, str, dict[str, Any]]] = []
        terminating: list[tuple[str, str]] = []
        for pod in pods:
            meta, spec = pod["metadata"], pod.get("spec") or {}
            key = f"{meta['namespace']}/{meta['name']}"
            node = spec.get("nodeName")
            if spec.get("hostNetwork") or node not in nodes or scheduler.finished(pod):
                continue
            if meta.get("deletionTimestamp"):
                terminating.append((meta["namespace"], meta["name"]))
                continue
            seen.add(key)
            existing = lab.pods.get(key)
            if existing is not None and existing.node != node:
                # Deleted and made again under the same name, now bound elsewhere: start over.
                self._remove(lab, store, key)
                existing = None
            labels = dict(meta.get("labels") or {})
            if existing is None or existing.labels != labels:
                doc: dict[str, Any] = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": meta["name"],
                        "namespace": meta["namespace"],
                        "labels": labels,
                    },
                    "spec": copy.deepcopy(spec),
                }
                self._try(
                    f"pod {key}",
                    meta.get("resourceVersion", ""),
                    lambda d=doc: objects.apply(lab, store, [objects.Doc(d, "kube")], logger.info),
                )
            running = lab.pods.get(key)
            if running is not None and running.ip:
                want = _status(running.ip, nodes[node].ip)
                have = pod.get("status") or {}
                if any(have.get(k) != v for k, v in want.items()):
                    statuses.append((meta["namespace"], meta["name"], want))
        for key in [k for k in lab.pods if k not in seen]:
            self._remove(lab, store, key)
        confirm = [(ns, name) for ns, name in terminating if f"{ns}/{name}" not in lab.pods]
        return statuses, confirm

    def _remove(self, lab: LabState, store: Any, key: str) -> None:
        """CNI DEL, stop the responder, delete the namespace and WorkloadEndpoint."""
        ns, name = key.split("/", 1)
        doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}}
        try:  # retried on the next pass while the pod is still in the lab
            objects.delete(lab, store, [objects.Doc(doc, "kube")], logger.info)
        except (LabError, OSError) as exc:
            logger.error("pod %s: removing: %s", key, exc)

    def _write_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        from lightkube import ApiError
        from lightkube.resources.core_v1 import Pod
        from lightkube.types import PatchType

        body = {"status": status}
        if self.status_subresource:
            try:
                self.client.patch(Pod.Status, name, body, namespace=ns, patch_type=PatchType.MERGE)
                return
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
                if exc.status.details is not None and exc.status.details.name:
                    return  # the pod itself is gone (its DELETED event follows)
            # No status subresource (minimal API servers): patch the object itself from now on,
            # on a fresh connection (a server that 404s early may leave the old one unusable).
            self.status_subresource = False
            self.client = self._new_client()
        self.client.patch(Pod, name, body, namespace=ns, patch_type=PatchType.MERGE)

    def _confirm_deleted(self, ns: str, name: str) -> None:
        """Graceful deletion: the pod is stopped here, so let the API server drop the object."""
        from lightkube import ApiError
        from lightkube.resources.core_v1 import Pod

        try:
            self.client.delete(Pod, name, namespace=ns, grace_period=0)
            logger.info("pod %s/%s: deletion confirmed", ns, name)
        except ApiError as exc:
            if exc.status.code != 404:
                logger.error("pod %s/%s: confirming deletion: %s", ns, name, exc)


def _status(pod_ip: str, host_ip: str) -> dict[str, Any]:
    """The part of a pod's status the lab's kubelet owns."""
    return {
        "phase": "Running",
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m calico_lab.kube", description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument(
        "--resync", type=float, default=RESYNC_SECONDS, help="safety-net pass period (s); 0: none"
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=kubenode.HEARTBEAT_SECONDS,
        help="Lease renewal period (s), as kubelet's",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s [%(levelname)s] calico-lab kube: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    sync = KubeSync(args.name, args.kubeconfig)
    lab = state.require(args.name)
    agent = kubenode.NodeAgent(
        args.kubeconfig, args.name, [(n.name, n.ip) for n in lab.nodes], interval=args.heartbeat
    )
    try:
        agent.register()
    except LabError as exc:
        logger.error("%s", exc)
        sys.exit(1)
    agent.start()
    wake = threading.Event()
    sync.start_informers(wake.set)
    sync.wait_synced()
    marker = state.require(args.name).path / SYNCED
    backoff, next_resync = 0.0, time.monotonic() + args.resync
    while True:
        wake.clear()
        if args.resync and time.monotonic() >= next_resync:
            sync.failed.clear()  # the safety net also retries what failed before
            next_resync = time.monotonic() + args.resync
        try:
            sync.run_pass()
            marker.touch()
            backoff = 0.0
        except Exception:
            backoff = min(max(2 * backoff, 0.5), 30.0)
            logger.exception("sync pass failed; retrying in %.1fs", backoff)
            time.sleep(backoff)
            wake.set()
        wake.wait(max(0.0, next_resync - time.monotonic()) if args.resync else None)


if __name__ == "__main__":
    main()

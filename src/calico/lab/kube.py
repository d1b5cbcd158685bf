"""``calico-lab up --kubeconfig``: take Namespaces, NetworkPolicies and Pods from a real API server.

A daemon (``python -m calico.lab.kube``, in the root namespace where the API server is reachable;
it listens on nothing) reconciles the lab with the cluster, level-triggered: each pass lists the
three kinds (lightkube) and makes the lab match — namespaces and policies through the same
conversions as ``calico-lab apply``, pods scheduled (``spec.nodeName`` when it names a lab node,
else round robin) and started as the lab's kubelet, then ``status.podIP`` written back. Pods bound
to nodes outside the lab are left alone. A pass runs every ``--interval`` seconds and whenever a
watch on any of the kinds reports a change.
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

from calico.lab import cluster, daemons, objects, state
from calico.lab.state import LabError, LabState

logger = logging.getLogger("calico.lab.kube")
SYNCED = "kube.synced"


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
            "calico.lab.kube",
            "--name",
            lab.name,
            "--kubeconfig",
            str(Path(kubeconfig).resolve()),
        ]
        current.kube_pid = daemons.spawn(
            argv, netns=None, log_file=current.path / "kube.log", env=daemons.child_env({})
        )
        current.save()
    daemons.wait_until(
        lambda: _synced(current, marker),
        timeout=timeout,
        what=f"the first Kubernetes sync (see {current.path / 'kube.log'})",
    )


def _synced(lab: LabState, marker: Path) -> bool:
    if not daemons.alive(lab.kube_pid):
        raise LabError(f"Kubernetes sync exited; see {lab.path / 'kube.log'}")
    return marker.exists()


def _plain(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = obj.to_dict()
    return out


class KubeSync:
    def __init__(self, name: str, kubeconfig: str) -> None:
        self.name = name
        self.kubeconfig = kubeconfig
        self.client = self._new_client()
        self.status_subresource = True
        self.failed: dict[str, str] = {}  # key -> resourceVersion that failed (not retried)

    def _new_client(self) -> Any:
        from lightkube import Client, KubeConfig

        return Client(KubeConfig.from_file(self.kubeconfig))

    def list_all(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        from lightkube.resources.core_v1 import Namespace, Pod
        from lightkube.resources.networking_v1 import NetworkPolicy

        nss = [_plain(o) for o in self.client.list(Namespace)]
        nps = [_plain(o) for o in self.client.list(NetworkPolicy, namespace="*")]
        pods = [_plain(o) for o in self.client.list(Pod, namespace="*")]
        return nss, nps, pods

    def run_pass(self) -> None:
        nss, nps, pods = self.list_all()
        written: list[tuple[str, str, str]] = []
        with cluster.session(self.name) as (lab, store):
            self._namespaces(lab, store, nss)
            self._policies(lab, store, nps)
            written = self._pods(lab, store, pods)
        for ns, name, ip in written:
            self._write_pod_ip(ns, name, ip)

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

    def _pods(
        self, lab: LabState, store: Any, pods: list[dict[str, Any]]
    ) -> list[tuple[str, str, str]]:
        nodes = {n.name for n in lab.nodes}
        seen, written = set(), []
        for pod in pods:
            meta, spec = pod["metadata"], pod.get("spec") or {}
            key = f"{meta['namespace']}/{meta['name']}"
            node = spec.get("nodeName")
            if spec.get("hostNetwork") or (node and node not in nodes):
                continue
            if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in (
                "Succeeded",
                "Failed",
            ):
                continue
            seen.add(key)
            doc: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "labels": dict(meta.get("labels") or {}),
                },
                "spec": copy.deepcopy(spec),
            }
            existing = lab.pods.get(key)
            if existing is not None and existing.labels == doc["metadata"]["labels"]:
                if (pod.get("status") or {}).get("podIP") != existing.ip:
                    written.append((meta["namespace"], meta["name"], existing.ip))
                continue
            self._try(
                f"pod {key}",
                meta.get("resourceVersion", ""),
                lambda d=doc: objects.apply(lab, store, [objects.Doc(d, "kube")], logger.info),
            )
            if key in lab.pods:
                written.append((meta["namespace"], meta["name"], lab.pods[key].ip))
        for key in [k for k in lab.pods if k not in seen]:
            objects.delete(
                lab,
                store,
                [
                    objects.Doc(
                        {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "metadata": {
                                "name": key.split("/", 1)[1],
                                "namespace": key.split("/", 1)[0],
                            },
                        },
                        "kube",
                    )
                ],
                logger.info,
            )
        return written

    def _write_pod_ip(self, ns: str, name: str, ip: str) -> None:
        from lightkube import ApiError
        from lightkube.resources.core_v1 import Pod
        from lightkube.types import PatchType

        body = {"status": {"podIP": ip, "podIPs": [{"ip": ip}], "phase": "Running"}}
        if self.status_subresource:
            try:
                self.client.patch(Pod.Status, name, body, namespace=ns, patch_type=PatchType.MERGE)
                return
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
            # No status subresource (minimal API servers): patch the object itself from now on,
            # on a fresh connection (a server that 404s early may leave the old one unusable).
            self.status_subresource = False
            self.client = self._new_client()
        self.client.patch(Pod, name, body, namespace=ns, patch_type=PatchType.MERGE)

    def watch_changes(self, wake: threading.Event) -> None:
        """Set ``wake`` on any change to the watched kinds (the pass itself lists)."""
        from lightkube.resources.core_v1 import Namespace, Pod
        from lightkube.resources.networking_v1 import NetworkPolicy

        def follow(res: Any, namespaced: bool) -> None:
            while True:
                try:
                    stream = (
                        self.client.watch(res, namespace="*")
                        if namespaced
                        else self.client.watch(res)
                    )
                    for _ in stream:
                        wake.set()
                except Exception as exc:  # reconnect after any failure; passes still run
                    logger.debug("watch %s: %s", res.__name__, exc)
                    time.sleep(1)

        for res, namespaced in ((Namespace, False), (NetworkPolicy, True), (Pod, True)):
            threading.Thread(target=follow, args=(res, namespaced), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m calico.lab.kube", description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s [%(levelname)s] calico-lab kube: %(message)s"
    )
    sync = KubeSync(args.name, args.kubeconfig)
    wake = threading.Event()
    sync.watch_changes(wake)
    marker = state.require(args.name).path / SYNCED
    while True:
        wake.clear()
        try:
            sync.run_pass()
            marker.touch()
        except Exception:
            logger.exception("sync pass failed; retrying")
            time.sleep(1)
        wake.wait(args.interval)


if __name__ == "__main__":
    main()

"""The lab's scheduler for ``calico-lab up --kubeconfig``: bind pending pods to lab nodes.

As kube-scheduler does, a decision is a ``Binding`` POSTed to ``pods/NAME/binding`` (with the pod's
uid as precondition); the API server then sets ``spec.nodeName`` and the watch delivers the bound
pod to the lab's kubelet side. A pod is ours to schedule when it has no ``spec.nodeName``, is not
being deleted, has not finished, is not ``hostNetwork`` (the lab runs pods only in their own
network namespace), and its ``spec.schedulerName`` is absent, ``default-scheduler`` or
``calico-lab`` (see :data:`SCHEDULER_NAMES`). The node is the lab node with the fewest pods bound to
it, ties going to the next node round robin. A 409 (someone else bound it first) is not an error.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

SCHEDULER_NAMES = frozenset({"", "default-scheduler", "calico-lab"})
TERMINAL_PHASES = ("Succeeded", "Failed")


def finished(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def wants_scheduling(pod: dict[str, Any]) -> bool:
    """Unbound, alive, not hostNetwork, and meant for a scheduler the lab stands in for."""
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
        and not finished(pod)
        and not spec.get("hostNetwork")
        and str(spec.get("schedulerName") or "") in SCHEDULER_NAMES
    )


class Scheduler:
    """Least-pods placement over a fixed node list; ties go round robin."""

    def __init__(self, nodes: list[str]) -> None:
        self.nodes = list(nodes)
        self.load: Counter[str] = Counter()
        self._next = 0

    def observe(self, pods: list[dict[str, Any]]) -> None:
        """Count the live pods already bound to each of our nodes."""
        self.load = Counter(
            str((p.get("spec") or {}).get("nodeName"))
            for p in pods
            if (p.get("spec") or {}).get("nodeName") in self.nodes and not finished(p)
        )

    def pick(self) -> str:
        if not self.nodes:
            raise ValueError("no nodes to schedule on")
        n = len(self.nodes)
        order = [self.nodes[(self._next + i) % n] for i in range(n)]
        node = min(order, key=lambda name: self.load[name])  # min keeps the first of equals
        self._next = (self.nodes.index(node) + 1) % n
        self.load[node] += 1
        return node


def binding(pod: dict[str, Any], node: str) -> dict[str, Any]:
    """The Binding kube-scheduler would POST for ``pod`` onto ``node``."""
    meta = pod["metadata"]
    out_meta = {"name": meta["name"], "namespace": meta["namespace"]}
    if meta.get("uid"):
        out_meta["uid"] = meta["uid"]
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": out_meta,
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }


def bind(client: Any, pod: dict[str, Any], node: str) -> bool:
    """POST the Binding; False when the API server says the pod is bound already (409)."""
    from lightkube import ApiError

    body = binding(pod, node)
    meta = body["metadata"]
    try:
        client.create(_binding_resource()(body), meta["name"], namespace=meta["namespace"])
    except ApiError as exc:
        if exc.status.code == 409:
            return False
        raise
    return True


_BINDING: Any = None


def _binding_resource() -> Any:
    """``pods/NAME/binding`` as a dict-shaped lightkube subresource.

    lightkube's own ``Pod.Binding`` decodes the answer as a Binding, but the API server answers a
    Status (no ``target``), so its typed decode fails after a successful bind.
    """
    global _BINDING
    if _BINDING is None:
        from lightkube.core import resource as res
        from lightkube.generic_resource import Generic

        class PodBinding(res.NamespacedSubResource, Generic):  # type: ignore[misc]
            _api_info = res.ApiInfo(
                resource=res.ResourceDef("", "v1", "Binding"),
                parent=res.ResourceDef("", "v1", "Pod"),
                plural="pods",
                verbs=["post"],
                action="binding",
            )

        _BINDING = PodBinding
    return _BINDING

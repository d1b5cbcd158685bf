"""Changes made while a fault is injected: Calico NetworkPolicies and pods, on a thread.

Policies ``churn-<n>`` in namespace ``default`` select ``app == 'c'`` (the denied prober's source,
so no change ever opens c -> b, which ``protect-b`` denies on b's side anyway): created, updated
(rules changed) and deleted in turn, through the lab's store with idempotent retries. Pods
``churn-<n>`` (a lab pod: namespace, CNI ADD through the node's CNI server, responder) are added
on a rotating node and the previous one deleted. A pod whose start fails during a fault is rolled
back by the lab (CNI DEL); that is counted as a failed operation, never hidden. ``pause()``
stops after the current change, so convergence can be timed from the last change.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.chaos.chaoslab import ChaosLab
from tests.chaos.figures import Figures

POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default, labels: {{app: churn}}}}
spec: {{nodeName: {node}, containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]}}
"""


def policy(n: int, version: int) -> dict[str, Any]:
    port = 1000 + (n * 7 + version) % 500
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"churn-{n}", "namespace": "default"},
        "spec": {
            "selector": "app == 'c'",
            "order": 100 + n,
            "types": ["Egress"],
            "egress": [
                {"action": "Allow", "protocol": "TCP", "destination": {"ports": [port]}},
                {"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}},
                {"action": "Allow", "destination": {"selector": "app == 'a'"}},
            ],
        },
    }


class Churn:
    def __init__(self, lab: ChaosLab, figures: Figures, *, pods: bool = True) -> None:
        self.lab = lab
        self.figures = figures
        self.pods = pods
        self.errors: list[str] = []
        self._run = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._n = 0
        self._pod_n = 0
        self._live_pod: str | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def resume(self) -> None:
        self._idle.clear()
        self._run.set()

    def pause(self) -> None:
        """Stop after the change in progress; return once nothing is being changed."""
        self._run.clear()
        self._idle.wait(120)

    def stop(self) -> None:
        self.pause()
        self._stop.set()
        self._run.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._run.is_set():
                self._idle.set()
                self._run.wait()
                continue
            try:
                self._step()
            except Exception as exc:  # recorded; the test fails on it
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def _step(self) -> None:
        n = self._n % 6
        version = self._n // 6
        if version % 3 == 2:
            failures = self.lab.delete("NetworkPolicy", f"churn-{n}", "default")
            self.figures.op("policy delete")
        else:
            failures = self.lab.apply(policy(n, version))
            self.figures.op("policy write")
        if failures:
            self.figures.failed_op("policy write: etcd unavailable, retried", failures)
        self._n += 1
        if self.pods and self._n % 4 == 0:
            self._pod_step()
        time.sleep(0.05)

    def _pod_step(self) -> None:
        nodes = ["node1", "node2", "node3"]
        name = f"churn-{self._pod_n}"
        node = nodes[self._pod_n % 3]
        self._pod_n += 1
        try:
            self.lab.handle.apply(POD.format(name=name, node=node))
            self.figures.op("pod add")
        except Exception as exc:
            self.figures.failed_op("pod add (rolled back)")
            self.figures.notes.append(f"pod {name} on {node}: {str(exc)[:160]}")
            return
        old, self._live_pod = self._live_pod, name
        if old:
            self._delete_pod(old)

    def _delete_pod(self, name: str) -> None:
        for _ in range(20):
            try:
                self.lab.handle.delete(POD.format(name=name, node="node1"))
                self.figures.op("pod delete")
                return
            except Exception as exc:
                self.figures.failed_op("pod delete (retried)")
                last = exc
                time.sleep(0.5)
        self.errors.append(f"pod {name} could not be deleted: {last}")

    def cleanup(self) -> None:
        """Remove every churn policy and pod (after stop())."""
        for n in range(6):
            self.lab.delete("NetworkPolicy", f"churn-{n}", "default")
        if self._live_pod:
            self._delete_pod(self._live_pod)
            self._live_pod = None

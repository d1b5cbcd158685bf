"""The chaos tests' lab: a real calico-lab (3 nodes, a 3-member etcd cluster with client mTLS)
with four pods and one policy, plus the handles a fault needs.

::

    node1: a (client)           node2: b (server), d          node3: c
    NetworkPolicy protect-b: b accepts only from app=a  ->  a->b allowed; c->b, d->b denied

``ChaosLab`` wraps :class:`tests.e2e.lab_support.LabHandle` with: a store on every etcd member
(writes retried idempotently on "may or may not have been applied", as a controller must),
the convergence oracle for every node (:mod:`tests.chaos.converge`), PIDs of each node's
processes (calico-node's ``health.json``), and etcd member kill/restart by recorded PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

from calico.datastore.client import Conflict, NotFound
from calico.datastore.etcd import EtcdClient, EtcdUnavailable
from calico_lab import daemons, etcd, nodes, state
from calico_lab.state import LabState, PodState
from calico_lab.store import LabStore
from tests.chaos import converge
from tests.e2e.lab_support import LabHandle, pid_alive

T = TypeVar("T")

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default, labels: {app: a}}
spec: {nodeName: node1, containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: default, labels: {app: b}}
spec: {nodeName: node2, containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: default, labels: {app: c}}
spec: {nodeName: node3, containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: d, namespace: default, labels: {app: d}}
spec: {nodeName: node2, containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: protect-b, namespace: default}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}]}]
"""


class ChaosLab:
    def __init__(self, handle: LabHandle) -> None:
        self.handle = handle
        self.name = handle.name
        self._store: LabStore | None = None

    # ---- state and datastore ------------------------------------------------------------------

    def state(self) -> LabState:
        return self.handle.state()

    def pod(self, key: str) -> PodState:
        return self.state().pod(key)

    @property
    def store(self) -> LabStore:
        if self._store is None:
            self._store = LabStore.of(self.state())
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def etcd_call(self, fn: Callable[[EtcdClient], T]) -> T:
        return self.store.call(fn, self.store.etcd)

    def retry(self, fn: Callable[[], T], *, within: float = 60.0) -> tuple[T, int]:
        """``fn()`` until it does not raise EtcdUnavailable; (result, failed attempts). What a
        controller does: every write here is idempotent (apply / delete-if-present)."""
        deadline = time.monotonic() + within
        failures = 0
        while True:
            try:
                return fn(), failures
            except EtcdUnavailable:
                failures += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def apply(self, obj: dict[str, Any]) -> int:
        """Create or replace ``obj``; the number of attempts that failed on the way."""
        _, failures = self.retry(lambda: self._apply_once(obj))
        return failures

    def _apply_once(self, obj: dict[str, Any]) -> None:
        try:
            self.store.apply(json.loads(json.dumps(obj)))
        except Conflict:  # an earlier attempt may have been applied: apply again reads it
            self.store.apply(json.loads(json.dumps(obj)))

    def delete(self, kind: str, name: str, namespace: str | None = None) -> int:
        def once() -> None:
            try:
                self.store.call(self.store.client.delete, kind, name, namespace)
            except NotFound:
                pass

        _, failures = self.retry(once)
        return failures

    # ---- convergence --------------------------------------------------------------------------

    def node_targets(self) -> dict[str, tuple[str, dict[str, str]]]:
        lab = self.state()
        return {n.name: (n.netns, nodes.node_env(lab, n)) for n in lab.nodes}

    def converged(self, *, within: float = 60.0) -> float:
        """Seconds until every node's kernel equals the datastore (fails listing differences)."""
        return converge.wait_converged(self.etcd_call, self.node_targets(), within=within)

    def differences(self) -> list[str]:
        updates, _ = self.etcd_call(converge.snapshot)
        out = []
        for name, (netns, env) in self.node_targets().items():
            want = converge.expected(updates, name, env)
            out += [f"{name}: {d}" for d in converge.differences(want, converge.kernel(netns))]
        return out

    # ---- processes ----------------------------------------------------------------------------

    def health(self, node: str) -> dict[str, Any]:
        lab = self.state()
        path = nodes.run_dir(lab, node) / "health.json"
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def service_pid(self, node: str, service: str) -> int:
        pid = (self.health(node)["services"].get(service) or {}).get("pid")
        return int(pid or 0)

    def restarts(self) -> dict[str, dict[str, int]]:
        """Per node, per service: restarts so far, and calico-node's own pid."""
        out: dict[str, dict[str, int]] = {}
        for n in self.state().nodes:
            h = self.health(n.name)
            out[n.name] = {s: int(v.get("restarts", 0)) for s, v in h["services"].items()}
            out[n.name]["calico-node pid"] = n.pid
        return out

    def wait_service(self, node: str, service: str, *, not_pid: int, within: float = 60) -> int:
        """Wait for ``service`` on ``node`` to run under a pid other than ``not_pid``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                pid = self.service_pid(node, service)
            except (OSError, ValueError, KeyError):
                pid = 0
            if pid and pid != not_pid and pid_alive(pid):
                return pid
            time.sleep(0.1)
        raise AssertionError(f"{service} on {node} did not come back within {within}s")

    def bgp_settled(self) -> bool:
        """Every BGP session Established and no peer still in a graceful restart (a second
        restart before the first one ended makes the peers drop the stale routes: RFC 4724)."""
        st = self.state()
        for n in st.nodes:
            sock = nodes.run_dir(st, n.name) / "bird.ctl"
            proc = subprocess.run(
                ["ip", "netns", "exec", n.netns, "birdc", "-s", str(sock), "show", "protocols",
                 "all"],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
            sessions = nodes.established(nodes.bgp_sessions(st, n))
            if proc.returncode != 0 or "graceful restart active" in proc.stdout:
                return False
            if sessions < len(st.nodes) - 1:
                return False
        return True

    def wait_bgp_settled(self, within: float = 120) -> float:
        start = time.monotonic()
        while not self.bgp_settled():
            if time.monotonic() - start > within:
                raise AssertionError(f"BGP not settled within {within}s")
            time.sleep(0.5)
        return time.monotonic() - start

    # ---- etcd ---------------------------------------------------------------------------------

    def etcd_leader(self) -> int:
        return etcd.leader(self.state())

    def watched_members(self, service: str = "felix") -> dict[str, set[int]]:
        """Per node, the etcd members ``service`` has connections to (its watch among them)."""
        st = self.state()
        hosts = st.etcd.hosts()
        out: dict[str, set[int]] = {}
        for n in st.nodes:
            pid = self.service_pid(n.name, service)
            ss = subprocess.run(
                ["ip", "netns", "exec", n.netns, "ss", "-Htnp", "state", "established",
                 "( dport = :2379 )"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout  # fmt: skip
            out[n.name] = {
                hosts.index(line.split()[3].rsplit(":", 1)[0])
                for line in ss.splitlines()
                if f"pid={pid}," in line and line.split()[3].rsplit(":", 1)[0] in hosts
            }
        return out

    def pause_member(self, index: int, *, resume: bool = False) -> None:
        """SIGSTOP (or SIGCONT) member ``index``: a hung member, its sockets open and silent."""
        os.killpg(self.state().etcd_pids[index], signal.SIGCONT if resume else signal.SIGSTOP)

    def kill_member(self, index: int) -> None:
        pid = self.state().etcd_pids[index]
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while daemons.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart_etcd(self) -> list[int]:
        """Start every member that is down (what ``calico-lab up`` does); the indexes started."""
        with state.locked(self.name):
            return etcd.ensure(self.state())

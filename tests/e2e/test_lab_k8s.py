"""``calico-lab up --kubernetes``: Calico's hosted install on a real two-node Kubernetes cluster.

kube-apiserver, kube-controller-manager and kube-scheduler in the lab's core; containerd, kubelet
and kube-proxy on each node; Calico installed with ``kubectl apply -f manifests/calico.yaml`` from
the images ``make images`` built. Checked: calico-node runs in its pods on both nodes and the
machine's sysctls and network are untouched; pods on both nodes get pool addresses and reach each
other; BIRD routes each node's block to the other; a NetworkPolicy gives the same matrix through pod
IPs and through Services (kube-proxy); deleting a pod releases its address (``calicoctl ipam
check``); a TCP stream between nodes survives ``kubectl delete pod`` of a calico-node; ``down``
leaves nothing.

Needs the Kubernetes binaries (``make kube``, or ``KUBE_DIR``) and the images (``make images``);
without them every test is skipped with the reason.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from calico.lib import netns
from calico_lab import k8s_calico, k8s_cluster, k8s_node, k8s_pods, k8s_state, probe, state
from calico_lab.state import LabState, PodState
from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

# What kubelet, the controller manager or a hostPath volume would make on the machine by default:
# each must be as it was before the lab (the lab points them into its own directories).
MACHINE_PATHS = ("/usr/libexec/kubernetes", "/var/lib/kubelet", "/var/lib/calico", "/opt/cni",
                 "/lib/modules", "/var/run/kubernetes", "/var/log/pods", "/var/log/containers",
                 "/etc/kubernetes")  # fmt: skip
SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
           "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
           "net/netfilter/nf_conntrack_max")  # fmt: skip
POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  containers: [{{name: c, ports: [{{containerPort: 8080}}, {{containerPort: 53, protocol: UDP}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: 8080}}, {{name: dns, port: 53, protocol: UDP}}]
"""
TARGETS = [(8080, "TCP"), (53, "UDP")]


def missing() -> str:
    """Why this machine cannot run the tests ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root"
    try:
        k8s_cluster.check_kube_bin(k8s_cluster.default_kube_bin())
        k8s_calico.calico_archives()
    except Exception as exc:
        return f"{exc}"
    return ""


def machine_paths() -> dict[str, bool]:
    return {p: Path(p).exists() for p in MACHINE_PATHS}


def sysctls() -> dict[str, str]:
    out = {}
    for key in SYSCTLS:
        path = Path("/proc/sys") / key
        out[key] = path.read_text().strip() if path.exists() else "(absent)"
    return out


@dataclass
class Kube:
    handle: LabHandle
    sysctls: dict[str, str]
    root_net: set[str]
    paths: dict[str, bool]

    def lab(self) -> LabState:
        return k8s_pods.with_live_pods(self.handle.state())

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.handle.cli("kubectl", *args, input=input).stdout

    def pods(self, *keys: str) -> list[PodState]:
        found = self.lab().pods
        return [found[k] for k in keys]


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    reason = missing()
    if reason:
        pytest.skip(f"real-Kubernetes e2e skipped: {reason}")
    handle = LabHandle(lab_support.unique_name("k"), tmp_path_factory.mktemp("k8s"))
    before = Kube(handle, sysctls(), lab_support.root_links(), machine_paths())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CALICO_LAB_ROOT", str(handle.root))  # the in-process reads of the lab
        try:
            handle.cli("up", "--kubernetes", "--nodes", "2", "--quiet", timeout=1100)
            yield before
        finally:
            handle.cli("down", "--quiet", check=False, timeout=300)


def eventually(check: Any, *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        time.sleep(0.5)


def test_calico_runs_from_its_hosted_install(kube: Kube) -> None:
    pods = json.loads(kube.kubectl("get", "pods", "-n", "kube-system", "-o", "json"))["items"]
    nodes = {
        p["spec"]["nodeName"]
        for p in pods
        if p["metadata"]["labels"].get("k8s-app") == "calico-node"
        and all(c["ready"] for c in p["status"]["containerStatuses"])
    }
    assert nodes == {"node1", "node2"}
    snap = json.loads(kube.handle.cli("status", "-o", "json").stdout)
    for node in snap["nodes"]:
        felix = node["services"].get("felix") or {}
        assert felix.get("running"), f"{node['name']}: felix not running: {node['services']}"
        assert node["kubelet"] == "Ready"
    assert sysctls() == kube.sysctls, "the machine's sysctls changed"
    assert lab_support.root_links() == kube.root_net, "the root namespace's network changed"
    made = {p for p, there in machine_paths().items() if there and not kube.paths[p]}
    assert made <= set(k8s_node.MOUNT_POINTS) | {"/opt/cni"}, "made on the machine"


def apply_pods(kube: Kube, ns: str, placed: dict[str, str]) -> list[str]:
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ns: {ns}}}}}"]
    docs += [POD.format(name=n, ns=ns, node=node) for n, node in placed.items()]
    kube.handle.cli("apply", "-f", "-", input="\n---\n".join(docs))
    return [f"{ns}/{n}" for n in placed]


def test_pods_on_both_nodes_get_pool_addresses_and_connect(kube: Kube) -> None:
    keys = apply_pods(kube, "conn", {"a": "node1", "b": "node2"})
    a, b = kube.pods(*keys)
    pool = ipaddress.ip_network(state.POOL_CIDR)
    assert ipaddress.ip_address(a.ip) in pool
    assert ipaddress.ip_address(b.ip) in pool
    assert (a.node, b.node) == ("node1", "node2")
    want = lab_support.expected(keys, TARGETS, lambda *_: True)
    check_matrix(kube, want, keys)


def test_bird_routes_each_nodes_block_to_the_other(kube: Kube) -> None:
    a, b = kube.pods("conn/a", "conn/b")
    lab = kube.handle.state()
    for pod, other, via in ((a, "node2", "10.99.0.11"), (b, "node1", "10.99.0.12")):
        ns = lab.node(other).netns

        def route(ns: str = ns, ip: str = pod.ip, via: str = via) -> str:
            out = subprocess.run(
                ["ip", "-n", ns, "route", "get", ip], capture_output=True, text=True, check=False
            ).stdout
            return out if f"via {via}" in out else ""

        eventually(route, within=30, what=f"{other}'s route to {pod.key} via {via}")
        routes = subprocess.run(
            ["ip", "-n", ns, "route", "show", "proto", "bird"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"via {via}" in routes, routes


def services(kube: Kube, keys: list[str]) -> dict[str, str]:
    """{pod key: its Service's ClusterIP}."""
    out = {}
    for key in keys:
        ns, name = key.split("/")
        out[key] = kube.kubectl("get", "svc", name, "-n", ns, "-o", "jsonpath={.spec.clusterIP}")
    return out


def matrices(kube: Kube, keys: list[str], *, via: dict[str, str] | None) -> dict[Any, Any]:
    """The pod matrices over TARGETS; ``via``: probe each pod's Service address (ports 80/53)
    instead of its own."""
    lab = kube.lab()
    chosen = [lab.pods[k] for k in keys]
    probes = []
    for port, proto in TARGETS:
        for src in chosen:
            for dst in chosen:
                target = replace(dst, ip=via[dst.key]) if via else dst
                svc_port = (80 if proto == "TCP" else 53) if via else port
                probes.append((port, proto, probe.Probe(src, target, svc_port, proto, 1.0)))
    results = probe.run_probes([p for *_, p in probes])
    out: dict[Any, Any] = {t: {k: {} for k in keys} for t in TARGETS}
    for (port, proto, pr), ok in zip(probes, results, strict=True):
        out[(port, proto)][pr.src.key][pr.dst.key] = ok
    return out


def check_matrix(
    kube: Kube, want: dict[Any, Any], keys: list[str], *, via: dict[str, str] | None = None
) -> None:
    deadline = time.monotonic() + 45
    while True:
        got = matrices(kube, keys, via=via)
        if got == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"connectivity {'through Services ' if via else ''}differs:\n"
                + lab_support.diff_text(want, got)
            )
        time.sleep(0.5)


POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: pol}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a-tcp, namespace: pol}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 8080}]}]
"""


def test_network_policy_through_pod_ips_and_services(kube: Kube) -> None:
    keys = apply_pods(kube, "pol", {"a": "node1", "b": "node2", "c": "node1"})
    via = services(kube, keys)
    everyone = lab_support.expected(keys, TARGETS, lambda *_: True)
    check_matrix(kube, everyone, keys)
    check_matrix(kube, everyone, keys, via=via)
    kube.handle.cli("apply", "-f", "-", input=POLICY)

    def allowed(src: str, dst: str, port: int, proto: str) -> bool:
        return (src, dst, port, proto) == ("pol/a", "pol/b", 8080, "TCP")

    want = lab_support.expected(keys, TARGETS, allowed)
    check_matrix(kube, want, keys)
    # A pod reaching its own Service is hairpinned back to itself by kube-proxy: the policy
    # then sees the pod as the source (no masquerade), and denies it like any other source.
    via_want = lab_support.expected(keys, TARGETS, allowed)
    for target in via_want.values():
        for key in keys:
            target[key][key] = False
    check_matrix(kube, via_want, keys, via=via)


def test_pod_delete_releases_its_address(kube: Kube) -> None:
    (a,) = kube.pods("conn/a")
    kube.handle.cli("delete", "-f", "-", input=POD.format(name="a", ns="conn", node="node1"))
    assert "conn/a" not in kube.lab().pods

    def released() -> bool:
        out = kube.handle.cli("exec", "node1", "--", "calicoctl", "ipam", "show", "--ip", a.ip)
        return f"IP {a.ip} is not assigned" in out.stdout

    eventually(released, within=30, what=f"{a.ip} to be released")
    check = kube.handle.cli("exec", "node1", "--", "calicoctl", "ipam", "check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr


class Stream:
    """A TCP stream between two pods: the server side (a thread in ``dst``'s namespace) echoes;
    the client (a thread in ``src``'s) sends a numbered line every 20 ms and reads it back."""

    def __init__(self, src: PodState, dst: PodState, port: int = 9000) -> None:
        self.src, self.dst, self.port = src, dst, port
        self.echoed: list[tuple[float, int]] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.listening = threading.Event()

    def serve(self) -> None:
        netns.enter_process(self.dst.netns)
        with socket.create_server(("0.0.0.0", self.port)) as srv:
            self.listening.set()
            conn, _ = srv.accept()
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data)

    def talk(self) -> None:
        try:
            netns.enter_process(self.src.netns)
            with socket.create_connection((self.dst.ip, self.port), timeout=120) as sock:
                reader = sock.makefile("r")
                n = 0
                while not self.stop.is_set():
                    sock.sendall(f"{n}\n".encode())
                    got = int(reader.readline())
                    assert got == n, f"echo {got}, sent {n}"
                    self.echoed.append((time.monotonic(), n))
                    n += 1
                    time.sleep(0.02)
        except BaseException as exc:
            self.error = exc

    def longest_gap(self) -> float:
        times = [t for t, _ in self.echoed]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def test_tcp_stream_survives_a_calico_node_pod_restart(kube: Kube) -> None:
    keys = apply_pods(kube, "stream", {"client": "node1", "server": "node2"})
    client, server = kube.pods(*keys)
    stream = Stream(client, server)
    threading.Thread(target=stream.serve, daemon=True).start()
    assert stream.listening.wait(10)
    talker = threading.Thread(target=stream.talk, daemon=True)
    talker.start()
    eventually(lambda: len(stream.echoed) > 20, within=20, what="the stream to flow")
    pods = json.loads(kube.kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=calico-node",
                                   "-o", "json"))["items"]  # fmt: skip
    (old,) = [p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == "node1"]
    kube.kubectl("delete", "pod", old, "-n", "kube-system", "--wait=true")

    def new_ready() -> bool:
        items = json.loads(kube.kubectl("get", "pods", "-n", "kube-system", "-l",
                                        "k8s-app=calico-node", "-o", "json"))["items"]  # fmt: skip
        return any(p["metadata"]["name"] != old and p["spec"]["nodeName"] == "node1"
                   and all(c["ready"] for c in p["status"].get("containerStatuses") or [])
                   for p in items)  # fmt: skip

    eventually(new_ready, within=180, what="the new calico-node pod on node1 to be Ready")
    restarted = time.monotonic()
    eventually(lambda: stream.echoed and stream.echoed[-1][0] > restarted + 2, within=60,
               what="the stream to flow after the restart")  # fmt: skip
    stream.stop.set()
    talker.join(130)
    assert stream.error is None, f"the stream broke: {stream.error!r}"
    print(f"\nstream: {len(stream.echoed)} echoes, longest gap {stream.longest_gap():.2f}s")


def test_down_removes_everything(kube: Kube) -> None:
    handle = kube.handle
    lab = handle.state()
    ks = k8s_state.require(lab)
    pids = [
        pid for h in ks.hosts.values() for pid in (h.unshare_pid, h.init_pid, *h.daemons.values())
    ]
    cgroups = [h.cgroup for h in ks.hosts.values() if h.cgroup]
    handle.cli("down", "--quiet", timeout=300)
    left = lab_support.leftovers(handle.name, handle.root, lab.netns, pids)
    left += [f"cgroup {c}" for c in cgroups for d in Path("/sys/fs/cgroup").iterdir()
             if (d / c).exists()]  # fmt: skip
    assert left == []
    assert sysctls() == kube.sysctls
    assert lab_support.root_links() == kube.root_net
    assert machine_paths() == kube.paths

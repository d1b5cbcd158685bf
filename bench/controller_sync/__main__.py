"""Policy controller benchmark: cold-start convergence and one-NetworkPolicy-change latency.

Run: ``.venv/bin/python -m bench.controller_sync [--namespaces 500] [--pods 5000] [--policies 1000]
[--changes 40]``

World (in the fake API server, tests/fakekube): N namespaces (with a default ServiceAccount each),
pods spread over them, NetworkPolicies (2 per namespace by default, mixed features). For every pod a
WorkloadEndpoint is pre-created in etcd with stale labels, so label sync has work to do.

Measured in the same run, against one real etcd:

* ``controller cold start`` (``--reps`` times, alternating with its baselines): the
  ``calico-kube-controllers`` command (a separate process, its defaults) from exec to every expected
  object in etcd with the expected content (seen on an etcd watch); also the time to ``/readyz``.
  Two baselines (:mod:`bench.controller_sync.baseline`), each its own process, measured the same
  way (exec to every key seen): one thread lists everything, converts it and writes every object
  with one request each (kube-router's ``fullPolicySync`` shape: no queue, cache or concurrency);
  and the same lists and conversions followed by plain puts in as few etcd transactions as etcd
  takes (128 operations each, its default ``--max-txn-ops``).
* ``controller warm restart``: a new process over the converged datastore: time to ready and the
  number of etcd writes it makes (should be zero).
* ``one NP change``: patch one NetworkPolicy in the API server -> the etcd watch sees the new
  knp.default policy. Baseline: convert + write the same change directly, seen on the same watch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from tests.fakekube import FakeKube  # the Kubernetes API stand-in; the controller runs as shipped

from bench import results
from bench.controller_sync.watcher import Watcher
from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient, op_put
from calico.datastore.etcd_server import EtcdServer, free_port
from calico.k8s import conversion, names
from calico.lib import cmd
from calico.model import kinds

BIN = Path(sys.executable).parent / "calico-kube-controllers"
WEP = kinds.lookup("WorkloadEndpoint")
NP = kinds.lookup("NetworkPolicy")
PROFILE = kinds.lookup("Profile")


def _policy(ns: str, i: int) -> dict[str, Any]:
    variants: list[dict[str, Any]] = [
        {
            "podSelector": {"matchLabels": {"app": f"app-{i % 10}"}},
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {"role": "fe"}}},
                        {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
                    ],
                    "ports": [{"port": 80}, {"port": 443}],
                }
            ],
        },
        {
            "podSelector": {
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db", "cache"]}]
            },
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}],
            "egress": [
                {
                    "to": [{"podSelector": {}}],
                    "ports": [{"protocol": "UDP", "port": 53}, {"port": 30000, "endPort": 30100}],
                }
            ],
        },
    ]
    return {"metadata": {"name": f"np-{i}", "namespace": ns}, "spec": variants[i % 2]}


def populate(fake: FakeKube, ds: Client, args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    weps: dict[str, tuple[str, str]] = {}
    per_ns_pods = max(1, args.pods // args.namespaces)
    per_ns_np = max(1, args.policies // args.namespaces)
    for n in range(args.namespaces):
        ns = f"ns-{n}"
        fake.create(
            "namespaces",
            {
                "metadata": {
                    "name": ns,
                    "labels": {"env": "prod" if n % 2 else "dev", "team": f"t{n % 7}"},
                }
            },
        )
        fake.create("serviceaccounts", {"metadata": {"name": "default", "namespace": ns}})
        for p in range(per_ns_pods):
            pod = f"pod-{p}"
            fake.create(
                "pods",
                {
                    "metadata": {
                        "name": pod,
                        "namespace": ns,
                        "labels": {"app": f"app-{p % 10}", "tier": ["db", "web", "cache"][p % 3]},
                    },
                    "spec": {"nodeName": f"node-{n % 20}"},
                },
            )
            wep = names.workload_endpoint_name(f"node-{n % 20}", pod)
            ds.backend.put(
                WEP.key(wep, ns),
                json.dumps(
                    {
                        "apiVersion": "projectcalico.org/v3",
                        "kind": "WorkloadEndpoint",
                        "metadata": {"name": wep, "namespace": ns, "labels": {"stale": "yes"}},
                        "spec": {
                            "orchestrator": "k8s",
                            "node": f"node-{n % 20}",
                            "pod": pod,
                            "endpoint": "eth0",
                            "profiles": [f"kns.{ns}", f"ksa.{ns}.default"],
                        },
                    }
                ),
            )
            weps[WEP.key(wep, ns)] = (ns, pod)
        for i in range(per_ns_np):
            fake.create("networkpolicies", _policy(ns, n * per_ns_np + i))
    return weps


def expected(fake: FakeKube, weps: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """etcd key -> the spec (policies, profiles) or labels (endpoints) that must be there."""
    want: dict[str, Any] = {}
    for obj in fake.list("networkpolicies"):
        p = conversion.network_policy_to_calico(obj)
        want[NP.key(p["metadata"]["name"], p["metadata"]["namespace"])] = p["spec"]
    for obj in fake.list("namespaces"):
        want[PROFILE.key(conversion.namespace_to_profile(obj)["metadata"]["name"])] = (
            conversion.namespace_to_profile(obj)["spec"]
        )
    for obj in fake.list("serviceaccounts"):
        p = conversion.service_account_to_profile(obj)
        want[PROFILE.key(p["metadata"]["name"])] = p["spec"]
    pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in fake.list("pods")}
    for key, ident in weps.items():
        want[key] = conversion.pod_to_workload_labels(pods[ident])
    return want


def run_baseline(mode: str, kubeconfig: Path, endpoint: str, watcher: Watcher,
                 want: dict[str, Any]) -> tuple[float, dict[str, float]]:  # fmt: skip
    """One baseline (bench.controller_sync.baseline) from exec to every wanted key seen in etcd
    with its wanted content (the controller's measure); and its own phase times."""
    argv = [sys.executable, "-m", "bench.controller_sync.baseline", mode, str(kubeconfig), endpoint]
    start = time.monotonic()
    out = cmd.run_process(argv, check=True, capture_output=True, text=True).stdout
    done = watcher.wait_all(want, 600)
    return done - start, json.loads(out.strip().splitlines()[-1])


def reset(ds: Client, fake: FakeKube, weps: dict[str, tuple[str, str]]) -> None:
    """Back to the world before a cold start: no policies or profiles, stale WEP labels."""
    ds.backend.delete_prefix(NP.prefix())
    ds.backend.delete_prefix(PROFILE.prefix())
    kvs, _ = ds.backend.get_prefix(WEP.prefix())
    puts = []
    for kv in kvs:
        if kv.key in weps:
            obj = json.loads(kv.value)
            obj["metadata"]["labels"] = {"stale": "yes"}
            puts.append(op_put(kv.key, json.dumps(obj)))
    for i in range(0, len(puts), 128):  # etcd's default --max-txn-ops
        ds.backend.txn([], puts[i : i + 128])


def _phases(phase: dict[str, float]) -> str:
    return (f"list {phase['list']:.2f}s, convert {phase['convert']:.2f}s, write "
            f"{phase['write']:.2f}s in {phase['txns']:.0f} txns")  # fmt: skip


def start_controller(env: dict[str, str], workers: int) -> subprocess.Popen[bytes]:
    argv = [str(BIN), "--workers", str(workers)]
    return cmd.start(argv, env=env, stderr=subprocess.DEVNULL)


def wait_ready(port: int, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return time.monotonic()
        except OSError:
            time.sleep(0.01)
    raise TimeoutError("controller never became ready")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def change_latencies(
    fake: FakeKube, ds: Client, watcher: Watcher, n: int, *, direct: bool
) -> Iterator[float]:
    for i in range(n):
        ns, name = f"ns-{i % 50}", f"np-{(i % 50) * 2}"
        port = 10000 + i + (5000 if direct else 0)
        obj = fake.get("networkpolicies", name, ns)
        obj["spec"]["ingress"][0]["ports"] = [{"port": port}]
        want = conversion.network_policy_to_calico(obj)
        key = NP.key(want["metadata"]["name"], ns)
        start = time.monotonic()
        if direct:
            ds.apply(want)  # what `calicoctl apply` does: create, else read + CAS
        else:
            fake.patch(
                "networkpolicies", name, {"spec": {"ingress": obj["spec"]["ingress"]}}, namespace=ns
            )
        done = watcher.wait_all({key: want["spec"]}, 30)
        yield done - start
        time.sleep(0.02)


@dataclasses.dataclass
class ColdStarts:
    """Per rep: each baseline's and the controller's times, and the controller's etcd writes."""

    bases: list[float] = dataclasses.field(default_factory=list)
    bulks: list[float] = dataclasses.field(default_factory=list)
    readies: list[float] = dataclasses.field(default_factory=list)
    colds: list[float] = dataclasses.field(default_factory=list)
    puts: list[int] = dataclasses.field(default_factory=list)
    txns: list[int] = dataclasses.field(default_factory=list)
    phases: dict[str, list[dict[str, float]]] = dataclasses.field(
        default_factory=lambda: {"one": [], "bulk": []}
    )


def cold_starts(
    ds: Client,
    fake: FakeKube,
    *,
    weps: dict[str, tuple[str, str]],
    want: dict[str, Any],
    kubeconfig: Path,
    watcher: Watcher,
    env: dict[str, str],
    port: int,
    args: argparse.Namespace,
    procs: list[subprocess.Popen[bytes]],
) -> ColdStarts:
    """``args.reps`` times, alternating: the baselines, then the controller, each from the same
    world (reset between). The last controller is left running (the last of ``procs``)."""
    runs = ColdStarts()
    for rep in range(args.reps):
        for mode, times in (("one", runs.bases), ("bulk", runs.bulks)):
            watcher.forget(cast(EtcdClient, ds.backend).revision() + 1)
            took, phase = run_baseline(mode, kubeconfig, env["ETCD_ENDPOINTS"], watcher, want)
            times.append(took)
            runs.phases[mode].append(phase)
            reset(ds, fake, weps)
        watcher.forget(cast(EtcdClient, ds.backend).revision() + 1)
        start = time.monotonic()
        procs.append(start_controller(env, args.workers))
        runs.readies.append(wait_ready(port) - start)
        runs.colds.append(watcher.wait_all(want, 600) - start)
        runs.puts.append(watcher.puts)
        runs.txns.append(len(watcher.revisions))
        print(f"rep {rep + 1}: baselines: one thread {runs.bases[-1]:.2f}s, bulk txns "
              f"{runs.bulks[-1]:.2f}s ({_phases(runs.phases['bulk'][-1])}); controller converged "
              f"{runs.colds[-1]:.2f}s (ready {runs.readies[-1]:.2f}s)", flush=True)  # fmt: skip
        if rep < args.reps - 1:
            procs[-1].terminate()
            procs[-1].wait(30)
            reset(ds, fake, weps)
    return runs


def restore_policies(ds: Client, want: dict[str, Any]) -> None:
    """Put the policies written directly back to their ``want`` specs (what the API server says)."""
    for key, spec in want.items():
        if key.startswith(NP.prefix()):
            kv = ds.backend.get(key)
            assert kv is not None
            obj = json.loads(kv.value)
            if obj["spec"] != spec:
                obj["spec"] = spec
                ds.backend.put(key, json.dumps(obj))


def record(
    fake: FakeKube,
    runs: ColdStarts,
    *,
    weps: dict[str, tuple[str, str]],
    want: dict[str, Any],
    args: argparse.Namespace,
    lat: list[float],
    direct: list[float],
    warm: tuple[float, int],
) -> None:
    """Print the warm restart and save every figure and fact (bench.results)."""
    warm_ready, warm_writes = warm
    rec = results.Recorder("controller_sync")
    n_np = len(fake.list("networkpolicies"))
    head = cmd.run(["git", "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    rec.fact("commit", head)  # this section's; the file's header names the full run's
    rec.fact("world", f"{len(weps):,} pods, {args.namespaces} namespaces, {n_np:,} "
             f"NetworkPolicies: {len(want):,} Calico objects")  # fmt: skip
    rec.fact(
        "cold_start_etcd_puts",
        {"puts": runs.puts, "transactions": runs.txns, "objects": len(want)},
    )
    rec.fact("baseline_phases_s", runs.phases)
    rec.fact("warm_restart", {"ready_s": warm_ready, "etcd_writes": warm_writes})
    print(f"etcd puts per cold start {runs.puts} in {runs.txns} transactions (objects: "
          f"{len(want)}); warm restart: ready in {warm_ready:.2f}s, {warm_writes} etcd writes "
          "(should be 0)")  # fmt: skip
    doc = "docs/design/k8s-controllers.md"
    rec.figure("cold_start", title="controller cold start to converged", unit="s",
               samples=runs.colds, baseline=runs.bases,
               baseline_title="one thread list+convert+write (own process)",
               readme=f"controller cold start: {len(weps):,} pods, {args.namespaces} "
               f"namespaces, {n_np:,} NetworkPolicies",
               doc=doc)  # fmt: skip
    rec.figure("cold_start_vs_bulk", title="controller cold start to converged", unit="s",
               samples=runs.colds, baseline=runs.bulks,
               baseline_title="list+convert, then plain puts in 128-op etcd transactions "
               "(own process)", doc=doc)  # fmt: skip
    rec.figure("cold_ready", title="controller cold start to /readyz", unit="s",
               samples=runs.readies)  # fmt: skip
    rec.figure("np_change", title="one NetworkPolicy change, API server -> etcd", unit="ms",
               samples=[x * 1000 for x in lat], baseline=[x * 1000 for x in direct],
               baseline_title="the same change written directly", doc=doc)  # fmt: skip
    rec.save()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--namespaces", type=int, default=500)
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--changes", type=int, default=40)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3, help="cold starts (and baselines)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ctl-"))
    etcd_server = EtcdServer(tmp / "etcd", port=free_port(), peer_port=free_port())
    etcd_server.start()
    fake = FakeKube(bookmark_interval=60).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ds = Client(EtcdClient(etcd_server.endpoint))
        t = time.monotonic()
        weps = populate(fake, ds, args)
        print(
            f"world: {args.namespaces} namespaces (+SAs), {len(weps)} pods/WEPs, "
            f"{len(fake.list('networkpolicies'))} NetworkPolicies "
            f"(populated in {time.monotonic() - t:.1f}s)"
        )
        want = expected(fake, weps)
        kubeconfig = fake.write_kubeconfig(tmp / "kubeconfig")

        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if k not in ("LOG_LEVEL", "HEALTH_LISTEN")},
            "KUBECONFIG": str(kubeconfig),
            "ETCD_ENDPOINTS": etcd_server.endpoint,
            "HEALTH_LISTEN": f"127.0.0.1:{port}",
        }
        watcher = Watcher(etcd_server.endpoint, cast(EtcdClient, ds.backend).revision() + 1)
        runs = cold_starts(ds, fake, weps=weps, want=want, kubeconfig=kubeconfig,
                           watcher=watcher, env=env, port=port, args=args, procs=procs)  # fmt: skip

        lat = list(change_latencies(fake, ds, watcher, args.changes, direct=False))
        # Stop the controller first: it would (rightly) revert the direct writes as drift.
        procs[-1].terminate()
        procs[-1].wait(30)
        direct = list(change_latencies(fake, ds, watcher, args.changes, direct=True))
        # Put the direct writes back to what the API server says, then restart warm.
        want = expected(fake, weps)
        restore_policies(ds, want)
        rev = cast(EtcdClient, ds.backend).revision()
        start = time.monotonic()
        procs.append(start_controller(env, args.workers))
        warm_ready = wait_ready(port) - start
        time.sleep(2.0)
        warm_writes = cast(EtcdClient, ds.backend).revision() - rev
        record(fake, runs, weps=weps, want=want, args=args, lat=lat, direct=direct,
               warm=(warm_ready, warm_writes))  # fmt: skip
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(30)
        fake.stop()
        etcd_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""calico-lab connectivity matrix: in-process probes (setns per thread) vs one process per probe.

    .venv/bin/python -m bench.lab_probe [-n 10] [--pods 8]

Brings up a throwaway 2-node lab (state in a temp dir, namespaces ``calab-bench<hex>-*``), starts
``--pods`` pods serving TCP 80, then times full matrices (pods² probes, all connecting) two ways,
alternating so both see the same noise: "setns" (:func:`calico_lab.probe.matrices`: worker threads
enter the source pod's namespace and connect) and "exec" (the baseline: each probe a fresh
``ip netns exec <pod> python -I -S -c ...`` process, run through a thread pool of the same width).
Prints median and p90 per contender and the ratio. The lab is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from bench import results
from calico.lib import cmd

CONNECT = (
    "import socket,sys\n"
    "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=1)\n"
    "sys.exit(0 if s.recv(64) else 1)\n"
)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def manifest(n_pods: int) -> str:
    items: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in ("p", "q")
    ]
    for i in range(n_pods):
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"pod{i}", "namespace": "pq"[i % 2]},
                "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
            }
        )
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=10, help="matrices per contender")
    ap.add_argument("--pods", type=int, default=8)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="labbench")
    os.environ["CALICO_LAB_ROOT"] = root
    from calico_lab import cluster, objects, probe, state

    name = f"bench{secrets.token_hex(2)}"
    try:
        cluster.up(name, 2)
        with cluster.session(name) as (lab, store):
            objects.apply(lab, store, objects.parse(manifest(args.pods)), lambda _: None)
        lab = state.require(name)
        pods = sorted(lab.pods.values(), key=lambda p: p.key)
        pairs = [(s, d) for s in pods for d in pods]

        def by_setns() -> bool:
            m = probe.matrices(lab, [(80, "TCP")])[(80, "TCP")]
            return all(all(row.values()) for row in m.values())

        def one_exec(pair: tuple[state.PodState, state.PodState]) -> bool:
            src, dst = pair
            argv = [
                "ip",
                "netns",
                "exec",
                src.netns,
                sys.executable,
                "-I",
                "-S",
                "-c",
                CONNECT,
                dst.ip,
                "80",
            ]
            return cmd.run_process(argv, capture_output=True, check=False).returncode == 0

        def by_exec() -> bool:
            with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
                return all(pool.map(one_exec, pairs))

        times: dict[str, list[float]] = {"setns": [], "exec": []}
        contenders = [("setns", by_setns), ("exec", by_exec)]
        for i in range(args.n):
            for label, fn in contenders[i % 2 :] + contenders[: i % 2]:
                start = time.perf_counter()
                ok = fn()
                times[label].append((time.perf_counter() - start) * 1000)
                if not ok:
                    raise SystemExit(f"{label}: a probe failed (lab not ready?)")
        print(f"{len(pairs)} probes per matrix ({args.pods} pods, 2 nodes), n={args.n}")
        for label, values in times.items():
            print(
                f"  {label:6s} median {statistics.median(values):8.1f} ms   "
                f"p90 {pct(values, 0.9):8.1f} ms"
            )
        ratio = statistics.median(times["exec"]) / statistics.median(times["setns"])
        print(f"  exec / setns (median): {ratio:.1f}x")
        rec = results.Recorder("lab_probe")
        rec.figure(
            "matrix_setns", title=f"connectivity matrix, {len(pairs)} probes, setns threads",
            unit="ms", samples=times["setns"], baseline=times["exec"],
            baseline_title="one process per probe", doc="docs/design/lab.md",
        )  # fmt: skip
        rec.save()
    finally:
        cluster.down(name)
        shutil.rmtree(root, ignore_errors=True)  # down removes the root itself once empty


if __name__ == "__main__":
    main()

"""calicoctl apply of N resources in one command, against raw etcd writes as the baseline.

Run: ``.venv/bin/python -m bench.cli_apply [--count N] [--repeats R]``

Measured in the same run against one real etcd on 127.0.0.1 (seconds, median and p90 of repeats):

* ``etcd-put``        - N plain ``EtcdClient.put`` calls in-process (the floor: 1 round trip each);
* ``client-apply``    - N ``Client.apply`` calls in-process, validation included (create path);
* ``validate-only``   - ``validation.validate`` over the N documents (no I/O);
* ``calicoctl-create``- ``calicoctl apply -f FILE`` as a subprocess on an empty store (N creates);
* ``calicoctl-update``- the same command again (N replaces: create fails, get, CAS update).

Ratios are against ``etcd-put``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.model import validation

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")


def policies(n: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": f"policy-{i:05d}"},
            "spec": {
                "order": i,
                "selector": f"app == 'a{i}'",
                "ingress": [
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "source": {"selector": "role == 'client'"},
                        "destination": {"ports": [80, "8000:8080"]},
                    }
                ],
            },
        }
        for i in range(n)
    ]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def one_round(etcd: EtcdClient, docs: list[dict[str, Any]], ctl: Callable[[], object]) -> dict[
    str, float
]:  # fmt: skip
    client = Client(etcd)
    out: dict[str, float] = {}
    etcd.delete_prefix("/calico/")
    etcd.delete_prefix("/bench/")
    out["etcd-put"] = timed(
        lambda: [etcd.put(f"/bench/{d['metadata']['name']}", json.dumps(d)) for d in docs]
    )
    out["client-apply"] = timed(lambda: [client.apply(json.loads(json.dumps(d))) for d in docs])
    out["validate-only"] = timed(lambda: [validation.validate(d) for d in docs])
    etcd.delete_prefix("/calico/")
    out["calicoctl-create"] = timed(ctl)
    out["calicoctl-update"] = timed(ctl)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    docs = policies(args.count)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policies.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        server = EtcdServer.on_free_ports(Path(tmp) / "etcd")
        server.start()
        etcd = EtcdClient([server.endpoint])
        env = {**os.environ, "ETCD_ENDPOINTS": server.endpoint}

        def ctl() -> object:
            argv = [CALICOCTL, "apply", "-f", str(path)]
            return subprocess.run(argv, env=env, check=True, capture_output=True)

        try:
            for _ in range(args.repeats):
                for name, secs in one_round(etcd, docs, ctl).items():
                    results.setdefault(name, []).append(secs)
        finally:
            etcd.close()
            server.stop()
    base = statistics.median(results["etcd-put"])
    print(f"{args.count} GlobalNetworkPolicies, {args.repeats} repeats (seconds)")
    print(f"{'case':<18}{'median':>9}{'p90':>9}{'ratio':>8}")
    for name, vals in results.items():
        vals.sort()
        p90 = vals[min(len(vals) - 1, round(0.9 * (len(vals) - 1)))]
        med = statistics.median(vals)
        print(f"{name:<18}{med:>9.3f}{p90:>9.3f}{med / base:>8.2f}")


if __name__ == "__main__":
    main()

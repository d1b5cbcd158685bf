"""calicoctl apply of N resources in one command, against raw etcd writes of the same keys.

Run: ``.venv/bin/python -m bench.cli_apply [--count N] [--repeats R]``

Measured in the same run against one real etcd on 127.0.0.1 (seconds, median, p90, p99, spread
over R repetitions):

* ``raw puts``         - N plain ``EtcdClient.put`` calls in-process, of the keys and (about) the
                         values calicoctl writes: the baseline, one round trip per resource;
* ``raw txn``          - the same puts, 128 to a transaction: the floor of any batching writer;
* ``validate``         - ``validation.validate`` over the N documents (no I/O);
* ``apply (create)``   - ``calicoctl apply -f FILE`` as a subprocess on an empty store (N creates);
* ``apply (replace)``  - the same command again (N replaces of existing resources);
* ``replace``          - ``calicoctl replace -f FILE`` (documents without resourceVersion: read,
                         then compare-and-swap).

Ratios are against ``raw puts``. Goal: both applies <= 1.2x.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench import results
from calico.datastore.etcd import EtcdClient, op_put
from calico.datastore.etcd_server import EtcdServer
from calico.lib import cmd
from calico.model import kinds, validation

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")
GOAL = 1.2


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


def one_round(etcd: EtcdClient, docs: list[dict[str, Any]], path: Path, env: dict[str, str]
              ) -> dict[str, float]:  # fmt: skip
    kvs = [(kinds.KINDS[d["kind"]].key(d["metadata"]["name"], None), json.dumps(d)) for d in docs]

    def ctl(verb: str) -> object:
        argv = [CALICOCTL, verb, "-f", str(path)]
        return cmd.run_process(argv, env=env, check=True, capture_output=True)

    def txns() -> None:
        for i in range(0, len(kvs), 128):
            etcd.txn([], [op_put(k, v) for k, v in kvs[i : i + 128]])

    out: dict[str, float] = {}
    etcd.delete_prefix("/calico/")
    out["raw puts"] = timed(lambda: [etcd.put(k, v) for k, v in kvs])
    etcd.delete_prefix("/calico/")
    out["raw txn"] = timed(txns)
    etcd.delete_prefix("/calico/")
    out["validate"] = timed(lambda: [validation.validate(d) for d in docs])
    out["apply (create)"] = timed(lambda: ctl("apply"))
    out["apply (replace)"] = timed(lambda: ctl("apply"))
    out["replace"] = timed(lambda: ctl("replace"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    docs = policies(args.count)
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policies.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        server = EtcdServer.on_free_ports(Path(tmp) / "etcd")
        server.start()
        etcd = EtcdClient([server.endpoint])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "DATASTORE_"))}
        env["ETCD_ENDPOINTS"] = server.endpoint
        try:
            for _ in range(args.repeats):
                for name, secs in one_round(etcd, docs, path, env).items():
                    samples.setdefault(name, []).append(secs)
        finally:
            etcd.close()
            server.stop()
    rec = results.Recorder("cli_apply")
    rec.fact("resources", f"{args.count} GlobalNetworkPolicies in one file")
    base = samples["raw puts"]
    rows = {
        "raw_txn": ("raw txn", None),
        "validate": ("validate", None),
        "apply_create": ("apply (create)", "calicoctl apply of 1,000 policies, all new"),
        "apply_replace": ("apply (replace)", "calicoctl apply of 1,000 policies, all existing"),
        "replace": ("replace", None),
    }
    for fid, (name, readme) in rows.items():
        rec.figure(
            fid, title=f"{name}, {args.count} GlobalNetworkPolicies", unit="s",
            samples=samples[name], baseline=base, baseline_title=f"{args.count:,} raw etcd puts",
            readme=readme, doc="docs/design/resources.md",
        )  # fmt: skip
    for fid in ("apply_create", "apply_replace"):
        ratio = rec.section["figures"][fid]["ratio"]
        print(f"goal {fid} <= {GOAL}x raw puts: {'met' if ratio <= GOAL else 'NOT met'} "
              f"({ratio:.2f}x)")  # fmt: skip
    rec.save()


if __name__ == "__main__":
    main()

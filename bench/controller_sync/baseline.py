"""The cold start's baselines, each run as its own process (as the controller is, so neither shares
the interpreter lock with the bench's fake API server):

* ``one``: one thread lists Namespaces, ServiceAccounts, NetworkPolicies and Pods (pages of 500),
  converts them and writes each Calico object with one ``Client`` call (create; a WorkloadEndpoint:
  read, then CAS update): kube-router's ``fullPolicySync`` shape, no queue, cache or concurrency.
* ``bulk``: the same lists and conversions, the WorkloadEndpoints read with one ranged read, then
  every object written with plain puts in as few etcd transactions as etcd takes (``MAX_OPS``
  operations each: etcd's default ``--max-txn-ops`` is 128, so ~55 transactions for 7,000 keys),
  no compares: the least a writer can send.

Run: ``python -m bench.controller_sync.baseline one|bulk KUBECONFIG ETCD_ENDPOINT``; prints the
phase times (list, convert, write; seconds) as one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from lightkube import Client as KubeClient
from lightkube import KubeConfig

from calico.controllers.informer import Namespace, NetworkPolicy, Pod, ServiceAccount
from calico.datastore import bulk
from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient, op_put
from calico.k8s import conversion, names
from calico.model import kinds

WEP = kinds.lookup("WorkloadEndpoint")
Resource = dict[str, Any]


def listed(kubeconfig: str) -> dict[str, list[Resource]]:
    kube = KubeClient(KubeConfig.from_file(kubeconfig))
    out = {
        "nps": [dict(o) for o in kube.list(NetworkPolicy, namespace="*", chunk_size=500)],
        "nss": [dict(o) for o in kube.list(Namespace, chunk_size=500)],
        "sas": [dict(o) for o in kube.list(ServiceAccount, namespace="*", chunk_size=500)],
        "pods": [dict(o) for o in kube.list(Pod, namespace="*", chunk_size=500)],
    }
    kube.close()
    return out


def converted(k8s: dict[str, list[Resource]]) -> list[Resource]:
    return (
        [conversion.network_policy_to_calico(o) for o in k8s["nps"]]
        + [conversion.namespace_to_profile(o) for o in k8s["nss"]]
        + [conversion.service_account_to_profile(o) for o in k8s["sas"]]
    )


def _wep_key(pod: Resource) -> str:
    meta = pod["metadata"]
    return WEP.key(names.workload_endpoint_name(pod["spec"]["nodeName"], meta["name"]),
                   meta["namespace"])  # fmt: skip


def one(ds: Client, k8s: dict[str, list[Resource]], objs: list[Resource]) -> None:
    for obj in objs:
        ds.create(obj)
    for pod in k8s["pods"]:
        meta = pod["metadata"]
        wep = names.workload_endpoint_name(pod["spec"]["nodeName"], meta["name"])
        current = ds.get("WorkloadEndpoint", wep, meta["namespace"])
        current["metadata"]["labels"] = conversion.pod_to_workload_labels(pod)
        ds.update(current, validate=False)


def bulk_puts(etcd: EtcdClient, k8s: dict[str, list[Resource]], objs: list[Resource]) -> int:
    """Every object as a plain put, ``bulk.MAX_OPS`` (and ~``bulk.MAX_BYTES``) a transaction;
    the number of transactions sent."""
    writes: list[bulk.Write] = []
    for obj in objs:
        meta = obj["metadata"]
        key = kinds.lookup(obj["kind"]).key(meta["name"], meta.get("namespace"))
        writes.append(bulk.Write(key, json.dumps(obj, separators=(",", ":")), 0))
    kvs, _ = etcd.get_prefix(WEP.prefix())
    stored = {kv.key: json.loads(kv.value) for kv in kvs}
    for pod in k8s["pods"]:
        key = _wep_key(pod)
        wep = stored[key]
        wep["metadata"]["labels"] = conversion.pod_to_workload_labels(pod)
        writes.append(bulk.Write(key, json.dumps(wep, separators=(",", ":")), 0))
    runs = bulk.chunks(writes)
    for run in runs:
        value = [writes[i].value for i in run]
        etcd.txn([], [op_put(writes[i].key, v or "") for i, v in zip(run, value, strict=True)])
    return len(runs)


def main() -> None:
    mode, kubeconfig, endpoint = sys.argv[1:4]
    t0 = time.monotonic()
    k8s = listed(kubeconfig)
    t1 = time.monotonic()
    objs = converted(k8s)
    t2 = time.monotonic()
    etcd = EtcdClient(endpoint)
    txns = 0
    if mode == "one":
        one(Client(etcd), k8s, objs)
    else:
        txns = bulk_puts(etcd, k8s, objs)
    t3 = time.monotonic()
    print(json.dumps({"list": t1 - t0, "convert": t2 - t1, "write": t3 - t2, "txns": txns}))


if __name__ == "__main__":
    main()

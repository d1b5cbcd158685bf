"""``calicoctl datastore migrate export|import``: move Calico's data between datastore modes.

``export`` writes every Calico record of the configured datastore (v3 resources and IPAM records)
as one JSON document: ``{"kind": "CalicoDatastoreExport", "records": [{"key", "value"}]}``.
Records derived from Kubernetes objects are left out in either mode (profiles ``kns.*``/``ksa.*``,
``knp.default.*`` policies, WorkloadEndpoints: the Kubernetes datastore reads them from Namespaces,
ServiceAccounts, NetworkPolicies and Pods; in etcd mode the controllers and the CNI plugin write
them again). ``import`` writes such a document into the configured datastore, which must hold none
of its records (Kubernetes Nodes excepted: there a Calico Node is the Node's annotations): it
checks first (every key absent, and the store's :meth:`preflight`: in the
Kubernetes datastore each CRD installed and writable, each Node present), then writes; a refusal
found while checking writes nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from calico.cli.failures import config_option, datastore_config, fails_cleanly
from calico.datastore.backend import Backend, Refused

V3 = "/calico/resources/v3/projectcalico.org/"
PREFIXES = (V3, "/calico/ipam/v2/")
NODES = V3 + "nodes/"
KIND = "CalicoDatastoreExport"


def derived(key: str) -> bool:
    """A record the Kubernetes datastore derives from Kubernetes objects (never migrated)."""
    if not key.startswith(V3):
        return False
    plural, _, rest = key[len(V3) :].partition("/")
    name = rest.rsplit("/", 1)[-1]
    return (
        plural == "workloadendpoints"
        or (plural == "profiles" and name.startswith(("kns.", "ksa.")))
        or (plural == "networkpolicies" and name.startswith("knp.default."))
    )


def export_records(store: Backend) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for prefix in PREFIXES:
        kvs, _ = store.get_prefix(prefix)
        out += [{"key": kv.key, "value": json.loads(kv.value)} for kv in kvs if not derived(kv.key)]
    return out


def import_records(store: Backend, records: list[dict[str, object]]) -> int:
    """Write ``records`` into an empty ``store`` (checked first); how many were written."""
    keys = [str(r["key"]) for r in records]
    bad = [k for k in keys if not k.startswith(PREFIXES) or derived(k)]
    if bad:
        raise Refused(f"{bad[0]}: not a record this command migrates")
    store.preflight(keys)
    # In the Kubernetes datastore a Calico Node is the Kubernetes Node (kubelet registered it):
    # its record is there already and the import sets its Calico annotations.
    kube_nodes = {k for k in keys if store.datastore_type == "kubernetes" and k.startswith(NODES)}
    present = [k for k in keys if k not in kube_nodes and store.get(k) is not None]
    if present:
        raise Refused(
            f"the target datastore ({store.where()}) already holds {len(present)} of the "
            f"records (first: {present[0]}); import into an empty datastore"
        )
    for r in records:
        value = json.dumps(r["value"], separators=(",", ":"), sort_keys=True)
        if r["key"] in kube_nodes:
            store.put(str(r["key"]), value)
        elif store.create(str(r["key"]), value) is None:
            raise Refused(f"{r['key']}: created by someone else during the import")
    return len(records)


@click.group(help="Datastore operations.")
def datastore() -> None:
    pass


@datastore.group(help="Move Calico's data between the etcd and the Kubernetes datastores.")
def migrate() -> None:
    pass


@migrate.command("export", help="Write every Calico record of the datastore to stdout (JSON).")
@config_option
@fails_cleanly()
def export_cmd(config_file: str | None) -> None:
    store = datastore_config(config_file).backend()
    try:
        doc = {"apiVersion": "projectcalico.org/v3", "kind": KIND, "datastore": store.where(),
               "records": export_records(store)}  # fmt: skip
    finally:
        store.close()
    json.dump(doc, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


@migrate.command("import", help="Write an export into the (empty) configured datastore.")
@click.option("--filename", "-f", required=True, help="the export file (- for stdin)")
@config_option
@fails_cleanly()
def import_cmd(filename: str, config_file: str | None) -> None:
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
        doc = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{filename}: cannot read an export: {exc}") from None
    if (
        not isinstance(doc, dict)
        or doc.get("kind") != KIND
        or not isinstance(doc.get("records"), list)
    ):
        raise ValueError(f"{filename}: kind must be {KIND} with a list of records")
    store = datastore_config(config_file).backend()
    try:
        n = import_records(store, doc["records"])
    finally:
        store.close()
    click.echo(f"Imported {n} records into {store.where()}")

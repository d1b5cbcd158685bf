"""Promoting a staged policy: the enforced resource it stands for, written with the staged one's
removal in one datastore transaction (atomic in etcd; in the Kubernetes API the backend's
checked, undo-on-conflict transaction).

::

    read staged (rev S), read enforced (rev E or absent)
    build: Set    -> the enforced kind, same name/namespace/labels/annotations, spec without
                     stagedAction (StagedKubernetesNetworkPolicy: knp.default.<name> converted)
           Delete -> nothing: the enforced one goes
    check: the model's validation, its tier exists
    txn  if staged at S and enforced at E (absent): put enforced (or delete it), delete staged
         else: Raced (the caller reads again and retries)

Writing both in one transaction means no moment exists where both or neither are in force.
"""

from __future__ import annotations

import copy
from typing import Any

from calico.cli import tier_checks
from calico.datastore import backend as store
from calico.datastore import client as ds_client
from calico.model import kinds, validation

Resource = dict[str, Any]
_KEEP_META = ("name", "namespace", "labels", "annotations")


class PromotionError(Exception):
    """The staged policy cannot be promoted (its enforced form is invalid, its tier is gone)."""


class Raced(Exception):
    """The staged or the enforced policy changed between the read and the transaction."""


def enforced_form(staged: Resource) -> Resource:
    """The resource a Set staged policy stands for (validated)."""
    meta = staged["metadata"]
    spec = {k: v for k, v in (staged.get("spec") or {}).items() if k != "stagedAction"}
    if staged["kind"] == "StagedKubernetesNetworkPolicy":
        from calico.k8s import conversion

        np = {"metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "spec": spec}
        try:
            obj = conversion.network_policy_to_calico(np)
        except conversion.ConversionError as exc:
            raise PromotionError(str(exc).removesuffix(" (rule dropped)")) from None
    else:
        kind = staged["kind"].removeprefix("Staged")
        obj = {
            "apiVersion": kinds.API_VERSION,
            "kind": kind,
            "metadata": {k: copy.deepcopy(meta[k]) for k in _KEEP_META if meta.get(k)},
            "spec": spec,
        }
    try:
        return validation.validate(obj)
    except validation.ValidationError as exc:
        raise PromotionError(str(exc)) from None


def _key(res: Resource) -> str:
    meta = res["metadata"]
    kind = kinds.lookup(res["kind"])
    return kind.key(meta["name"], meta.get("namespace") if kind.namespaced else None)


def _enforced_key(staged: Resource) -> tuple[str, str]:
    """(kind, key) of the policy ``staged`` stands for."""
    meta = staged["metadata"]
    if staged["kind"] == "StagedKubernetesNetworkPolicy":
        return "NetworkPolicy", kinds.KINDS["NetworkPolicy"].key(
            "knp.default." + meta["name"], meta["namespace"]
        )
    kind = staged["kind"].removeprefix("Staged")
    return kind, kinds.KINDS[kind].key(meta["name"], meta.get("namespace"))


def promote(client: ds_client.Client, staged: Resource) -> str:
    """Promote ``staged`` (as read, with its resourceVersion); the message to print."""
    what = validation.describe(staged)
    db = client.backend
    staged_key, staged_rev = _key(staged), int(staged["metadata"]["resourceVersion"])
    kind, key = _enforced_key(staged)
    current = db.get(key)
    compare = [store.cmp_mod(staged_key, staged_rev)]
    compare.append(store.cmp_mod(key, current.mod_revision) if current else store.cmp_absent(key))
    if (staged.get("spec") or {}).get("stagedAction") == "Delete":
        ops: list[store.Op] = [store.op_delete(key), store.op_delete(staged_key)]
        done = f"deleted {kind} {key.rsplit('/', 1)[1]}" if current else "nothing to delete"
    else:
        obj = enforced_form(staged)
        problems = tier_checks.check_writes(client, [obj])
        if problems:
            raise PromotionError("; ".join(problems))
        meta = obj["metadata"]
        if current is not None:  # a replace keeps the stored identity, as calicoctl replace does
            old = ds_client.decode(current.value, current.mod_revision)["metadata"]
            for field in ("uid", "creationTimestamp"):
                if old.get(field):
                    meta[field] = old[field]
        else:
            meta.update(client.new_identity())
        ops = [store.op_put(key, ds_client._encode(obj)), store.op_delete(staged_key)]
        done = f"{'replaced' if current else 'created'} {validation.describe(obj)}"
    if not db.txn(compare, ops).succeeded:
        raise Raced(what)
    return f"Successfully promoted {what}: {done}, staged policy removed"

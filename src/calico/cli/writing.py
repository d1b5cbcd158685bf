"""The write half of create/apply/replace/delete: run one datastore operation per resource, keep
going past per-resource failures (as calicoctl does), and summarise in calicoctl's words.

By the time resources reach here they have all been validated (see :mod:`calico.cli.loading`), so a
failure is a datastore answer (already exists, does not exist, conflict) or an unreachable etcd.
An unreachable etcd stops the loop: every later write would fail the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from calico.datastore.client import Client, Conflict, DatastoreError, NotFound
from calico.datastore.etcd import EtcdError, EtcdUnavailable

Resource = dict[str, Any]


@dataclass(slots=True)
class Outcome:
    total: int
    kinds: list[str]
    done: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def single_kind(self) -> str | None:
        return self.kinds[0] if len(set(self.kinds)) == 1 else None


def run(
    resources: list[Resource],
    op: Callable[[Resource], object],
    *,
    skip: tuple[type[Exception], ...] = (),
) -> Outcome:
    """Apply ``op`` to each resource in order; ``skip`` errors count as handled."""
    out = Outcome(total=len(resources), kinds=[str(r.get("kind")) for r in resources])
    for res in resources:
        try:
            op(res)
        except skip:
            out.skipped += 1
            out.done += 1
        except (DatastoreError, EtcdError) as exc:
            out.errors.append(str(exc))
            if isinstance(exc, EtcdUnavailable):
                break
        else:
            out.done += 1
    return out


def applier(client: Client, resources: list[Resource]) -> Callable[[Resource], object]:
    """``apply`` for a batch: one list per kind says which resources exist, so an existing one is
    replaced directly (read + CAS) instead of first failing a create (three round trips)."""
    existing: set[tuple[str, str | None, str]] = set()
    for kind in {r["kind"] for r in resources}:
        for r in client.list(kind):
            meta = r["metadata"]
            existing.add((kind, meta.get("namespace"), meta["name"]))

    def apply(res: Resource) -> object:
        meta = res["metadata"]
        if (res["kind"], meta.get("namespace"), meta["name"]) in existing:
            meta.pop("resourceVersion", None)
            try:
                return client.update(res, validate=False)
            except (NotFound, Conflict):
                pass  # deleted or changed since the list: apply's create-or-replace loop
        return client.apply(res, validate=False)

    return apply


def report(verb: str, past: str, out: Outcome) -> tuple[list[str], list[str]]:
    """(stdout lines, stderr lines) in calicoctl's wording; a non-empty stderr means exit 1."""
    kind = out.single_kind
    what = f"'{kind}' resource(s)" if kind else "resource(s)"
    if not out.errors:
        return [f"Successfully {past} {out.done} {what}"], []
    errors = "\n".join(f"  {e}" for e in out.errors)
    if out.done == 0:
        if out.total == 1:
            head = f"Failed to {verb} '{kind}' resource:"
        elif kind:
            head = f"Failed to {verb} any '{kind}' resources:"
        else:
            head = f"Failed to {verb} any resources:"
        return [], [f"{head}\n{errors}"]
    plural = f"'{kind}' resources" if kind else "resources"
    return (
        [f"Partial success: {past} {out.done} out of {out.total} {plural}"],
        [f"Hit error(s):\n{errors}"],
    )

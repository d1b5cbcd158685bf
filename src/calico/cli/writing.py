"""The write half of the resource commands: run one datastore operation per resource (delete; the
fallback of :mod:`calico.cli.batch`), keep going past per-resource failures (as calicoctl does),
and summarise any command's :class:`Outcome` in calicoctl's words.

By the time resources reach here they have all been validated (see :mod:`calico.cli.loading`), so a
failure is a datastore answer (already exists, does not exist, conflict) or an unreachable
datastore, which stops the loop: every later write would fail the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from calico.datastore.backend import StoreError, Unavailable

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
        except StoreError as exc:
            out.errors.append(str(exc))
            if isinstance(exc, Unavailable):
                break
        else:
            out.done += 1
    return out


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

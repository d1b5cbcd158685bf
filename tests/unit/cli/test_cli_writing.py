"""calico.cli.writing: the per-resource loop and calicoctl's summary wording."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from calico.cli import writing
from calico.datastore.client import AlreadyExists, NotFound
from calico.datastore.etcd import EtcdUnavailable


def pools(*names: str) -> list[dict[str, Any]]:
    return [{"kind": "IPPool", "metadata": {"name": n}} for n in names]


def failing_on(
    *bad: str, exc: type[Exception] = AlreadyExists
) -> tuple[Callable[[dict[str, Any]], None], list[str]]:
    seen: list[str] = []

    def op(r: dict[str, Any]) -> None:
        seen.append(r["metadata"]["name"])
        if r["metadata"]["name"] in bad:
            raise exc(f"resource already exists: IPPool({r['metadata']['name']})")

    return op, seen


def test_all_succeed() -> None:
    op, _ = failing_on()
    out = writing.run(pools("a", "b"), op)
    assert writing.report("create", "created", out) == (
        ["Successfully created 2 'IPPool' resource(s)"],
        [],
    )


def test_mixed_kinds_say_resources() -> None:
    op, _ = failing_on()
    res = [*pools("a"), {"kind": "Node", "metadata": {"name": "n"}}]
    assert writing.report("apply", "applied", writing.run(res, op))[0] == [
        "Successfully applied 2 resource(s)"
    ]


def test_failures_are_collected_and_the_loop_goes_on() -> None:
    op, seen = failing_on("a")
    out = writing.run(pools("a", "b", "c"), op)
    assert seen == ["a", "b", "c"]
    stdout, stderr = writing.report("create", "created", out)
    assert stdout == ["Partial success: created 2 out of 3 'IPPool' resources"]
    assert stderr == ["Hit error(s):\n  resource already exists: IPPool(a)"]


@pytest.mark.parametrize(
    ("names", "head"),
    [
        (("a",), "Failed to create 'IPPool' resource:"),
        (("a", "b"), "Failed to create any 'IPPool' resources:"),
    ],
)
def test_total_failure(names: tuple[str, ...], head: str) -> None:
    op, _ = failing_on(*names)
    stdout, stderr = writing.report("create", "created", writing.run(pools(*names), op))
    assert stdout == []
    assert stderr[0].startswith(head)


def test_skip_counts_as_handled() -> None:
    op, _ = failing_on("a", exc=NotFound)
    out = writing.run(pools("a", "b"), op, skip=(NotFound,))
    assert (out.done, out.skipped, out.errors) == (2, 1, [])


def test_unreachable_etcd_stops_the_loop() -> None:
    op, seen = failing_on("a", exc=EtcdUnavailable)
    out = writing.run(pools("a", "b"), op)
    assert seen == ["a"]
    assert out.errors == ["resource already exists: IPPool(a)"]

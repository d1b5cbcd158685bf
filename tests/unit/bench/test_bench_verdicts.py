"""bench.verdicts: the first run of the wanted verdict after a change, not a single stray echo."""

from __future__ import annotations

import pytest
from bench import verdicts


def test_first_run_after_skips_a_lone_flip_and_earlier_packets() -> None:
    rows = [(0.5, True), (1.0, True), (1.1, False), (1.2, True), (1.3, False), (1.4, False),
            (1.5, False), (1.6, False)]  # fmt: skip
    got = verdicts.first_run_after(lambda: rows, 1.05, False, timeout=1)
    assert got == pytest.approx(1.3 - 1.05)


def test_no_change_times_out() -> None:
    rows = [(1.0, True), (1.1, True), (1.2, True)]
    with pytest.raises(TimeoutError, match="did not become False"):
        verdicts.first_run_after(lambda: rows, 0.0, False, timeout=0.05)

"""Each chaos scenario's figures, as JSON for ``make chaos``'s table (tests/chaos/report.py).

A scenario fills a :class:`Figures` while it runs and saves it at the end, whether its assertions
pass or not (the table shows a failed run as failed, with what was measured). Files go to
``$CALICO_CHAOS_RESULTS`` (default ``build/chaos``), one per scenario, replaced by the next run.

``long_form()`` says whether this is ``make chaos`` (``CALICO_CHAOS=long``: more rounds, more
pods, more fuzz examples) or the short form ``make test`` runs.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def long_form() -> bool:
    return os.environ.get("CALICO_CHAOS", "short") == "long"


def rounds(short: int, long: int) -> int:
    return long if long_form() else short


def results_dir() -> Path:
    return Path(os.environ.get("CALICO_CHAOS_RESULTS") or ROOT / "build" / "chaos")


@dataclass
class Figures:
    scenario: str
    faults: list[str] = field(default_factory=list)  # what was injected, in order
    operations: dict[str, int] = field(default_factory=dict)  # done during the faults, by kind
    failed_operations: dict[str, int] = field(default_factory=dict)  # refused cleanly (e.g. 11)
    events_lost: int | None = None
    duplicates: int | None = None
    leaks: int | None = None
    converge_s: list[float] = field(default_factory=list)  # fault (or change) -> converged
    wrongly_allowed: int | None = None  # denied connections that got through
    longest_stall_s: float | None = None
    detection_s: list[float] = field(default_factory=list)  # a dead watch noticed after
    notes: list[str] = field(default_factory=list)
    passed: bool = False
    started: float = field(default_factory=time.time)
    seconds: float = 0.0

    def fault(self, text: str) -> None:
        self.faults.append(text)

    def op(self, kind: str, n: int = 1) -> None:
        self.operations[kind] = self.operations.get(kind, 0) + n

    def failed_op(self, kind: str, n: int = 1) -> None:
        self.failed_operations[kind] = self.failed_operations.get(kind, 0) + n

    def stall(self, seconds: float) -> None:
        self.longest_stall_s = max(self.longest_stall_s or 0.0, seconds)

    def save(self, *, passed: bool) -> Path:
        self.passed = passed
        self.seconds = round(time.time() - self.started, 1)
        out = results_dir()
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.scenario}.json"
        data = asdict(self)
        data["form"] = "long" if long_form() else "short"
        data["converge_median_s"] = _median(self.converge_s)
        data["converge_max_s"] = max(self.converge_s) if self.converge_s else None
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return path


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None

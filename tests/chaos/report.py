"""The chaos scenarios' table: ``python -m tests.chaos.report [--save]``.

Reads every scenario's figures (``build/chaos/*.json``, written by the tests), prints one row per
scenario — faults injected, operations done meanwhile, events lost, duplicates, leaks, time to
converge (median / max), connections of a denied pair that got through, the longest stall of the
live TCP stream, a dead watch noticed after — and with ``--save`` writes them all, with the
commit, date and machine, to ``bench/results/chaos-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.chaos.figures import ROOT, results_dir

COLUMNS = [
    "scenario", "form", "result", "faults", "operations", "lost", "dup", "leaks",
    "converge med/max s", "wrongly allowed", "longest stall s", "dead watch noticed s",
]  # fmt: skip


def load(directory: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda d: d.get("started", 0))


def faults(items: list[str]) -> str:
    """The faults in order, repeats folded (``... ×3``), process ids left out."""
    out: list[list[Any]] = []
    for text in items:
        text = re.sub(r",? pid \d+", "", text)
        if out and out[-1][0] == text:
            out[-1][1] += 1
        else:
            out.append([text, 1])
    return "; ".join(t if n == 1 else f"{t} ×{n}" for t, n in out) or "-"


def _n(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def row(d: dict[str, Any]) -> list[str]:
    ops = d.get("operations") or {}
    failed = d.get("failed_operations") or {}
    op_text = ", ".join(f"{n} {k}" for k, n in ops.items())
    if failed:
        op_text += " (refused cleanly: " + ", ".join(f"{n} {k}" for k, n in failed.items()) + ")"
    conv = "-"
    if d.get("converge_median_s") is not None:
        conv = f"{d['converge_median_s']:.2f} / {d['converge_max_s']:.2f}"
    detect = d.get("detection_s") or []
    return [
        d["scenario"],
        d.get("form", "?"),
        "pass" if d.get("passed") else "FAIL",
        faults(d.get("faults") or []),
        op_text or "-",
        _n(d.get("events_lost")),
        _n(d.get("duplicates")),
        _n(d.get("leaks")),
        conv,
        _n(d.get("wrongly_allowed")),
        _n(d.get("longest_stall_s"), "{:.2f}"),
        f"{max(detect):.1f} (n={len(detect)})" if detect else "-",
    ]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _commit() -> str:
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.stdout.strip() or "unknown"


def save(figures: list[dict[str, Any]]) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = ROOT / "bench" / "results" / f"chaos-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "bench": "chaos",
                "commit": _commit(),
                "date": stamp,
                "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
                "scenarios": figures,
            },
            indent=1,
            sort_keys=True,
        )
        + "\n"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos.report", description=__doc__)
    ap.add_argument("--save", action="store_true", help="also write bench/results/chaos-*.json")
    args = ap.parse_args(argv)
    figures = load(results_dir())
    if not figures:
        print(f"no chaos figures in {results_dir()} (run make chaos)", file=sys.stderr)
        return 1
    print(markdown([row(d) for d in figures]))
    if args.save:
        print(f"\nwritten: {save(figures).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmarks' one results file: every figure a run measured, with the commit and the machine.

Each bench records its figures through a :class:`Recorder`; ``make bench`` starts a fresh file
(``python -m bench.results start``), runs every bench with ``BENCH_RESULTS`` pointing at it, and
ends by rendering the README's table from it (:mod:`bench.readme`), so the README can only show
what a run produced. A bench run on its own records nothing unless ``BENCH_RESULTS`` is set.

The API a bench calls::

    from bench import results
    rec = results.Recorder("throughput")                   # the bench's section in the file
    rec.setting("FELIX_X", "1", "why the bench needs a non-default")   # printed and recorded
    rec.figure("same_node", title="pod to pod, same node", unit="Gbit/s",
               samples=[...], baseline=[...], baseline_title="plain veth pair",
               better="higher", readme="pod-to-pod TCP, same node", doc="docs/design/lab.md")
    rec.fact("policies", 1000)                             # a plain value, not a figure
    rec.save()                                             # merge into $BENCH_RESULTS

A figure needs at least :data:`MIN_REPS` samples, and so does its baseline (measured in the same
run); :meth:`Recorder.figure` prints median, p90, p99 and the spread (min-max) as it records.
The file (JSON)::

    {"schema": 1, "commit": "…", "dirty": false, "started": "…Z", "finished": "…Z", "note": "…",
     "machine": {"cores", "cpu_model", "kernel", "python", "mem_total_mb",
                 "loadavg_start", "loadavg_end"},
     "benches": {NAME: {"started", "seconds", "settings": {…}, "facts": {…},
                        "figures": {ID: {"title", "unit", "better", "stats": {…}, "samples": […],
                                         "baseline": {"title", "stats", "samples"} | null,
                                         "ratio": median / baseline median | null,
                                         "readme": "…" | null, "doc": "…" | null}}}}}
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from calico.lib import cmd

SCHEMA = 1
MIN_REPS = 3
ROOT = Path(__file__).resolve().parents[1]
ENV = "BENCH_RESULTS"
GENERATED = ("bench/results.json", "README.md")  # a run rewrites these: not "dirty"


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (``q`` in 0..1)."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def stats(samples: Sequence[float]) -> dict[str, float]:
    """n, median, p10, p90, p99, min, max and spread (max - min, in % of the median)."""
    if len(samples) < MIN_REPS:
        raise ValueError(f"{len(samples)} sample(s): a figure needs at least {MIN_REPS}")
    med = statistics.median(samples)
    lo, hi = min(samples), max(samples)
    return {
        "n": len(samples),
        "median": med,
        "p10": percentile(samples, 0.10),
        "p90": percentile(samples, 0.90),
        "p99": percentile(samples, 0.99),
        "min": lo,
        "max": hi,
        "spread_pct": (hi - lo) / med * 100 if med else 0.0,
    }


def fmt(value: float) -> str:
    """Three significant figures or so: 1234, 123, 12.3, 1.23, 0.123."""
    a = abs(value)
    if a >= 100 or a == 0:
        return f"{value:,.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def describe(st: dict[str, float], unit: str) -> str:
    return (
        f"median {fmt(st['median'])} {unit} (p90 {fmt(st['p90'])}, p99 {fmt(st['p99'])}; "
        f"spread {fmt(st['min'])}-{fmt(st['max'])}, n={st['n']:.0f})"
    )


# ---- the run header -----------------------------------------------------------------------------


def _git(*args: str) -> str:
    proc = cmd.run_process(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mem_total_mb": round(_mem_total_mb()),
        "loadavg_start": list(os.getloadavg()),
    }


def header(note: str = "") -> dict[str, Any]:
    dirty = [
        line
        for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()
        if line[3:] not in GENERATED
    ]
    return {
        "schema": SCHEMA,
        "commit": _git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(dirty),
        "started": _now(),
        "finished": None,
        "note": note,
        "machine": machine(),
        "benches": {},
    }


def start(path: Path, note: str = "") -> dict[str, Any]:
    """A fresh results file (what ``make bench`` does first)."""
    data = header(note)
    write(path, data)
    return data


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {SCHEMA}")
    return data


def write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def results_path() -> Path | None:
    value = os.environ.get(ENV, "")
    return Path(value) if value else None


# ---- recording ----------------------------------------------------------------------------------


class Recorder:
    """One bench's section of the results file; prints what it records."""

    def __init__(
        self,
        bench: str,
        *,
        path: Path | None = None,
        out: Callable[[str], None] = print,
    ) -> None:
        self.bench = bench
        self.path = path if path is not None else results_path()
        self.out = out
        self._t0 = time.monotonic()
        self.section: dict[str, Any] = {
            "started": _now(),
            "seconds": None,
            "settings": {},
            "facts": {},
            "figures": {},
        }

    def setting(self, name: str, value: str, why: str) -> None:
        """A non-default setting the bench needs (printed, so no one mistakes it for a default)."""
        self.section["settings"][name] = {"value": value, "why": why}
        self.out(f"[{self.bench}] NON-DEFAULT SETTING {name}={value}: {why}")

    def fact(self, name: str, value: Any) -> None:
        self.section["facts"][name] = value

    def figure(
        self,
        fid: str,
        *,
        title: str,
        unit: str,
        samples: Sequence[float],
        baseline: Sequence[float] | None = None,
        baseline_title: str = "",
        better: str = "lower",
        readme: str | None = None,
        doc: str | None = None,
    ) -> dict[str, Any]:
        if better not in ("lower", "higher"):
            raise ValueError(f"better: {better!r} is not 'lower' or 'higher'")
        if baseline is not None and not baseline_title:
            raise ValueError(f"{fid}: a baseline needs a title (what it is)")
        st = stats(samples)
        fig: dict[str, Any] = {
            "title": title,
            "unit": unit,
            "better": better,
            "stats": st,
            "samples": [round(x, 6) for x in samples],
            "baseline": None,
            "ratio": None,
            "readme": readme,
            "doc": doc,
        }
        line = f"[{self.bench}] {title}: {describe(st, unit)}"
        if baseline is not None:
            bst = stats(baseline)
            fig["baseline"] = {
                "title": baseline_title,
                "stats": bst,
                "samples": [round(x, 6) for x in baseline],
            }
            fig["ratio"] = st["median"] / bst["median"] if bst["median"] else None
            line += f"\n    baseline {baseline_title}: {describe(bst, unit)}"
            if fig["ratio"] is not None:
                line += f"\n    ratio (median / baseline median): {fig['ratio']:.3g}x"
        self.section["figures"][fid] = fig
        self.out(line)
        return fig

    def save(self) -> None:
        """Merge this section into the results file (creating it if absent)."""
        self.section["seconds"] = round(time.monotonic() - self._t0, 1)
        if self.path is None:
            self.out(f"[{self.bench}] not recorded: {ENV} is not set (make bench sets it)")
            return
        data = load(self.path) if self.path.exists() else header()
        data["benches"][self.bench] = self.section
        data["finished"] = _now()
        data["machine"]["loadavg_end"] = list(os.getloadavg())
        write(self.path, data)
        self.out(f"[{self.bench}] recorded {len(self.section['figures'])} figure(s) in {self.path}")


def main(argv: list[str] | None = None) -> int:
    """``start PATH [NOTE]``: a fresh file; ``render PATH [README]``: the README table;
    ``compare OLD NEW``: two runs side by side (:mod:`bench.compare`)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) >= 2 and args[0] == "start":
        start(Path(args[1]), " ".join(args[2:]))
        return 0
    if len(args) >= 2 and args[0] == "render":
        from bench import readme

        target = Path(args[2]) if len(args) > 2 else ROOT / "README.md"
        readme.update(target, load(Path(args[1])))
        print(f"rendered {args[1]} into {target}")
        return 0
    if len(args) == 3 and args[0] == "compare":
        from bench import compare

        print(compare.table(load(Path(args[1])), load(Path(args[2]))), end="")
        return 0
    print(
        "usage: python -m bench.results start PATH [NOTE] | render PATH [README] | compare OLD NEW",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())

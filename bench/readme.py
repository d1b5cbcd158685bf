"""The README's figures table, rendered from a results file (see :mod:`bench.results`).

Only figures a bench recorded with ``readme=...`` appear, in run order; every cell comes from the
file, and the text between the markers is replaced whole, so the README shows what one run produced
and nothing else. ``python -m bench.results render bench/results.json`` (the end of ``make bench``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.results import fmt

BEGIN = "<!-- bench-table:begin (generated from bench/results.json by make bench; do not edit) -->"
END = "<!-- bench-table:end -->"


class MarkersMissing(ValueError):
    """The README has no (or broken) table markers."""


TIME_UNITS = ("s", "ms", "µs", "us", "ns")


def ratio_text(ratio: float | None, better: str, unit: str = "s") -> str:
    if ratio is None:
        return "-"
    if better == "lower" and ratio < 0.5:
        return f"{ratio:.2g}× ({1 / ratio:.0f}× {'faster' if unit in TIME_UNITS else 'less'})"
    if better == "higher" and ratio > 2:
        return f"{ratio:.2g}× ({ratio:.0f}× more)"
    return f"{ratio:.2f}×"


def row(fig: dict[str, Any]) -> str:
    st, unit = fig["stats"], fig["unit"]
    value = f"{fmt(st['median'])} {unit} ({fmt(st['p90'])} / {fmt(st['p99'])})"
    spread = f"{fmt(st['min'])}–{fmt(st['max'])}, n={st['n']:.0f}"
    base = fig.get("baseline")
    base_text = f"{base['title']}: {fmt(base['stats']['median'])} {unit}" if base else "-"
    doc = fig.get("doc")
    doc_text = f"[{Path(doc).name}]({doc})" if doc else ""
    ratio = ratio_text(fig.get("ratio"), fig["better"], unit)
    cells = [fig["readme"], value, spread, base_text, ratio]
    return "| " + " | ".join([*cells, doc_text]) + " |"


def run_line(data: dict[str, Any]) -> str:
    m = data["machine"]
    commit = str(data["commit"])[:10] + (" + uncommitted changes" if data.get("dirty") else "")
    load_end = m.get("loadavg_end")
    text = (
        f"One run of `make bench`, {data['started']}, commit `{commit}`: {m['cores']} cores "
        f"({m['cpu_model']}), Linux {m['kernel']}, Python {m['python']}; load average "
        f"{m['loadavg_start'][0]:.1f} at start, "
        f"{f'{load_end[0]:.1f}' if load_end else '?'} at end (1-minute)."
    )
    if data.get("note"):
        text += f" **{data['note']}**"
    return text


def table(data: dict[str, Any]) -> str:
    lines = [
        run_line(data),
        "",
        "| what | median (p90 / p99) | spread (min–max) | baseline, same run (median) | ratio "
        "| doc |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for name, bench in data["benches"].items():
        for fig in bench["figures"].values():
            if fig.get("readme"):
                lines.append(row(fig))
        for setting, info in bench.get("settings", {}).items():
            notes.append(f"`{name}` ran with {setting}={info['value']} ({info['why']})")
    if notes:
        lines += ["", "Non-default settings: " + "; ".join(notes) + "."]
    return "\n".join(lines)


def splice(text: str, body: str) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise MarkersMissing(f"README needs the markers {BEGIN!r} ... {END!r}")
    return text[: start + len(BEGIN)] + "\n" + body + "\n" + text[end:]


def update(readme: Path, data: dict[str, Any]) -> None:
    readme.write_text(splice(readme.read_text(), table(data)))

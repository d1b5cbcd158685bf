"""Two runs' results files side by side: does a figure reproduce?

``python -m bench.results compare OLD NEW`` prints a Markdown table with one row per figure the
two files share: each run's median and its ratio against its own same-run baseline, and NEW's
median over OLD's. A figure only one run has is listed under the table, so a dropped or renamed
figure is not silently missing.
"""

from __future__ import annotations

from typing import Any

from bench.results import fmt


def _figures(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{bench}.{fid}": fig
        for bench, section in data.get("benches", {}).items()
        for fid, fig in section.get("figures", {}).items()
    }


def _ratio(fig: dict[str, Any]) -> str:
    return "" if fig.get("ratio") is None else f"{fig['ratio']:.3g}×"


def table(old: dict[str, Any], new: dict[str, Any]) -> str:
    a, b = _figures(old), _figures(new)
    lines = [
        f"Old: {old.get('started', '?')}, commit `{str(old.get('commit', ''))[:10]}`; "
        f"new: {new.get('started', '?')}, commit `{str(new.get('commit', ''))[:10]}`.",
        "",
        "| figure | unit | old median | new median | new / old | old ratio to baseline "
        "| new ratio to baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in sorted(a.keys() & b.keys()):
        fa, fb = a[key], b[key]
        ma, mb = fa["stats"]["median"], fb["stats"]["median"]
        change = f"{mb / ma:.2f}" if ma else ""
        lines.append(
            f"| {key} | {fb['unit']} | {fmt(ma)} | {fmt(mb)} | {change} | {_ratio(fa)} "
            f"| {_ratio(fb)} |"
        )
    for label, only in (("old", a.keys() - b.keys()), ("new", b.keys() - a.keys())):
        if only:
            lines.append(f"\nOnly in the {label} run: {', '.join(sorted(only))}")
    return "\n".join(lines) + "\n"

"""Figures of the throughput bench: medians, spread, ratios against same-run baselines, JSON.

A sample key is ``(path, placement, policies, streams)``: path ``veth`` / ``kernel vxlan`` /
``kernel ipip`` / ``routed veth`` / ``routed veth + conntrack`` / ``routed bridged`` / ``routed
bridged vxlan`` (baselines,
placement ``-``) or ``lab direct`` / ``lab vxlan`` / ``lab ipip``, and
``lab <mode> unselected`` (pods no policy selects, measured in the same rounds as the N-policy
path); placement ``same-node`` / ``cross-node``; policies 0 (none in the cluster) or N (N in the
cluster). Spread is (max - min) / median.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from calico.lib import cmd

Key = tuple[str, str, int, int]
RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def summary(values: list[float]) -> dict[str, float]:
    med = statistics.median(values)
    return {
        "median": med,
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / med if med else 0.0,
        "n": len(values),
    }


def ratios(samples: dict[Key, list[float]], policies: int) -> list[dict[str, Any]]:
    """Every ratio the bench reports: (what, streams, ratio, goal or None)."""
    med = {k: statistics.median(v) for k, v in samples.items() if v}
    out: list[dict[str, Any]] = []

    def add(what: str, streams: int, num: Key, den: Key, goal: float | None = None) -> None:
        if num in med and den in med and med[den]:
            out.append(
                {"what": what, "streams": streams, "ratio": med[num] / med[den], "goal": goal}
            )

    for streams in sorted({k[3] for k in med}):
        veth, kvx = ("veth", "-", 0, streams), ("kernel vxlan", "-", 0, streams)
        kipip = ("kernel ipip", "-", 0, streams)
        for mode in ("direct", "vxlan", "ipip"):
            path = f"lab {mode}"
            for place in ("same-node", "cross-node"):
                for pol in (0, policies):
                    add(
                        f"{path} {place} P={pol} / veth", streams, (path, place, pol, streams), veth
                    )
                add(
                    f"{path} {place} P={policies} / unselected (same rounds)",
                    streams,
                    (path, place, policies, streams),
                    (f"{path} unselected", place, policies, streams),
                    0.95 if mode == "direct" else None,
                )
                add(
                    f"{path} {place} P={policies} / P=0 (earlier rounds)",
                    streams,
                    (path, place, policies, streams),
                    (path, place, 0, streams),
                )
        for pol in (0, policies):
            add(
                f"lab vxlan cross-node P={pol} / kernel vxlan",
                streams,
                ("lab vxlan", "cross-node", pol, streams),
                kvx,
                0.95 if pol == 0 else None,
            )
            add(
                f"lab ipip cross-node P={pol} / kernel ipip",
                streams,
                ("lab ipip", "cross-node", pol, streams),
                kipip,
                0.95 if pol == 0 else None,
            )
            add(
                f"lab vxlan cross-node P={pol} / lab direct cross-node",
                streams,
                ("lab vxlan", "cross-node", pol, streams),
                ("lab direct", "cross-node", pol, streams),
            )
        add("kernel vxlan / veth", streams, kvx, veth)
        # hop by hop: the kernel's forwarding, conntrack, then what Calico adds on the same hops
        routed, routed_ct = (
            ("routed veth", "-", 0, streams),
            ("routed veth + conntrack", "-", 0, streams),
        )
        bridged = ("routed bridged", "-", 0, streams)
        same, cross = (
            ("lab direct", "same-node", 0, streams),
            ("lab direct", "cross-node", 0, streams),
        )
        add("routed veth / veth (a forwarding hop)", streams, routed, veth)
        add("routed veth + conntrack / routed veth", streams, routed_ct, routed)
        add("lab direct same-node P=0 / routed veth + conntrack", streams, same, routed_ct)
        add("routed bridged / veth (the cross-node hops)", streams, bridged, veth)
        add("lab direct cross-node P=0 / routed bridged", streams, cross, bridged)
        bridged_vx = ("routed bridged vxlan", "-", 0, streams)
        add("routed bridged vxlan / routed bridged (the kernel's encapsulation)", streams,
            bridged_vx, bridged)  # fmt: skip
        add("lab vxlan cross-node P=0 / routed bridged vxlan", streams,
            ("lab vxlan", "cross-node", 0, streams), bridged_vx)  # fmt: skip
    return out


DOC = "docs/design/throughput.md"


def _specs(policies: int, streams: int) -> list[tuple[str, str, Key, Key, str, str]]:
    """(id, title, path, baseline, baseline title, README row) per figure."""
    lab, u, n = "lab direct", "lab direct unselected", streams
    return [
        ("same_node", "pod-to-pod TCP, same node", (lab, "same-node", 0, n),
         ("veth", "-", 0, n), "a plain veth pair",
         "pod-to-pod TCP, same node (1 stream)"),
        ("same_node_hops", "pod-to-pod TCP, same node", (lab, "same-node", 0, n),
         ("routed veth + conntrack", "-", 0, n),
         "the same hops without Calico (veth, forwarding namespace with conntrack, veth)",
         "pod-to-pod TCP, same node, vs the same hops without Calico"),
        ("cross_node", "pod-to-pod TCP, cross node", (lab, "cross-node", 0, n),
         ("veth", "-", 0, n), "a plain veth pair",
         "pod-to-pod TCP, cross node through the lab's bridge (1 stream)"),
        ("cross_node_hops", "pod-to-pod TCP, cross node", (lab, "cross-node", 0, n),
         ("routed bridged", "-", 0, n),
         "the same hops without Calico (4 veths, 2 forwarding namespaces, a bridge)",
         "pod-to-pod TCP, cross node, vs the same hops without Calico"),
        ("policies", f"pod-to-pod TCP, same node, {policies:,} policies selecting the pods",
         (lab, "same-node", policies, n), (u, "same-node", policies, n),
         "pods no policy selects, same rounds",
         f"pod-to-pod TCP, same node, {policies:,} policies vs none selecting"),
        ("vxlan", "pod-to-pod TCP, cross node, VXLAN", ("lab vxlan", "cross-node", 0, n),
         ("kernel vxlan", "-", 0, n), "the kernel's own vxlan between two namespaces",
         "pod-to-pod TCP, cross node, VXLAN vs the kernel's vxlan"),
        ("vxlan_hops", "pod-to-pod TCP, cross node, VXLAN", ("lab vxlan", "cross-node", 0, n),
         ("routed bridged vxlan", "-", 0, n),
         "the same hops without Calico, the kernel's vxlan between the forwarding namespaces",
         "pod-to-pod TCP, cross node, VXLAN, vs the same hops without Calico"),
    ]  # fmt: skip


def record(rec: Any, samples: dict[Key, list[float]], policies: int) -> None:
    """The figures that go into the results file (``bench.results``), for each stream count; the
    single-stream ones also into the README's table. A figure without 3 samples on both sides
    (a mode skipped) is left out."""
    for streams in sorted({k[3] for k in samples}):
        for fid, title, num, den, den_title, readme in _specs(policies, streams):
            if len(samples.get(num, [])) < 3 or len(samples.get(den, [])) < 3:
                continue
            rec.figure(
                f"{fid}_p{streams}",
                title=f"{title}, {streams} stream(s)",
                unit="Gbit/s",
                samples=samples[num],
                baseline=samples[den],
                baseline_title=den_title,
                better="higher",
                readme=readme if streams == 1 else None,
                doc=DOC,
            )


def print_figures(samples: dict[Key, list[float]], policies: int, skipped: Iterable[str]) -> None:
    print("\nTCP throughput, Gbit/s (median of n runs; spread = (max - min) / median)")
    print(
        f"  {'path':22s} {'placement':10s} {'policies':>8s} {'streams':>7s} "
        f"{'median':>8s} {'min':>8s} {'max':>8s} {'spread':>7s} {'n':>3s}"
    )
    for key in sorted(samples, key=lambda k: (k[0].startswith("lab"), k)):
        if not samples[key]:
            continue
        s = summary(samples[key])
        path, place, pol, streams = key
        print(
            f"  {path:22s} {place:10s} {pol:8d} {streams:7d} {s['median']:8.2f} "
            f"{s['min']:8.2f} {s['max']:8.2f} {s['spread']:6.0%} {s['n']:3d}"
        )
    print("\nRatios (medians; goal where the issue sets one)")
    for r in ratios(samples, policies):
        goal = ""
        if r["goal"] is not None:
            goal = f"   goal >= {r['goal']:.2f}: {'met' if r['ratio'] >= r['goal'] else 'NOT met'}"
        print(f"  {r['what']:62s} streams={r['streams']}  {r['ratio']:5.2f}x{goal}")
    for reason in skipped:
        print(f"  skipped: {reason}")


def _commit() -> str:
    proc = cmd.run_process(
        ["git", "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent,
    )
    out: str = proc.stdout
    return out.strip()


def write_json(
    samples: dict[Key, list[float]],
    *,
    policies: int,
    settings: dict[str, Any],
    skipped: list[str],
    notes: dict[str, Any],
) -> Path:
    """One file per run: ``bench/results/throughput-<UTC time>.json``."""
    now = datetime.datetime.now(datetime.UTC)
    data = {
        "bench": "throughput",
        "date": now.isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "loadavg_end": os.getloadavg(),
        },
        "settings": settings,
        "results": [
            {
                "path": k[0],
                "placement": k[1],
                "policies": k[2],
                "streams": k[3],
                "gbps": v,
                **summary(v),
            }
            for k, v in sorted(samples.items())
            if v
        ],
        "ratios": ratios(samples, policies),
        "skipped": skipped,
        "notes": notes,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"throughput-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path

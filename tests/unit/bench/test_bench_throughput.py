"""bench.throughput's figures: the hop-by-hop ratios and what goes into the results file."""

from __future__ import annotations

from pathlib import Path

from bench import results
from bench.throughput import report

P = 1000


def samples(streams: int = 1) -> dict[report.Key, list[float]]:
    base = {
        ("veth", "-", 0): 16.0,
        ("routed veth", "-", 0): 15.0,
        ("routed veth + conntrack", "-", 0): 14.0,
        ("routed bridged", "-", 0): 12.0,
        ("routed bridged vxlan", "-", 0): 11.0,
        ("kernel vxlan", "-", 0): 14.0,
        ("lab direct", "same-node", 0): 13.3,
        ("lab direct", "same-node", P): 13.0,
        ("lab direct unselected", "same-node", P): 13.3,
        ("lab direct", "cross-node", 0): 12.0,
        ("lab vxlan", "cross-node", 0): 10.5,
    }
    return {(*k, streams): [v * 0.98, v, v * 1.02] for k, v in base.items()}


def test_hop_by_hop_ratios() -> None:
    got = {r["what"]: r["ratio"] for r in report.ratios(samples(), P)}
    assert round(got["routed veth / veth (a forwarding hop)"], 4) == round(15 / 16, 4)
    assert round(got["routed veth + conntrack / routed veth"], 4) == round(14 / 15, 4)
    assert round(got["lab direct same-node P=0 / routed veth + conntrack"], 4) == 0.95
    assert round(got["lab direct cross-node P=0 / routed bridged"], 4) == 1.0
    assert round(got["lab vxlan cross-node P=0 / routed bridged vxlan"], 4) == round(10.5 / 11, 4)


def test_record_puts_single_stream_headlines_in_the_readme(tmp_path: Path) -> None:
    rec = results.Recorder("throughput", path=tmp_path / "r.json", out=lambda _: None)
    report.record(rec, samples(1) | samples(4), P)
    figs = rec.section["figures"]
    assert set(figs) == {
        f"{f}_p{s}"
        for f in (
            "same_node",
            "same_node_hops",
            "cross_node",
            "cross_node_hops",
            "policies",
            "vxlan",
            "vxlan_hops",
        )
        for s in (1, 4)
    }
    assert figs["same_node_p1"]["baseline"]["title"] == "a plain veth pair"
    assert round(figs["same_node_p1"]["ratio"], 4) == round(13.3 / 16, 4)
    assert round(figs["policies_p1"]["ratio"], 4) == round(13.0 / 13.3, 4)
    assert all(figs[f]["readme"] for f in figs if f.endswith("_p1"))
    assert not any(figs[f]["readme"] for f in figs if f.endswith("_p4"))
    assert all(figs[f]["better"] == "higher" for f in figs)


def test_a_mode_not_measured_gives_no_figure(tmp_path: Path) -> None:
    rec = results.Recorder("throughput", path=tmp_path / "r.json", out=lambda _: None)
    some = samples()
    del some[("lab vxlan", "cross-node", 0, 1)]
    report.record(rec, some, P)
    assert "vxlan_p1" not in rec.section["figures"]
    assert "same_node_p1" in rec.section["figures"]

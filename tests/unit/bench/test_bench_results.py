"""The benchmarks' results file and the README table rendered from it (bench.results/readme)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench import readme, results

ROOT = Path(__file__).resolve().parents[3]


def test_stats_of_known_samples() -> None:
    st = results.stats([4.0, 1.0, 3.0, 2.0, 5.0])
    assert st["n"] == 5
    assert st["median"] == 3.0
    assert (st["min"], st["max"]) == (1.0, 5.0)
    assert st["p90"] == pytest.approx(4.6)
    assert st["p99"] == pytest.approx(4.96)
    assert st["spread_pct"] == pytest.approx(400 / 3)


def test_a_figure_needs_three_samples() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        results.stats([1.0, 2.0])
    rec = results.Recorder("b", path=None, out=lambda _: None)
    with pytest.raises(ValueError, match="at least 3"):
        rec.figure(
            "f", title="t", unit="ms", samples=[1, 2, 3], baseline=[1, 2], baseline_title="b"
        )


def test_percentile_interpolates() -> None:
    assert results.percentile([10, 20], 0.5) == 15
    assert results.percentile([1, 2, 3, 4], 1.0) == 4
    assert results.percentile([7, 7, 7], 0.99) == 7


def test_figure_prints_spread_and_ratio() -> None:
    lines: list[str] = []
    rec = results.Recorder("sel", path=None, out=lines.append)
    fig = rec.figure(
        "eval", title="compiled", unit="ns", samples=[60, 61, 62],
        baseline=[1700, 1717, 1800], baseline_title="tree walker",
    )  # fmt: skip
    assert fig["ratio"] == pytest.approx(61 / 1717)
    text = "\n".join(lines)
    assert "spread 60.0-62.0, n=3" in text
    assert "baseline tree walker: median 1,717 ns" in text
    assert "ratio (median / baseline median): 0.0355x" in text


def test_save_merges_benches_into_one_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    results.start(path, "busy machine")
    for name in ("one", "two"):
        rec = results.Recorder(name, path=path, out=lambda _: None)
        rec.setting("FELIX_X", "1", "because")
        rec.fact("count", 3)
        rec.figure("f", title=name, unit="ms", samples=[1, 2, 3], readme=f"row {name}")
        rec.save()
    data = results.load(path)
    assert list(data["benches"]) == ["one", "two"]
    assert data["note"] == "busy machine"
    assert data["benches"]["two"]["facts"] == {"count": 3}
    assert data["benches"]["one"]["settings"]["FELIX_X"]["value"] == "1"
    m = data["machine"]
    assert m["cores"] >= 1
    assert all(m[k] for k in ("kernel", "python", "cpu_model"))
    assert (len(m["loadavg_start"]), len(m["loadavg_end"])) == (3, 3)
    assert len(data["commit"]) == 40
    assert data["finished"] is not None


def test_save_without_a_path_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(results.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    lines: list[str] = []
    rec = results.Recorder("x", out=lines.append)
    rec.figure("f", title="t", unit="s", samples=[1, 2, 3])
    rec.save()
    assert "not recorded" in lines[-1]
    assert list(tmp_path.iterdir()) == []


def _data(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "r.json"
    results.start(path)
    rec = results.Recorder("cni", path=path, out=lambda _: None)
    rec.figure(
        "add", title="ADD", unit="ms", samples=[6.0, 6.1, 7.0, 6.5],
        baseline=[7.4, 7.5, 7.3], baseline_title="Go ptp", readme="CNI ADD",
        doc="docs/design/cni.md",
    )  # fmt: skip
    rec.figure("hidden", title="not in the README", unit="ms", samples=[1, 2, 3])
    rec.setting("ETCD_DIR", "/dev/shm", "no fsync")
    rec.save()
    return results.load(path)


def test_table_has_one_row_per_readme_figure(tmp_path: Path) -> None:
    text = readme.table(_data(tmp_path))
    rows = [line for line in text.splitlines() if line.startswith("| CNI")]
    assert rows == [
        "| CNI ADD | 6.30 ms (6.85 / 6.98) | 6.00–7.00, n=4 | Go ptp: 7.40 ms | 0.85× "
        "| [cni.md](docs/design/cni.md) |"
    ]
    assert "not in the README" not in text
    assert "`cni` ran with ETCD_DIR=/dev/shm (no fsync)" in text
    assert "cores" in text.splitlines()[0]


def test_splice_replaces_only_between_markers(tmp_path: Path) -> None:
    data = _data(tmp_path)
    page = tmp_path / "README.md"
    page.write_text(f"# Title\n\nbefore\n{readme.BEGIN}\nold table\n{readme.END}\nafter\n")
    readme.update(page, data)
    once = page.read_text()
    readme.update(page, data)
    assert page.read_text() == once  # idempotent
    assert "old table" not in once
    assert once.startswith("# Title\n\nbefore\n" + readme.BEGIN + "\n")
    assert once.endswith(readme.END + "\nafter\n")
    assert "| CNI ADD |" in once


def test_missing_markers_are_an_error(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text("no markers\n")
    with pytest.raises(readme.MarkersMissing):
        readme.update(page, _data(tmp_path))


def test_ratio_text() -> None:
    assert readme.ratio_text(61 / 1717, "lower") == "0.036× (28× faster)"
    assert readme.ratio_text(0.82, "lower") == "0.82×"
    assert readme.ratio_text(0.91, "higher") == "0.91×"
    assert readme.ratio_text(None, "lower") == "-"
    assert readme.ratio_text(0.002, "lower", "watches") == "0.002× (500× less)"
    assert readme.ratio_text(0.002, "lower", "ms") == "0.002× (500× faster)"


def test_command_line_start_and_render(tmp_path: Path) -> None:
    path, page = tmp_path / "r.json", tmp_path / "README.md"
    page.write_text(f"{readme.BEGIN}\n{readme.END}\n")
    py = [sys.executable, "-m", "bench.results"]
    subprocess.run([*py, "start", str(path), "a", "note"], cwd=ROOT, check=True)
    env = {results.ENV: str(path), "PATH": "/usr/bin:/bin"}
    code = (
        "from bench import results; r = results.Recorder('x'); "
        "r.figure('f', title='t', unit='ms', samples=[1, 2, 3], readme='a row'); r.save()"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    subprocess.run([*py, "render", str(path), str(page)], cwd=ROOT, check=True)
    assert json.loads(path.read_text())["note"] == "a note"
    assert "| a row | 2.00 ms (2.80 / 2.98) |" in page.read_text()


def test_the_projects_readme_has_the_table_markers() -> None:
    text = (ROOT / "README.md").read_text()
    assert readme.splice(text, "body").count("body") == 1


def test_compare_lists_shared_figures_and_the_ones_only_one_run_has() -> None:
    from bench import compare

    def run(commit: str, figures: dict[str, float]) -> dict[str, object]:
        recorder = results.Recorder("b", path=None, out=lambda _: None)
        for fid, med in figures.items():
            recorder.figure(fid, title=fid, unit="ms", samples=[med] * 3,
                            baseline=[2 * med] * 3, baseline_title="twice")  # fmt: skip
        return {"commit": commit, "started": "t", "benches": {"b": recorder.section}}

    text = compare.table(run("aaa", {"x": 10.0, "gone": 1.0}), run("bbb", {"x": 12.0, "new": 2.0}))
    row = next(line for line in text.splitlines() if line.startswith("| b.x "))
    assert row == "| b.x | ms | 10.0 | 12.0 | 1.20 | 0.5× | 0.5× |"
    assert "Only in the old run: b.gone" in text
    assert "Only in the new run: b.new" in text
    assert "commit `aaa`" in text
    assert "commit `bbb`" in text

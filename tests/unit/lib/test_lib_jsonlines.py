"""The rotated JSON-lines file set: bounded size and count, oldest-first reads, a follower that
keeps up across rotations and never returns half a line."""

from __future__ import annotations

from pathlib import Path

from calico.lib import jsonlines


def test_rotation_keeps_the_newest_within_bounds(tmp_path: Path) -> None:
    path = tmp_path / "d" / "flows.log"
    w = jsonlines.RotatingWriter(path, max_bytes=200, max_files=3)
    for i in range(50):
        w.write([{"i": i, "pad": "x" * 20}])
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["flows.log", "flows.log.1", "flows.log.2"]
    assert all(p.stat().st_size <= 200 for p in path.parent.iterdir())
    got = [o["i"] for o in jsonlines.read(path)]
    assert got == sorted(got)
    assert got[-1] == 49
    assert w.rotations > 0
    assert w.write([]) == 0


def test_one_file_set_and_broken_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    w = jsonlines.RotatingWriter(path, max_bytes=50, max_files=1)
    for i in range(10):
        w.write([{"i": i}])
    assert [p.name for p in tmp_path.iterdir()] == ["f.log"]
    with path.open("a") as f:
        f.write('{"cut": \n[1, 2]\n')
    got = [o["i"] for o in jsonlines.read(path)]  # a cut line and a non-object are skipped
    assert got == list(range(10 - len(got), 10))
    assert 0 < len(got) < 10


def test_follower_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "flows.log"
    w = jsonlines.RotatingWriter(path, max_bytes=100, max_files=2)
    w.write([{"i": 0}])
    follow = jsonlines.Follower(path)  # from the end
    assert follow.poll() == []
    seen = []
    for i in range(1, 30):
        w.write([{"i": i}])
        if i % 4 == 0:
            seen += follow.poll()
    seen += follow.poll()
    assert [o["i"] for o in seen] == list(range(1, 30))
    with path.open("a") as f:
        f.write('{"i": 3')  # being written: not yet returned
    assert follow.poll() == []
    with path.open("a") as f:
        f.write("0}\n")
    assert follow.poll() == [{"i": 30}]
    assert [o["i"] for o in jsonlines.Follower(path, from_start=True).poll()][-1] == 30

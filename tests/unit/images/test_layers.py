"""calico_images.layers: a tree as a layer tar, and a tree's difference from a lower one."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path

from calico_images import layers


def _tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/config").write_text("v1\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"\x7fELF...")
    (root / "bin/tool").chmod(0o755)
    (root / "bin/alias").symlink_to("tool")
    os.link(root / "bin/tool", root / "bin/tool2")
    (root / "old").mkdir()
    (root / "old/inside").write_text("gone soon\n")
    (root / "tmp").mkdir()
    (root / "tmp/scratch").write_text("never in a layer\n")
    return root


def _members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_full_layer_holds_the_tree_sorted_with_links_and_empty_runtime_dirs(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path / "root")
    layer = layers.write_layer(root, tmp_path / "layer.tar")
    members = _members(layer.path)
    assert list(members) == sorted(members)
    assert members["bin/alias"].issym()
    assert members["bin/alias"].linkname == "tool"
    # one file body for two names: the second is a hard link to the first
    assert members["bin/tool"].isfile()
    assert members["bin/tool"].mode == 0o755
    assert members["bin/tool2"].islnk()
    assert members["bin/tool2"].linkname == "bin/tool"
    assert members["tmp"].isdir()
    assert "tmp/scratch" not in members
    assert members["etc/config"].uname == ""
    assert members["etc/config"].uid == os.getuid()
    assert layer.diff_id == "sha256:" + hashlib.sha256(layer.path.read_bytes()).hexdigest()
    assert layer.size == layer.path.stat().st_size
    assert layer.entries == len(members)


def test_same_tree_gives_the_same_layer_bytes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    a = layers.write_layer(root, tmp_path / "a.tar")
    b = layers.write_layer(root, tmp_path / "b.tar")
    assert a.diff_id == b.diff_id


def test_difference_has_new_and_changed_entries_and_whiteouts(tmp_path: Path) -> None:
    lower = _tree(tmp_path / "lower")
    upper = tmp_path / "upper"

    shutil.copytree(lower, upper, symlinks=True)
    shutil.rmtree(upper / "old")
    (upper / "etc/config").write_text("v2\n")  # changed content, new mtime
    (upper / "etc/new").write_text("added\n")
    (upper / "bin/alias").unlink()
    (upper / "bin/alias").symlink_to("tool2")  # same kind, new target
    layer = layers.write_layer(upper, tmp_path / "diff.tar", lower=lower)
    members = _members(layer.path)
    assert ".wh.old" in members
    assert "old/inside" not in members
    assert ".wh.inside" not in members
    assert {"etc/config", "etc/new", "bin/alias"} <= set(members)
    assert "bin/tool" not in members  # unchanged (copy2 kept size and mtime)
    assert "etc" not in members  # a directory is repeated only when its mode or owner changes
    assert layers.removed(upper, lower) == ["old"]


def test_files_lists_non_directories(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    layer = layers.write_layer(root, tmp_path / "layer.tar")
    assert layers.files(layer.path) == {"bin/alias", "bin/tool", "bin/tool2", "etc/config",
                                        "old/inside"}  # fmt: skip

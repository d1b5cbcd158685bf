"""A directory tree as an image layer: a tar whose entries are the tree, or its difference from a
lower tree (what an image's next layer holds: new and changed entries, whiteouts for removed ones).

Entries are written in sorted order with the tree's own modes, owners, mtimes and symlink targets
(mtimes are kept: Debian's and pip's ``.pyc`` files are checked against their sources' mtimes). Hard
links within the layer stay hard links. The contents of ``dev``, ``proc``, ``sys``, ``run`` and
``tmp`` are never written (a runtime mounts them); the directories are. Ownership is numeric only.

In a difference, an entry of the upper tree is written when the lower tree lacks it or it differs
in type, mode, owner, symlink target, or (regular files) size or mtime; directories are compared by
type, mode and owner only, so a directory whose contents changed is not repeated. A path of the
lower tree missing from the upper one becomes a whiteout ``.wh.<name>`` in its parent (OCI's and
Docker's convention); nothing below a removed directory is listed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RUNTIME_DIRS = frozenset({"dev", "proc", "sys", "run", "tmp"})  # written empty
WHITEOUT = ".wh."


@dataclass(frozen=True, slots=True)
class Layer:
    path: Path  # the layer tar
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    size: int  # bytes
    entries: int


def _walk(root: Path, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every entry below ``root``, parents first, names sorted."""
    base = root / rel if rel else root
    for name in sorted(os.listdir(base)):
        path = f"{rel}/{name}" if rel else name
        st = os.lstat(root / path)
        yield path, st
        if stat.S_ISDIR(st.st_mode) and not (not rel and name in RUNTIME_DIRS):
            yield from _walk(root, path)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def same_entry(upper: Path, u: os.stat_result, lower: Path, lo: os.stat_result) -> bool:
    """True when the lower tree's entry already is what the upper tree has (see module doc)."""
    if stat.S_IFMT(u.st_mode) != stat.S_IFMT(lo.st_mode):
        return False
    if (u.st_mode, u.st_uid, u.st_gid) != (lo.st_mode, lo.st_uid, lo.st_gid):
        return False
    if stat.S_ISDIR(u.st_mode):
        return True
    if stat.S_ISLNK(u.st_mode):
        return os.readlink(upper) == os.readlink(lower)
    if stat.S_ISREG(u.st_mode):
        return (u.st_size, u.st_mtime_ns) == (lo.st_size, lo.st_mtime_ns)
    return (u.st_rdev, u.st_mtime_ns) == (lo.st_rdev, lo.st_mtime_ns)


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    return info


class LayerWriter:
    """Writes one layer tar; remembers hard links by inode so a second name links to the first."""

    def __init__(self, tar: tarfile.TarFile, root: Path) -> None:
        self.tar, self.root, self.entries = tar, root, 0
        self._links: dict[tuple[int, int], str] = {}

    def add(self, rel: str, st: os.stat_result) -> None:
        info = _info(rel, st)
        path = self.root / rel
        mode = st.st_mode
        if stat.S_ISREG(mode) and st.st_nlink > 1 and (st.st_dev, st.st_ino) in self._links:
            info.type, info.linkname = tarfile.LNKTYPE, self._links[(st.st_dev, st.st_ino)]
            self.tar.addfile(info)
        elif stat.S_ISREG(mode):
            if st.st_nlink > 1:
                self._links[(st.st_dev, st.st_ino)] = rel
            info.size = st.st_size
            with open(path, "rb") as f:
                self.tar.addfile(info, f)
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            self.tar.addfile(info)
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            self.tar.addfile(info)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.addfile(info)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
            self.tar.addfile(info)
        else:  # sockets: nothing a layer can hold
            return
        self.entries += 1

    def whiteout(self, rel: str) -> None:
        parent, _, name = rel.rpartition("/")
        info = tarfile.TarInfo(f"{parent}/{WHITEOUT}{name}" if parent else WHITEOUT + name)
        info.mode, info.mtime = 0o644, 0
        self.tar.addfile(info)
        self.entries += 1


def write_layer(root: Path, out: Path, *, lower: Path | None = None) -> Layer:
    """``root`` as a layer tar at ``out`` (only its difference from ``lower`` when given)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        writer = LayerWriter(tar, root)
        for rel, st in _walk(root):
            if lower is not None:
                lo = _lstat(lower / rel)
                if lo is not None and same_entry(root / rel, st, lower / rel, lo):
                    continue
            writer.add(rel, st)
        if lower is not None:
            for rel in removed(root, lower):
                writer.whiteout(rel)
    tmp.replace(out)
    return Layer(out, "sha256:" + file_sha256(out), out.stat().st_size, writer.entries)


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def removed(upper: Path, lower: Path) -> list[str]:
    """Paths of ``lower`` missing from ``upper``, outermost only (nothing below a removed dir)."""
    out: list[str] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        base = lower / rel if rel else lower
        for name in sorted(os.listdir(base)):
            path = f"{rel}/{name}" if rel else name
            if not rel and name in RUNTIME_DIRS:
                continue
            u = _lstat(upper / path)
            if u is None:
                out.append(path)
            elif (
                stat.S_ISDIR(u.st_mode)
                and (lower / path).is_dir()
                and not (lower / path).is_symlink()
            ):
                pending.append(path)
    return sorted(out)


def files(layer: Path) -> set[str]:
    """The names of a layer tar's non-directory entries (to check two layers do not overlap)."""
    with tarfile.open(layer) as tar:
        return {m.name for m in tar.getmembers() if not m.isdir()}

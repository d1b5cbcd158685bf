"""JSON lines in a size-bounded, rotated file set: ``name``, ``name.1`` ... ``name.<N-1>``.

The writer appends whole lines (one ``write`` per batch, so a reader never sees half a line
unless the disk fills) and rotates before a batch would take the current file past
``max_bytes``: ``name.<N-2>`` becomes ``name.<N-1>`` (the oldest is dropped), ..., ``name``
becomes ``name.1``. At most ``max_files`` files and about ``max_files * max_bytes`` bytes exist.
The reader returns the objects of every file, oldest first, skipping lines it cannot decode (a
line cut by a crash). ``Follower`` tails the set across rotations.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def rotated(path: Path, max_files: int = 1000) -> list[Path]:
    """The rotated files of the set (not ``path`` itself), oldest first."""
    return [p for p in files(path, max_files) if p != path]


def files(path: Path, max_files: int = 1000) -> list[Path]:
    """The existing files of the set, oldest first."""
    found = [Path(f"{path}.{i}") for i in range(max_files - 1, 0, -1)] + [path]
    return [p for p in found if p.exists()]


class RotatingWriter:
    def __init__(self, path: Path, *, max_bytes: int, max_files: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.rotations = 0

    def write(self, objs: Iterable[dict[str, Any]]) -> int:
        """Append ``objs`` as lines; the bytes written."""
        data = "".join(json.dumps(o, separators=(",", ":"), sort_keys=True) + "\n" for o in objs)
        if not data:
            return 0
        raw = data.encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size and size + len(raw) > self.max_bytes:
            self._rotate()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, raw)
        finally:
            os.close(fd)
        return len(raw)

    def _rotate(self) -> None:
        self.rotations += 1
        if self.max_files <= 1:
            self.path.unlink(missing_ok=True)
            return
        Path(f"{self.path}.{self.max_files - 1}").unlink(missing_ok=True)
        for i in range(self.max_files - 2, 0, -1):
            src = Path(f"{self.path}.{i}")
            if src.exists():
                src.rename(f"{self.path}.{i + 1}")
        self.path.rename(f"{self.path}.1")


def _decode(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj


def read(path: Path) -> Iterator[dict[str, Any]]:
    """Every object of the set, oldest first."""
    for p in files(path):
        yield from read_file(p)


def read_file(path: Path) -> Iterator[dict[str, Any]]:
    """The objects of one file (none if it went: rotated away while we listed)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    yield from _decode(data.splitlines())


class Follower:
    """New lines of ``path`` since the last ``poll`` (from its end at creation), across rotations
    (a new inode means the file was rotated: the rest of the old one, now ``<path>.1``, is read
    first). A line still being written (no newline yet) waits for the next poll."""

    def __init__(self, path: Path, *, from_start: bool = False) -> None:
        self.path = path
        self._ino, self._offset = self._stat()
        if from_start:
            self._offset = 0

    def _stat(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return 0, 0
        return st.st_ino, st.st_size

    def poll(self) -> list[dict[str, Any]]:
        ino, _ = self._stat()
        out: list[dict[str, Any]] = []
        if ino != self._ino:
            if self._ino:
                out += self._read(Path(f"{self.path}.1"), self._offset)[0]
            self._ino, self._offset = ino, 0
        objs, consumed = self._read(self.path, self._offset)
        self._offset += consumed
        return out + objs

    @staticmethod
    def _read(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
        try:
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return [], 0
        end = data.rfind(b"\n") + 1
        return list(_decode(data[:end].splitlines())), end

"""What an ELF file needs to run: its ``DT_NEEDED`` libraries and its program interpreter.

Enough of the ELF format (64-bit little-endian, x86-64's) to find a program's or library's shared
library closure inside a root filesystem that is not the running one: the section headers give the
``.dynamic`` section, whose ``DT_NEEDED`` entries are offsets into the string table its ``sh_link``
names; ``PT_INTERP`` holds the dynamic loader's path. :func:`closure` resolves names the way the
loader would in a Debian tree (its multiarch and plain library directories) and follows them.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
SHT_DYNAMIC = 6
PT_INTERP = 3
DT_NULL, DT_NEEDED = 0, 1
LIB_DIRS = (
    "usr/lib/x86_64-linux-gnu",
    "lib/x86_64-linux-gnu",
    "usr/lib",
    "lib",
    "usr/lib64",
    "lib64",
)


class ElfError(ValueError):
    pass


def _header(data: bytes, path: Path) -> tuple[int, int, int, int, int, int]:
    """(phoff, shoff, phentsize, phnum, shentsize, shnum) of an ELF64 LE file."""
    if data[:4] != ELF_MAGIC:
        raise ElfError(f"{path}: not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ElfError(f"{path}: not a 64-bit little-endian ELF file")
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    return phoff, shoff, phentsize, phnum, shentsize, shnum


def needed(path: Path) -> list[str]:
    """The ``DT_NEEDED`` names of ``path`` in order ([] for a static file)."""
    data = path.read_bytes()
    _, shoff, _, _, shentsize, shnum = _header(data, path)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if sh_type != SHT_DYNAMIC:
            continue
        str_off = sections[link][4]
        out = []
        for pos in range(offset, offset + size, entsize or 16):
            tag, value = struct.unpack_from("<qQ", data, pos)
            if tag == DT_NULL:
                break
            if tag == DT_NEEDED:
                end = data.index(b"\0", str_off + value)
                out.append(data[str_off + value : end].decode())
        return out
    return []


def interpreter(path: Path) -> str | None:
    """The ``PT_INTERP`` path (the dynamic loader), or None."""
    data = path.read_bytes()
    phoff, _, phentsize, phnum, _, _ = _header(data, path)
    for i in range(phnum):
        p_type, _flags, offset, _va, _pa, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == PT_INTERP:
            return data[offset : offset + filesz].rstrip(b"\0").decode()
    return None


def resolve(root: Path, name: str, *, dirs: Sequence[str] = LIB_DIRS) -> Path:
    """The file ``name`` is found as under ``root`` (symlinks followed inside the tree)."""
    for d in dirs:
        candidate = root / d / name
        if candidate.is_symlink() or candidate.exists():  # (an absolute link: the tree's /)
            found = inside(root, candidate)
            if found.is_file():
                return found
    raise ElfError(f"{name}: not found under {root} ({', '.join(dirs)})")


def inside(root: Path, path: Path) -> Path:
    """``path`` with every symlink resolved as if ``root`` were ``/`` (as under chroot: ``..``
    stops at ``root``, absolute targets start again from it), so nothing outside is read."""
    parts = list(path.relative_to(root).parts)
    current, hops = root, 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        step = current / part
        if step.is_symlink():
            hops += 1
            if hops > 40:
                raise ElfError(f"{path}: too many levels of symbolic links")
            target = Path(os.readlink(step))
            if target.is_absolute():
                current, parts = root, [*target.parts[1:], *parts]
            else:
                parts = [*target.parts, *parts]
            continue
        current = step
    return current


def closure(root: Path, files: Iterable[Path]) -> dict[str, Path]:
    """Every library ``files`` need, transitively: soname -> its file under ``root``."""
    out: dict[str, Path] = {}
    todo = list(files)
    while todo:
        for name in needed(todo.pop()):
            if name not in out:
                out[name] = resolve(root, name)
                todo.append(out[name])
    return out

"""calico_images.elf: DT_NEEDED, PT_INTERP and library closures, read from real binaries."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from calico_images import elf


def _binary() -> Path:
    found = shutil.which("ls")
    assert found is not None
    return Path(found).resolve()


def test_needed_and_interpreter_of_a_real_program() -> None:
    ls = _binary()
    assert "libc.so.6" in elf.needed(ls)
    assert elf.interpreter(ls) == "/lib64/ld-linux-x86-64.so.2"


def test_closure_resolves_inside_the_given_root() -> None:
    libs = elf.closure(Path("/"), [_binary()])
    assert "libc.so.6" in libs
    assert all(path.is_file() for path in libs.values())
    # libc needs the loader only through PT_INTERP, never a DT_NEEDED of its own program
    assert all(not name.startswith("ld-linux") or name in elf.needed(libs["libc.so.6"])
               for name in libs)  # fmt: skip


def test_inside_keeps_absolute_links_in_the_tree(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/libx.so.1.2").write_text("x")
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "usr/lib/libx.so.1").symlink_to("/lib/libx.so.1.2")  # absolute: the tree's /
    assert elf.resolve(tmp_path, "libx.so.1") == tmp_path / "usr/lib/libx.so.1.2"
    # as under chroot: ".." stops at the root, an absolute link starts from it again
    (tmp_path / "usr/lib/escape").symlink_to("../../../../etc")
    assert elf.inside(tmp_path, tmp_path / "usr/lib/escape") == tmp_path / "etc"
    (tmp_path / "usr/lib/host").symlink_to("/usr/lib/libx.so.1.2")
    assert elf.inside(tmp_path, tmp_path / "usr/lib/host") == tmp_path / "usr/lib/libx.so.1.2"


def test_errors_name_the_file(tmp_path: Path) -> None:
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    with pytest.raises(elf.ElfError, match="not an ELF file"):
        elf.needed(text)
    with pytest.raises(elf.ElfError, match=r"libmissing\.so\.9: not found"):
        elf.resolve(tmp_path, "libmissing.so.9")

"""Debian bookworm root filesystems for the images: made, extended and trimmed as directory trees.

- :func:`mmdebstrap` makes a tree from the Debian archive, fed the machine's own Debian apt sources
  (so a mirror or snapshot the machine uses is used here too); documentation, manual pages, info
  pages and translations are never unpacked (dpkg ``path-exclude``, kept in the tree's dpkg config
  so later installs honour it too; ``copyright`` files stay).
- :func:`chroot` runs a command inside a tree, in a private mount namespace with its own ``/proc``
  that vanishes with it (nothing is mounted on the machine). It shares the machine's network
  namespace, as ``apt-get`` on the machine would: it only downloads.
- :func:`apt_install` and :func:`pip_install` add Debian packages and wheels to a tree.
- :func:`trim` removes what an image never runs: the package manager (apt and its libraries; dpkg's
  per-package file lists, its status file stays for inventory tools), perl (only maintainer scripts
  use it), glibc's iconv modules, caches, logs, and the machine-specific files mmdebstrap copied in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from calico.lib import cmd

SUITE = "bookworm"
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/merged-usr"  # merged /usr without usrmerge (+perl)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TRIM = (
    # package management
    "etc/apt", "usr/lib/apt", "var/lib/apt", "var/cache/apt", "usr/bin/apt*",
    "usr/lib/x86_64-linux-gnu/libapt-*", "var/lib/dpkg/info", "var/lib/dpkg/*-old",
    "usr/share/bug", "var/cache/debconf/*", "etc/cron.daily",
    # perl (maintainer scripts only) and glibc's iconv modules (nothing here converts charsets)
    "usr/bin/perl*", "usr/lib/x86_64-linux-gnu/perl-base", "usr/share/perl5",
    "usr/lib/x86_64-linux-gnu/gconv",
    # caches, logs, leftovers
    "var/log/*", "var/cache/ldconfig/*", "root/.cache", "usr/share/doc/*/changelog*",
)  # fmt: skip
# files mmdebstrap copied from the machine: a runtime provides its own
MACHINE_FILES = ("etc/resolv.conf", "etc/hostname")


class BuildError(RuntimeError):
    pass


def run(argv: Sequence[str], *, log: Path, stdin: str | None = None) -> None:
    """Run ``argv``, its output appended to ``log``; BuildError with the log's tail on failure."""
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = cmd.run_process(
            list(argv), input=stdin, stdout=out, stderr=subprocess.STDOUT, text=True, check=False
        )
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
        raise BuildError(f"{argv[0]} failed (exit {proc.returncode}); from {log}:\n{tail}")


def debian_sources(etc: Path = Path("/etc/apt")) -> str:
    """The machine's Debian apt entries (deb822 signed by Debian's keyring, else one-line)."""
    blocks = []
    for f in sorted((etc / "sources.list.d").glob("*.sources")):
        text = f.read_text()
        if "debian-archive-keyring" in text:
            blocks.append(text.strip())
    if blocks:
        return "\n\n".join(blocks) + "\n"
    lines = []
    if (etc / "sources.list").exists():
        for line in (etc / "sources.list").read_text().splitlines():
            if line.startswith("deb ") and "debian" in line:
                lines.append(line)
    if not lines:
        raise BuildError(f"no Debian entry in {etc}/sources.list or {etc}/sources.list.d/*.sources")
    return "\n".join(lines) + "\n"


def mmdebstrap(dest: Path, *, packages: Sequence[str], sources: str, log: Path) -> None:
    """A fresh tree at ``dest``: Debian's Essential set, apt, and ``packages``."""
    if dest.exists():
        shutil.rmtree(dest)
    argv = ["mmdebstrap", "--variant=apt", f"--hook-dir={MERGED_USR_HOOK}"]
    argv += [f"--dpkgopt={opt}" for opt in DPKG_EXCLUDES]
    argv += [f"--include={','.join(packages)}", SUITE, str(dest), "-"]
    run(argv, log=log, stdin=sources)


def chroot(
    root: Path, argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None
) -> None:
    """Run ``argv`` inside ``root`` (private mount namespace, own /proc; see module doc)."""
    script = 'root=$1; shift; mount -t proc proc "$root/proc" && exec chroot "$root" "$@"'
    envv = [f"{k}={v}" for k, v in {"PATH": PATH, "HOME": "/root", **(env or {})}.items()]
    run(["unshare", "--mount", "--fork", "env", "-i", *envv, "sh", "-c", script, "sh", str(root),
         *argv], log=log)  # fmt: skip


def apt_install(root: Path, packages: Sequence[str], *, log: Path) -> None:
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    chroot(root, ["apt-get", "update", "-q"], log=log, env=env)
    chroot(root, ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
           log=log, env=env)  # fmt: skip
    chroot(root, ["apt-get", "clean"], log=log)


def pip_install(root: Path, *, wheels: Path, pip_src: Path, requirement: str, log: Path) -> None:
    """Install ``requirement`` from the wheel dir only, with the tree's own python3.

    pip itself is not installed: the build's pip package is put on PYTHONPATH for the one run, so
    scripts get ``#!/usr/bin/python3`` and files land where Debian's python3 looks
    (``/usr/local/lib/python3.X/dist-packages``), compiled to ``.pyc`` by that interpreter.
    """
    stage = root / "tmp/calico-build"
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(wheels, stage / "wheels")
    shutil.copytree(pip_src, stage / "pip/pip")
    try:
        chroot(root, ["python3", "-m", "pip", "install", "--no-index", "--no-cache-dir",
                      "--disable-pip-version-check", "--root-user-action=ignore",
                      "--no-warn-script-location", "--break-system-packages",
                      "--find-links", "/tmp/calico-build/wheels", requirement],
               log=log, env={"PYTHONPATH": "/tmp/calico-build/pip"})  # fmt: skip
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _remove(path: Path) -> int:
    size = tree_size(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return size


def trim(root: Path) -> int:
    """Remove :data:`TRIM` and empty the machine's files; bytes removed. Idempotent."""
    removed = 0
    for pattern in TRIM:
        for path in sorted(root.glob(pattern)):
            removed += _remove(path)
    for name in MACHINE_FILES:  # emptied once: a second trim leaves them (and their mtime) alone
        path = root / name
        if path.is_symlink() or not path.exists() or path.stat().st_size:
            path.unlink(missing_ok=True)
            path.write_text("")
    for name in ("tmp", "run"):
        for path in sorted((root / name).iterdir()):
            removed += _remove(path)
    return removed


def tree_size(path: Path) -> int:
    """Bytes of regular files at or below ``path`` (hard links counted once)."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size if path.is_file() else 0
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size if os.path.isfile(os.path.join(dirpath, name)) else 0
    return total


def copy_tree(src: Path, dest: Path) -> None:
    """``cp -a``: owners, modes, mtimes, hard links and device nodes kept."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd.run_process(["cp", "-a", str(src), str(dest)], check=True)

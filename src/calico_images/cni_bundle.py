"""The CNI image's payload: what install-cni copies into a host's CNI bin dir.

The ``calico`` and ``calico-ipam`` plugins run on the host, outside any container, and in Python
whenever the node's CNI server cannot take a call. A host may have no Python, or another one, so
the image carries its own: Debian's python3.11 with the standard library (less what a plugin never
imports), the shared libraries they need (the C library and its loader included, so the host's
libc version does not matter), and the ``calico`` package in the standard library directory::

    <payload>/.calico-runtime/bin/python3
    <payload>/.calico-runtime/lib/ld-linux-x86-64.so.2, libc.so.6, libssl.so.3, ...
    <payload>/.calico-runtime/lib/python3.11/...          (lib-dynload included; calico/ inside)
    <payload>/calico                                       the compiled launcher (when cc built it)
    <payload>/loopback, portmap                            Debian's containernetworking-plugins

It runs from anywhere as ``<rt>/lib/ld-linux-x86-64.so.2 --library-path <rt>/lib <rt>/bin/python3
-IS``: Python finds its standard library from its own path. :func:`check` runs exactly that on the
build host before the image is written.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from calico.lib import cmd
from calico_images import elf

PY_VERSION = "3.11"
RUNTIME_DIR = ".calico-runtime"
LOADER = "ld-linux-x86-64.so.2"
LAUNCHER_FOR = ".launcher-for"  # calico.cni.install_cni.LAUNCHER_FOR
STDLIB = f"usr/lib/python{PY_VERSION}"
# standard library parts no plugin imports (and the libraries only they would pull in)
DROP_STDLIB = frozenset(
    {"test", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "pydoc_data", "unittest",
     "sqlite3", "dbm", "curses", "venv", "distutils", "site-packages", "dist-packages"}
)  # fmt: skip
DROP_EXTENSIONS = (
    "_curses", "readline", "_dbm", "_gdbm", "_sqlite3", "nis", "_crypt", "_ctypes_test", "_test",
    "_xxtestfuzz", "xxlimited", "ossaudiodev", "_xxsubinterpreters",
)  # fmt: skip
EXTRA_PLUGINS = ("loopback", "portmap")
# what a plugin's fallback path imports: the check runs it in the bundle alone
CHECK_IMPORTS = (
    "import calico.cni.plugin, calico.cni.ipam_plugin, calico.cni.install_cni, ssl, ctypes"
)


def _ignore_stdlib(directory: str, names: list[str]) -> set[str]:
    top = Path(directory).name == f"python{PY_VERSION}"
    dropped = {n for n in names if top and n in DROP_STDLIB}
    if Path(directory).name == "lib-dynload":
        dropped |= {n for n in names if n.startswith(DROP_EXTENSIONS)}
    return dropped | {n for n in names if n.startswith("config-")}


def build_runtime(app_root: Path, dest: Path, *, site_packages: str) -> list[str]:
    """The Python runtime from the tree ``app_root`` into ``dest``; the library sonames copied.

    ``site_packages`` is where pip put the ``calico`` package in that tree.
    """
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "bin").mkdir(parents=True)
    python = app_root / f"usr/bin/python{PY_VERSION}"
    shutil.copy2(python, dest / "bin/python3")
    stdlib = dest / "lib" / f"python{PY_VERSION}"
    shutil.copytree(app_root / STDLIB, stdlib, symlinks=True, ignore=_ignore_stdlib)
    shutil.copytree(app_root / site_packages / "calico", stdlib / "calico", symlinks=False)
    binaries = [python, *sorted((stdlib / "lib-dynload").glob("*.so"))]
    libs = elf.closure(app_root, binaries)
    loader = elf.interpreter(python)
    if loader is None:
        raise elf.ElfError(f"{python}: no program interpreter")
    libs[LOADER] = elf.inside(app_root, app_root / loader.lstrip("/"))
    for soname, path in sorted(libs.items()):
        shutil.copy2(path, dest / "lib" / soname)
    return sorted(libs)


def check(runtime: Path) -> None:
    """Run the bundled interpreter alone (its loader, its libraries) and import the plugins."""
    argv = [
        str(runtime / "lib" / LOADER), "--library-path", str(runtime / "lib"),
        str(runtime / "bin/python3"), "-IS", "-c", CHECK_IMPORTS,
    ]  # fmt: skip
    proc = cmd.run_process(argv, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"the CNI runtime in {runtime} does not run: {proc.stderr.strip()}")


def add_plugins(payload: Path, *, plugin_dir: Path = Path("/usr/lib/cni")) -> list[str]:
    """Copy Debian's loopback and portmap (from containernetworking-plugins) into ``payload``."""
    copied = []
    for name in EXTRA_PLUGINS:
        src = plugin_dir / name
        if not src.exists():
            raise FileNotFoundError(f"{src}: install containernetworking-plugins (make install)")
        shutil.copy2(src, payload / name)
        copied.append(name)
    return copied


def compile_launcher(payload: Path, *, bin_dir: str, log: Path) -> bool:
    """The compiled launcher (install-cni puts it in as ``calico`` and ``calico-ipam``), built for
    ``bin_dir`` and the default socket (recorded in ``.launcher-for``). Static, so any host's libc
    will do. False (and nothing written) without a C compiler or when the build fails.
    """
    from calico.cni import fastpath, install  # the launcher's source and its build flags

    cc = install.compiler()
    if cc is None:
        return False
    out = payload / "calico"
    argv = [
        cc, *install.CFLAGS, "-static",
        f"-DCALICO_SOCKET={install.c_string(fastpath.DEFAULT_SOCKET)}",
        f"-DCALICO_PY_DIR={install.c_string(bin_dir)}", "-o", str(out), str(install.LAUNCHER_C),
    ]  # fmt: skip
    with open(log, "a") as f:
        proc = cmd.run_process(argv, stdout=f, stderr=subprocess.STDOUT, check=False, timeout=120)
    if proc.returncode != 0:
        out.unlink(missing_ok=True)
        return False
    (payload / LAUNCHER_FOR).write_text(f"{bin_dir}\n{fastpath.DEFAULT_SOCKET}\n")
    return True

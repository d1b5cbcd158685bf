"""Install the ``calico`` and ``calico-ipam`` executables into a CNI bin dir; write a CNI config.

A runtime execs plugins from CNI_BIN_DIR. With a C compiler (``cc`` or ``gcc``) each plugin is
the compiled launcher (``launcher.c``, built once per install with the socket template and the bin
dir baked in): it hands the call to the CNI server and, on any trouble, execs the Python launcher
``.calico-py`` / ``.calico-ipam-py`` next to it with the same argv, environment and stdin bytes.
Without a compiler (or ``compiled=False``, or no socket) the plugins are the Python launchers
themselves: scripts whose shebang is this interpreter with ``-IS`` (isolated, no site: the
fastest start; the plugin needs only the stdlib and the ``calico`` package, whose directory the
launcher puts on ``sys.path``) and whose first step is :mod:`calico.cni.fastpath` (built-in
modules only, until the CNI server fails to answer)::

    python -m calico.cni.install --bin-dir /opt/cni/bin [--conf /etc/cni/net.d/10-calico.conf ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import calico
from calico.cni import fastpath
from calico.lib import cmd

PLUGINS = ("calico", "calico-ipam")
DEFAULT_SOCKET = fastpath.DEFAULT_SOCKET
LAUNCHER_C = Path(__file__).with_name("launcher.c")
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Werror")

logger = logging.getLogger(__name__)


def launcher(plugin: str, *, python: str | None = None, socket_path: str = DEFAULT_SOCKET) -> str:
    src = str(Path(calico.__file__).resolve().parent.parent)
    return (
        f"#!{python or sys.executable} -IS\n"
        f"import sys; sys.path.insert(0, {src!r})\n"
        f"from calico.cni.fastpath import main; sys.exit(main({socket_path!r}, {plugin!r}))\n"
    )


def fallback_name(plugin: str) -> str:
    """The Python launcher the compiled ``plugin`` execs when the server cannot serve a call."""
    return f".{plugin}-py"


def compiler() -> str | None:
    for name in ("cc", "gcc"):
        path = shutil.which(name)
        if path:
            return path
    return None


def c_string(text: str) -> str:
    """``text`` as a C string literal (for ``-D``): octal escapes for anything but plain ASCII."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        out.append(ch if 0x20 <= byte < 0x7F and ch not in '"\\?' else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def compile_launcher(out: Path, *, socket_path: str, py_dir: str, cc: str) -> None:
    """Build ``launcher.c`` into ``out``; raises :class:`calico.lib.cmd.CmdError` on failure."""
    cmd.run(
        [cc, *CFLAGS, f"-DCALICO_SOCKET={c_string(socket_path)}",
         f"-DCALICO_PY_DIR={c_string(py_dir)}", "-o", str(out), str(LAUNCHER_C)],
        timeout=120,
    )  # fmt: skip


def launcher_kind(path: str | os.PathLike[str]) -> str:
    """``"compiled"`` or ``"python"``: which launcher is installed at ``path``."""
    with open(path, "rb") as f:
        return "compiled" if f.read(4) == b"\x7fELF" else "python"


def _put(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    tmp.replace(path)  # atomic: a runtime never execs a half-written file


def install_binaries(
    bin_dir: str | os.PathLike[str],
    *,
    python: str | None = None,
    socket_path: str = DEFAULT_SOCKET,
    compiled: bool = True,
) -> list[Path]:
    """Write the ``calico`` and ``calico-ipam`` launchers into ``bin_dir``; their paths.

    A launcher hands each call to the CNI server at ``socket_path`` when one listens there (see
    :mod:`calico.cni.server`) and runs it in-process otherwise (``socket_path=""``: always). It
    is the compiled launcher when a C compiler builds it (falling back to ``.calico-py`` /
    ``.calico-ipam-py``, also written here), else the Python one; ``compiled=False`` forces the
    Python launcher, as does ``socket_path=""`` (the compiled one would only exec it).
    """
    d = Path(bin_dir)
    d.mkdir(parents=True, exist_ok=True)
    binary = _build(d, socket_path) if compiled and socket_path else None
    out = []
    for name in PLUGINS:
        path = d / name
        if binary is None:
            _put(path, launcher(name, python=python, socket_path=socket_path).encode())
        else:  # its fallback first: the compiled launcher may be exec'd the moment it lands
            script = launcher(name, python=python, socket_path="")  # no second server try
            _put(d / fallback_name(name), script.encode())
            _put(path, binary)
        out.append(path)
    kind = "Python" if binary is None else "compiled"
    logger.info("installed the %s CNI launchers %s in %s", kind, ", ".join(PLUGINS), d)
    return out


def _build(bin_dir: Path, socket_path: str) -> bytes | None:
    """The compiled launcher for ``bin_dir``, or None (logged) when it cannot be built."""
    cc = compiler()
    if cc is None:
        logger.info("no C compiler (cc, gcc): installing the Python CNI launchers")
        return None
    with tempfile.TemporaryDirectory(prefix="calico-launcher-") as tmp:
        out = Path(tmp) / "launcher"
        try:
            compile_launcher(out, socket_path=socket_path, py_dir=str(bin_dir.resolve()), cc=cc)
            return out.read_bytes()
        except (cmd.CmdError, OSError, subprocess.TimeoutExpired) as e:
            logger.warning("building %s failed, installing the Python CNI launchers: %s",
                           LAUNCHER_C, e)  # fmt: skip
            return None


def conf(
    *,
    name: str = "calico-k8s-network",
    etcd_endpoints: str,
    cni_version: str = "0.3.1",
    nodename: str | None = None,
    mtu: int = 1500,
    log_level: str = "info",
    kubeconfig: str | None = None,
    ipv4_pools: list[str] | None = None,
    assign_ipv6: bool = False,
) -> dict[str, Any]:
    """The integration guide's network config (``policy``/``kubernetes`` given a kubeconfig)."""
    ipam: dict[str, Any] = {"type": "calico-ipam"}
    if ipv4_pools:
        ipam["ipv4_pools"] = ipv4_pools
    if assign_ipv6:
        ipam["assign_ipv6"] = "true"
    out: dict[str, Any] = {
        "name": name,
        "cniVersion": cni_version,
        "type": "calico",
        "etcd_endpoints": etcd_endpoints,
        "log_level": log_level,
        "mtu": mtu,
        "ipam": ipam,
    }
    if nodename:
        out["nodename"] = nodename
    if kubeconfig:
        out["policy"] = {"type": "k8s"}
        out["kubernetes"] = {"kubeconfig": kubeconfig}
    return out


def write_conf(path: str | os.PathLike[str], **kwargs: Any) -> dict[str, Any]:
    """Write :func:`conf` (keyword arguments as there) to ``path``; the config written."""
    data = conf(**kwargs)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calico.cni.install", description=__doc__)
    ap.add_argument("--bin-dir", default="/opt/cni/bin")
    ap.add_argument(
        "--socket",
        default=DEFAULT_SOCKET,
        help="CNI server socket the launchers try first ('' = never)",
    )
    ap.add_argument(
        "--python-launcher",
        action="store_true",
        help="install the Python launchers even when a C compiler could build the compiled one",
    )
    ap.add_argument("--conf", help="also write a network config here (e.g. 10-calico.conf)")
    ap.add_argument("--etcd-endpoints", default="http://127.0.0.1:2379")
    ap.add_argument("--nodename")
    ap.add_argument("--kubeconfig")
    ap.add_argument("--mtu", type=int, default=1500)
    args = ap.parse_args(argv)
    paths = install_binaries(
        args.bin_dir, socket_path=args.socket, compiled=not args.python_launcher
    )
    for path in paths:
        print(f"installed {path} ({launcher_kind(path)} launcher)")
    if args.conf:
        write_conf(
            args.conf,
            etcd_endpoints=args.etcd_endpoints,
            nodename=args.nodename,
            kubeconfig=args.kubeconfig,
            mtu=args.mtu,
        )
        print(f"wrote {args.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

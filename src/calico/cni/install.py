"""Install the ``calico`` and ``calico-ipam`` executables into a CNI bin dir; write a CNI config.

A runtime execs plugins from CNI_BIN_DIR, so each is a small launcher script whose shebang is
this interpreter with ``-IS`` (isolated, no site: the fastest start; the plugin needs only the
stdlib and the ``calico`` package, whose directory the launcher puts on ``sys.path``) and whose
first step is :mod:`calico.cni.fastpath` (built-in modules only, until the CNI server fails to
answer)::

    python -m calico.cni.install --bin-dir /opt/cni/bin [--conf /etc/cni/net.d/10-calico.conf ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import calico
from calico.cni import fastpath

PLUGINS = ("calico", "calico-ipam")
DEFAULT_SOCKET = fastpath.DEFAULT_SOCKET


def launcher(plugin: str, *, python: str | None = None, socket_path: str = DEFAULT_SOCKET) -> str:
    src = str(Path(calico.__file__).resolve().parent.parent)
    return (
        f"#!{python or sys.executable} -IS\n"
        f"import sys; sys.path.insert(0, {src!r})\n"
        f"from calico.cni.fastpath import main; sys.exit(main({socket_path!r}, {plugin!r}))\n"
    )


def install_binaries(
    bin_dir: str | os.PathLike[str],
    *,
    python: str | None = None,
    socket_path: str = DEFAULT_SOCKET,
) -> list[Path]:
    """Write the ``calico`` and ``calico-ipam`` launchers into ``bin_dir``; their paths.

    A launcher hands each call to the CNI server at ``socket_path`` when one listens there (see
    :mod:`calico.cni.server`) and runs it in-process otherwise (``socket_path=""``: always).
    """
    out = []
    d = Path(bin_dir)
    d.mkdir(parents=True, exist_ok=True)
    for name in PLUGINS:
        path = d / name
        tmp = d / f".{name}.tmp"
        tmp.write_text(launcher(name, python=python, socket_path=socket_path))
        tmp.chmod(0o755)
        tmp.replace(path)  # atomic: a runtime never execs a half-written file
        out.append(path)
    return out


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
    ap.add_argument("--conf", help="also write a network config here (e.g. 10-calico.conf)")
    ap.add_argument("--etcd-endpoints", default="http://127.0.0.1:2379")
    ap.add_argument("--nodename")
    ap.add_argument("--kubeconfig")
    ap.add_argument("--mtu", type=int, default=1500)
    args = ap.parse_args(argv)
    for path in install_binaries(args.bin_dir, socket_path=args.socket):
        print(f"installed {path}")
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

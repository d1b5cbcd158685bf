"""install-cni: put the CNI plugins, their kubeconfig and the network config on the host.

The ``calico-py/cni`` image's entry point, run as the ``install-cni`` init container of the
calico-node DaemonSet (``manifests/calico.yaml``), as Calico's install-cni is. The host's CNI
directories are mounted under ``--host-root`` (default ``/host``); paths written into files are the
host's own. Environment (Calico's names)::

    CNI_NETWORK_CONFIG  the network config template (ConfigMap cni_network_config; default below)
    CNI_CONF_NAME       its file name in CNI_NET_DIR (10-calico.conflist)
    CNI_NET_DIR         the host's CNI config dir (/etc/cni/net.d)
    CNI_BIN_DIR         the host's CNI bin dir (/opt/cni/bin)
    CNI_MTU, KUBERNETES_NODE_NAME, ETCD_ENDPOINTS, LOG_LEVEL        template values
    ETCD_CA_CERT_FILE, ETCD_CERT_FILE, ETCD_KEY_FILE   files in this container (the etcd Secret);
                        copied to <CNI_NET_DIR>/calico-tls/etcd-{ca,cert,key}
    KUBERNETES_SERVICE_HOST/PORT (+ the service account's token and ca.crt): the plugin's
                        kubeconfig <CNI_NET_DIR>/calico-kubeconfig; SKIP_TLS_VERIFY
    CALICO_CNI_SOCKET   the CNI server's socket template (default: the launchers' default)
    SLEEP               true: stay running after installing (for a plain container, not an init one)

The template's ``__PLACEHOLDER__`` words are Calico's (``__ETCD_ENDPOINTS__``, ``__CNI_MTU__``,
``__KUBECONFIG_FILEPATH__``...). One this installer does not know, or a result that is not JSON, is
an error naming it, and nothing is written then. Order: the Python runtime (in a new directory
named by its content digest), the launchers (each replaced by rename), Debian's loopback and
portmap, older runtimes removed, the TLS files, the kubeconfig, and last the network config, so a
runtime that sees the config finds everything it names.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from calico.cni import fastpath

PAYLOAD = Path("/opt/calico-py/cni")  # the image's copy of what goes into the bin dir
RUNTIME = ".calico-runtime"
LOADER = "ld-linux-x86-64.so.2"
LAUNCHER_FOR = ".launcher-for"  # in PAYLOAD: "<bin dir>\n<socket>" the compiled launcher bakes in
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PLUGINS = ("calico", "calico-ipam")
PLACEHOLDER = re.compile(r"__[A-Z][A-Z0-9_]*__")
TLS_FILES = {
    "ETCD_CA_CERT_FILE": "etcd-ca",
    "ETCD_CERT_FILE": "etcd-cert",
    "ETCD_KEY_FILE": "etcd-key",
}
DEFAULT_TEMPLATE = """{
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "calico",
      "log_level": "__LOG_LEVEL__",
      "etcd_endpoints": "__ETCD_ENDPOINTS__",
      "etcd_key_file": "__ETCD_KEY_FILE__",
      "etcd_cert_file": "__ETCD_CERT_FILE__",
      "etcd_ca_cert_file": "__ETCD_CA_CERT_FILE__",
      "nodename": "__KUBERNETES_NODE_NAME__",
      "mtu": __CNI_MTU__,
      "ipam": {"type": "calico-ipam"},
      "policy": {"type": "k8s"},
      "kubernetes": {"kubeconfig": "__KUBECONFIG_FILEPATH__"}
    },
    {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}
  ]
}
"""


class InstallError(ValueError):
    """Bad configuration (the message names the variable or placeholder); nothing was written."""


def _put(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` by rename: a runtime never reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


def runtime_digest(runtime: Path) -> str:
    """12 hex digits naming this runtime's content (paths, sizes, mtimes, link targets)."""
    sha = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(runtime):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            extra = os.readlink(path) if path.is_symlink() else f"{st.st_size}:{st.st_mtime_ns}"
            sha.update(f"{path.relative_to(runtime)}\0{extra}\n".encode())
    return sha.hexdigest()[:12]


def install_runtime(payload: Path, bin_dir: Path) -> str:
    """Copy the payload's runtime into ``bin_dir`` once per content; its directory name."""
    name = f"{RUNTIME}-{runtime_digest(payload / RUNTIME)}"
    final = bin_dir / name
    if not (final / ".complete").exists():
        tmp = bin_dir / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(payload / RUNTIME, tmp, symlinks=True)
        (tmp / ".complete").write_text("")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return name


def python_launcher(runtime: str, plugin: str, socket_path: str) -> str:
    """A script running ``plugin`` with the bundled runtime at the host path ``runtime``."""
    q = shlex.quote
    code = (
        "import sys\nfrom calico.cni.fastpath import main\nsys.exit(main(sys.argv[1], sys.argv[2]))"
    )
    return (
        "#!/bin/sh\n"
        f"# {plugin} CNI plugin: Python launcher written by calico-py install-cni\n"
        f"rt={q(runtime)}\n"
        f'exec "$rt/lib/{LOADER}" --library-path "$rt/lib" "$rt/bin/python3" -IS -c {q(code)} '
        f"{q(socket_path)} {q(plugin)}\n"
    )


def compiled_fits(payload: Path, bin_dir: str, socket_path: str) -> bool:
    """True when the payload's compiled launcher was built for this bin dir and socket."""
    try:
        baked = (payload / LAUNCHER_FOR).read_text().splitlines()
    except OSError:
        return False
    return baked == [bin_dir, socket_path] and (payload / PLUGINS[0]).exists()


def install_plugins(payload: Path, dest: Path, *, host_bin_dir: str, socket_path: str) -> list[str]:
    """Runtime, launchers and Debian's plugins into ``dest`` (the host's bin dir, mounted)."""
    name = install_runtime(payload, dest)
    runtime = f"{host_bin_dir.rstrip('/')}/{name}"
    compiled = compiled_fits(payload, host_bin_dir, socket_path)
    notes = [f"{name}/ (the plugins' Python runtime)"]
    for plugin in PLUGINS:
        fallback = python_launcher(runtime, plugin, "")  # in-process: no second server try
        _put(dest / f".{plugin}-py", fallback.encode(), 0o755)
        if compiled:  # one binary under both names: it tells which it is from its name
            _put(dest / plugin, (payload / PLUGINS[0]).read_bytes(), 0o755)
        else:
            _put(dest / plugin, python_launcher(runtime, plugin, socket_path).encode(), 0o755)
        notes.append(f"{plugin} ({'compiled' if compiled else 'Python'} launcher)")
    for extra in sorted(
        p.name for p in payload.iterdir() if p.is_file() and not p.name.startswith(".")
    ):
        if extra not in PLUGINS:
            _put(dest / extra, (payload / extra).read_bytes(), 0o755)
            notes.append(extra)
    for old in dest.glob(f"{RUNTIME}-*"):
        if old.name != name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return notes


def kubeconfig(env: Mapping[str, str], sa_dir: Path) -> str | None:
    """The plugin's kubeconfig from the service account (None outside a pod)."""
    host, token_file = env.get("KUBERNETES_SERVICE_HOST"), sa_dir / "token"
    if not host or not token_file.exists():
        return None
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    proto = env.get("KUBERNETES_SERVICE_PROTOCOL", "https")
    server = f"{proto}://[{host}]:{port}" if ":" in host else f"{proto}://{host}:{port}"
    if env.get("SKIP_TLS_VERIFY", "").lower() == "true":
        tls = "    insecure-skip-tls-verify: true"
    else:
        ca = base64.b64encode((sa_dir / "ca.crt").read_bytes()).decode()
        tls = f"    certificate-authority-data: {ca}"
    token = token_file.read_text().strip()
    return (
        "# Kubeconfig for the Calico CNI plugin, written by calico-py install-cni.\n"
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n"
        f"    server: {server}\n{tls}\n"
        f"users:\n- name: calico\n  user:\n    token: {token}\n"
        "contexts:\n- name: calico-context\n  context:\n    cluster: local\n    user: calico\n"
        "current-context: calico-context\n"
    )


def render(template: str, values: Mapping[str, str]) -> str:
    """The template filled in; InstallError on an unknown placeholder or a result not JSON."""
    unknown = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if unknown:
        raise InstallError(f"CNI_NETWORK_CONFIG: unknown placeholder(s) {', '.join(unknown)}")
    text = PLACEHOLDER.sub(lambda m: values[m.group(0)], template)
    try:
        json.loads(text)
    except ValueError as exc:
        raise InstallError(f"CNI_NETWORK_CONFIG: not JSON once filled in: {exc}") from None
    return text if text.endswith("\n") else text + "\n"


def _mtu(env: Mapping[str, str]) -> str:
    text = env.get("CNI_MTU", "1500").strip()
    if not text.isdigit() or not 68 <= int(text) <= 65535:
        raise InstallError(f"CNI_MTU: expected an integer from 68 to 65535, got {text!r}")
    return text


def tls_sources(env: Mapping[str, str], net_dir: str) -> tuple[dict[str, str], dict[str, Path]]:
    """(placeholder values, {file name in calico-tls: source}) for the etcd TLS files given."""
    values, sources = {}, {}
    for var, name in TLS_FILES.items():
        placeholder = f"__{var}__"
        src = env.get(var, "").strip()
        if not src:
            values[placeholder] = ""
            continue
        if not Path(src).is_file():
            raise InstallError(f"{var}: {src} is not a file (is the etcd Secret mounted?)")
        sources[name] = Path(src)
        values[placeholder] = f"{net_dir}/calico-tls/{name}"
    return values, sources


def install(
    env: Mapping[str, str],
    *,
    host_root: Path,
    payload: Path = PAYLOAD,
    sa_dir: Path = SERVICE_ACCOUNT,
) -> list[str]:
    """Everything, in the order of the module doc; returns what was written (for the log)."""
    net_dir = env.get("CNI_NET_DIR") or "/etc/cni/net.d"
    bin_dir = env.get("CNI_BIN_DIR") or "/opt/cni/bin"
    conf_name = env.get("CNI_CONF_NAME") or "10-calico.conflist"
    if "/" in conf_name:
        raise InstallError(f"CNI_CONF_NAME: {conf_name!r} is a path, not a file name")
    kube = kubeconfig(env, sa_dir)
    tls_values, tls = tls_sources(env, net_dir)
    values = {
        "__CNI_MTU__": _mtu(env),
        "__ETCD_ENDPOINTS__": env.get("ETCD_ENDPOINTS") or "http://127.0.0.1:2379",
        "__KUBERNETES_NODE_NAME__": env.get("KUBERNETES_NODE_NAME") or os.uname().nodename,
        "__LOG_LEVEL__": env.get("LOG_LEVEL") or "info",
        "__DATASTORE_TYPE__": "etcdv3",
        "__KUBECONFIG_FILEPATH__": f"{net_dir}/calico-kubeconfig" if kube else "",
        "__KUBECONFIG_FILENAME__": "calico-kubeconfig" if kube else "",
        "__KUBERNETES_SERVICE_HOST__": env.get("KUBERNETES_SERVICE_HOST", ""),
        "__KUBERNETES_SERVICE_PORT__": env.get("KUBERNETES_SERVICE_PORT", ""),
        "__SERVICEACCOUNT_TOKEN__": (sa_dir / "token").read_text().strip() if kube else "",
        **tls_values,
    }
    conf = render(env.get("CNI_NETWORK_CONFIG") or DEFAULT_TEMPLATE, values)
    if not (payload / RUNTIME).is_dir():
        raise InstallError(f"{payload / RUNTIME}: no CNI runtime in this image")
    # everything is checked: now write, binaries first and the network config last
    socket_path = env.get("CALICO_CNI_SOCKET") or fastpath.DEFAULT_SOCKET
    bin_dest, net_dest = host_root / bin_dir.lstrip("/"), host_root / net_dir.lstrip("/")
    done = [f"{bin_dir}/{n}" for n in install_plugins(payload, bin_dest, host_bin_dir=bin_dir,
                                                       socket_path=socket_path)]  # fmt: skip
    for name, src in sorted(tls.items()):
        _put(net_dest / "calico-tls" / name, src.read_bytes(), 0o600)
        done.append(f"{net_dir}/calico-tls/{name}")
    if kube:
        _put(net_dest / "calico-kubeconfig", kube.encode(), 0o600)
        done.append(f"{net_dir}/calico-kubeconfig")
    secret = values["__SERVICEACCOUNT_TOKEN__"] and "__SERVICEACCOUNT_TOKEN__" in (
        env.get("CNI_NETWORK_CONFIG") or ""
    )
    _put(net_dest / conf_name, conf.encode(), 0o600 if secret else 0o644)
    done.append(f"{net_dir}/{conf_name}")
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="install-cni", description=__doc__.splitlines()[0])
    ap.add_argument("--host-root", default="/host", help="where the host's CNI dirs are mounted")
    ap.add_argument("--payload", default=str(PAYLOAD), help="the runtime and plugins to copy")
    args = ap.parse_args(argv)
    try:
        for line in install(os.environ, host_root=Path(args.host_root), payload=Path(args.payload)):
            print(f"install-cni: wrote {line}", flush=True)
    except (InstallError, OSError) as exc:
        print(f"install-cni: {exc}", file=sys.stderr)
        return 1
    if os.environ.get("SLEEP", "false").lower() == "true":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real kube-apiserver for tests (the binaries ``make kube`` builds), on 127.0.0.1 only.

Its own etcd (127.0.0.1, free ports), a self-signed serving certificate in a temp directory, a
static bearer token with AlwaysAllow authorization, a throwaway service-account key. Started by
path, stopped by PID; nothing outside the temp directory is touched. Tests skip, saying why, when
the binaries are not there.

:func:`controller_manager` adds a kube-controller-manager on that API server, with the flags the
``calico-lab up --kubernetes`` control plane uses (:mod:`calico_lab.k8s_control`), plus
``--secure-port=0`` (it runs in the root namespace here: no port to collide on) and any extra
flags a test passes.
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from calico.datastore.etcd_server import EtcdServer, free_port

KUBE_DIR = Path(os.environ.get("KUBE_DIR", "/var/cache/calico-py/kube/v1.20.2"))
BIN = KUBE_DIR / "bin"


def missing() -> str | None:
    """Why a real API server cannot run here, or None."""
    for tool in ("kube-apiserver", "kubectl"):
        if not os.access(BIN / tool, os.X_OK):
            return f"{BIN / tool} not found (make kube builds it)"
    return None


class KubeAPIServer:
    def __init__(self, root: Path, port: int, token: str) -> None:
        self.root, self.port, self.token = root, port, token
        self.url = f"https://127.0.0.1:{port}"
        self.kubeconfig = root / "kubeconfig"
        self.sa_key = root / "sa.key"

    def kubectl(self, *args: str, input: str | None = None) -> str:
        proc = subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def ready(self) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        req = urllib.request.Request(
            self.url + "/readyz", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def controller_manager(server: KubeAPIServer, *extra: str) -> Iterator[Path]:
    """kube-controller-manager on ``server`` (yields its log file) until the block ends."""
    from calico_lab import k8s_control

    if not os.access(BIN / "kube-controller-manager", os.X_OK):
        raise AssertionError(f"{BIN / 'kube-controller-manager'} not found (make kube)")
    argv = [
        *k8s_control.component_argv(str(BIN / "kube-controller-manager"), server.kubeconfig),
        *k8s_control.controller_manager_flags(
            sa_key=server.sa_key, plugin_dir=server.root / "volume-plugins"
        ),
        "--secure-port=0",
        *extra,
    ]
    log_path = server.root / "kube-controller-manager.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
        try:
            time.sleep(0.5)
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise AssertionError(f"kube-controller-manager exited:\n{tail}")
            yield log_path
        finally:
            _stop(proc)


@contextmanager
def running(root: Path) -> Iterator[KubeAPIServer]:
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    (root / "tokens.csv").write_text(f"{token},admin,admin,system:masters\n")
    sa_key = root / "sa.key"
    subprocess.run(["openssl", "genrsa", "-out", str(sa_key), "2048"], check=True,
                   capture_output=True)  # fmt: skip
    port = free_port()
    server = KubeAPIServer(root, port, token)
    server.kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: t, cluster: {{server: '{server.url}', "
        "insecure-skip-tls-verify: true}}]\n"
        f"users: [{{name: t, user: {{token: '{token}'}}}}]\n"
        "contexts: [{name: t, context: {cluster: t, user: t}}]\ncurrent-context: t\n"
    )
    with EtcdServer.on_free_ports(root / "etcd") as etcd:
        log = (root / "kube-apiserver.log").open("wb")
        proc = subprocess.Popen(
            [str(BIN / "kube-apiserver"), f"--etcd-servers={etcd.endpoint}",
             "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
             f"--secure-port={port}", f"--cert-dir={root / 'certs'}",
             f"--token-auth-file={root / 'tokens.csv'}", "--authorization-mode=AlwaysAllow",
             f"--service-account-key-file={sa_key}",
             f"--service-account-signing-key-file={sa_key}",
             "--service-account-issuer=https://kubernetes.default.svc",
             "--service-cluster-ip-range=10.252.0.0/24", "--allow-privileged=false"],
            stdout=log, stderr=log,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not server.ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (root / "kube-apiserver.log").read_text(errors="replace")[-3000:]
                    raise AssertionError(f"kube-apiserver did not become ready:\n{tail}")
                time.sleep(0.2)
            yield server
        finally:
            _stop(proc)
            log.close()

"""The API server of a Kubernetes-datastore lab (``up --datastore kubernetes``).

Three forms, recorded in ``lab.kdd["apiserver"]``:

- ``kube-apiserver`` (the default when ``make kube`` has built it): a real kube-apiserver in the
  core namespace on ``10.99.0.1:6443``, storing in the lab's etcd (every member, with its own
  client certificate under ``--etcd-tls``; Kubernetes keeps ``/registry``, Calico keeps nothing
  in etcd in this mode). Serving certificate from the lab's CA (:mod:`calico_lab.pki`), a static
  bearer token, AlwaysAllow authorization (a lab, not a production cluster), service-account
  tokens signed with the lab's own key. No controller manager, no scheduler: the lab is the
  scheduler and kubelet of its pods (so the ServiceAccount admission plugin, which waits for the
  token Secrets the controller manager makes, is off; the lab makes each namespace's ``default``
  ServiceAccount, and each pod names its own).
- ``stand-in``: :mod:`calico_lab.kubeapi` as a process on the same address (``python -m
  calico_lab.kubeapi``): resourceVersion conflicts, watches, bookmarks, 410 Gone, CRDs; its
  objects live in its memory, so a restarted stand-in starts empty (``up`` then writes the lab's
  Nodes and CRDs again; pods and policies applied before are gone: ``down`` and ``up`` again).
- ``external`` (``--kubeconfig FILE``): the user's API server. The lab's namespaces cannot route
  to the machine's loopback, so a relay (:mod:`calico_lab.kdd_relay`, root namespace, listening
  only inside the lab's namespaces) answers on the server's ``127.0.0.1:PORT`` in every node
  namespace and the core, and the kubeconfig is used unchanged everywhere.

Every component (calico-node and its children, the CNI plugin, calicoctl in ``exec``) gets the
kubeconfig written to ``<lab>/kdd/kubeconfig`` (the user's file for ``external``).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from calico.lib import netns
from calico_lab import daemons, network, pki
from calico_lab.state import LabError, LabState

PORT = 6443
KUBE_BIN = Path(os.environ.get("KUBE_DIR", "/var/cache/calico-py/kube/v1.20.2")) / "bin"
SERVICE_CIDR = "10.96.0.0/24"
SERVER_CERT = "kdd-apiserver"
ETCD_CLIENT = "kdd-apiserver-etcd"


def kdd_dir(lab: LabState) -> Path:
    return lab.path / "kdd"


def kubeconfig(lab: LabState) -> str:
    """The kubeconfig every Calico component of the lab uses."""
    return str(lab.kdd.get("kubeconfig") or kdd_dir(lab) / "kubeconfig")


def real_available() -> str | None:
    """Why a real kube-apiserver cannot run here, or None."""
    binary = KUBE_BIN / "kube-apiserver"
    return None if os.access(binary, os.X_OK) else f"{binary} not found (make kube builds it)"


def url() -> str:
    return f"https://{network.router_ip(0)}:{PORT}"


def _write_kubeconfig(lab: LabState, server: str, *, ca: str | None, token: str | None) -> None:
    cluster: dict[str, Any] = {"server": server}
    if ca:
        cluster["certificate-authority"] = ca
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": cluster}],
        "users": [{"name": "lab", "user": {"token": token} if token else {}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
    }
    path = Path(kubeconfig(lab))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")  # JSON is YAML: every reader takes it


def _token(lab: LabState) -> str:
    path = kdd_dir(lab) / "token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(16))
        path.chmod(0o600)
    return path.read_text().strip()


def real_argv(lab: LabState) -> list[str]:
    d, p, addr = kdd_dir(lab), lab.pki_dir, network.router_ip(0)
    token = _token(lab)
    (d / "tokens.csv").write_text(f"{token},calico-lab,calico-lab,system:masters\n")
    sa_key = d / "sa.key"
    if not sa_key.exists():
        from calico.lib.cmd import run

        run(["openssl", "genrsa", "-out", str(sa_key), "2048"], timeout=30)
    etcd_tls: list[str] = []
    tls = lab.etcd_tls(ETCD_CLIENT)
    if tls is not None:
        pki.issue(p, ETCD_CLIENT)
        etcd_tls = [f"--etcd-cafile={tls.ca_file}", f"--etcd-certfile={tls.cert_file}",
                    f"--etcd-keyfile={tls.key_file}"]  # fmt: skip
    return [
        str(KUBE_BIN / "kube-apiserver"),
        f"--advertise-address={addr}", f"--bind-address={addr}", f"--secure-port={PORT}",
        "--insecure-port=0", f"--etcd-servers={lab.etcd_endpoint}", *etcd_tls,
        f"--tls-cert-file={p / (SERVER_CERT + '.crt')}",
        f"--tls-private-key-file={p / (SERVER_CERT + '.key')}",
        f"--cert-dir={d / 'certs'}", f"--token-auth-file={d / 'tokens.csv'}",
        "--authorization-mode=AlwaysAllow", f"--service-account-key-file={sa_key}",
        # no controller manager mints the token Secrets this plugin would wait for
        "--disable-admission-plugins=ServiceAccount",
        f"--service-account-signing-key-file={sa_key}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false", "--v=1",
        # names the lab's namespace: how daemons.alive tells this process from a reused PID
        f"--external-hostname={lab.core}",
    ]  # fmt: skip


def stand_in_argv(lab: LabState) -> list[str]:
    p = lab.pki_dir
    return [sys.executable, "-m", "calico_lab.kubeapi", "--host", network.router_ip(0),
            "--port", str(PORT), "--cert", str(p / f"{SERVER_CERT}.crt"),
            "--key", str(p / f"{SERVER_CERT}.key"), "--token", _token(lab)]  # fmt: skip


def ensure(lab: LabState, *, timeout: float) -> None:
    """Start the lab's API server (or the relay to the user's) unless running; wait until it
    answers."""
    kind = lab.kdd["apiserver"]
    log = lab.path / f"kdd-{kind}.log"
    if kind == "external":
        _ensure_relay(lab)
        return
    kdd_dir(lab).mkdir(parents=True, exist_ok=True)
    if daemons.alive(int(lab.kdd.get("pid") or 0)):
        return
    pki.ensure_ca(lab.pki_dir, lab.name)
    pki.issue(lab.pki_dir, SERVER_CERT, ips=[network.router_ip(0)], server=True)
    argv = real_argv(lab) if kind == "kube-apiserver" else stand_in_argv(lab)
    lab.kdd["pid"] = daemons.spawn(argv, netns=lab.core, log_file=log, env=daemons.child_env({}))
    lab.save()
    _write_kubeconfig(lab, url(), ca=str(lab.pki_dir / "ca.crt"), token=_token(lab))
    _wait_ready(lab, log, timeout)


def _wait_ready(lab: LabState, log: Path, timeout: float) -> None:
    from calico.datastore.kube_api import KubeApi, access

    api = netns.call_in(lab.core, lambda: KubeApi(access(kubeconfig=kubeconfig(lab)), timeout=2))

    def ready() -> bool:
        if not daemons.alive(int(lab.kdd.get("pid") or 0)):
            raise LabError(f"the lab's API server exited; see {log}")
        try:
            status, _ = netns.call_in(lab.core, lambda: api.request("GET", "/readyz"))
        except Exception:
            return False
        return status == 200

    try:
        daemons.wait_until(ready, timeout=timeout, interval=0.3, what=f"{url()}/readyz ({log})")
    finally:
        api.close()


def _ensure_relay(lab: LabState) -> None:
    if daemons.alive(int(lab.kdd.get("relay_pid") or 0)):
        return
    from calico_lab import kdd_relay

    host, port = kdd_relay.target(kubeconfig(lab))
    spaces = [lab.core, *(n.netns for n in lab.nodes)]
    argv = [sys.executable, "-m", "calico_lab.kdd_relay", "--target", f"{host}:{port}",
            "--ready-file", str(kdd_dir(lab) / "relay.ready"), *spaces]  # fmt: skip
    ready = kdd_dir(lab) / "relay.ready"
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.unlink(missing_ok=True)
    log = lab.path / "kdd-relay.log"
    lab.kdd["relay_pid"] = daemons.spawn(argv, netns=None, log_file=log, env=daemons.child_env({}))
    lab.save()

    def listening() -> bool:
        if not daemons.alive(int(lab.kdd["relay_pid"])):
            raise LabError(f"the lab's API relay exited; see {log}")
        return ready.exists()

    daemons.wait_until(listening, timeout=10, interval=0.05, what=f"the API relay ({log})")


def stop(lab: LabState) -> None:
    for key in ("pid", "relay_pid"):
        daemons.stop(int(lab.kdd.get(key) or 0))

"""The Kubernetes lab's certificates and kubeconfigs (``<lab>/k8s/pki``, ``<lab>/k8s/kubeconfig``).

One CA per lab; every key is ECDSA P-256 (made in milliseconds, where RSA takes a good part of a
second each on these machines), every certificate signed by the CA with ``openssl``::

    apiserver                  serving: the router's address, the kubernetes Service's, names
    apiserver-kubelet-client   the API server to the kubelets (logs, exec)       system:masters
    admin                      kubectl (``calico-lab kubectl``)                  system:masters
    controller-manager, scheduler, kube-proxy    system:kube-controller-manager, ...
    kubelet-<node>             system:node:<node>, group system:nodes (the Node authorizer)
    calico                     ``--calico host``: the CNI plugin, calico-kube-controllers
    sa.key / sa.pub            service-account tokens (signed by the API server and the
                               controller manager's token controller)

Kubeconfigs name the files by path, block-style YAML (the CNI plugin reads a YAML subset). What
exists is kept: a second ``up`` reuses the certificates.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from calico.lib.cmd import run
from calico_lab import k8s_state
from calico_lab.state import LabState

DAYS = "3650"


def _key(path: Path) -> None:
    if not path.exists():
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path)])  # fmt: skip
        path.chmod(0o600)


def _ca(pki: Path, lab: str) -> None:
    _key(pki / "ca.key")
    if (pki / "ca.crt").exists():
        return
    run(["openssl", "req", "-x509", "-new", "-key", str(pki / "ca.key"), "-days", DAYS,
         "-subj", f"/CN=calab-{lab}-kubernetes-ca",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
         "-out", str(pki / "ca.crt")])  # fmt: skip


def _cert(pki: Path, name: str, cn: str, *, org: str = "", sans: list[str] | None = None) -> None:
    """``<name>.key`` and ``<name>.crt`` signed by the CA (kept when present)."""
    key, crt = pki / f"{name}.key", pki / f"{name}.crt"
    _key(key)
    if crt.exists():
        return
    subject = (f"/O={org}" if org else "") + f"/CN={cn}"
    csr = run(["openssl", "req", "-new", "-key", str(key), "-subj", subject]).stdout
    ext = pki / f"{name}.ext"
    lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
    if sans:
        lines += ["extendedKeyUsage=serverAuth,clientAuth", "subjectAltName=" + ",".join(sans)]
    else:
        lines.append("extendedKeyUsage=clientAuth")
    ext.write_text("\n".join(lines) + "\n")
    run(["openssl", "x509", "-req", "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
         "-set_serial", str(secrets.randbits(63)), "-days", DAYS, "-sha256",
         "-extfile", str(ext), "-out", str(crt)], input=csr)  # fmt: skip
    ext.unlink()


def apiserver_sans(router_ip: str) -> list[str]:
    names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
             f"kubernetes.default.svc.{k8s_state.CLUSTER_DOMAIN}", "localhost"]  # fmt: skip
    ips = [router_ip, k8s_state.KUBERNETES_SERVICE_IP, "127.0.0.1"]
    return [f"IP:{ip}" for ip in ips] + [f"DNS:{n}" for n in names]


# user -> (certificate name, CN, O); kubelet-<node> is added per node
USERS = {
    "admin": ("admin", "admin", "system:masters"),
    "controller-manager": ("controller-manager", "system:kube-controller-manager", ""),
    "scheduler": ("scheduler", "system:kube-scheduler", ""),
    "kube-proxy": ("kube-proxy", "system:kube-proxy", ""),
    "calico": ("calico", "calico", "system:masters"),
}


def ensure(lab: LabState, router_ip: str) -> None:
    """Every key, certificate and kubeconfig of the lab (what exists is kept)."""
    pki = k8s_state.pki_dir(lab)
    pki.mkdir(parents=True, exist_ok=True)
    _ca(pki, lab.name)
    _cert(pki, "apiserver", "kube-apiserver", sans=apiserver_sans(router_ip))
    _cert(pki, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", org="system:masters")
    users = dict(USERS)
    for node in lab.nodes:
        users[f"kubelet-{node.name}"] = (
            f"kubelet-{node.name}", f"system:node:{node.name}", "system:nodes")  # fmt: skip
    for user, (name, cn, org) in users.items():
        _cert(pki, name, cn, org=org)
        write_kubeconfig(k8s_state.kubeconfig(lab, user), user=user, pki=pki, cert=name)
    _key(pki / "sa.key")
    if not (pki / "sa.pub").exists():
        run(["openssl", "pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")])


def write_kubeconfig(path: Path, *, user: str, pki: Path, cert: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: {k8s_state.apiserver_url()}
    certificate-authority: {pki / "ca.crt"}
users:
- name: {user}
  user:
    client-certificate: {pki / f"{cert}.crt"}
    client-key: {pki / f"{cert}.key"}
contexts:
- name: {user}@lab
  context:
    cluster: lab
    user: {user}
current-context: {user}@lab
"""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)

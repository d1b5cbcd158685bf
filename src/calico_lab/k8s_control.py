"""The Kubernetes lab's control plane: kube-apiserver, kube-controller-manager and kube-scheduler
in the core namespace (the router), as one lab host (:mod:`calico_lab.k8s_host`).

The API server listens on ``10.99.0.1:6443``, next to the lab's etcd, which it shares with Calico
(as Calico's etcd-datastore install allows: Kubernetes under ``/registry``, Calico under
``/calico``): every member (``--etcd-members``), with its own client certificate when the lab has
``--etcd-tls``. Services get ``10.96.0.0/24`` (``kubernetes`` is ``10.96.0.1``); kube-proxy on each
node turns that address into the API server's. Authorization is Node + RBAC with the NodeRestriction
admission plugin, as a kubeadm cluster has; service-account tokens are signed with the lab's key.
The host's private ``/run`` keeps the self-signed serving certificates the controller manager and
scheduler write (``/var/run/kubernetes``) off the machine, and the controller manager's flexvolume
directory is the host's own (it would make ``/usr/libexec/kubernetes/...``). No leader election:
one of each.
"""

from __future__ import annotations

import time
from pathlib import Path

from calico_lab import daemons, k8s_api, k8s_host, k8s_state, network
from calico_lab.k8s_state import CONTROL_PLANE, KubeState
from calico_lab.state import LabError, LabState

STOP_ORDER = ("calico-kube-controllers", "kube-scheduler", "kube-controller-manager",
              "kube-apiserver")  # fmt: skip


def apiserver_argv(lab: LabState, ks: KubeState) -> list[str]:
    pki, addr = k8s_state.pki_dir(lab), network.router_ip(0)
    return [
        f"{ks.kube_bin}/kube-apiserver",
        f"--advertise-address={addr}",
        f"--bind-address={addr}",
        f"--secure-port={k8s_state.API_PORT}",
        "--insecure-port=0",
        f"--etcd-servers={lab.etcd_endpoint}",
        *etcd_tls_flags(lab),
        f"--service-cluster-ip-range={k8s_state.SERVICE_CIDR}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-account-issuer=https://kubernetes.default.svc.{k8s_state.CLUSTER_DOMAIN}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        "--profiling=false",
        "--v=1",
    ]


ETCD_CLIENT = "kube-apiserver-etcd"  # the API server's etcd client certificate (--etcd-tls)


def etcd_tls_flags(lab: LabState) -> list[str]:
    """With ``--etcd-tls``: the lab's CA and the API server's own etcd client certificate."""
    tls = lab.etcd_tls(ETCD_CLIENT)
    if tls is None:
        return []
    from calico_lab import pki

    pki.issue(lab.pki_dir, ETCD_CLIENT)
    return [f"--etcd-cafile={tls.ca_file}", f"--etcd-certfile={tls.cert_file}",
            f"--etcd-keyfile={tls.key_file}"]  # fmt: skip


def component_argv(binary: str, kubeconfig: str | Path) -> list[str]:
    """kube-controller-manager or kube-scheduler (path ``binary``) on ``kubeconfig``: serving
    only on loopback (the lab's core namespace's), no insecure port, no leader election."""
    return [
        binary,
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--port=0",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_flags(
    *, sa_key: str | Path, plugin_dir: str | Path, root_ca: str | Path | None = None
) -> list[str]:
    """The controller manager's own flags: each controller with its own service account (tokens
    signed with ``sa_key``), its flexvolume prober's directory (else /usr/libexec/kubernetes)."""
    return [
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={sa_key}",
        *([f"--root-ca-file={root_ca}"] if root_ca else []),
        f"--flex-volume-plugin-dir={plugin_dir}",
    ]


def _component(lab: LabState, ks: KubeState, binary: str, user: str) -> list[str]:
    return component_argv(f"{ks.kube_bin}/{binary}", k8s_state.kubeconfig(lab, user))


def controller_manager_argv(lab: LabState, ks: KubeState) -> list[str]:
    pki = k8s_state.pki_dir(lab)
    return [
        *_component(lab, ks, "kube-controller-manager", "controller-manager"),
        *controller_manager_flags(
            sa_key=pki / "sa.key",
            root_ca=pki / "ca.crt",
            plugin_dir=k8s_state.host_dir(lab, CONTROL_PLANE) / "volume-plugins",
        ),
    ]


def start(lab: LabState, ks: KubeState, *, timeout: float) -> None:
    """The control-plane host, the API server (waited for: /readyz), the controller manager and
    the scheduler."""
    ks.hosts.setdefault(CONTROL_PLANE, k8s_state.KubeHost(netns=lab.core))
    k8s_state.save(lab, ks)
    k8s_host.start_init(lab, ks, CONTROL_PLANE, init_args=["--tmpfs", "/run"])
    k8s_host.ensure_daemon(lab, ks, CONTROL_PLANE, "kube-apiserver", apiserver_argv(lab, ks))
    wait_ready(lab, ks, timeout=timeout)
    k8s_host.ensure_daemon(
        lab, ks, CONTROL_PLANE, "kube-controller-manager", controller_manager_argv(lab, ks)
    )
    k8s_host.ensure_daemon(
        lab, ks, CONTROL_PLANE, "kube-scheduler",
        _component(lab, ks, "kube-scheduler", "scheduler"),
    )  # fmt: skip


def wait_ready(lab: LabState, ks: KubeState, *, timeout: float) -> None:
    pid = ks.hosts[CONTROL_PLANE].daemons["kube-apiserver"]
    log = k8s_state.log_file(lab, CONTROL_PLANE, "kube-apiserver")
    last = ""
    with k8s_api.Api(lab, timeout=5) as api:

        def ready() -> bool:
            nonlocal last
            if not daemons.alive(pid):
                raise LabError(f"kube-apiserver exited; see {log}")
            status, last = api.raw("/readyz")
            return status == 200

        try:
            daemons.wait_until(ready, timeout=timeout, interval=0.5, what="kube-apiserver /readyz")
        except TimeoutError as exc:
            raise LabError(f"{exc} (last answer: {last.strip()[-200:]}); see {log}") from None


def stop(ks: KubeState) -> None:
    host = ks.hosts.get(CONTROL_PLANE)
    if host is not None:
        k8s_host.stop(host, STOP_ORDER)


def wait_for_default_serviceaccount(lab: LabState, *, timeout: float) -> None:
    """Pods need their namespace's ``default`` ServiceAccount (the controller manager makes it)."""
    deadline = time.monotonic() + timeout
    with k8s_api.Api(lab) as api:
        while True:
            try:
                api.get("/api/v1/namespaces/default/serviceaccounts/default")
                return
            except k8s_api.ApiError:
                if time.monotonic() > deadline:
                    raise LabError("timed out waiting for the default ServiceAccount") from None
                time.sleep(0.5)

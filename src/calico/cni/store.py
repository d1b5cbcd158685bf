"""Which datastore a CNI call talks to, from its network configuration (stdlib only).

``datastore_type`` ``etcdv3`` (the default): ``etcd_endpoints`` and the ``etcd_*_file`` TLS files;
``kubernetes``: the API server of ``kubernetes.kubeconfig`` (else ``KUBECONFIG``,
``K8S_API_ENDPOINT``..., in-cluster, as :func:`calico.datastore.kube_api.access` finds it).
:func:`key` names the datastore config (the CNI server keeps one pool of open clients and one
IPAM cache per key); :func:`connect` opens a client of it. The backend modules are imported only
here, so a call imports exactly the client it uses.
"""

from __future__ import annotations

from collections.abc import Hashable

from calico.cni.netconf import NetConf
from calico.datastore.backend import Backend


def key(conf: NetConf) -> Hashable:
    """The datastore a call's configuration names (what a pooled client may be reused for)."""
    if conf.datastore_type == "kubernetes":
        return ("kubernetes", conf.kubeconfig, conf.k8s_api_root, conf.k8s_auth_token)
    return ("etcdv3", conf.etcd_endpoints, conf.etcd_ca_cert_file, conf.etcd_cert_file,
            conf.etcd_key_file)  # fmt: skip


def connect(conf: NetConf) -> Backend:
    if conf.datastore_type == "kubernetes":
        from calico.datastore.kube import KubeBackend
        from calico.datastore.kube_api import access

        token = {"k8sAPIToken": conf.k8s_auth_token} if conf.k8s_auth_token else None
        acc = access(kubeconfig=conf.kubeconfig, endpoint=conf.k8s_api_root, env=conf.env,
                     settings=token)  # fmt: skip
        return KubeBackend(acc, timeout=10.0)
    from calico.datastore.etcd import EtcdClient, TLSFiles

    tls = TLSFiles(conf.etcd_ca_cert_file, conf.etcd_cert_file, conf.etcd_key_file)
    return EtcdClient(conf.etcd_endpoints, tls=tls, timeout=10.0)


def preload() -> None:
    """Import every backend module now (the CNI server calls this before it serves calls
    chrooted to their callers' roots, where the package may not be found)."""
    from calico.datastore import etcd, etcd_watch, kube, kube_api, kube_map, kube_stream, kv_stream

    del etcd, etcd_watch, kube, kube_api, kube_map, kube_stream, kv_stream

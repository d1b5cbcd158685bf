"""Datastore configuration, as Calico reads it.

Environment (``DATASTORE_TYPE``: ``etcdv3``, the default, or ``kubernetes``; ``ETCD_ENDPOINTS``,
``ETCD_CA_CERT_FILE``, ``ETCD_CERT_FILE``, ``ETCD_KEY_FILE``; ``KUBECONFIG``, ``K8S_API_ENDPOINT``,
``K8S_API_TOKEN``, ``K8S_CA_FILE``, ``K8S_CERT_FILE``, ``K8S_KEY_FILE``,
``K8S_INSECURE_SKIP_TLS_VERIFY``) wins over a calicoctl config file (``apiVersion:
projectcalico.org/v3``, ``kind: CalicoAPIConfig``, ``spec.datastoreType``, ``etcdEndpoints``...,
``kubeconfig``, ``k8sAPIEndpoint``...; default ``/etc/calico/calicoctl.cfg``).
``ETCD_ENDPOINTS`` / ``etcdEndpoints`` is a comma-separated list of an etcd cluster's members;
clients fail over between them (see :mod:`calico.datastore.etcd`). The Kubernetes API server is
found as :func:`calico.datastore.kube_api.access` says (kubeconfig, endpoint, in-cluster).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calico.datastore.backend import Backend
from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient, TLSFiles, parse_endpoints

DEFAULT_CONFIG_FILE = "/etc/calico/calicoctl.cfg"
DEFAULT_ENDPOINTS = "http://127.0.0.1:2379"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class DatastoreConfig:
    endpoints: str = DEFAULT_ENDPOINTS
    ca_cert_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    datastore_type: str = "etcdv3"
    kube: dict[str, Any] = field(default_factory=dict)  # calicoctl.cfg's kubeconfig / k8s* fields
    env: dict[str, str] = field(default_factory=dict)

    def etcd(self, timeout: float = 10.0) -> EtcdClient:
        return EtcdClient(
            self.endpoints,
            tls=TLSFiles(self.ca_cert_file, self.cert_file, self.key_file),
            timeout=timeout,
        )

    def backend(self, timeout: float = 10.0) -> Backend:
        """A new client of the configured datastore (one per thread: none is thread-safe)."""
        if self.datastore_type == "kubernetes":
            from calico.datastore.kube import KubeBackend
            from calico.datastore.kube_api import access

            return KubeBackend(access(env=self.env, settings=self.kube), timeout=timeout)
        return self.etcd(timeout)

    def client(self) -> Client:
        return Client(self.backend())


TYPES = ("etcdv3", "kubernetes")
KUBE_FIELDS = ("kubeconfig", "k8sAPIEndpoint", "k8sAPIToken", "k8sCAFile", "k8sCertFile",
               "k8sKeyFile", "k8sInsecureSkipTLSVerify")  # fmt: skip
KUBE_ENV = ("KUBECONFIG", "K8S_API_ENDPOINT", "K8S_API_TOKEN", "K8S_CA_FILE", "K8S_CERT_FILE",
            "K8S_KEY_FILE", "K8S_INSECURE_SKIP_TLS_VERIFY", "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT")  # fmt: skip


def _check_type(value: str, where: str) -> None:
    if value and value not in TYPES:
        raise ConfigError(
            f"{where}: datastore type {value!r} is not supported (use etcdv3 or kubernetes)"
        )


def _from_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") != "CalicoAPIConfig":
        raise ConfigError(f"config file {path}: kind must be CalicoAPIConfig")
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"config file {path}: spec must be a mapping")
    _check_type(str(spec.get("datastoreType", "")), f"config file {path}: spec.datastoreType")
    return spec


def load(config_file: str | None = None, env: Mapping[str, str] | None = None) -> DatastoreConfig:
    env = os.environ if env is None else env
    spec: dict[str, Any] = {}
    path = Path(config_file or DEFAULT_CONFIG_FILE)
    if config_file and not path.exists():
        raise ConfigError(f"config file {path}: does not exist")
    if path.exists():
        spec = _from_file(path)
    _check_type(env.get("DATASTORE_TYPE", ""), "DATASTORE_TYPE")
    dtype = env.get("DATASTORE_TYPE") or str(spec.get("datastoreType") or "") or "etcdv3"
    if dtype == "kubernetes":
        kubeconfig = env.get("KUBECONFIG") or spec.get("kubeconfig")
        if kubeconfig and not Path(str(kubeconfig).split(os.pathsep)[0]).exists():
            where = "KUBECONFIG" if env.get("KUBECONFIG") else f"config file {path}: kubeconfig"
            raise ConfigError(f"{where}: {kubeconfig}: no such file")
        return DatastoreConfig(
            datastore_type="kubernetes",
            kube={k: spec[k] for k in KUBE_FIELDS if spec.get(k) not in (None, "")},
            env={k: env[k] for k in KUBE_ENV if env.get(k)},
        )
    cfg = DatastoreConfig(
        endpoints=env.get("ETCD_ENDPOINTS") or spec.get("etcdEndpoints") or DEFAULT_ENDPOINTS,
        ca_cert_file=env.get("ETCD_CA_CERT_FILE") or spec.get("etcdCACertFile"),
        cert_file=env.get("ETCD_CERT_FILE") or spec.get("etcdCertFile"),
        key_file=env.get("ETCD_KEY_FILE") or spec.get("etcdKeyFile"),
    )
    where = "ETCD_ENDPOINTS" if env.get("ETCD_ENDPOINTS") else f"config file {path}: etcdEndpoints"
    try:
        parse_endpoints(str(cfg.endpoints))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if cfg.key_file and not cfg.cert_file:
        raise ConfigError(f"etcd key file {cfg.key_file!r} given without a certificate file")
    return cfg

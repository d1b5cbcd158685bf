"""Datastore configuration, as Calico reads it.

Environment (``DATASTORE_TYPE=etcdv3``, ``ETCD_ENDPOINTS``, ``ETCD_CA_CERT_FILE``,
``ETCD_CERT_FILE``, ``ETCD_KEY_FILE``) wins over a calicoctl config file
(``apiVersion: projectcalico.org/v3``, ``kind: CalicoAPIConfig``; default
``/etc/calico/calicoctl.cfg``). ``ETCD_ENDPOINTS`` / ``etcdEndpoints`` is a comma-separated list
of an etcd cluster's members; clients fail over between them (see :mod:`calico.datastore.etcd`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
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

    def etcd(self, timeout: float = 10.0) -> EtcdClient:
        return EtcdClient(
            self.endpoints,
            tls=TLSFiles(self.ca_cert_file, self.cert_file, self.key_file),
            timeout=timeout,
        )

    def backend(self, timeout: float = 10.0) -> Backend:
        """A new client of the configured datastore (one per thread: none is thread-safe)."""
        return self.etcd(timeout)

    def client(self) -> Client:
        return Client(self.backend())


def _check_type(value: str, where: str) -> None:
    if value and value != "etcdv3":
        raise ConfigError(f"{where}: datastore type {value!r} is not supported (use etcdv3)")


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

"""The CNI call: network configuration from stdin, the CNI_* environment, and the spec's errors.

Accepts the integration guide's configuration exactly (``etcd_endpoints``, ``log_level``,
``ipam.type: calico-ipam``, ``policy.type: k8s``, ``kubernetes.kubeconfig``) and Calico's other
common options (``nodename``, ``mtu``, ``ipam.ipv4_pools``/``ipv6_pools``,
``ipam.assign_ipv4``/``assign_ipv6``, ``etcd_key_file``/``etcd_cert_file``/``etcd_ca_cert_file``,
``datastore_type``). Every problem is a :class:`CNIError` carrying the spec's error code, so the
plugin can print the spec's error JSON.
Stdlib only: this module is on the per-pod hot path.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import Any

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")

# The spec's well-known error codes (0-99); 100+ are ours.
ERR_INCOMPATIBLE_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_INVALID_CONFIG = 7
ERR_TRY_AGAIN = 11
ERR_IPAM = 100  # no address could be assigned (pool exhausted, no usable pool)
ERR_DATAPLANE = 101  # the kernel refused a link/address/route change
ERR_CHECK = 102  # CHECK found the pod's network differs from what ADD built
ERR_UNEXPECTED = 999  # a bug: an exception nothing above expected

KNOWN_ARGS = (
    "IgnoreUnknown",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
)
NODENAME_FILE = "/var/lib/calico/nodename"


class CNIError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def _bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise CNIError(ERR_INVALID_CONFIG, f"{field}: expected true or false, got {value!r}")


def _str_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CNIError(ERR_INVALID_CONFIG, f"{field}: expected a list of pool CIDRs, got {value!r}")
    return list(value)


def _opt_str(raw: dict[str, Any], key: str) -> str | None:
    """An optional string field (absent, null or "": None); anything else is an error."""
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise CNIError(ERR_INVALID_CONFIG, f"{key}: expected a string, got {value!r}")
    return value


class NetConf:
    """The parsed network configuration (one plugin's section of a conf or conflist)."""

    def __init__(self, raw: dict[str, Any], env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.raw = raw
        self.cni_version = self._version(raw.get("cniVersion", "0.1.0"))
        self.name = raw.get("name")
        if not isinstance(self.name, str) or not self.name:
            raise CNIError(
                ERR_INVALID_CONFIG, f"name: a network name is required, got {self.name!r}"
            )
        self.plugin_type = str(raw.get("type", ""))
        self.mtu = self._mtu(raw.get("mtu", 1500))
        datastore = str(raw.get("datastore_type") or env.get("DATASTORE_TYPE") or "etcdv3")
        if datastore not in ("etcdv3", "etcd", "kubernetes"):
            raise CNIError(
                ERR_INVALID_CONFIG,
                f"datastore_type: {datastore!r} is not supported (use etcdv3 or kubernetes)",
            )
        self.datastore_type = "kubernetes" if datastore == "kubernetes" else "etcdv3"
        # the Kubernetes datastore's settings from the environment (KUBECONFIG, K8S_API_*)
        self.env = {k: v for k, v in env.items() if k.startswith(("KUBE", "K8S_"))}
        self.etcd_endpoints = self._endpoints(
            _opt_str(raw, "etcd_endpoints") or env.get("ETCD_ENDPOINTS") or "http://127.0.0.1:2379"
        )
        self.etcd_key_file = _opt_str(raw, "etcd_key_file") or env.get("ETCD_KEY_FILE") or None
        self.etcd_cert_file = _opt_str(raw, "etcd_cert_file") or env.get("ETCD_CERT_FILE") or None
        self.etcd_ca_cert_file = (
            _opt_str(raw, "etcd_ca_cert_file") or env.get("ETCD_CA_CERT_FILE") or None
        )
        self.log_level = str(raw.get("log_level", "info")).lower()
        self.ipam = self._ipam(raw.get("ipam"))
        policy = raw.get("policy") or {}
        if not isinstance(policy, dict):
            raise CNIError(ERR_INVALID_CONFIG, f"policy: expected an object, got {policy!r}")
        self.policy_type = str(policy.get("type", ""))
        kube = raw.get("kubernetes") or {}
        if not isinstance(kube, dict):
            raise CNIError(ERR_INVALID_CONFIG, f"kubernetes: expected an object, got {kube!r}")
        self.kubeconfig = kube.get("kubeconfig")
        self.k8s_api_root = kube.get("k8s_api_root")
        self.k8s_auth_token = policy.get("k8s_auth_token")
        self.dns = raw.get("dns") or {}
        self.prev_result = raw.get("prevResult")
        self.nodename_explicit = raw.get("nodename")

    @staticmethod
    def _endpoints(text: str) -> str:
        from calico.datastore.etcd import parse_endpoints

        try:
            parse_endpoints(text)
        except ValueError as exc:
            raise CNIError(ERR_INVALID_CONFIG, f"etcd_endpoints: {exc}") from None
        return text

    @staticmethod
    def _version(v: Any) -> str:
        if not isinstance(v, str) or v not in SUPPORTED_VERSIONS:
            raise CNIError(
                ERR_INCOMPATIBLE_VERSION,
                f"cniVersion: {v!r} is not supported",
                f"supported versions: {', '.join(SUPPORTED_VERSIONS)}",
            )
        return v

    @staticmethod
    def _mtu(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not 68 <= v <= 65535:
            raise CNIError(
                ERR_INVALID_CONFIG, f"mtu: expected an integer from 68 to 65535, got {v!r}"
            )
        return v

    @staticmethod
    def _ipam(ipam: Any) -> dict[str, Any]:
        if ipam is None:
            raise CNIError(
                ERR_INVALID_CONFIG,
                "ipam: missing; the configuration needs an ipam section "
                '(e.g. "ipam": {"type": "calico-ipam"})',
            )
        if not isinstance(ipam, dict) or not ipam.get("type"):
            raise CNIError(
                ERR_INVALID_CONFIG, f"ipam.type: an IPAM plugin type is required, got {ipam!r}"
            )
        out = dict(ipam)
        out["assign_ipv4"] = _bool(ipam.get("assign_ipv4", True), "ipam.assign_ipv4")
        out["assign_ipv6"] = _bool(ipam.get("assign_ipv6", False), "ipam.assign_ipv6")
        out["ipv4_pools"] = _str_list(ipam.get("ipv4_pools"), "ipam.ipv4_pools")
        out["ipv6_pools"] = _str_list(ipam.get("ipv6_pools"), "ipam.ipv6_pools")
        return out

    @property
    def k8s_policy(self) -> bool:
        return self.policy_type == "k8s"

    def nodename(self, env: Mapping[str, str]) -> str:
        if self.nodename_explicit:
            return str(self.nodename_explicit)
        if env.get("NODENAME"):
            return env["NODENAME"]
        try:
            with open(NODENAME_FILE) as f:
                name = f.read().strip()
            if name:
                return name
        except OSError:
            pass
        return socket.gethostname()


def parse_conf(data: bytes, env: Mapping[str, str] | None = None) -> NetConf:
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise CNIError(ERR_DECODE, f"network configuration: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise CNIError(ERR_DECODE, "network configuration: expected a JSON object")
    return NetConf(raw, env)


class CNIEnv:
    """The CNI_* variables of one call."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.command = env.get("CNI_COMMAND", "")
        self.container_id = env.get("CNI_CONTAINERID", "")
        self.netns = env.get("CNI_NETNS", "")
        self.ifname = env.get("CNI_IFNAME", "eth0") or "eth0"
        self.path = env.get("CNI_PATH", "")
        self.args = parse_args(env.get("CNI_ARGS", ""))

    def require(self, *, netns: bool) -> None:
        if not self.container_id:
            raise CNIError(ERR_INVALID_ENV, "CNI_CONTAINERID: required, got an empty value")
        if netns and not self.netns:
            raise CNIError(
                ERR_INVALID_ENV, "CNI_NETNS: required for ADD and CHECK, got an empty value"
            )
        if len(self.ifname) > 15 or "/" in self.ifname:
            raise CNIError(
                ERR_INVALID_ENV, f"CNI_IFNAME: not a valid interface name: {self.ifname!r}"
            )

    @property
    def is_k8s(self) -> bool:
        """Calico's rule: a Kubernetes pod only when both K8S_POD_NAMESPACE and K8S_POD_NAME are
        set (podman, for one, sends K8S_POD_NAME alone); anything else is orchestrator ``cni``."""
        return bool(self.pod_namespace and self.pod_name)

    @property
    def pod_name(self) -> str:
        return self.args.get("K8S_POD_NAME", "")

    @property
    def pod_namespace(self) -> str:
        return self.args.get("K8S_POD_NAMESPACE", "")


def parse_args(text: str) -> dict[str, str]:
    """``CNI_ARGS`` (``K=V;K=V``). Unknown keys are an error unless ``IgnoreUnknown=1|true``."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise CNIError(ERR_INVALID_ENV, f"CNI_ARGS: {part!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    ignore = out.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = [k for k in out if k not in KNOWN_ARGS]
    if unknown and not ignore:
        raise CNIError(ERR_INVALID_ENV, f"CNI_ARGS: unknown args {unknown} (set IgnoreUnknown=1)")
    return out

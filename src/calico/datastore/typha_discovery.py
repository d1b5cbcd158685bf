"""Finding Typha through a Kubernetes Service, as Felix does (``FELIX_TYPHAK8SSERVICENAME``).

The Service's Endpoints (namespace ``FELIX_TYPHAK8SNAMESPACE``, default ``kube-system``) list
the ready Typha pods; the port is the one named ``calico-typha`` (or the only one). The API server
is reached as the other components reach it: ``KUBECONFIG`` (its first file), else the pod's
service account, else ``~/.kube/config``. Looked up before every round of connection attempts,
so a Typha added or moved is found without restarting the agent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

PORT_NAME = "calico-typha"


class DiscoveryError(Exception):
    """The Service cannot be read or has no usable endpoint (the message says which)."""


def addresses_from_endpoints(obj: Mapping[str, Any]) -> list[str]:
    """``host:port`` of every ready address of an Endpoints object."""
    out: list[str] = []
    for subset in obj.get("subsets") or []:
        ports = subset.get("ports") or []
        named = [p for p in ports if p.get("name") == PORT_NAME]
        port = (named or (ports if len(ports) == 1 else [{}]))[0].get("port")
        if not port:
            continue
        for addr in subset.get("addresses") or []:
            ip = str(addr.get("ip", ""))
            if ip:
                out.append(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
    return out


def service_addresses(
    name: str, namespace: str, *, env: Mapping[str, str] | None = None
) -> list[str]:
    """The ready Typha addresses behind Service ``namespace/name``."""
    import httpx2
    from lightkube import Client, KubeConfig
    from lightkube.core.exceptions import ApiError, ConfigError
    from lightkube.generic_resource import GenericNamespacedResource, create_api_info

    class Endpoints(GenericNamespacedResource):
        _api_info = create_api_info("", "v1", "Endpoints", "endpoints")

    env = os.environ if env is None else env
    path = (env.get("KUBECONFIG") or "").split(os.pathsep)[0]
    try:
        config = KubeConfig.from_file(path) if path else KubeConfig.from_env()
        client = Client(config, timeout=httpx2.Timeout(10.0))
    except (ConfigError, OSError) as exc:
        raise DiscoveryError(f"Kubernetes API for Service {namespace}/{name}: {exc}") from exc
    try:
        obj = client.get(Endpoints, name, namespace=namespace)
    except ApiError as exc:
        raise DiscoveryError(
            f"Service {namespace}/{name}: {exc.status.code} {exc.status.message}"
        ) from exc
    except Exception as exc:  # httpx2 transport errors: the API server is not reachable
        raise DiscoveryError(f"Service {namespace}/{name}: {type(exc).__name__}: {exc}") from exc
    finally:
        client.close()
    found = addresses_from_endpoints(dict(obj))
    if not found:
        raise DiscoveryError(f"Service {namespace}/{name} has no ready endpoint")
    return found


__all__ = ["DiscoveryError", "addresses_from_endpoints", "service_addresses"]

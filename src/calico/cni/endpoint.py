"""The WorkloadEndpoint the plugin writes for a pod (the policy agent consumes exactly this shape).

Name: Calico's (:func:`wep_name`): ``<node>-k8s-<pod>-<endpoint>`` for a Kubernetes pod (both
K8S_POD_NAMESPACE and K8S_POD_NAME given), else ``<node>-cni-<container id>-<endpoint>`` in
namespace ``default``, every ``-`` inside a part doubled.
Labels: the pod's labels plus ``projectcalico.org/namespace``, ``projectcalico.org/orchestrator``
and, when known, ``projectcalico.org/serviceaccount``. Profiles: ``kns.<ns>`` (+ ``ksa.<ns>.<sa>``)
for Kubernetes pods; the network name for other containers, with that Profile created when missing
(members may talk to each other, everything may leave), as Calico's CNI plugin did.
"""

from __future__ import annotations

import json
import re
from typing import Any

from calico.datastore.client import AlreadyExists, Client, NotFound
from calico.model import kinds
from calico.model.kinds import API_VERSION

WEP_KIND = kinds.lookup("WorkloadEndpoint")
PROFILE_KIND = kinds.lookup("Profile")


class Workload:
    """Who the pod is, from CNI_ARGS (and the Kubernetes API when configured)."""

    def __init__(
        self,
        *,
        node: str,
        container_id: str,
        ifname: str,
        namespace: str,
        pod: str,
    ) -> None:
        self.node = node
        self.container_id = container_id
        self.ifname = ifname
        self.namespace = namespace or "default"
        self.pod = pod
        self.labels: dict[str, str] = {}
        self.service_account: str | None = None
        self.ports: list[dict[str, Any]] = []

    @property
    def orchestrator(self) -> str:
        return "k8s" if self.pod else "cni"

    @property
    def workload(self) -> str:
        return self.pod or self.container_id

    @property
    def veth_key(self) -> str:
        """What the host veth name hashes: ``<ns>.<pod>`` for Kubernetes, else the container id."""
        return f"{self.namespace}.{self.pod}" if self.pod else self.container_id

    @property
    def wep_name(self) -> str:
        return wep_name(node=self.node, orchestrator=self.orchestrator, endpoint=self.ifname,
                        pod=self.pod, container_id=self.container_id)  # fmt: skip

    def profiles(self, network: str) -> list[str]:
        if self.orchestrator != "k8s":
            return [network]
        out = [f"kns.{self.namespace}"]
        if self.service_account:
            out.append(f"ksa.{self.namespace}.{self.service_account}")
        return out

    def all_labels(self) -> dict[str, str]:
        labels = dict(self.labels)
        labels["projectcalico.org/namespace"] = self.namespace
        labels["projectcalico.org/orchestrator"] = self.orchestrator
        if self.service_account:
            labels["projectcalico.org/serviceaccount"] = self.service_account
        return labels


# The model's resource-name rule (calico.model.fields.dns_subdomain), kept here because the CNI
# cannot afford to import the model; tests/unit/cni checks that the two agree.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def wep_name(
    *, node: str, orchestrator: str, endpoint: str, pod: str = "", container_id: str = "",
    workload: str = "",
) -> str:  # fmt: skip
    """Calico's WorkloadEndpoint name: the orchestrator's four segments joined by ``-``, every
    ``-`` inside a segment doubled. ``k8s``: node, k8s, pod, endpoint; ``cni``: node, cni,
    container ID, endpoint; ``libnetwork``: node, libnetwork, libnetwork, endpoint; any other
    (``openstack``...): node, orchestrator, workload, endpoint. ValueError names a segment that
    is empty or begins or ends with ``-`` (Calico refuses those too)."""
    middle = {
        "k8s": ("pod", pod),
        "cni": ("containerID", container_id),
        "libnetwork": ("orchestrator", orchestrator),
    }.get(orchestrator, ("workload", workload))
    segments = [("node", node), ("orchestrator", orchestrator), middle, ("endpoint", endpoint)]
    for field, value in segments:
        if not value:
            raise ValueError(f"{field}: required for a WorkloadEndpoint name")
        if value[0] == "-" or value[-1] == "-":
            raise ValueError(f"{field} {value!r}: must not begin or end with '-'")
    name = "-".join(value.replace("-", "--") for _, value in segments)
    if len(name) > 253 or not _NAME.fullmatch(name):
        # The agent would refuse the endpoint (the model's resource-name rule) and the pod would
        # stay isolated: refuse the call instead, naming the segment at fault.
        field, value = next(((f, v) for f, v in segments if not _NAME.fullmatch(v)), ("name", name))
        raise ValueError(
            f"{field} {value!r}: a WorkloadEndpoint name takes lower-case alphanumerics, '-' "
            "and '.' (at most 253 characters)"
        )
    return name


def build(
    w: Workload, *, network: str, host_if: str, mac: str, ip_networks: list[str]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "orchestrator": w.orchestrator,
        "node": w.node,
        "containerID": w.container_id,
        "pod": w.pod or None,
        "endpoint": w.ifname,
        "interfaceName": host_if,
        "mac": mac,
        "ipNetworks": ip_networks,
        "profiles": w.profiles(network),
    }
    if not w.pod:
        del spec["pod"]
        spec["workload"] = w.container_id
    if w.ports:
        spec["ports"] = w.ports
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkloadEndpoint",
        "metadata": {"name": w.wep_name, "namespace": w.namespace, "labels": w.all_labels()},
        "spec": spec,
    }


def write(client: Client, wep: dict[str, Any]) -> None:
    client.apply(wep, validate=False)


def key(w: Workload) -> str:
    return WEP_KIND.key(w.wep_name, w.namespace)


def encode_new(wep: dict[str, Any]) -> str:
    """The stored JSON of a newly created endpoint, exactly as ``Client.create`` writes it (new
    ``uid`` and ``creationTimestamp``): for writing it inside the IPAM transaction."""
    import datetime
    import uuid

    meta = {k: v for k, v in wep["metadata"].items() if k != "resourceVersion"}
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault(
        "creationTimestamp", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    return json.dumps(
        {**wep, "apiVersion": API_VERSION, "metadata": meta}, separators=(",", ":"), sort_keys=True
    )


def network_profile(network: str) -> dict[str, Any]:
    """The Profile of a non-Kubernetes network: members may talk to each other, anything may
    leave, and every member carries the label ``<network>: ""``."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Profile",
        "metadata": {"name": network},
        "spec": {
            "ingress": [{"action": "Allow", "source": {"selector": f"has({network})"}}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {network: ""},
        },
    }


def profile_key(network: str) -> str:
    return PROFILE_KIND.key(network)


def ensure_network_profile(client: Client, network: str) -> None:
    """Create the non-Kubernetes network's Profile if it does not exist yet (a delegated-IPAM
    ADD; with calico-ipam it is ensured inside the IPAM transaction instead)."""
    try:
        client.get("Profile", network)
    except NotFound:
        try:
            client.create(network_profile(network), validate=False)
        except AlreadyExists:
            pass


def delete_if_ours(client: Client, w: Workload) -> bool:
    """Delete the endpoint unless it belongs to another container (a newer sandbox of this pod).

    Returns False when the endpoint exists but is another container's (the caller then leaves the
    veth alone too, since that container shares the host veth name).
    """
    key = WEP_KIND.key(w.wep_name, w.namespace)
    for _ in range(10):
        kv = client.backend.get(key)
        if kv is None:
            return True
        owner = (json.loads(kv.value).get("spec") or {}).get("containerID")
        if owner and owner != w.container_id:
            return False
        if client.backend.delete(key, mod_revision=kv.mod_revision):
            return True
    return False  # it kept changing under us: someone else owns it now

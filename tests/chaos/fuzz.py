"""Hypothesis strategies for the fuzz tests: valid resources of every kind mutated at a random
place (a value replaced by junk, a key removed, an unknown key added), junk JSON values, Kubernetes
NetworkPolicies, CNI configurations and environments, selector-shaped text.

``settings()`` bounds the examples: a few dozen per property in ``make test``, thousands in
``make chaos`` (``CALICO_CHAOS=long``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.chaos.figures import rounds

API = "projectcalico.org/v3"


def fuzz_settings(short: int = 60, long: int = 2000) -> settings:
    return settings(
        max_examples=rounds(short, long),
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
        derandomize=False,
    )


def _res(kind: str, spec: dict[str, Any], *, ns: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"fz-{kind.lower()}", "labels": {"app": "x"}}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


RULE = {
    "action": "Allow",
    "protocol": "TCP",
    "source": {"selector": "app == 'a'", "nets": ["10.0.0.0/8"], "notPorts": [22]},
    "destination": {"ports": [80, "1000:2000", "http"], "namespaceSelector": "all()"},
}
TEMPLATES: list[dict[str, Any]] = [
    _res("IPPool", {"cidr": "10.80.0.0/16", "blockSize": 26, "ipipMode": "Never",
                    "vxlanMode": "CrossSubnet", "natOutgoing": True, "nodeSelector": "all()"}),
    _res("NetworkPolicy", {"order": 10, "selector": "app == 'x'", "types": ["Ingress", "Egress"],
                           "ingress": [RULE], "egress": [{"action": "Deny", "protocol": "UDP",
                                                          "destination": {"ports": [53]}}]},
         ns="default"),
    _res("GlobalNetworkPolicy", {"order": 1, "selector": "has(app)", "ingress": [
        {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}}],
        "applyOnForward": True, "preDNAT": False, "doNotTrack": False}),
    _res("Profile", {"ingress": [RULE], "egress": [{"action": "Allow"}],
                     "labelsToApply": {"k": "v"}}),
    _res("HostEndpoint", {"node": "n1", "interfaceName": "eth0", "expectedIPs": ["10.0.0.1"],
                          "profiles": ["p"], "ports": [{"name": "http", "port": 80,
                                                        "protocol": "TCP"}]}),
    _res("WorkloadEndpoint", {"orchestrator": "k8s", "node": "n1", "pod": "p", "endpoint": "eth0",
                              "interfaceName": "cali0123456789a", "ipNetworks": ["10.1.2.3/32"],
                              "profiles": ["kns.default"], "containerID": "abc",
                              "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
         ns="default"),
    _res("BGPPeer", {"peerIP": "10.0.0.9", "asNumber": 64512, "node": "n1"}),
    {**_res("BGPConfiguration", {"logSeverityScreen": "Info", "nodeToNodeMeshEnabled": True,
                                 "asNumber": 64512}), "metadata": {"name": "default"}},
    _res("FelixConfiguration", {"logSeverityScreen": "Debug", "defaultEndpointToHostAction": "Drop",
                                "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22}]}),
    _res("Node", {"bgp": {"ipv4Address": "10.0.0.1/24", "asNumber": 64512}}),
    _res("GlobalNetworkSet", {"nets": ["192.0.2.0/24", "2001:db8::/64"]}),
]  # fmt: skip

junk_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "-1", "all()", "!", "10.0.0.0/33", "::/129", "TCP", "65536",
                     "a" * 300, "\x00", "é", "${x}", "1e999", "0x10", "tcp:22", "Allow"]),
)  # fmt: skip
junk_values: st.SearchStrategy[Any] = st.recursive(
    junk_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``obj`` (dict keys and list indexes)."""
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


def dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


@dataclass
class Mutation:
    obj: Any
    path: tuple[Any, ...]
    action: str  # replace | delete | add
    value: Any = None

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return f"Mutation({self.action} {dotted(self.path)} = {self.value!r})"


@st.composite
def mutated(draw: Any, templates: list[dict[str, Any]] = TEMPLATES) -> Mutation:
    obj = copy.deepcopy(draw(st.sampled_from(templates)))
    path = draw(st.sampled_from(paths(obj)))
    action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
    parent: Any = obj
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if action == "replace":
        value = draw(junk_values)
        parent[last] = value
        return Mutation(obj, path, action, value)
    if action == "delete":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
        return Mutation(obj, path, action)
    target = parent[last] if isinstance(parent[last], dict) else parent
    key = draw(st.text(min_size=1, max_size=12))
    value = draw(junk_values)
    if isinstance(target, dict):
        target[key] = value
    return Mutation(obj, path, action, value)


# ---- Kubernetes NetworkPolicy ---------------------------------------------------------------

K8S_NP: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "np", "namespace": "default"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "web"},
                        "matchExpressions": [{"key": "tier", "operator": "In",
                                              "values": ["a", "b"]}]},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}},
                               "namespaceSelector": {"matchLabels": {"env": "prod"}}},
                              {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                     "ports": [{"protocol": "TCP", "port": 80}, {"port": "http"},
                               {"protocol": "UDP", "port": 1000, "endPort": 1010}]}],
        "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}],
    },
}  # fmt: skip

# ---- CNI ------------------------------------------------------------------------------------

CNI_COMMANDS = st.sampled_from(["ADD", "DEL", "CHECK", "VERSION", "", "add", "GC", "STATUS", "X"])
safe_names = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters="/\x00"), min_size=0, max_size=30
).filter(lambda s: s not in (".", ".."))


def cni_env(draw: Any) -> dict[str, str]:
    """Junk CNI_* values; CNI_NETNS always names a namespace that does not exist (the fuzzed
    calls must never reach a real namespace)."""
    env = {
        "CNI_COMMAND": draw(CNI_COMMANDS),
        "CNI_CONTAINERID": draw(safe_names),
        "CNI_NETNS": "/var/run/netns/calt-fuzz-absent-" + draw(safe_names),
        "CNI_IFNAME": draw(st.one_of(st.just("eth0"), safe_names)),
        "CNI_PATH": draw(st.one_of(st.just("/nonexistent"), safe_names)),
        "CNI_ARGS": draw(
            st.one_of(
                st.just("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p"),
                st.text(max_size=60).map(lambda s: s.replace("\x00", "")),
            )
        ),
    }
    return {k: v for k, v in env.items() if draw(st.booleans()) or k == "CNI_COMMAND"}

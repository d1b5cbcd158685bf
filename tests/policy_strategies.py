"""Hypothesis strategies for Calico policy resources (valid and invalid field values mixed), and
the oracle that says what the agent's calculation graph must program for an accepted resource.

Shared by the unit property test (validation entry point) and the integration one (calicoctl
against a real etcd). Each field is valid most of the time and invalid now and then, so about
half the generated resources pass validation and the rest fail on one field or on a cross-field
rule (ports without TCP/UDP/SCTP, ICMP fields without ICMP, nets of the wrong ipVersion, ...).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import strategies as st

from calico.calc.graph import CalcGraph
from calico.dpapi import messages as m
from calico.model import kinds

Obj = dict[str, Any]
T = Any

NAMESPACE = "default"
NODE = "node1"
WEP_LABELS = {"app": "web", "role": "db"}
PROFILE = f"kns.{NAMESPACE}"


def mostly(
    valid: st.SearchStrategy[T], invalid: st.SearchStrategy[T], one_in: int = 10
) -> st.SearchStrategy[T]:
    """``invalid`` one time in ``one_in``, else ``valid`` (the simplest examples are valid)."""
    return st.integers(1, one_in).flatmap(lambda n: invalid if n == one_in else valid)


def optional(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    return st.one_of(st.none(), strategy)


# ---- field values ------------------------------------------------------------------------------

# Selectors that all match the test endpoint (so an accepted policy is active on it).
MATCHING = ["all()", "app == 'web'", "has(app)", "app in {'web', 'db'}", "!has(missing)", ""]
SELECTORS = ["role == 'db'", "app != 'x'", "has(role) && app == 'web'", "global()", "all()"]
BAD_SELECTORS = ["app ==", "has(", "&& x", "app == 'web", "in {}"]

PORT_PROTOCOLS = ["TCP", "tcp", "Udp", "UDP", "SCTP", "sctp", 6, 17, 132, "6", "17"]
ICMP_PROTOCOLS = {4: ["ICMP", "icmp", 1, "1"], 6: ["ICMPv6", "icmpv6", 58, "58"]}
OTHER_PROTOCOLS = ["UDPLite", 47, "47", 0, 255, 136]
BAD_PROTOCOLS = ["XYZ", "tcp6", "256", "-1", "", True, 256, 999]


def v4_nets() -> st.SearchStrategy[str]:
    return st.ip_addresses(v=4).flatmap(lambda a: st.integers(0, 32).map(lambda p: f"{a}/{p}"))


def v6_nets() -> st.SearchStrategy[str]:
    return st.ip_addresses(v=6).flatmap(lambda a: st.integers(0, 128).map(lambda p: f"{a}/{p}"))


BAD_NETS = ["10.0.0.300/32", "10.0.0.0/33", "fd00::/129", "nope", "", 10]


def nets(version: int | None) -> st.SearchStrategy[Any]:
    """CIDRs of ``version``'s family (either when None), rarely the other family or garbage."""
    family = {4: v4_nets(), 6: v6_nets()}.get(version or 0, st.one_of(v4_nets(), v6_nets()))
    other = {4: v6_nets(), 6: v4_nets()}.get(version or 0, st.ip_addresses().map(str))
    return mostly(st.one_of(family, family, family, other), st.sampled_from(BAD_NETS))


port_names = st.one_of(
    st.from_regex(r"\A[a-z]([-a-z0-9]{0,13}[a-z0-9])?\Z"), st.sampled_from(["http", "1dns", "a-b"])
)
ports = mostly(
    st.one_of(
        st.integers(1, 65535),
        st.integers(1, 65535).map(str),
        st.tuples(st.integers(1, 65535), st.integers(1, 65535)).map(lambda t: f"{min(t)}:{max(t)}"),
        port_names,
    ),
    st.one_of(
        st.sampled_from([0, 65536, "70000", "9:1", "Bad_Name", "a" * 16, "1:", ":2", True, 1.5]),
        st.integers(-5, 0),
    ),
)

selectors = mostly(st.sampled_from(SELECTORS), st.sampled_from(BAD_SELECTORS))


def present(draw: st.DrawFn, one_in: int) -> bool:
    return draw(st.integers(1, one_in)) == one_in


@st.composite
def entity(draw: st.DrawFn, version: int | None, with_ports: bool) -> Obj:
    out: Obj = {}
    for key, values in (
        ("nets", st.lists(nets(version), max_size=3)),
        ("notNets", st.lists(nets(version), max_size=2)),
        ("selector", selectors),
        ("notSelector", selectors),
        ("namespaceSelector", selectors),
        ("serviceAccounts", st.fixed_dictionaries({}, optional={
            "names": st.lists(st.sampled_from(["sa1", "sa2"])), "selector": selectors})),
    ):  # fmt: skip
        if present(draw, 4):
            out[key] = draw(values)
    for key in ("ports", "notPorts"):
        if present(draw, 2 if with_ports else 20):  # ports without a port protocol: rejected
            out[key] = draw(st.lists(ports, min_size=1, max_size=4))
    return out


icmp = st.fixed_dictionaries(
    {},
    optional={
        "type": mostly(st.integers(0, 254), st.sampled_from([255, -1, "8"])),
        "code": mostly(st.integers(0, 255), st.sampled_from([256, -1])),
    },
)


@st.composite
def rule(draw: st.DrawFn) -> Obj:
    out: Obj = {
        "action": draw(
            mostly(
                st.sampled_from(["Allow", "Deny", "Log", "Pass"]),
                st.sampled_from(["allow", "Reject", "next-tier", 5]),
            )
        )
    }
    version = draw(st.sampled_from([None, None, 4, 6]))
    if version is not None:
        out["ipVersion"] = draw(mostly(st.just(version), st.sampled_from([5, "4", True])))
    family = ICMP_PROTOCOLS.get(version or 0, ICMP_PROTOCOLS[4] + ICMP_PROTOCOLS[6])
    kind = draw(st.sampled_from(["none", "ports", "ports", "icmp", "other"]))
    choices = {"ports": PORT_PROTOCOLS, "icmp": family, "other": OTHER_PROTOCOLS}.get(kind)
    if choices:
        out["protocol"] = draw(mostly(st.sampled_from(choices), st.sampled_from(BAD_PROTOCOLS)))
    if present(draw, 4):
        out["notProtocol"] = draw(
            mostly(
                st.sampled_from(PORT_PROTOCOLS + OTHER_PROTOCOLS), st.sampled_from(BAD_PROTOCOLS)
            )
        )
    for key in ("icmp", "notICMP"):
        if present(draw, 2 if kind == "icmp" else 20):  # ICMP fields without ICMP: rejected
            out[key] = draw(icmp)
    for key in ("source", "destination"):
        if present(draw, 2):
            out[key] = draw(entity(version, with_ports=kind == "ports"))
    if present(draw, 40):
        out["bogus"] = 1  # an unknown field: rejected, never silently ignored
    return out


rules = st.lists(rule(), max_size=3)


@st.composite
def policy_resource(draw: st.DrawFn) -> Obj:
    """A NetworkPolicy, GlobalNetworkPolicy or Profile."""
    kind = draw(st.sampled_from(["NetworkPolicy", "GlobalNetworkPolicy", "Profile"]))
    spec: Obj = {}
    if draw(st.booleans()):
        spec["ingress"] = draw(rules)
    if draw(st.booleans()):
        spec["egress"] = draw(rules)
    meta: Obj = {
        "name": draw(mostly(st.sampled_from(["p1", "allow.dns", "x-1"]), st.just("Bad_Name"), 30))
    }
    if kind == "Profile":
        meta["name"] = PROFILE if meta["name"] != "Bad_Name" else meta["name"]
        if draw(st.booleans()):
            spec["labelsToApply"] = {"pcns.team": draw(st.sampled_from(["a", "b", "bad value"]))}
    else:
        _policy_fields(draw, kind, spec)
    if kind == "NetworkPolicy":
        meta["namespace"] = NAMESPACE
    return {"apiVersion": kinds.API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


def _policy_fields(draw: st.DrawFn, kind: str, spec: Obj) -> None:
    spec["selector"] = draw(mostly(st.sampled_from(MATCHING), st.sampled_from(BAD_SELECTORS), 30))
    if draw(st.booleans()):
        spec["order"] = draw(mostly(st.one_of(st.integers(0, 1000), st.floats(0, 1000)),
                                    st.sampled_from(["first", None, True])))  # fmt: skip
    if draw(st.integers(0, 2)) == 0:
        spec["types"] = draw(
            mostly(
                st.lists(
                    st.sampled_from(["Ingress", "Egress"]), min_size=1, max_size=2, unique=True
                ),
                st.sampled_from([["Ingres"], ["Ingress", "Ingress"], "Ingress"]),
            )
        )
    if kind == "GlobalNetworkPolicy":
        if draw(st.integers(0, 3)) == 0:
            spec["namespaceSelector"] = draw(mostly(st.just("all()"), st.just("has(")))
        if draw(st.integers(0, 4)) == 0:
            spec["preDNAT"] = spec["applyOnForward"] = True
            spec.pop("egress", None)
        if draw(st.integers(0, 4)) == 0:
            spec["doNotTrack"] = draw(st.sampled_from([True, False, "yes"]))
            spec["applyOnForward"] = draw(st.sampled_from([True, True, False]))


# ---- the agent side ----------------------------------------------------------------------------

PROTOCOL_ORACLE = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "icmpv6": "ipv6-icmp",
                   "sctp": "sctp", "udplite": "udplite", "6": "tcp", "17": "udp", "1": "icmp",
                   "58": "ipv6-icmp", "132": "sctp", "136": "udplite"}  # fmt: skip


def key_of(obj: Obj) -> str:
    kind = kinds.KINDS[obj["kind"]]
    meta = obj["metadata"]
    return kind.key(meta["name"], meta.get("namespace"))


def endpoint() -> Obj:
    """The local workload endpoint every generated policy selects, and the profile it names."""
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "WorkloadEndpoint",
        "metadata": {"name": "node1-k8s-web-eth0", "namespace": NAMESPACE, "labels": WEP_LABELS},
        "spec": {"node": NODE, "orchestrator": "k8s", "pod": "web", "endpoint": "eth0",
                 "interfaceName": "cali0123456789a", "ipNetworks": ["10.65.0.2/32"],
                 "profiles": [PROFILE], "ports": [{"name": "http", "protocol": "TCP", "port": 80}]},
    }  # fmt: skip


def program(obj: Any) -> tuple[CalcGraph, list[m.Message]]:
    """Feed ``obj`` (as stored or as written) with the endpoint to a fresh graph; its output."""
    graph = CalcGraph(NODE)
    graph.on_in_sync()
    ep = endpoint()
    graph.on_update(key_of(ep), ep)
    graph.on_update(key_of(obj), obj)
    return graph, graph.flush()


def programmed(
    obj: Obj, out: list[m.Message]
) -> tuple[tuple[m.Rule, ...], tuple[m.Rule, ...]] | None:
    """(inbound, outbound) rules the graph sent for ``obj``; None when it sent nothing for it."""
    name = obj["metadata"]["name"]
    for msg in out:
        if obj["kind"] == "Profile" and isinstance(msg, m.ActiveProfileUpdate) and msg.id == name:
            return msg.profile.inbound_rules, msg.profile.outbound_rules
        if isinstance(msg, m.ActivePolicyUpdate) and msg.id.name == name:
            return msg.policy.inbound_rules, msg.policy.outbound_rules
    return None


def expected_directions(stored: Obj) -> tuple[list[Obj], list[Obj]]:
    """The resource rules the agent must program, per direction (``types`` limits policies)."""
    spec = stored["spec"]
    ingress, egress = spec.get("ingress") or [], spec.get("egress") or []
    if stored["kind"] == "Profile":
        return ingress, egress
    types = spec["types"]
    return (ingress if "Ingress" in types else []), (egress if "Egress" in types else [])


def check_rule(raw: Obj, got: m.Rule) -> None:
    """One programmed rule against the resource rule it came from (independent oracle)."""
    assert got.action == str(raw["action"]).lower()
    assert got.ip_version == raw.get("ipVersion")
    for key, value in (("protocol", got.protocol), ("notProtocol", got.not_protocol)):
        want = raw.get(key)
        if want is None:
            assert value is None
        else:
            text = str(want).lower()
            assert value == PROTOCOL_ORACLE.get(text, text)
    icmp_raw = raw.get("icmp") or {}
    assert (got.icmp_type, got.icmp_code) == (icmp_raw.get("type"), icmp_raw.get("code"))
    for side, nets, not_nets, nums, named in (
        ("source", got.src_nets, got.not_src_nets, got.src_ports, got.src_named_port_ipset_ids),
        ("destination", got.dst_nets, got.not_dst_nets, got.dst_ports,
         got.dst_named_port_ipset_ids),
    ):  # fmt: skip
        ent = raw.get(side) or {}
        assert nets == tuple(_net(n) for n in ent.get("nets") or [])
        assert not_nets == tuple(_net(n) for n in ent.get("notNets") or [])
        raw_ports = ent.get("ports") or []
        n_named = sum(1 for p in raw_ports if isinstance(p, str) and not _numeric(p))
        assert (len(nums), len(named)) == (len(raw_ports) - n_named, n_named)


def _numeric(port: str) -> bool:
    return all(part.isdigit() for part in port.split(":"))


def _net(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))

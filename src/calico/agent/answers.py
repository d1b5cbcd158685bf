"""The agent's answers about what it programmed: the ``explain`` and ``counters`` control methods
and the per-rule metrics (composition: the dataplane's programmed state + the calc graph's IP set
descriptions + the kernel's rule counters).

``explain`` params (all strings unless said)::

    {"endpoint": {"kind": "WorkloadEndpoint" | "HostEndpoint", "name": "<ns>/<name>" | "<name>"},
     "direction": "egress" | "ingress",
     "packet": {"src": IP, "dst": IP, "protocol": "TCP" (default) | "UDP" | "SCTP" | "ICMP" |
                "ICMPv6", "port": int (TCP/UDP/SCTP), "sport": int (40000),
                "icmp_type": int (echo request), "icmp_code": int (0)}}

answer: ``dataplane.explain.explain``'s record plus ``node``, ``packet`` and ``programmed``
(``applies`` so far, ``pending``: changes not yet applied). ``counters`` params: ``{"policies":
["<ns>/<name>" | "<name>", ...]}`` (absent: every policy and profile programmed here); answer:
``{"node", "policies": {id: {"tier", "active", "rules": [{"direction", "rule", "action", "text",
"packets", "bytes"}]}}}``. Both run on the agent's loop (``control.Registry`` default).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from typing import Any

from calico.agent import control
from calico.calc.graph import CalcGraph
from calico.dataplane import counters, explain, loop, nft_render, nft_trace, rule_match
from calico.dpapi import messages as m

PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp", "ICMP": "icmp", "ICMPV6": "ipv6-icmp"}
ECHO_REQUEST = {4: 8, 6: 128}
METRIC_TIMEOUT = 5.0


def _int(params: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise control.MethodError(f"packet.{name}: expected an integer {lo}-{hi}, got {value!r}")
    return value


def parse_packet(params: Any) -> nft_trace.Packet:
    if not isinstance(params, dict):
        raise control.MethodError("packet: expected an object with src, dst, protocol, port")
    addrs = []
    for name in ("src", "dst"):
        try:
            addrs.append(ipaddress.ip_address(str(params.get(name))))
        except ValueError:
            raise control.MethodError(
                f"packet.{name}: {params.get(name)!r} is not an IP address"
            ) from None
    if addrs[0].version != addrs[1].version:
        raise control.MethodError(f"packet: src {addrs[0]} and dst {addrs[1]} are not one family")
    fam = addrs[0].version
    proto_text = str(params.get("protocol") or "TCP").upper()
    if proto_text not in PROTOCOLS:
        raise control.MethodError(
            f"packet.protocol: {params.get('protocol')!r} is not one of "
            "TCP, UDP, SCTP, ICMP, ICMPv6"
        )
    proto = "ipv6-icmp" if proto_text == "ICMP" and fam == 6 else PROTOCOLS[proto_text]
    if proto in rule_match.PORT_PROTOCOLS:
        port = _int(params, "port", None, 1, 65535)
        if port is None:
            raise control.MethodError(f"packet.port: a {proto_text} packet needs a port")
        sport = _int(params, "sport", 40000, 1, 65535)
        assert sport is not None
        return nft_trace.Packet(str(addrs[0]), str(addrs[1]), proto, port, sport)
    icmp_type = _int(params, "icmp_type", ECHO_REQUEST[fam], 0, 255)
    icmp_code = _int(params, "icmp_code", 0, 0, 255)
    return nft_trace.Packet(str(addrs[0]), str(addrs[1]), proto, 0, 0,
                            icmp_type=icmp_type, icmp_code=icmp_code)  # fmt: skip


def _chain_counts(chain: str, rule: int) -> tuple[int, int] | None:
    found = [c for c in counters.read_kernel(chain) if c.rule == rule]
    if not found:
        return None
    return sum(c.packets for c in found), sum(c.bytes for c in found)


def policy_tiers(plans: Any) -> dict[str, str]:
    """Policy id -> its tier, from the programmed endpoint plans."""
    out: dict[str, str] = {}
    for chain_plan in plans.values():
        for step in chain_plan.steps:
            for pid in step.policies:
                out[str(pid)] = step.tier
    return out


class Answers:
    def __init__(
        self,
        *,
        hostname: str,
        dataplane: loop.InternalDataplane,
        graph: CalcGraph,
        calls: control.LoopCalls,
    ) -> None:
        self.hostname = hostname
        self.dataplane = dataplane
        self.graph = graph
        self.calls = calls

    def register(self, registry: control.Registry) -> None:
        registry.register("explain", self.explain)
        registry.register("counters", self.counters)

    def programmed(self) -> explain.Programmed:
        dp = self.dataplane
        return explain.Programmed(
            plans=dp.endpoints.plans,
            policies=dp.policies.policies,
            profiles=dp.policies.profiles,
            chains=dp.table.chains(),
            sets=dp.table.sets(),
            describe=self.graph.describe_ipset,
            counters=_chain_counts,
        )

    def _require_sync(self) -> None:
        if not self.dataplane.in_sync:
            raise control.MethodError(
                f"node {self.hostname}: the agent has not finished its first sync with the "
                "datastore; nothing is programmed yet"
            )

    # ---- explain ------------------------------------------------------------------------------

    def explain(self, params: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        self._require_sync()
        ep_spec = params.get("endpoint")
        if not isinstance(ep_spec, dict) or ep_spec.get("kind") not in (
            "WorkloadEndpoint",
            "HostEndpoint",
        ):
            raise control.MethodError(
                'endpoint: expected {"kind": "WorkloadEndpoint" | "HostEndpoint", "name": ...}'
            )
        kind, name = ep_spec["kind"], str(ep_spec.get("name") or "")
        direction = params.get("direction")
        if direction not in ("ingress", "egress"):
            raise control.MethodError(f"direction: expected ingress or egress, got {direction!r}")
        pkt = parse_packet(params.get("packet"))
        ep = self.dataplane.endpoints.endpoint(name, host=kind == "HostEndpoint")
        if ep is None:
            raise control.MethodError(
                f"node {self.hostname} programs no {kind} {name} (not on this node, or not "
                "valid: see the agent's log)"
            )
        answer = explain.explain(ep, direction, pkt, self.programmed())
        return {
            "node": self.hostname,
            "packet": {"src": pkt.saddr, "dst": pkt.daddr, "protocol": pkt.proto,
                       "port": pkt.dport, "sport": pkt.sport, "icmp_type": pkt.icmp_type,
                       "icmp_code": pkt.icmp_code},
            **answer,
            "programmed": {"applies": self.dataplane.applies, "pending": self.dataplane.dirty},
            "took_ms": round((time.perf_counter() - start) * 1000, 2),
        }  # fmt: skip

    # ---- counters -----------------------------------------------------------------------------

    def counters(self, params: dict[str, Any]) -> dict[str, Any]:
        self._require_sync()
        wanted = params.get("policies")
        if wanted is not None and not (
            isinstance(wanted, list) and all(isinstance(x, str) for x in wanted)
        ):
            raise control.MethodError("policies: expected a list of policy names")
        pols = self.dataplane.policies.policies
        by_name = {str(pid): pid for pid in pols}
        tiers = policy_tiers(self.dataplane.endpoints.plans)
        out: dict[str, Any] = {}
        names = wanted if wanted is not None else sorted(by_name)
        for name in names:
            pid = by_name.get(name)
            if pid is None:
                out[name] = {"active": False, "tier": None, "rules": []}
                continue
            out[name] = {"active": True, "tier": tiers.get(name), "rules": self._rules(pid)}
        return {"node": self.hostname, "policies": out}

    def _rules(self, pid: m.PolicyID) -> list[dict[str, Any]]:
        policy = self.dataplane.policies.policies[pid]
        rows = []
        for inbound, rules in ((True, policy.inbound_rules), (False, policy.outbound_rules)):
            chain = nft_render.policy_chain(pid, inbound)
            counts = {c.rule: (c.packets, c.bytes) for c in counters.read_kernel(chain)}
            for i, rule in enumerate(rules):
                packets, nbytes = counts.get(i, (0, 0))
                rows.append({
                    "direction": "ingress" if inbound else "egress", "rule": i,
                    "action": rule.action,
                    "text": rule_match.rule_text(rule, self.graph.describe_ipset),
                    "packets": packets, "bytes": nbytes,
                })  # fmt: skip
        return rows

    # ---- metrics ------------------------------------------------------------------------------

    def _owners(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(on the loop) (kind, chain name suffix) -> (name, tier)."""
        tiers = policy_tiers(self.dataplane.endpoints.plans)
        out = {}
        for pid in self.dataplane.policies.policies:
            suffix = nft_render.chain_suffix(str(pid))
            out[("policy", suffix)] = (str(pid), tiers.get(str(pid), ""))
        for name in self.dataplane.policies.profiles:
            out[("profile", nft_render.chain_suffix(name))] = (name, "")
        return out

    def rule_samples(self) -> Iterator[tuple[dict[str, str], int, int]]:
        """(labels, packets, bytes) per policy/profile rule (the metrics thread; reads the
        kernel there, only the chain owners on the loop)."""
        try:
            owners = self.calls.submit(self._owners, timeout=METRIC_TIMEOUT)
        except control.MethodError:
            return
        for c in counters.read_kernel():
            owner = owners.get((c.kind, c.name))
            if owner is None:
                continue
            name, tier = owner
            labels = {"kind": c.kind, "tier": tier, "policy": name, "direction": c.direction,
                      "rule": str(c.rule)}  # fmt: skip
            yield labels, c.packets, c.bytes

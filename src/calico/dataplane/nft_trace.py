"""NftTrace: a packet traced through the rules we render (pure; no kernel).

Runs a packet through the chains of ``table inet calico`` as the desired state holds them
(``NftTable.chains()`` / ``sets()``, or :func:`render` from a dpapi message stream): the verdict,
the rules it met (the per-packet cost) and the path (chain, rule index of each rule that matched),
which maps back to tier / policy / rule through the chain names and ``;r<i>`` comments. It is the
rule-level walk for "see why" (``explain``) and the tests' oracle of the rendered ruleset (compared
with a reference evaluator that never reads the product's code).

It knows exactly the vocabulary of ``nft_render`` / ``endpoint_render`` (marks, jump/goto/return/
accept/drop, address/port/protocol matches, IP sets and named-port sets, ``ct state`` for a new
flow, ``log``/``counter``/``notrack``/``limit name`` as statements) and raises
:class:`Unsupported` on anything else, so a rendering change it does not understand fails loudly
instead of being misread.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from calico.dataplane import (
    endpoint_manager,
    flowlog_render,
    ipset_manager,
    nft_table,
    policy_manager,
    route_table,
    static_chains,
)
from calico.dpapi import messages as m

_TOKEN = re.compile(r'"[^"]*"|\{[^}]*\}|\S+')


@dataclass(frozen=True)
class Packet:
    saddr: str
    daddr: str
    proto: str = "tcp"  # tcp | udp | icmp | ...
    dport: int = 0
    sport: int = 40000
    ct_state: str = "new"
    icmp_type: int | None = None  # ICMP / ICMPv6 packets only
    icmp_code: int | None = None

    @property
    def family(self) -> int:
        return 6 if ":" in self.saddr else 4


@dataclass
class Result:
    verdict: str  # "accept" | "drop" | "return" (the start chain returned or ended)
    mark: int
    rules: int  # rules evaluated
    path: list[tuple[str, int]] = field(default_factory=list)  # rules that matched


class Unsupported(AssertionError):
    """A rule the interpreter does not understand."""


def _strip_comment(rule: str) -> str:
    i = rule.find(' comment "')
    return rule[:i] if i >= 0 else rule


@functools.lru_cache(maxsize=1 << 16)
def _tokens(rule: str) -> tuple[str, ...]:
    """A rule's tokens (cached: the same rule texts are walked again and again)."""
    return tuple(_TOKEN.findall(_strip_comment(rule)))


@functools.lru_cache(maxsize=1 << 12)
def _set_items(tok: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in tok.strip("{}").split(",") if x.strip())


@functools.lru_cache(maxsize=1 << 12)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@functools.lru_cache(maxsize=1 << 10)
def _networks(
    items: frozenset[str] | tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The prefixes (not the single addresses) among a set's elements, parsed once."""
    return tuple(ipaddress.ip_network(x, strict=False) for x in items if "/" in x)


def in_nets(addr: str, items: Collection[str]) -> bool:
    """Is ``addr`` in a set of nft address elements (addresses and prefixes)? Exact members
    first, then the prefixes (parsed once per set and cached)."""
    if addr in items:
        return True
    ip = _address(addr)
    key = items if isinstance(items, frozenset | tuple) else tuple(items)
    return any(net.version == ip.version and ip in net for net in _networks(key))


def _in_ports(port: int, items: tuple[str, ...]) -> bool:
    for item in items:
        lo, _, hi = item.partition("-")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


class Interpreter:
    def __init__(
        self, chains: dict[str, tuple[str, ...]], sets: dict[str, frozenset[str]] | None = None
    ) -> None:
        self.chains = chains
        self.sets = sets or {}

    def run(self, chain: str, pkt: Packet, mark: int = 0) -> Result:
        res = Result("return", mark, 0)
        verdict = self._chain(chain, pkt, res, depth=0)
        res.verdict = verdict or "return"
        return res

    # ---- chains -------------------------------------------------------------------------------

    def _chain(self, name: str, pkt: Packet, res: Result, depth: int) -> str | None:
        """None: returned (or fell off the end); else "accept"/"drop" (terminal)."""
        if depth > 50:
            raise Unsupported(f"jump depth exceeded at {name}")
        if name not in self.chains:
            raise Unsupported(f"jump to a chain that does not exist: {name}")
        for i, rule in enumerate(self.chains[name]):
            res.rules += 1
            outcome = self._rule(rule, pkt, res, depth)
            if outcome is None:
                continue
            res.path.append((name, i))
            kind, target = outcome
            if kind == "next":
                continue
            if kind in ("accept", "drop"):
                return kind
            if kind == "return":
                return None
            if kind == "jump":
                verdict = self._chain(target, pkt, res, depth + 1)
                if verdict is not None:
                    return verdict
                continue
            if kind == "goto":
                return self._chain(target, pkt, res, depth + 1)
        return None

    # ---- one rule -----------------------------------------------------------------------------

    def _rule(self, rule: str, pkt: Packet, res: Result, depth: int) -> tuple[str, str] | None:
        """None if a match fails; else the rule's outcome ("next" = statements only)."""
        toks = _tokens(rule)
        i = 0
        while i < len(toks):
            t = toks[i]
            if t in {"counter", "notrack"}:
                i += 1
            elif t in ("accept", "drop", "return"):
                return t, ""
            elif t in ("jump", "goto"):
                return t, toks[i + 1]
            elif t == "limit" and toks[i + 1] == "name":
                i += 3  # a statement here: it only ever gates the log after it
            elif t == "log":
                i = len(toks) if "level" not in toks else toks.index("level") + 2
            elif toks[i : i + 4] == ("meta", "mark", "set", "meta"):
                op, value = toks[i + 5], int(toks[i + 6], 16)
                res.mark = res.mark & value if op == "&" else res.mark | value
                i += 7
            else:
                ok, i = self._match(toks, i, pkt, res)
                if not ok:
                    return None
        return "next", ""

    def _match(self, toks: tuple[str, ...], i: int, pkt: Packet, res: Result) -> tuple[bool, int]:
        t = toks[i]
        if t == "ct" and toks[i + 1] == "state":
            return pkt.ct_state in toks[i + 2].split(","), i + 3
        if t == "meta" and toks[i + 1] == "mark" and toks[i + 2] == "&":
            mask, op, want = int(toks[i + 3], 16), toks[i + 4], int(toks[i + 5], 16)
            if op not in ("==", "!="):
                raise Unsupported(f"mark comparison {op!r}")
            return ((res.mark & mask) == want) == (op == "=="), i + 6
        if t == "meta" and toks[i + 1] == "nfproto":
            return toks[i + 2] == f"ipv{pkt.family}", i + 3
        if t == "meta" and toks[i + 1] == "l4proto":
            neg = toks[i + 2] == "!="
            value = toks[i + 3 if neg else i + 2]
            return (pkt.proto == value) != neg, i + (4 if neg else 3)
        if t in ("ip", "ip6") and toks[i + 2] == ".":
            return self._named_port(toks, i, pkt)
        if t in ("ip", "ip6") and toks[i + 1] in ("saddr", "daddr"):
            if (t == "ip") != (pkt.family == 4):
                raise Unsupported(f"family mismatch without a guard: {' '.join(toks)}")
            addr = pkt.saddr if toks[i + 1] == "saddr" else pkt.daddr
            neg = toks[i + 2] == "!="
            target = toks[i + 3 if neg else i + 2]
            items = self.sets[target[1:]] if target.startswith("@") else _set_items(target)
            return in_nets(addr, items) != neg, i + (4 if neg else 3)
        if t in ("icmp", "icmpv6") and toks[i + 1] in ("type", "code"):
            return self._icmp(toks, i, pkt)
        if t == "th" and toks[i + 1] in ("sport", "dport"):
            port = pkt.sport if toks[i + 1] == "sport" else pkt.dport
            neg = toks[i + 2] == "!="
            items = _set_items(toks[i + 3 if neg else i + 2])
            ok = pkt.proto in ("tcp", "udp", "sctp") and _in_ports(port, items)
            return ok != neg, i + (4 if neg else 3)
        raise Unsupported(f"unknown match at {t!r} in: {' '.join(toks)}")

    def _icmp(self, toks: tuple[str, ...], i: int, pkt: Packet) -> tuple[bool, int]:
        # icmp type N | icmp code N | icmp type . icmp code != { T . C }; nft adds the
        # protocol dependency, so neither form (nor its negation) matches a non-ICMP packet.
        is_icmp = pkt.proto == ("icmp" if toks[i] == "icmp" else "ipv6-icmp")
        if toks[i + 2] == ".":
            neg = toks[i + 5] == "!="
            want = [x.strip() for x in toks[i + (6 if neg else 5)].strip("{}").split(".")]
            hit = [str(pkt.icmp_type), str(pkt.icmp_code)] == want
            return is_icmp and hit != neg, i + (7 if neg else 6)
        value = pkt.icmp_type if toks[i + 1] == "type" else pkt.icmp_code
        neg = toks[i + 2] == "!="
        want_v = toks[i + 3 if neg else i + 2]
        return is_icmp and (str(value) == want_v) != neg, i + (4 if neg else 3)

    def _named_port(self, toks: tuple[str, ...], i: int, pkt: Packet) -> tuple[bool, int]:
        # ip daddr . meta l4proto . th dport [!=] @set
        addr = pkt.saddr if toks[i + 1] == "saddr" else pkt.daddr
        j = i + 8
        neg = toks[j] == "!="
        name = toks[j + 1 if neg else j][1:]
        port = pkt.sport if toks[i + 6] == "sport" else pkt.dport
        member = f"{addr} . {pkt.proto} . {port}"
        return (member in self.sets[name]) != neg, j + (2 if neg else 1)


# ---- the desired table of a message stream --------------------------------------------------


class _NoKernel:
    """Runners for the drivers that are never asked to run (desired state only)."""

    def run(self, *args: object, **kw: object) -> str:
        raise AssertionError("render() never touches the kernel")


def render(
    msgs: Iterable[m.Message], *, flow_logs: flowlog_render.FlowLogConfig | None = None
) -> nft_table.NftTable:
    """The desired ``table inet calico`` policy part (sets, policy/profile, endpoint and tier
    chains) that the dataplane's managers make of ``msgs``; no static chains, no I/O."""
    table = nft_table.NftTable(_NoKernel())
    for name in static_chains.MAPS:
        table.declare_map(name, static_chains.MAP_DECL)
    routes = route_table.RouteTable(runner=_NoKernel())
    ipsets = ipset_manager.IPSetManager(table)
    policies = policy_manager.PolicyManager(table)
    endpoints = endpoint_manager.EndpointManager(table, routes, policies)
    if flow_logs is not None:
        endpoints.set_flow_logs(flow_logs)
    managers = (ipsets, policies, endpoints)
    for msg in msgs:
        for mgr in managers:
            mgr.on_update(msg)
    ipsets.complete_deferred_work()
    return table

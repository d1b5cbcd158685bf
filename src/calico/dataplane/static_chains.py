"""The fixed part of the table: base chains (hooks), dispatch maps and chains, failsafes.

::

    prerouting raw   cali-PREROUTING-raw  -> @cali-fhraw-map (doNotTrack ingress, host endpoints)
    output raw       cali-OUTPUT-raw      -> @cali-thraw-map (doNotTrack egress)
    prerouting -110  cali-PREROUTING      -> @cali-fhdnat-map (preDNAT, before DNAT at -100)
    input filter     cali-INPUT   -> cali-encap-in (IPIP/VXLAN only from cluster nodes: the
                                  encap manager's); cali* -> cali-wl-to-host (workload egress,
                                  then DefaultEndpointToHostAction); others -> @cali-fh-map
    forward filter   cali-FORWARD cali* in -> cali-from-wl-dispatch; out -> cali-to-wl-dispatch;
                                  host endpoints -> @cali-fhfw-map / @cali-thfw-map
    output filter    cali-OUTPUT  to cali* allowed (host -> local workloads, as Felix);
                                  others -> @cali-th-map

Unknown ``cali*`` interfaces hit the dispatch chains' final drop: never fail open.
"""

from __future__ import annotations

from dataclasses import dataclass

from calico.dataplane import nft_render as r

WL_PREFIX = "cali*"
MAPS = (
    "cali-tw-map",
    "cali-fw-map",
    "cali-th-map",
    "cali-fh-map",
    "cali-thfw-map",
    "cali-fhfw-map",
    "cali-fhdnat-map",
    "cali-thraw-map",
    "cali-fhraw-map",
)
MAP_DECL = "type ifname : verdict;"
UNTRACKED_ACCEPTED = f"meta mark & {r.MARK_UNTRACKED:#x} == {r.MARK_UNTRACKED:#x} accept"
CLEAR_ALL = f"meta mark set meta mark & {0xFFFFFFFF & ~r.MARK_ALL:#x}"
# ICMPv6 a workload needs from/to its host before any policy (router/neighbour discovery).
ND_TYPES = "{ nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert }"


@dataclass(frozen=True, slots=True)
class StaticConfig:
    default_endpoint_to_host_action: str = "DROP"  # DROP | RETURN | ACCEPT
    failsafe_inbound: tuple[tuple[str, int], ...] = ()
    failsafe_outbound: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Chain:
    rules: tuple[str, ...]
    base: str | None = None  # "type filter hook input priority filter; policy accept;"


def _failsafe(ports: tuple[tuple[str, int], ...], direction: str) -> tuple[str, ...]:
    out = []
    for proto in sorted({p for p, _ in ports}):
        nums = ", ".join(str(n) for n in sorted({n for p, n in ports if p == proto}))
        out.append(
            r.with_comment(f"meta l4proto {proto} th {direction}port {{ {nums} }} counter accept")
        )
    return tuple(out)


def _wl_to_host(action: str) -> tuple[str, ...]:
    verdict = {"DROP": "drop", "ACCEPT": "accept", "RETURN": "return"}[action]
    return (
        f"meta l4proto ipv6-icmp icmpv6 type {ND_TYPES} accept",
        "jump cali-from-wl-dispatch",
        r.with_comment(f"counter {verdict}"),
    )


def chains(cfg: StaticConfig) -> dict[str, Chain]:
    def base(hook: str, prio: str) -> str:
        return f"type filter hook {hook} priority {prio}; policy accept;"

    return {
        "cali-PREROUTING-raw": Chain(
            (CLEAR_ALL, "iifname vmap @cali-fhraw-map"), base("prerouting", "raw")
        ),
        "cali-OUTPUT-raw": Chain(
            (CLEAR_ALL, "oifname vmap @cali-thraw-map"), base("output", "raw")
        ),
        "cali-PREROUTING": Chain(
            (
                UNTRACKED_ACCEPTED,
                "ct state established,related accept",
                f'iifname "{WL_PREFIX}" accept',
                "iifname vmap @cali-fhdnat-map",
            ),
            base("prerouting", "-110"),
        ),
        "cali-INPUT": Chain(
            (
                UNTRACKED_ACCEPTED,
                "jump cali-encap-in",
                f'iifname "{WL_PREFIX}" goto cali-wl-to-host',
                "iifname vmap @cali-fh-map",
            ),
            base("input", "filter"),
        ),
        "cali-FORWARD": Chain(
            (
                UNTRACKED_ACCEPTED,
                f'iifname "{WL_PREFIX}" jump cali-from-wl-dispatch',
                f'iifname != "{WL_PREFIX}" iifname vmap @cali-fhfw-map',
                f'oifname "{WL_PREFIX}" jump cali-to-wl-dispatch',
                f'oifname != "{WL_PREFIX}" oifname vmap @cali-thfw-map',
            ),
            base("forward", "filter"),
        ),
        "cali-OUTPUT": Chain(
            (
                UNTRACKED_ACCEPTED,
                f'oifname "{WL_PREFIX}" accept',
                "oifname vmap @cali-th-map",
            ),
            base("output", "filter"),
        ),
        "cali-wl-to-host": Chain(_wl_to_host(cfg.default_endpoint_to_host_action)),
        "cali-from-wl-dispatch": Chain(
            ("iifname vmap @cali-fw-map", r.with_comment("counter drop"))
        ),
        "cali-to-wl-dispatch": Chain(("oifname vmap @cali-tw-map", r.with_comment("counter drop"))),
        "cali-failsafe-in": Chain(_failsafe(cfg.failsafe_inbound, "d")),
        "cali-failsafe-out": Chain(_failsafe(cfg.failsafe_outbound, "d")),
    }

"""Per-rule hit counters of policies and profiles, read back from ``table inet calico``.

Every rule in a ``cali-pi/po/pri/pro-`` chain carries a ``counter`` and a comment ending in
``;r<i>``: the index of the datastore rule it renders (one rule may render as several nft rules:
per family, per named-port alternative); their counters are summed. For the CLI (``calicoctl``
can read them by running this inside the node's namespace) and for tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from calico.dataplane import libnft, nft_table

PREFIXES = {
    "cali-pi-": ("policy", "ingress"),
    "cali-po-": ("policy", "egress"),
    "cali-pri-": ("profile", "ingress"),
    "cali-pro-": ("profile", "egress"),
}


@dataclass(frozen=True, slots=True)
class RuleCounter:
    kind: str  # "policy" | "profile"
    name: str  # "<namespace>/<name>" or "<name>" (as in the chain name)
    direction: str  # "ingress" | "egress"
    rule: int
    packets: int
    bytes: int


def _owner(chain: str) -> tuple[str, str, str] | None:
    for prefix, (kind, direction) in PREFIXES.items():
        if chain.startswith(prefix):
            return kind, chain[len(prefix) :], direction
    return None


def parse(listing: str) -> list[RuleCounter]:
    """Counters from ``nft -j list table inet calico`` output."""
    totals: dict[tuple[str, str, str, int], list[int]] = {}
    for obj in json.loads(listing).get("nftables", []):
        rule = obj.get("rule")
        if not rule or ";r" not in rule.get("comment", ""):
            continue
        owner = _owner(rule["chain"])
        if owner is None:
            continue
        index = int(rule["comment"].rsplit(";r", 1)[1])
        for expr in rule.get("expr", []):
            if "counter" in expr:
                acc = totals.setdefault((*owner, index), [0, 0])
                acc[0] += expr["counter"]["packets"]
                acc[1] += expr["counter"]["bytes"]
    return [RuleCounter(k, n, d, i, p, b) for (k, n, d, i), (p, b) in sorted(totals.items())]


def read(runner: libnft.NftRunner | None = None) -> list[RuleCounter]:
    runner = runner or libnft.default_runner()
    return parse(runner.run(f"list table {nft_table.T}", json=True))

"""Flow logs: verdict points, their compact NFLOG prefixes, and the flow record (pure).

The kernel logs a packet through nftables ``log group N prefix P`` at each *verdict point* of the
rendered chains (a policy or profile rule's Deny or Allow, a tier's default drop, an endpoint
chain's final drop; and the same points of the staged walk). NFLOG prefixes are short, so ``P``
names the point by a content hash that the agent maps back through the points the dataplane
registered when it rendered them::

    prefix = <A|D><I|E>[S]:<12 hex>      e.g. "DI:3fa2c1d0e9b7"  (deny, ingress, real)
                                              "AES:0c1d2e3f4a5b" (allow, egress, staged walk)

Action and direction are readable without the map (a record is never lost for an unknown id,
e.g. one logged by the previous agent's table before this one replaced it); the hash covers the
whole point, so the same point gets the same prefix on every node and after every restart.

A flow record is one line of JSON per (reporter, 5-tuple, verdict point) and interval, with
Calico's flow-log field names where Calico has one (``source_ip``, ``dest_port``, ``reporter``,
``action``, ...): :data:`RECORD_FIELDS` lists them; ``calicoctl flows`` and ``policy impact``
read them back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

ALLOW, DENY = "allow", "deny"
INGRESS, EGRESS = "ingress", "egress"
# What decided (policy_plan's ``by`` values, plus the endpoint-level allow of a tier step that
# an endpoint with a staged plan logs when allowed flows are not logged per rule).
BY_RULE, BY_TIER_DEFAULT, BY_PROFILE, BY_NO_PROFILE, BY_TIER = (
    "rule",
    "tier-default",
    "profile",
    "no-profile",
    "tier",
)
STAGED_PREFIX = "staged:"  # a staged policy's name in the dataplane (Calico's prefix)
_ID_LEN = 12


@dataclass(frozen=True, slots=True)
class VerdictPoint:
    """One place in the rendered chains where a packet gets (or, staged, would get) a verdict.

    ``policy`` is the policy's dataplane id text (``ns/name``, ``name``; staged ones carry the
    ``staged:`` prefix); a policy rule's tier is not part of the point (the same policy chain
    serves its tier on every endpoint): the agent finds it in the endpoint's plan.
    """

    action: str  # ALLOW | DENY
    direction: str  # INGRESS | EGRESS (the reporting endpoint's)
    by: str  # BY_*
    staged: bool = False
    tier: str | None = None
    policy: str | None = None
    profile: str | None = None
    rule: int | None = None

    def ident(self) -> str:
        text = "|".join(
            str(x)
            for x in (
                self.action,
                self.direction,
                self.by,
                self.staged,
                self.tier,
                self.policy,
                self.profile,
                self.rule,
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()[:_ID_LEN]

    def prefix(self) -> str:
        head = ("A" if self.action == ALLOW else "D") + ("I" if self.direction == INGRESS else "E")
        return f"{head}{'S' if self.staged else ''}:{self.ident()}"


@dataclass(frozen=True, slots=True)
class Prefix:
    """What a prefix says by itself."""

    action: str
    direction: str
    staged: bool
    ident: str


def parse_prefix(text: str) -> Prefix | None:
    """The parts of one of our prefixes, or None for anything else (another program's log)."""
    head, sep, ident = text.partition(":")
    if not sep or len(ident) != _ID_LEN or not all(c in "0123456789abcdef" for c in ident):
        return None
    if len(head) not in (2, 3) or head[0] not in "AD" or head[1] not in "IE":
        return None
    if len(head) == 3 and head[2] != "S":
        return None
    return Prefix(
        action=ALLOW if head[0] == "A" else DENY,
        direction=INGRESS if head[1] == "I" else EGRESS,
        staged=len(head) == 3,
        ident=ident,
    )


def point_json(point: VerdictPoint | None, *, tier: str | None = None) -> dict[str, Any] | None:
    """A verdict point as a flow record shows it (``tier`` fills in a rule's tier)."""
    if point is None:
        return None
    out: dict[str, Any] = {"by": point.by, "tier": point.tier or tier}
    if point.policy is not None:
        out["policy"] = point.policy
    if point.profile is not None:
        out["profile"] = point.profile
    if point.rule is not None:
        out["rule"] = point.rule
    return out


# The fields of a flow record (one JSON object per line). Endpoint fields: ``*_type`` is Calico's
# ``wep`` / ``hep`` / ``ns`` (a network set) / ``net`` (an address no resource holds).
RECORD_FIELDS = (
    "start_time",  # float, seconds since the epoch: the interval's first logged packet
    "end_time",  # float: its last
    "host",  # the reporting node
    "reporter",  # "src" (egress of the source endpoint) | "dst" (ingress of the destination)
    "action",  # "allow" | "deny": the real verdict
    "policy",  # the deciding point: {by, tier, policy?, profile?, rule?} | null when unknown
    "staged",  # null, or {action, point, policies}: the verdict with staged policies enforced
    "proto",  # "tcp" | "udp" | "icmp" | "ipv6-icmp" | a number
    "source_ip",
    "source_port",
    "source_type",
    "source_namespace",
    "source_name",
    "source_labels",
    "dest_ip",
    "dest_port",
    "dest_type",
    "dest_namespace",
    "dest_name",
    "dest_labels",
    "packets",  # packets logged (new-flow packets: retransmissions of a denied SYN count)
    "bytes",  # their IP length
)


def flow_key(record: dict[str, Any]) -> tuple[Any, ...]:
    """The 5-tuple of a record (with the reporter): what impact and follow group by."""
    return (
        record.get("reporter"),
        record.get("proto"),
        record.get("source_ip"),
        record.get("source_port"),
        record.get("dest_ip"),
        record.get("dest_port"),
    )

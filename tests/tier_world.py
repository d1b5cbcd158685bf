"""Random tiered-policy worlds and a reference evaluator written from Calico's rules, for tests.

A *world* is three workloads (a, b, c in namespace ``default``, labels ``app`` and ``team``),
some tiers (order or none, defaultAction Deny or Pass; sometimes no Tier resource for a tier a
policy names, or for ``default``), and policies (NetworkPolicy or GlobalNetworkPolicy, in a tier,
with an order or none, a selector, types given or inferred, ingress/egress rules whose action is
Allow, Deny, Pass or Log and whose match is a peer selector, a protocol and a port). The profile
``kns.default`` allows everything (as the namespace profile does), or, in some worlds, nothing.

:func:`verdict` is the reference: written from the rules in Calico's Tier reference, not from
the product's code. Per endpoint and direction: tiers in order (order, absent last, then name);
tiers with no policy selecting the endpoint in that direction are skipped; inside a tier,
policies in order (order, absent last, then name: ``namespace/name`` for a NetworkPolicy, as
Felix names them), inside a policy rules in order; Log goes on;
Allow and Deny end evaluation; Pass ends the tier; a tier where no rule matched applies its
defaultAction (Deny drops, Pass goes on); after the last tier, the profiles. A tier a policy names
that does not exist counts as unordered with defaultAction Deny; the built-in tiers (default,
kube-admin, kube-baseline) count as present with Calico's fixed values.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
NAMESPACE = "default"
NODE = "node1"
BUILT_IN = {
    "kube-admin": (1000.0, "Pass"),
    "default": (1e6, "Deny"),
    "kube-baseline": (1e7, "Pass"),
}


@dataclass(frozen=True)
class Workload:
    name: str
    ip: str
    labels: dict[str, str]
    iface: str


WORKLOADS = (
    Workload("a", "10.65.0.2", {"app": "a", "team": "x"}, "calia0000000001"),
    Workload("b", "10.65.0.3", {"app": "b", "team": "x"}, "calib0000000001"),
    Workload("c", "10.65.0.4", {"app": "c", "team": "y"}, "calic0000000001"),
)
BY_NAME = {w.name: w for w in WORKLOADS}
SELECTORS = {  # selector text -> which workloads it selects
    "all()": {"a", "b", "c"},
    "app == 'a'": {"a"},
    "app == 'b'": {"b"},
    "app == 'c'": {"c"},
    "team == 'x'": {"a", "b"},
    "team == 'y'": {"c"},
    "app == 'none'": set(),
}
PORTS = ((80, "TCP"), (8080, "TCP"), (53, "UDP"))  # what packets use (the probers serve them)


@dataclass
class Rule:
    action: str
    peer: str | None = None  # a SELECTORS key: the source (ingress) or destination (egress)
    protocol: str | None = None
    port: int | None = None

    def resource(self, ingress: bool) -> Obj:
        out: Obj = {"action": self.action}
        if self.protocol:
            out["protocol"] = self.protocol
        if self.peer is not None:
            out["source" if ingress else "destination"] = {"selector": self.peer}
        if self.port is not None:
            out.setdefault("destination", {})["ports"] = [self.port]
        return out

    def matches(self, peer: str, port: int, proto: str) -> bool:
        if self.peer is not None and peer not in SELECTORS[self.peer]:
            return False
        if self.protocol is not None and self.protocol != proto:
            return False
        return self.port is None or self.port == port


@dataclass
class Policy:
    name: str
    tier: str
    order: float | None
    selector: str
    ingress: list[Rule]
    egress: list[Rule]
    types: list[str] | None  # None: inferred
    kind: str = "GlobalNetworkPolicy"

    @property
    def sort_name(self) -> str:
        """Ties in order are broken by name; a NetworkPolicy's is ``namespace/name`` (Felix's)."""
        return f"{NAMESPACE}/{self.name}" if self.kind == "NetworkPolicy" else self.name

    def applies(self, ingress: bool) -> bool:
        types = self.types
        if types is None:  # Calico's inference
            types = (["Ingress"] if self.ingress or not self.egress else []) + (
                ["Egress"] if self.egress else []
            )
        return ("Ingress" if ingress else "Egress") in types

    def resource(self) -> Obj:
        spec: Obj = {"selector": self.selector}
        if self.tier != "default":
            spec["tier"] = self.tier
        if self.order is not None:
            spec["order"] = self.order
        if self.types is not None:
            spec["types"] = self.types
        if self.ingress:
            spec["ingress"] = [r.resource(True) for r in self.ingress]
        if self.egress:
            spec["egress"] = [r.resource(False) for r in self.egress]
        meta: Obj = {"name": self.name}
        if self.kind == "NetworkPolicy":
            meta["namespace"] = NAMESPACE
        return {"apiVersion": "projectcalico.org/v3", "kind": self.kind, "metadata": meta,
                "spec": spec}  # fmt: skip


@dataclass
class World:
    tiers: dict[str, tuple[float | None, str]]  # the Tier resources that exist
    policies: list[Policy]
    profile_allows: bool = True
    named_tiers: set[str] = field(default_factory=set)

    def tier_resources(self) -> list[Obj]:
        out = []
        for name, (order, action) in sorted(self.tiers.items()):
            spec: Obj = {"defaultAction": action}
            if order is not None:
                spec["order"] = order
            out.append({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
                        "metadata": {"name": name}, "spec": spec})  # fmt: skip
        return out

    def profile(self) -> Obj:
        rules = [{"action": "Allow"}] if self.profile_allows else []
        return {"apiVersion": "projectcalico.org/v3", "kind": "Profile",
                "metadata": {"name": f"kns.{NAMESPACE}"},
                "spec": {"ingress": rules, "egress": rules}}  # fmt: skip

    def resources(self) -> list[Obj]:
        return [*self.tier_resources(), self.profile(), *(p.resource() for p in self.policies)]

    def describe(self) -> str:
        lines = [f"tiers {self.tiers}, profile allows: {self.profile_allows}"]
        for p in self.policies:
            lines.append(
                f"  {p.kind} {p.name} tier={p.tier} order={p.order} sel={p.selector!r} "
                f"types={p.types} in={p.ingress} out={p.egress}"
            )
        return "\n".join(lines)


# ---- the reference --------------------------------------------------------------------------


def _tier(world: World, name: str) -> tuple[float | None, str]:
    if name in world.tiers:
        return world.tiers[name]
    if name in BUILT_IN:
        return BUILT_IN[name]
    return None, "Deny"


def _ordered(items: list[tuple[str, float | None]]) -> list[str]:
    return [n for n, _ in sorted(items, key=lambda t: (t[1] is None, t[1] or 0.0, t[0]))]


Decision = tuple[bool, tuple[object, ...]]  # allowed?, what decided


def direction_decision(
    world: World, ep: str, peer: str, port: int, proto: str, *, ingress: bool
) -> Decision:
    """Does the policy at endpoint ``ep`` allow this packet in this direction, and what decided:
    ``("rule", tier, policy, index)``, ``("tier-default", tier)``, ``("profile", "kns.default",
    0)`` or ``("no-profile",)``."""
    tier_names = {p.tier for p in world.policies}
    for tier in _ordered([(t, _tier(world, t)[0]) for t in tier_names]):
        pols = [
            p
            for p in world.policies
            if p.tier == tier and ep in SELECTORS[p.selector] and p.applies(ingress)
        ]
        if not pols:
            continue  # no policy of this tier selects the endpoint: skipped
        by_name = {p.sort_name: p for p in pols}
        outcome = None
        for name in _ordered([(p.sort_name, p.order) for p in pols]):
            rules = by_name[name].ingress if ingress else by_name[name].egress
            for index, rule in enumerate(rules):
                if rule.matches(peer, port, proto) and rule.action != "Log":
                    outcome = (rule.action, ("rule", tier, name, index))
                    break
            if outcome is not None:
                break
        if outcome is not None and outcome[0] in ("Allow", "Deny"):
            return outcome[0] == "Allow", outcome[1]
        if outcome is None and _tier(world, tier)[1] == "Deny":
            return False, ("tier-default", tier)
    if world.profile_allows:  # the profile: allow everything, or nothing
        return True, ("profile", f"kns.{NAMESPACE}", 0)
    return False, ("no-profile",)


def direction_verdict(
    world: World, ep: str, peer: str, port: int, proto: str, *, ingress: bool
) -> bool:
    """Does the policy at endpoint ``ep`` allow this packet in this direction?"""
    return direction_decision(world, ep, peer, port, proto, ingress=ingress)[0]


def verdict(world: World, src: str, dst: str, port: int, proto: str) -> bool:
    """Workload ``src`` -> workload ``dst`` (both local): src's egress, then dst's ingress."""
    return direction_verdict(world, src, dst, port, proto, ingress=False) and direction_verdict(
        world, dst, src, port, proto, ingress=True
    )


# ---- random worlds --------------------------------------------------------------------------

ACTIONS = ("Allow", "Deny", "Pass", "Log")


def random_rule(rnd: random.Random) -> Rule:
    rule = Rule(rnd.choice(ACTIONS))
    if rnd.random() < 0.6:
        rule.peer = rnd.choice(list(SELECTORS))
    if rnd.random() < 0.4:
        port, proto = rnd.choice(PORTS)
        rule.protocol = proto
        if rnd.random() < 0.7:
            rule.port = port
    return rule


def random_world(rnd: random.Random, *, missing_tiers: bool = True) -> World:
    custom = [f"t{i}" for i in range(rnd.randint(0, 3))]
    tiers: dict[str, tuple[float | None, str]] = {}
    for name in custom:
        if missing_tiers and rnd.random() < 0.1:
            continue  # a policy may name a tier that does not exist: fail closed
        order = rnd.choice([None, 0, 10, 10, 100, 2e6])
        tiers[name] = (order, rnd.choice(["Deny", "Pass"]))
    if rnd.random() < 0.5:
        tiers["default"] = BUILT_IN["default"]  # else: absent, treated as present
    policies = []
    for i in range(rnd.randint(1, 6)):
        tier = rnd.choice([*custom, "default", "default"])
        name = f"p{i}" if tier == "default" else f"{tier}.p{i}"
        ingress = [random_rule(rnd) for _ in range(rnd.randint(0, 3))]
        egress = [random_rule(rnd) for _ in range(rnd.randint(0, 2))]
        types = rnd.choice([None, None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]])
        policies.append(
            Policy(
                name=name,
                tier=tier,
                order=rnd.choice([None, 1, 5, 5, 50]),
                selector=rnd.choice(list(SELECTORS)),
                ingress=ingress,
                egress=egress,
                types=types,
                kind=rnd.choice(["GlobalNetworkPolicy", "NetworkPolicy"]),
            )
        )
    return World(tiers, policies, profile_allows=rnd.random() < 0.85)


def wep(w: Workload) -> Obj:
    """The workload's WorkloadEndpoint as the CNI plugin writes it."""
    labels = {**w.labels, "projectcalico.org/namespace": NAMESPACE,
              "projectcalico.org/orchestrator": "k8s"}  # fmt: skip
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": f"{NODE}-k8s-{w.name}-eth0", "namespace": NAMESPACE,
                     "labels": labels},
        "spec": {"node": NODE, "orchestrator": "k8s", "pod": w.name, "endpoint": "eth0",
                 "interfaceName": w.iface, "ipNetworks": [f"{w.ip}/32"],
                 "profiles": [f"kns.{NAMESPACE}"]},
    }  # fmt: skip

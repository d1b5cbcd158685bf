"""CalcGraph: the calculation graph's wiring (datastore updates in, dpapi messages out).

::

    on_updates(list[Update]) ─> Dispatcher (by kind, via calico.model.kinds.parse_key)
        │  ValidationFilter (calc.validation): the model's parse (calico.model.validation,
        │  the checks every writer runs) -> typed values; bad resource == absent, logged
        ├─ FelixConfiguration default / node.<me> ──────────────────────────> ConfigUpdate
        ├─ Profile ── labelsToApply ─> label inheritance ─┐
        │          └─ rules ──────────────────────────────┼─> ActiveRulesCalculator
        ├─ WEP/HEP/NetworkSet ─> effective labels ────────┤    (local endpoints × policies:
        │                        │                         │     policy index, sorter)
        │                        └─ local filter (node) ──┘         │ refs
        │                        all items ─> IPSetCalculator <─────┘
        │                                     (selector index over the cluster)
        ├─ (Global)NetworkPolicy ──────────> ActiveRulesCalculator
        ├─ Staged(Global|Kubernetes)NetworkPolicy ─> ActiveRulesCalculator (staged tiers)
        ├─ Tier (order, defaultAction) ────> ActiveRulesCalculator (endpoints' TierInfo)
        ├─ IPPool / Node ─(network_validation)─> NetworkPassthru ──> IPAMPool / HostMetadata /
        │        │                                                   VXLANTunnelEndpoint
        │        └──────────────────────────┐
        ├─ IPAM block ──────────────────────┼─> RouteResolver ──> RouteUpdate / RouteRemove
        ├─ WEP addresses and nodes ─────────┘   (encapsulated routes: IPIP, VXLAN)
        ▼
    EventSequencer (coalesce, order) ── flush() ──> list[dpapi message]

Synchronous and pure: no threads, no I/O. The caller (agent) feeds batches and calls flush()
when it wants output; everything between two flushes coalesces.

The reference (Invariant 1): ``recompute_differences(graph.snapshot())`` feeds a fresh graph the
current resources and compares its output with what was sent. A snapshot is frozen (resources are
kept as deflated JSON bytes, immutable, so a dict copy is a snapshot: and ~15× smaller than the
decoded dicts). The agent runs the comparison in a forked child, off its loop.
"""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from calico.calc import (
    active_rules_calculator,
    address_owners,
    event_sequencer,
    ipset_calculator,
    network_passthru,
    network_validation,
    route_resolver,
    validation,
)
from calico.dpapi import messages as m
from calico.dpapi.state import DataplaneState
from calico.model import kinds

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CalcStats:
    """What the graph holds right now (for the agent's metrics and status)."""

    local_endpoints: int  # this node's workload and host endpoints
    active_policies: int  # policies matching at least one local endpoint
    active_profiles: int  # profiles a local endpoint uses
    active_ipsets: int  # IP sets an active rule refers to
    invalid_resources: int  # resources treated as absent (graph.invalid)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
# The words every resource repeats, most common last: deflated against them, an endpoint's JSON
# (~480 bytes) keeps ~140. The reference copy is only read by the check, off the update path.
_ZDICT = (
    b'{"apiVersion":"projectcalico.org/v3","kind":"GlobalNetworkPolicy","spec":{"order":100,'
    b'"types":["Ingress","Egress"],"egress":[{"action":"Allow","destination":{"nets":["0.0.0.0/0"'
    b']}}],"ingress":[{"action":"Allow","protocol":"TCP","source":{"selector":"","namespaceSelect'
    b'or":""},"destination":{"ports":[80,443]}}],"selector":"all()"}}{"apiVersion":"projectcalic'
    b'o.org/v3","kind":"Profile","metadata":{"name":"kns.default","labels":{}},"spec":{"labelsToA'
    b'pply":{"pcns.kubernetes.io/metadata.name":"default"},"egress":[{"action":"Allow"}],"ingress'
    b'":[{"action":"Allow"}]}}{"apiVersion":"projectcalico.org/v3","kind":"NetworkPolicy","metad'
    b'ata":{"name":"knp.default.","namespace":"default"}}{"apiVersion":"projectcalico.org/v3","ki'
    b'nd":"WorkloadEndpoint","metadata":{"creationTimestamp":"2026-01-01T00:00:00Z","labels":{"ap'
    b'p":"","projectcalico.org/namespace":"default","projectcalico.org/orchestrator":"k8s","projec'
    b'tcalico.org/serviceaccount":"default"},"name":"-k8s-pod-eth0","namespace":"default","uid":""'
    b'},"spec":{"containerID":"","endpoint":"eth0","interfaceName":"cali","ipNetworks":["10.0.0.0'
    b'/32"],"mac":"","node":"node","orchestrator":"k8s","pod":"pod","ports":[],"profiles":["kns.d'
    b'efault","ksa.default.default"],"serviceAccountName":"default"}}'
)


def _pack(value: Any) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, -12, 4, zlib.Z_DEFAULT_STRATEGY, _ZDICT)
    return c.compress(_encode(value)) + c.flush()


def _unpack(raw: bytes) -> Any:
    d = zlib.decompressobj(-12, _ZDICT)
    return _decode(d.decompress(raw) + d.flush())


class UpdateLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def value(self) -> Any | None: ...


# The kinds the agent needs (the syncer watches these prefixes).
WATCHED_KINDS = (
    "WorkloadEndpoint",
    "HostEndpoint",
    "Profile",
    "NetworkPolicy",
    "GlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
    "Tier",
    "NetworkSet",
    "GlobalNetworkSet",
    "FelixConfiguration",
    "IPPool",
    "Node",
)


def watched_prefixes() -> list[str]:
    return [kinds.KINDS[k].prefix() for k in WATCHED_KINDS] + list(
        network_validation.BLOCK_PREFIXES
    )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the full-recompute check compares, frozen at one flush: every resource (deflated
    JSON bytes) and the state the messages sent so far describe."""

    hostname: str
    resources: dict[str, bytes]
    sent: DataplaneState


class CalcGraph:
    def __init__(self, hostname: str, *, quiet: bool = False) -> None:
        self.hostname = hostname
        self.sequencer = event_sequencer.EventSequencer(self._ipset_members)
        self.ipsets_calc = ipset_calculator.IPSetCalculator(self.sequencer)
        self.active_rules = active_rules_calculator.ActiveRulesCalculator(
            self.sequencer, self.ipsets_calc
        )
        self.network = network_passthru.NetworkPassthru(self.sequencer)
        self.routes = route_resolver.RouteResolver(hostname, self.sequencer, quiet=quiet)
        # key -> last good value as deflated JSON: the reference's input, and cheap to copy
        self.resources: dict[str, bytes] = {}
        self._items: dict[str, validation.Item] = {}
        self._local: set[str] = set()
        self._profile_labels: dict[str, dict[str, str]] = {}
        self._children: dict[str, set[str]] = defaultdict(set)
        self._felix_config: dict[str, dict[str, Any]] = {}
        self.invalid: dict[str, str] = {}  # key -> reason (for status / tests)

    def _ipset_members(self, set_id: str) -> frozenset[str]:
        return self.ipsets_calc.members(set_id)

    # ---- inputs -------------------------------------------------------------------------------

    def on_updates(self, updates: Iterable[UpdateLike]) -> None:
        for update in updates:
            self.on_update(update.key, update.value)

    def on_in_sync(self) -> None:
        self.sequencer.on_in_sync()

    def flush(self) -> list[m.Message]:
        self.active_rules.flush()
        self.routes.flush()
        return self.sequencer.flush()

    def describe_ipset(self, set_id: str) -> str | None:
        """The selector (or named port) an active IP set stands for (explain's rule text)."""
        return self.ipsets_calc.describe(set_id)

    def stats(self) -> CalcStats:
        endpoints, policies, profiles = self.active_rules.counts()
        return CalcStats(
            local_endpoints=endpoints,
            active_policies=policies,
            active_profiles=profiles,
            active_ipsets=self.ipsets_calc.active_count(),
            invalid_resources=len(self.invalid),
        )

    def describe_addresses(self, ips: Iterable[str]) -> dict[str, address_owners.AddressOwner]:
        """The endpoint or network set holding each address (flow logs; O(cluster) a call)."""
        return address_owners.owners(self._items, ips, self._item_resource)

    def _item_resource(self, item_id: str) -> Any | None:
        kind, _, ident = item_id.partition(":")
        ns, _, name = ident.rpartition("/")
        kind_name = {"wep": "WorkloadEndpoint", "hep": "HostEndpoint"}.get(kind)
        if kind_name is None:
            return None
        raw = self.resources.get(kinds.KINDS[kind_name].key(name, ns or None))
        return _unpack(raw) if raw is not None else None

    def on_update(self, key: str, value: Any | None) -> None:
        parsed = kinds.parse_key(key)
        if parsed is None:
            if network_validation.is_block_key(key):
                self._on_block_key(key, value)
            return
        kind, ns, name = parsed
        self.invalid.pop(key, None)
        if value is None:
            self.resources.pop(key, None)
        else:
            self.resources[key] = _pack(value)
        try:
            self._dispatch(kind, ns, name, value)
        except validation.InvalidResource as exc:
            logger.warning(
                "ignoring invalid %s %s: %s", kind.name, f"{ns}/{name}" if ns else name, exc
            )
            self.invalid[key] = str(exc)
            self.resources.pop(key, None)
            self.on_update(key, None)
            self.invalid[key] = str(exc)

    def _dispatch(self, kind: kinds.Kind, ns: str | None, name: str, value: Any | None) -> None:
        """Hand one resource (None: deleted) to the calc node for its kind."""
        match kind.name:
            case "WorkloadEndpoint":
                item_id = f"wep:{ns}/{name}"
                item = validation.workload_endpoint(item_id, ns or "", value) if value else None
                self._on_item(item_id, item)
            case "HostEndpoint":
                item_id = f"hep:{name}"
                self._on_item(item_id, validation.host_endpoint(item_id, value) if value else None)
            case "NetworkSet" | "GlobalNetworkSet":
                item_id = f"netset:{ns}/{name}" if ns else f"gnetset:{name}"
                item = validation.network_set(item_id, ns, value) if value else None
                self._on_item(item_id, item)
            case "Profile":
                self._on_profile(name, validation.profile(name, value) if value else None)
            case "NetworkPolicy" | "GlobalNetworkPolicy":
                pid = m.PolicyID(ns if kind.namespaced else None, name)
                self._on_policy(pid, validation.policy(pid, value) if value else None)
            case (
                "StagedNetworkPolicy"
                | "StagedGlobalNetworkPolicy"
                | "StagedKubernetesNetworkPolicy"
            ):
                self._on_staged(kind.name, ns if kind.namespaced else None, name, value)
            case "Tier":
                tier = validation.tier(name, value) if value else None
                self.active_rules.on_tier_update(name, tier)
            case "FelixConfiguration":
                self._on_felix_config(name, value)
            case "IPPool":
                self._on_pool(name, network_validation.ippool(name, value) if value else None)
            case "Node":
                self._on_node(name, network_validation.node(name, value) if value else None)

    # ---- the reference: full recompute --------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """A frozen copy for :func:`recompute_differences` (call right after ``flush()``): a dict
        copy of immutable bytes plus the sent state, no computation."""
        return Snapshot(self.hostname, dict(self.resources), self.sequencer.sent_state())

    def full_recompute_differences(self) -> list[str]:
        """Compare what was sent with a fresh graph fed the current snapshot (Invariant 1).

        Call right after ``flush()``. Returns human-readable differences; empty when they agree.
        Costs a full computation (O(cluster)), so the agent runs it rarely, off its loop.
        """
        return recompute_differences(self.snapshot())

    # ---- items, labels, locality --------------------------------------------------------------

    def _effective_labels(self, item: validation.Item) -> dict[str, str]:
        labels: dict[str, str] = {}
        for parent in item.parents:
            labels.update(self._profile_labels.get(parent, {}))
        labels.update(item.labels)
        return labels

    def _is_local(self, item: validation.Item) -> bool:
        return item.kind in (validation.WEP, validation.HEP) and item.node == self.hostname

    def _on_item(self, item_id: str, item: validation.Item | None) -> None:
        old = self._items.get(item_id)
        if old is not None:
            for parent in old.parents:
                self._children[parent].discard(item_id)
        wep = item if item is not None else old
        if wep is not None and wep.kind == validation.WEP:
            self.routes.on_workload(item_id, item.node if item else None, item.nets if item else ())
        if item is None:
            self._items.pop(item_id, None)
            self.ipsets_calc.on_item_remove(item_id)
            if item_id in self._local:
                self._local.discard(item_id)
                self.active_rules.on_endpoint_remove(item_id)
            return
        self._items[item_id] = item
        for parent in item.parents:
            self._children[parent].add(item_id)
        labels = self._effective_labels(item)
        self.ipsets_calc.on_item_update(item, labels)
        if self._is_local(item):
            self._local.add(item_id)
            self.active_rules.on_endpoint_update(item, labels)
        elif item_id in self._local:
            self._local.discard(item_id)
            self.active_rules.on_endpoint_remove(item_id)

    def _on_profile(self, name: str, data: validation.ProfileData | None) -> None:
        labels = dict(data.labels_to_apply) if data else {}
        if labels != self._profile_labels.get(name, {}):
            if labels:
                self._profile_labels[name] = labels
            else:
                self._profile_labels.pop(name, None)
            for item_id in sorted(self._children.get(name, ())):
                self._on_item(item_id, self._items[item_id])
        if data is None:
            self.active_rules.on_profile_remove(name)
        else:
            self.active_rules.on_profile_update(data)

    def _on_staged(self, kind: str, ns: str | None, name: str, value: Any | None) -> None:
        pid = validation.staged_id(kind, ns, name)
        if value is None:
            self._on_policy(pid, None)
        elif kind == "StagedKubernetesNetworkPolicy":
            self._on_policy(pid, validation.staged_kubernetes_policy(pid, value))
        else:
            self._on_policy(pid, validation.policy(pid, value))

    def _on_policy(self, pid: m.PolicyID, data: validation.PolicyData | None) -> None:
        if data is None:
            self.active_rules.on_policy_remove(pid)
        else:
            self.active_rules.on_policy_update(data)

    # ---- networking: pools, nodes, IPAM blocks ------------------------------------------------

    def _on_pool(self, name: str, pool: network_validation.PoolData | None) -> None:
        self.network.on_pool(name, pool)
        self.routes.on_pool(name, pool)

    def _on_node(self, name: str, node: network_validation.NodeData | None) -> None:
        self.network.on_node(name, node)
        self.routes.on_node(name, node)

    def _on_block_key(self, key: str, value: Any | None) -> None:
        """An IPAM block (its own key space, not a v3 resource). Invalid == absent, logged."""
        self.invalid.pop(key, None)
        try:
            net = network_validation.block_cidr(key)
        except validation.InvalidResource as exc:
            logger.warning("ignoring IPAM key %s: %s", key, exc)
            return
        node = None
        try:
            node = network_validation.block_affinity(net, value) if value is not None else None
        except validation.InvalidResource as exc:
            logger.warning("ignoring invalid IPAM block %s: %s", key, exc)
            self.invalid[key] = str(exc)
            value = None
        if value is None:
            self.resources.pop(key, None)
        else:
            self.resources[key] = _pack(value)
        self.routes.on_block(net, node, present=value is not None)

    # ---- config -------------------------------------------------------------------------------

    def _on_felix_config(self, name: str, value: Any | None) -> None:
        if name not in ("default", f"node.{self.hostname}"):
            return
        spec = (value or {}).get("spec") if isinstance(value, dict) else None
        if spec is not None and not isinstance(spec, dict):
            raise validation.InvalidResource(f"spec: expected a mapping, got {spec!r}")
        if value is None:
            self._felix_config.pop(name, None)
        else:
            self._felix_config[name] = dict(spec or {})
        glob = self._felix_config.get("default", {})
        node = self._felix_config.get(f"node.{self.hostname}", {})
        self.sequencer.on_config_update(
            m.ConfigUpdate(tuple(sorted(glob.items())), tuple(sorted(node.items())))
        )


def recompute_differences(snap: Snapshot) -> list[str]:
    """A fresh graph over ``snap.resources`` vs ``snap.sent``: the differences, empty if none."""
    fresh = CalcGraph(snap.hostname, quiet=True)
    fresh.on_in_sync()
    for key, raw in snap.resources.items():
        fresh.on_update(key, _unpack(raw))
    want = DataplaneState().apply_all(fresh.flush())
    got = snap.sent
    diffs = []
    for field in (
        "config",
        "ipsets",
        "policies",
        "profiles",
        "workload_endpoints",
        "host_endpoints",
        "pools",
        "hosts",
        "vteps",
        "routes",
    ):
        a, b = getattr(got, field), getattr(want, field)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(str(k) for k in set(a) ^ set(b) | {k for k in a if a.get(k) != b.get(k)})
            diffs.append(f"{field}: {len(keys)} differ, e.g. {keys[:5]}")
        else:
            diffs.append(f"{field}: sent {a!r}, full recompute {b!r}")
    return diffs

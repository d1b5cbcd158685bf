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
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from calico.calc import (
    active_rules_calculator,
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
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class CalcStats:
    """What the graph holds right now (for the agent's metrics and status)."""

    local_endpoints: int  # this node's workload and host endpoints
    active_policies: int  # policies matching at least one local endpoint
    active_profiles: int  # profiles a local endpoint uses
    active_ipsets: int  # IP sets an active rule refers to
    invalid_resources: int  # resources treated as absent (graph.invalid)


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
        self.resources: dict[str, Any] = {}  # key -> last good value (for resync / debugging)
        self._items: dict[str, validation.Item] = {}
        self._local: set[str] = set()
        self._profile_labels: dict[str, dict[str, str]] = {}
        self._children: dict[str, set[str]] = defaultdict(set)
        self._felix_config: dict[str, dict[str, Any]] = {}
        self.invalid: dict[str, str] = {}  # key -> reason (for status / tests)
        self._records: dict[str, tuple[Any, Any]] = {}  # key -> (value, its parsed record)
        self._reuse: dict[str, tuple[Any, Any]] = {}  # the checked graph's _records (recompute)

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

    def stats(self) -> CalcStats:
        endpoints, policies, profiles = self.active_rules.counts()
        return CalcStats(
            local_endpoints=endpoints,
            active_policies=policies,
            active_profiles=profiles,
            active_ipsets=self.ipsets_calc.active_count(),
            invalid_resources=len(self.invalid),
        )

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
            self.resources[key] = value
        try:
            match kind.name:
                case "WorkloadEndpoint":
                    item_id = f"wep:{ns}/{name}"
                    wep = self._record(key, value, validation.workload_endpoint, item_id, ns or "")
                    self._on_item(item_id, wep)
                case "HostEndpoint":
                    item_id = f"hep:{name}"
                    self._on_item(
                        item_id, self._record(key, value, validation.host_endpoint, item_id)
                    )
                case "NetworkSet" | "GlobalNetworkSet":
                    item_id = f"netset:{ns}/{name}" if ns else f"gnetset:{name}"
                    netset = self._record(key, value, validation.network_set, item_id, ns)
                    self._on_item(item_id, netset)
                case "Profile":
                    self._on_profile(name, self._record(key, value, validation.profile, name))
                case "NetworkPolicy" | "GlobalNetworkPolicy":
                    pid = m.PolicyID(ns if kind.namespaced else None, name)
                    self._on_policy(pid, self._record(key, value, validation.policy, pid))
                case "Tier":
                    tier = self._record(key, value, validation.tier, name)
                    self.active_rules.on_tier_update(name, tier)
                case "FelixConfiguration":
                    self._on_felix_config(name, value)
                case "IPPool":
                    self._on_pool(name, network_validation.ippool(name, value) if value else None)
                case "Node":
                    self._on_node(name, network_validation.node(name, value) if value else None)
        except validation.InvalidResource as exc:
            logger.warning(
                "ignoring invalid %s %s: %s", kind.name, f"{ns}/{name}" if ns else name, exc
            )
            self.invalid[key] = str(exc)
            self.resources.pop(key, None)
            self.on_update(key, None)
            self.invalid[key] = str(exc)

    def _record(self, key: str, value: Any | None, parse: Callable[..., R], *args: Any) -> R | None:
        """``parse(*args, value)`` (None for a delete), or the record the graph this one checks
        made of this very value: records are pure functions of the value, so a full recompute
        need not parse the whole snapshot again."""
        if not value:
            self._records.pop(key, None)
            return None
        hit = self._reuse.get(key)
        record = hit[1] if hit is not None and hit[0] is value else parse(*args, value)
        self._records[key] = (value, record)
        return record

    # ---- the reference: full recompute --------------------------------------------------------

    def full_recompute_differences(self) -> list[str]:
        """Compare what was sent with a fresh graph fed the current snapshot (Invariant 1).

        Call right after ``flush()``. Returns human-readable differences; empty when they agree.
        Costs a full computation (O(cluster)), so the agent runs it rarely.
        """
        fresh = CalcGraph(self.hostname, quiet=True)
        fresh._reuse = self._records
        fresh.on_in_sync()
        for key, value in self.resources.items():
            fresh.on_update(key, value)
        want = DataplaneState().apply_all(fresh.flush())
        got = self.sequencer.sent_state()
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
                keys = sorted(
                    str(k) for k in set(a) ^ set(b) | {k for k in a if a.get(k) != b.get(k)}
                )
                diffs.append(f"{field}: {len(keys)} differ, e.g. {keys[:5]}")
            else:
                diffs.append(f"{field}: sent {a!r}, full recompute {b!r}")
        return diffs

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
            self.resources[key] = value
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

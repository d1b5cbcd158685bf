"""NftTable: the driver that owns ``table inet calico`` (desired state -> one atomic transaction).

Managers set the desired chains, sets and map elements (in memory, cheap). ``apply()`` then:

* first time (or after a failure or detected drift): replaces the whole table in ONE transaction
  (``add table; delete table; table inet calico {...}``) - what was there before (an older
  agent's table) is adopted until this point and swept by it, and traffic never sees a gap;
* afterwards: sends only what changed since the last apply (new/flushed chains with their
  rules, set element deltas, map element deltas, then deletions), also as one transaction.

``check_drift()`` reads the table back (JSON) and compares chain names and rule comments (every
rule carries a content hash) with what was programmed; a mismatch schedules a full replace.

Counters survive a full replace when a ``read_counters`` is given (the agent's: the kernel's
rules over nfnetlink, ``nft_netlink.dump_rules``): right before the replace the counters of the
table being replaced are read and written into the new table's rules as ``counter packets P
bytes B``, for every rule with the same comment (content hash, rule index) in the same chain, so
the kernel keeps the totals (an agent restart carries them too: the old agent's table is what
the new one reads). A rule whose text changed starts from zero, as a chain flushed by a delta
does (its policy changed).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass

from calico.dataplane import libnft

logger = logging.getLogger(__name__)

FAMILY, TABLE = "inet", "calico"
T = f"{FAMILY} {TABLE}"


@dataclass(frozen=True, slots=True)
class SetSpec:
    decl: str
    elements: frozenset[str]


def _set_block(name: str, decl: str, elements: frozenset[str]) -> str:
    """Declare a set (a no-op if it exists) and add ``elements`` to it."""
    elems = f" elements = {{ {', '.join(sorted(elements))} }}" if elements else ""
    return f"table {T} {{\n  set {name} {{ {decl}{elems} }}\n}}"


def _q(key: str) -> str:
    return '"' + key + '"'


# (chain, comment, occurrence of that comment in the chain) -> (packets, bytes)
CounterKey = tuple[str, str, int]
CounterValues = dict[CounterKey, tuple[int, int]]
CounterReader = Callable[[], list[tuple[str, str, int, int]]]  # (chain, comment, packets, bytes)


def counter_values(rules: list[tuple[str, str, int, int]]) -> CounterValues:
    seen: Tally[tuple[str, str]] = Tally()
    out: CounterValues = {}
    for chain, comment, packets, nbytes in rules:
        if comment:
            out[(chain, comment, seen[(chain, comment)])] = (packets, nbytes)
            seen[(chain, comment)] += 1
    return out


def _with_counts(rule: str, counts: tuple[int, int]) -> str:
    """``rule`` with its ``counter`` statement starting at ``counts`` (packets, bytes)."""
    if rule.startswith("counter "):
        i = 0
    else:
        i = rule.find(" counter ")
        if i < 0:
            return rule
        i += 1
    return f"{rule[:i]}counter packets {counts[0]} bytes {counts[1]}{rule[i + 7 :]}"


class NftTable:
    def __init__(
        self, runner: libnft.NftRunner, *, read_counters: CounterReader | None = None
    ) -> None:
        self._runner = runner
        self._read_counters = read_counters
        self.carried = 0  # rules whose counters the last full replace carried over
        self._chains: dict[str, tuple[str, ...]] = {}
        self._bases: dict[str, str] = {}
        self._sets: dict[str, SetSpec] = {}
        self._maps: dict[str, dict[str, str]] = {}
        self._map_decls: dict[str, str] = {}
        self._limits: dict[str, str] = {}  # limit object -> its declaration ("rate 10/second")
        # What the kernel has (None: unknown -> next apply replaces the table).
        self._prog_chains: dict[str, tuple[str, ...]] | None = None
        self._prog_sets: dict[str, SetSpec] = {}
        self._prog_maps: dict[str, dict[str, str]] = {}
        self._prog_limits: dict[str, str] = {}
        self._dirty_chains: set[str] = set()
        self._dirty_sets: set[str] = set()
        self._dirty_map_keys: set[tuple[str, str]] = set()
        self.last_script = ""
        self.last_run_secs = 0.0

    # ---- desired state (no I/O) ---------------------------------------------------------------

    def set_base_chain(self, name: str, base: str, rules: tuple[str, ...]) -> None:
        self._bases[name] = base
        self.set_chain(name, rules)

    def set_chain(self, name: str, rules: tuple[str, ...]) -> None:
        if self._chains.get(name) != rules:
            self._chains[name] = rules
            self._dirty_chains.add(name)

    def delete_chain(self, name: str) -> None:
        if self._chains.pop(name, None) is not None:
            self._dirty_chains.add(name)

    def set_set(self, name: str, decl: str, elements: frozenset[str]) -> None:
        spec = SetSpec(decl, elements)
        if self._sets.get(name) != spec:
            self._sets[name] = spec
            self._dirty_sets.add(name)

    def delete_set(self, name: str) -> None:
        if self._sets.pop(name, None) is not None:
            self._dirty_sets.add(name)

    def declare_map(self, name: str, decl: str) -> None:
        self._map_decls[name] = decl
        self._maps.setdefault(name, {})

    def set_map_element(self, name: str, key: str, verdict: str) -> None:
        if self._maps[name].get(key) != verdict:
            self._maps[name][key] = verdict
            self._dirty_map_keys.add((name, key))

    def delete_map_element(self, name: str, key: str) -> None:
        if self._maps[name].pop(key, None) is not None:
            self._dirty_map_keys.add((name, key))

    def set_limit(self, name: str, decl: str) -> None:
        """A named ``limit`` object (rules use it with ``limit name "<name>"``). nft cannot
        change an existing object in place, so a new declaration replaces the whole table."""
        self._limits[name] = decl

    def delete_limit(self, name: str) -> None:
        self._limits.pop(name, None)

    @property
    def dirty(self) -> bool:
        return self._prog_chains is None or bool(
            self._dirty_chains
            or self._dirty_sets
            or self._dirty_map_keys
            or self._limits != self._prog_limits
        )

    def queue_resync(self) -> None:
        self._prog_chains = None

    def chains(self) -> dict[str, tuple[str, ...]]:
        return dict(self._chains)

    def sets(self) -> dict[str, frozenset[str]]:
        """Desired set elements by set name (what ``explain`` and the tests' interpreter read)."""
        return {name: spec.elements for name, spec in self._sets.items()}

    # ---- apply --------------------------------------------------------------------------------

    def apply(self) -> None:
        self.last_script = ""
        self.last_run_secs = 0.0
        if not self.dirty:
            return
        changed = {k: v for k, v in self._prog_limits.items() if self._limits.get(k) != v}
        if changed and any(name in self._limits for name in changed):
            self._prog_chains = None  # a limit changed its rate: only a new table can say so
        script = self._full_script() if self._prog_chains is None else self._delta_script()
        self.last_script = script
        start = time.perf_counter()
        try:
            if script:
                self._runner.run(script)
        except libnft.NftError:
            self._prog_chains = None  # unknown now: the next attempt replaces everything
            raise
        finally:
            self.last_run_secs = time.perf_counter() - start
        self._prog_chains = dict(self._chains)
        self._prog_sets = dict(self._sets)
        self._prog_maps = {k: dict(v) for k, v in self._maps.items()}
        self._prog_limits = dict(self._limits)
        self._dirty_chains.clear()
        self._dirty_sets.clear()
        self._dirty_map_keys.clear()

    def render(self, counts: CounterValues | None = None) -> str:
        """The whole table as nft text (also the body of a full replace), the rules' counters
        starting from ``counts`` where given."""
        lines = [f"table {T} {{"]
        for name in sorted(self._limits):
            lines.append(f"  limit {name} {{ {self._limits[name]}; }}")
        for name in sorted(self._sets):
            spec = self._sets[name]
            elems = f" elements = {{ {', '.join(sorted(spec.elements))} }}" if spec.elements else ""
            lines.append(f"  set {name} {{ {spec.decl}{elems} }}")
        for name in sorted(self._maps):
            items = self._maps[name]
            elems = ", ".join(f"{_q(k)} : {v}" for k, v in sorted(items.items()))
            body = f" elements = {{ {elems} }}" if items else ""
            lines.append(f"  map {name} {{ {self._map_decls[name]}{body} }}")
        for name in sorted(self._chains):
            lines.append(f"  chain {name} {{")
            if name in self._bases:
                lines.append(f"    {self._bases[name]}")
            if counts:
                lines.extend(f"    {rule}" for rule in self._counted(name, counts))
            else:
                lines.extend(f"    {rule}" for rule in self._chains[name])
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _counted(self, name: str, counts: CounterValues) -> list[str]:
        seen: Tally[str] = Tally()
        out = []
        for rule in self._chains[name]:
            comment = _comment_of(rule)
            value = counts.get((name, comment, seen[comment])) if comment else None
            seen[comment] += 1
            if value is not None and value != (0, 0):
                self.carried += 1
                rule = _with_counts(rule, value)
            out.append(rule)
        return out

    def _kernel_counts(self) -> CounterValues:
        if self._read_counters is None:
            return {}
        try:
            return counter_values(self._read_counters())
        except OSError as exc:  # no table yet (ENOENT), or the read failed: start from zero
            logger.debug("no counters to carry over: %s", exc)
            return {}

    def _full_script(self) -> str:
        self.carried = 0
        return f"add table {T}\ndelete table {T}\n" + self.render(self._kernel_counts())

    def _delta_script(self) -> str:
        """Creation order (limits, sets, chains, rules, map entries), then deletion order."""
        set_adds, set_deletes = self._set_delta()
        chain_adds, flushes, deletes = self._chain_delta()
        map_adds, map_deletes = self._map_delta()
        limit_adds, limit_deletes = self._limit_delta()
        # Map entries go before chains are deleted; replaced entries are deleted before re-adding.
        lines = (
            limit_adds
            + map_deletes
            + set_adds
            + chain_adds
            + map_adds
            + flushes
            + deletes
            + set_deletes
            + limit_deletes
        )
        return "\n".join(lines) + "\n" if lines else ""

    def _set_delta(self) -> tuple[list[str], list[str]]:
        """(creations and element changes, deletions) for the dirty sets."""
        out: list[str] = []
        set_deletes: list[str] = []
        for name in sorted(self._dirty_sets):
            spec, old = self._sets.get(name), self._prog_sets.get(name)
            if spec is None:
                if old is not None:
                    set_deletes.append(f"delete set {T} {name}")
                continue
            # Elements go in through a set declaration, not ``add element``: nft 1.0.6 dumps
            # every set's elements before an element command (O(table)); a declaration does not.
            if old is None or old.decl != spec.decl:
                if old is not None:
                    out.append(f"delete set {T} {name}")
                out.append(_set_block(name, spec.decl, spec.elements))
                continue
            added, removed = spec.elements - old.elements, old.elements - spec.elements
            if removed:
                out.append(f"delete element {T} {name} {{ {', '.join(sorted(removed))} }}")
            if added:
                out.append(_set_block(name, spec.decl, added))
        return out, set_deletes

    def _chain_delta(self) -> tuple[list[str], list[str], list[str]]:
        """(new chains and rewritten rules, flushes, deletions) for the dirty chains: a chain
        to delete is flushed first, as its jumps hold references to others."""
        assert self._prog_chains is not None
        prog = self._prog_chains
        out: list[str] = []
        flushes: list[str] = []
        deletes: list[str] = []
        new_chains = [n for n in sorted(self._dirty_chains) if n in self._chains and n not in prog]
        for name in new_chains:
            base = f" {{ {self._bases[name]} }}" if name in self._bases else ""
            out.append(f"add chain {T} {name}{base}")
        for name in sorted(self._dirty_chains):
            rules = self._chains.get(name)
            if rules is None:
                if name in prog:
                    flushes.append(f"flush chain {T} {name}")
                    deletes.append(f"delete chain {T} {name}")
                continue
            if name in prog:
                if prog[name] == rules:
                    continue
                out.append(f"flush chain {T} {name}")
            out.extend(f"add rule {T} {name} {rule}" for rule in rules)
        return out, flushes, deletes

    def _map_delta(self) -> tuple[list[str], list[str]]:
        """(additions, deletions) for the dirty map keys."""
        adds: list[str] = []
        map_deletes: list[str] = []
        for name, key in sorted(self._dirty_map_keys):
            verdict, old_v = self._maps[name].get(key), self._prog_maps.get(name, {}).get(key)
            if old_v is not None and old_v != verdict:
                map_deletes.append(f"delete element {T} {name} {{ {_q(key)} }}")
            if verdict is not None and verdict != old_v:
                adds.append(f"add element {T} {name} {{ {_q(key)} : {verdict} }}")
        return adds, map_deletes

    def _limit_delta(self) -> tuple[list[str], list[str]]:
        """(additions, deletions) of limit objects: they exist before the rules that name them
        and go after them."""
        adds = [
            f"add limit {T} {name} {{ {decl}; }}"
            for name, decl in sorted(self._limits.items())
            if name not in self._prog_limits
        ]
        deletes = [
            f"delete limit {T} {name}"
            for name in sorted(set(self._prog_limits) - set(self._limits))
        ]
        return adds, deletes

    # ---- read back ----------------------------------------------------------------------------

    def check_drift(self) -> bool:
        """True (and a full replace queued) if the kernel's table differs from our last apply."""
        if self._prog_chains is None:
            return True
        try:
            raw = self._runner.run(f"list table {T}", json=True)
        except libnft.NftError:
            self.queue_resync()
            return True
        kernel: dict[str, list[str]] = {}
        for obj in json.loads(raw).get("nftables", []):
            if "chain" in obj:
                kernel.setdefault(obj["chain"]["name"], [])
            elif "rule" in obj:
                kernel.setdefault(obj["rule"]["chain"], []).append(obj["rule"].get("comment", ""))
        expected = {
            name: [_comment_of(rule) for rule in rules] for name, rules in self._prog_chains.items()
        }
        if kernel != expected:
            logger.warning("nft table drifted from the programmed state; replacing it")
            self.queue_resync()
            return True
        return False


def _comment_of(rule: str) -> str:
    marker = ' comment "'
    i = rule.rfind(marker)
    return rule[i + len(marker) : -1] if i >= 0 else ""

"""``calico-felix`` plus a memory report on SIGUSR1, for ``bench.agent_memory``.

Runs ``calico.agent.main.main()`` unchanged (same code, same defaults, same environment); the only
addition is a SIGUSR1 handler (on the agent's main thread, between two loop steps) that forces a
full garbage collection, then writes to ``$BENCH_MEMORY_REPORT`` (JSON):

* ``rss_mb``: VmRSS from /proc/self/status, read right after the collection (before the heap walk,
  which allocates);
* ``heap_mb``: the Python heap, ``sys.getsizeof`` summed over every object reachable from the
  objects the garbage collector tracks (containers, and through them strings, numbers, bytes);
  RSS minus this is the interpreter, C libraries (libnftables' cache) and allocator slack;
* ``parts_mb``: the same walk attributed to the agent's parts (first owner wins, in order), to see
  where per-endpoint memory goes; ``types_mb``: the ten biggest object types;
* ``rss_trimmed_mb``: RSS again after glibc's ``malloc_trim(0)`` (at the very end): how much of
  RSS was free memory malloc had kept rather than objects or pymalloc arenas.

Standalone on purpose (stdlib + calico only): it is started by path inside the node namespace.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import types
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MB = 1024 * 1024


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# Where an attributed walk stops: classes, modules and functions lead to the whole interpreter, a
# bound method to its object (another part); they are counted in the last, unattributed walk.
SHARED = (type, types.ModuleType, types.FunctionType, types.MethodType, types.CodeType)


def walk(
    roots: Iterable[Any],
    seen: set[int],
    sizes: Counter[str] | None = None,
    *,
    stop: tuple[type, ...] = (),
) -> int:
    """Bytes of everything reachable from ``roots`` not already in ``seen`` (which grows),
    not entering objects of the ``stop`` types."""
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, stop):
            continue
        seen.add(id(obj))
        size = sys.getsizeof(obj)
        total += size
        if sizes is not None:
            sizes[type(obj).__name__] += size
        stack.extend(gc.get_referents(obj))
        if isinstance(obj, dict):  # the collector does not visit str keys: we count them
            stack.extend(obj.keys())
    return total


def agent_parts(agent: Any) -> dict[str, Any]:
    """The agent's parts by attribute path (a part the agent no longer has is left out)."""
    paths = {
        "calc: resources (reference copy)": "graph.resources",
        "calc: items": "graph._items",
        "calc: sequencer": "graph.sequencer",
        "calc: ip sets + selector index": "graph.ipsets_calc",
        "calc: active rules": "graph.active_rules",
        "calc: other": "graph",
        "syncer": "syncer",
        "dataplane": "dataplane",
    }
    parts = {}
    for name, path in paths.items():
        obj = agent
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
        if obj is not None:
            parts[name] = obj
    return parts


def report() -> dict[str, Any]:
    gc.collect()
    rss = rss_mb()
    seen: set[int] = set()
    seen.add(id(seen))  # the walk's own bookkeeping is not the agent's
    agents = [o for o in gc.get_objects() if type(o).__name__ == "Agent"]
    parts: dict[str, float] = {}
    types: Counter[str] = Counter()
    if agents:
        seen.add(id(agents))
        for name, root in agent_parts(agents[0]).items():
            parts[name] = walk([root], seen, types, stop=SHARED) / MB
    rest = walk([o for o in gc.get_objects() if id(o) not in seen], seen, types)
    parts["everything else (interpreter, modules)"] = rest / MB
    return {
        "rss_mb": rss,
        "heap_mb": sum(parts.values()),
        "parts_mb": parts,
        "types_mb": {t: b / MB for t, b in types.most_common(10)},
        "objects": len(seen),
        "rss_trimmed_mb": trimmed_rss_mb(),
    }


def trimmed_rss_mb() -> float:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return float("nan")
    return rss_mb()


def on_signal(signum: int, frame: object) -> None:
    out = Path(os.environ["BENCH_MEMORY_REPORT"])
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report()))
    tmp.replace(out)


def main() -> int:
    from calico.agent import main as agent_main

    signal.signal(signal.SIGUSR1, on_signal)
    return agent_main.main([])


if __name__ == "__main__":
    sys.exit(main())

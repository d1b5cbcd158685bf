"""Watch every node's BGP routes during a fault: sampled every ``interval`` from the kernel
(``ip -j route show proto bird``, the routes BIRD programmed), each sample compared with the set
present when watching began. A route missing from any sample is a route lost (with how long it
was missing); "routes stay" means none.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Mapping


def bird_routes(netns: str) -> set[tuple[str, str]]:
    out = subprocess.run(
        ["ip", "-n", netns, "-j", "route", "show", "proto", "bird"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return {(r["dst"], r.get("gateway", r.get("type", ""))) for r in json.loads(out or "[]")}


class RouteWatcher:
    def __init__(self, nodes: Mapping[str, str], *, interval: float = 0.2) -> None:
        """``nodes``: name -> netns."""
        self.nodes = dict(nodes)
        self.interval = interval
        self.baseline = {name: bird_routes(ns) for name, ns in self.nodes.items()}
        self.missing_since: dict[tuple[str, str, str], float] = {}
        self.lost: dict[tuple[str, str, str], float] = {}  # route -> longest time missing
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for name, ns in self.nodes.items():
                try:
                    have = bird_routes(ns)
                except (subprocess.SubprocessError, ValueError):
                    continue
                for dst, via in self.baseline[name]:
                    key = (name, dst, via)
                    if (dst, via) in have:
                        if key in self.missing_since:
                            gone = now - self.missing_since.pop(key)
                            self.lost[key] = max(self.lost.get(key, 0.0), gone)
                    else:
                        self.missing_since.setdefault(key, now)
                        self.lost.setdefault(key, 0.0)
            self.samples += 1
            self._stop.wait(self.interval)

    def stop(self) -> dict[tuple[str, str, str], float]:
        """Routes that went missing at some sample, with the longest time missing."""
        self._stop.set()
        self._thread.join(5)
        now = time.monotonic()
        for key, since in self.missing_since.items():
            self.lost[key] = max(self.lost.get(key, 0.0), now - since)
        return dict(self.lost)

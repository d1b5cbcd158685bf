"""Reading a stream of probe verdicts: when did the verdict change (shared by the benches that
time policy enforcement with a steady stream of probe packets)."""

from __future__ import annotations

import time
from collections.abc import Callable


def first_run_after(
    rows: Callable[[], list[tuple[float, bool]]],
    t0: float,
    want: bool,
    *,
    timeout: float,
    run: int = 3,
) -> float:
    """Seconds from ``t0`` to the first packet sent after it that starts a run of ``run`` packets
    with verdict ``want`` (one lost or late echo on a busy machine is not a verdict change);
    ``rows()`` is the (send time, verdict) list so far, appended to by a reader thread."""
    deadline = time.monotonic() + timeout
    start = 0
    while time.monotonic() < deadline:
        seen = rows()
        for i in range(start, len(seen) - run + 1):
            if seen[i][0] > t0 and all(ok == want for _, ok in seen[i : i + run]):
                return seen[i][0] - t0
        start = max(0, len(seen) - run)
        time.sleep(0.01)
    raise TimeoutError(f"the verdict did not become {want} within {timeout}s")

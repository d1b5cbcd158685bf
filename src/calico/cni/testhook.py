"""A test hook that pauses a CNI call at a named point, so a test can ``kill -9`` the plugin (or
its caller) there deterministically. Off unless the call's environment asks for it:

    CALICO_CNI_TEST_PAUSE=after-ipam:SECONDS   (the addresses and the WorkloadEndpoint are
                                                written, no veth exists yet)

Nothing else reads it; a runtime never sets it. The chaos tests (tests/chaos) use it to show
that a plugin killed at the worst point, followed by the runtime's DEL, leaks nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

VARIABLE = "CALICO_CNI_TEST_PAUSE"


def pause(env: Mapping[str, str], point: str) -> None:
    spec = env.get(VARIABLE)
    if not spec:
        return
    where, _, seconds = spec.partition(":")
    if where == point:
        try:
            time.sleep(float(seconds or 5))
        except ValueError:
            return

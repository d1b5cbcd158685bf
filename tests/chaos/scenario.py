"""What the chaos scenarios share: live traffic around a fault, the marker change every node must
program, and ``calicoctl ipam check`` as an admin runs it."""

from __future__ import annotations

from tests.chaos.chaoslab import ChaosLab
from tests.chaos.figures import Figures
from tests.chaos.traffic import DeniedProber, Stream, connects

STREAM_PORT = 9000


def start_traffic(lab: ChaosLab) -> tuple[Stream, list[DeniedProber]]:
    a, b, c, d = (lab.pod(f"default/{x}") for x in "abcd")
    # the controls: the target listens, and the allowed client gets through
    assert connects(a.netns, b.ip, 8080), "a -> b:8080 must be allowed (the control)"
    stream = Stream(client_ns=a.netns, server_ns=b.netns, server_ip=b.ip, port=STREAM_PORT)
    probers = [DeniedProber(src_ns=x.netns, dst_ip=b.ip, port=8080) for x in (c, d)]
    return stream, probers


def stop_traffic(stream: Stream, probers: list[DeniedProber], figures: Figures) -> tuple[int, str]:
    result = stream.stop()
    figures.stall(result.longest_stall)
    wrongly = sum(p.stop().connected for p in probers)
    figures.wrongly_allowed = (figures.wrongly_allowed or 0) + wrongly
    figures.op("stream chunks", result.chunks)
    return wrongly, "" if result.survived else result.error or "stream did not survive"


MARKER = "chaos-marker"


def marker_policy(n: int) -> dict[str, object]:
    """A policy every node programs (it selects every endpoint) whose rules change with ``n``:
    egress Deny to a port nothing uses, then Allow (behaviour unchanged, the chain's hash not)."""
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": MARKER},
        "spec": {
            "selector": "all()",
            "order": 5000,
            "types": ["Egress"],
            "egress": [
                {"action": "Deny", "protocol": "TCP", "destination": {"ports": [30000 + n]}},
                {"action": "Allow"},
            ],
        },
    }


def ipam_problems(lab: ChaosLab) -> int:
    """``calicoctl ipam check`` on node1 (as an admin runs it): its problem count."""
    proc = lab.handle.cli("exec", "node1", "--", "calicoctl", "ipam", "check", check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("Check complete; found"):
            return int(line.split("found")[1].split()[0])
    raise AssertionError(f"calicoctl ipam check: {proc.stdout}\n{proc.stderr}")

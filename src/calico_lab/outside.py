"""The lab's ``outside`` host: a server beyond the router that says who it saw.

Namespace ``calab-<lab>-outside``, ``203.0.113.1/24`` (a documentation range that exists only
inside the lab), default route via the router. It runs the pods' responder with ``--echo-peer``
on TCP and UDP port 80: every client gets one line, the source address its packets arrived
from. A pod whose pool has natOutgoing shows up as its node's address; a pod that is not
masqueraded gets no answer at all, because the router drops pod source addresses (as a cloud
VPC's source/destination check does).
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

from calico.lib import netns
from calico_lab import daemons, network, pods, topology
from calico_lab.state import LabState

PORT = 80
LOG_NAME = "outside"


def ensure(lab: LabState) -> None:
    """The outside namespace, its link to the router and its server (restarted when dead)."""
    topology.ensure_outside(lab.core, lab.outside)
    if daemons.alive(lab.outside_pid):
        return

    def record(pid: int) -> None:
        lab.outside_pid = pid
        lab.save()

    pods.run_responder(
        lab,
        what="outside",
        netns_name=lab.outside,
        log_name=LOG_NAME,
        args=["--echo-peer", "--tcp", str(PORT), "--udp", str(PORT)],
        record=record,
    )


def ask(
    source_netns: str,
    *,
    host: str = network.OUTSIDE_IP,
    port: int = PORT,
    protocol: str = "TCP",
    timeout: float = 1.0,
) -> str | None:
    """Connect from ``source_netns`` to the outside server; the address it saw, or None when
    nothing answered (dropped, refused, timed out)."""

    def body() -> str | None:
        kind = socket.SOCK_DGRAM if protocol.upper() == "UDP" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect((host, port))
                if kind == socket.SOCK_DGRAM:
                    sock.send(b"who\n")
                line = sock.recv(256)
            except OSError:
                return None
        return line.decode(errors="replace").strip() or None

    def there() -> str | None:
        netns.enter_any(source_netns)  # a --kubernetes lab's pods: /proc/<pid>/ns/net
        return body()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(there).result()

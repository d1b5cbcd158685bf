"""Connectivity probes between lab pods, one at a time or as a full matrix.

A probe runs on a worker thread that first enters the *source* pod's network namespace (``setns``
is per thread), then connects to the destination pod's IP: TCP/SCTP must accept and send the
responder's line, UDP must answer a datagram. Nothing is exec'd, so a whole matrix of probes runs
in parallel in about one timeout. Results are plain booleans; deciding what is expected is the
caller's business. A probe to ``outside`` (the host beyond the lab's router) from a pod or a node
returns the line the outside server answered: the source address it saw.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from calico.lib import netns
from calico_lab.state import LabError, LabState, PodState

PROTOCOLS = {
    "TCP": (socket.SOCK_STREAM, 0),
    "UDP": (socket.SOCK_DGRAM, 0),
    "SCTP": (socket.SOCK_STREAM, 132),
}
MAX_WORKERS = 512


@dataclass(frozen=True, slots=True)
class Probe:
    src: PodState
    dst: PodState
    port: int
    protocol: str
    timeout: float


def check_protocol(protocol: str) -> str:
    proto = protocol.upper()
    if proto not in PROTOCOLS:
        raise LabError(f"--protocol {protocol!r}: use TCP, UDP or SCTP")
    kind, number = PROTOCOLS[proto]
    try:
        socket.socket(socket.AF_INET, kind, number).close()
    except OSError as exc:
        raise LabError(
            f"--protocol {proto}: not available in this kernel ({exc.strerror})"
        ) from None
    return proto


def _connect(target: str, port: int, protocol: str, timeout: float) -> bool:
    kind, number = PROTOCOLS[protocol]
    with socket.socket(socket.AF_INET, kind, number) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((target, port))
            if protocol == "UDP":
                sock.send(b"probe\n")
            return bool(sock.recv(256))
        except OSError:  # refused, timed out, unreachable
            return False


def _run(probe: Probe) -> bool:
    netns.enter_any(probe.src.netns)  # a --kubernetes lab's pods: /proc/<pid>/ns/net
    return _connect(probe.dst.ip, probe.port, probe.protocol, probe.timeout)


def run_probes(probes: list[Probe]) -> list[bool]:
    if not probes:
        return []
    with ThreadPoolExecutor(
        max_workers=min(MAX_WORKERS, len(probes)), thread_name_prefix="probe"
    ) as pool:
        return list(pool.map(_run, probes))


def probe(
    lab: LabState, src: str, dst: str, *, port: int, protocol: str = "TCP", timeout: float = 1.0
) -> bool:
    """Whether ``src`` (``ns/pod``) reaches ``dst`` on ``port``/``protocol``."""
    p = Probe(lab.pod(src), lab.pod(dst), port, check_protocol(protocol), timeout)
    if not p.dst.ip:
        raise LabError(f"pod {dst} has no IP")
    return run_probes([p])[0]


def source_netns(lab: LabState, src: str) -> str:
    """The namespace of a probe source: a pod (``NS/POD``) or a node (``NODE``)."""
    return lab.pod(src).netns if "/" in src else lab.node(src).netns


def probe_outside(
    lab: LabState, src: str, *, port: int, protocol: str = "TCP", timeout: float = 1.0
) -> str | None:
    """What the outside host answered ``src`` (the source address it saw), or None."""
    from calico_lab import outside

    proto = check_protocol(protocol)
    if proto == "SCTP":
        raise LabError("--protocol SCTP: the outside host serves TCP and UDP")
    return outside.ask(source_netns(lab, src), port=port, protocol=proto, timeout=timeout)


def select(lab: LabState, namespaces: Iterable[str] | None = None) -> list[PodState]:
    wanted = set(namespaces) if namespaces else None
    if wanted:
        unknown = wanted - set(lab.namespaces)
        if unknown:
            raise LabError(f"--namespaces: {', '.join(sorted(unknown))} not found in the lab")
    return sorted(
        (p for p in lab.pods.values() if p.ip and (wanted is None or p.namespace in wanted)),
        key=lambda p: p.key,
    )


def matrix(
    lab: LabState,
    *,
    port: int,
    protocol: str = "TCP",
    timeout: float = 1.0,
    namespaces: Iterable[str] | None = None,
) -> dict[str, dict[str, bool]]:
    """``{"x/a": {"x/b": True, ...}, ...}`` for every pair of selected pods (self included)."""
    return matrices(lab, [(port, protocol)], timeout=timeout, namespaces=namespaces)[
        (port, check_protocol(protocol))
    ]


Matrix = dict[str, dict[str, bool]]


def matrices(
    lab: LabState,
    targets: list[tuple[int, str]],
    *,
    timeout: float = 1.0,
    namespaces: Iterable[str] | None = None,
) -> dict[tuple[int, str], Matrix]:
    """One matrix per ``(port, protocol)``, all probed in one parallel batch."""
    wanted = [(port, check_protocol(proto)) for port, proto in targets]
    chosen = select(lab, namespaces)
    probes = [
        Probe(s, d, port, proto, timeout) for port, proto in wanted for s in chosen for d in chosen
    ]
    results = run_probes(probes)
    out: dict[tuple[int, str], Matrix] = {t: {s.key: {} for s in chosen} for t in wanted}
    for pr, ok in zip(probes, results, strict=True):
        out[(pr.port, pr.protocol)][pr.src.key][pr.dst.key] = ok
    return out


def render_table(result: dict[str, dict[str, bool]], *, colour: bool) -> str:
    """Rows are sources, columns destinations; ✓ connected, ✗ not."""
    keys = list(result)
    if not keys:
        return "(no pods)"
    width = max(len(k) for k in keys)
    green, red, reset = ("\033[32m", "\033[31m", "\033[0m") if colour else ("", "", "")
    cols = [k.ljust(max(len(k), 1)) for k in keys]
    lines = [" " * width + " | " + " ".join(cols)]
    lines.append("-" * width + "-+-" + "-".join("-" * len(c) for c in cols))
    for src in keys:
        cells = []
        for dst, col in zip(keys, cols, strict=True):
            ok = result[src].get(dst, False)
            mark = f"{green}✓{reset}" if ok else f"{red}✗{reset}"
            cells.append(mark + " " * (len(col) - 1))
        lines.append(src.ljust(width) + " | " + " ".join(cells))
    return "\n".join(lines)

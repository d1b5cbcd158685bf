"""Talk to a running BIRD through its control socket with ``birdc -s SOCK``.

``configure`` asks BIRD to re-read its config file (BIRD checks it again and keeps the old one on
error); ``protocols`` parses ``show protocols`` into rows. BIRD's reply codes are not reflected in
birdc's exit status, so replies are read as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from calico.lib import cmd


class BirdError(RuntimeError):
    """BIRD is not reachable on its socket or refused the request."""


@dataclass(frozen=True, slots=True)
class Protocol:
    name: str
    proto: str  # "BGP", "Kernel", ...
    table: str
    state: str  # "up", "start", "down", ...
    since: str
    info: str  # "Established", "Active  Socket: Connection refused", ...


def birdc(sock: str | Path, *args: str, timeout: float = 10) -> str:
    if not Path(sock).exists():
        raise BirdError(f"BIRD control socket {sock} does not exist (is BIRD running?)")
    proc = cmd.run(["birdc", "-s", str(sock), *args], check=False, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Unable to connect" in out:
        raise BirdError(f"birdc -s {sock} {' '.join(args)}: {out.strip()}")
    return out


def configure(sock: str | Path) -> str:
    """Make BIRD reload its config file; BirdError if BIRD rejects it."""
    out = birdc(sock, "configure")
    if "Reconfigured" in out or "Reconfiguration in progress" in out or "Reconfiguration" in out:
        return out.strip()
    raise BirdError(f"BIRD did not reconfigure: {out.strip()}")


def parse_protocols(text: str) -> list[Protocol]:
    rows: list[Protocol] = []
    started = False
    for line in text.splitlines():
        if not started:
            started = line.startswith("Name ")
            continue
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        info = parts[5].strip() if len(parts) > 5 else ""
        rows.append(Protocol(parts[0], parts[1], parts[2], parts[3], parts[4], info))
    return rows


def protocols(sock: str | Path) -> list[Protocol]:
    return parse_protocols(birdc(sock, "show", "protocols"))

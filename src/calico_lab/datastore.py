"""The lab's etcd options (``up --etcd-members N --etcd-tls``) and addresses, as plain data.

Member ``i`` (0-based) listens on ``10.99.0.(1 + i)``, port 2379 (peers 2380), in the core
namespace: member 0 has the router's subnet-0 address, which is where a one-member lab's etcd has
always been, so a one-member lab is exactly the lab from before these options. Nodes reach every
member through their gateway. With ``tls`` clients use ``https`` and must present a certificate
signed by the lab's CA (:mod:`calico_lab.pki`); peer traffic stays plain HTTP inside the core.

Like the network options, these are checked before anything is made, recorded in the lab state,
kept by a later ``up`` and refused there when different (the cluster was made with them).
"""

from __future__ import annotations

from dataclasses import dataclass

from calico_lab import network
from calico_lab.errors import LabError

MAX_MEMBERS = 7  # 10.99.0.1-7: below the first node address (.11)
CLIENT_PORT = 2379
PEER_PORT = 2380


@dataclass(frozen=True)
class EtcdOptions:
    members: int = 1
    tls: bool = False

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def hosts(self) -> list[str]:
        return [member_ip(i) for i in range(self.members)]

    def endpoints(self) -> list[str]:
        return [f"{self.scheme}://{h}:{CLIENT_PORT}" for h in self.hosts()]

    def endpoints_text(self) -> str:
        """The ``ETCD_ENDPOINTS`` / ``etcd_endpoints`` value: every member, comma-separated."""
        return ",".join(self.endpoints())

    def flags(self) -> str:
        return f"--etcd-members {self.members}" + (" --etcd-tls" if self.tls else "")


def member_ip(index: int) -> str:
    """Member ``index`` (0-based): ``10.99.0.(1 + index)`` on the core's subnet-0 bridge."""
    return f"{network.SUBNET_BASE}.0.{1 + index}"


def requested(*, members: int | None = None, tls: bool | None = None) -> dict[str, object]:
    """The options given (``None``: not given), checked."""
    given: dict[str, object] = {}
    if members is not None:
        if not 1 <= members <= MAX_MEMBERS:
            raise LabError(f"--etcd-members {members}: must be between 1 and {MAX_MEMBERS}")
        given["members"] = members
    if tls is not None:
        given["tls"] = tls
    return given


def resolve(given: dict[str, object], recorded: EtcdOptions | None, *, lab: str) -> EtcdOptions:
    """A new lab takes ``given`` over the defaults; an existing one keeps what it was made with
    and refuses a different value."""
    if recorded is None:
        return EtcdOptions(**given)  # type: ignore[arg-type]
    for key, value in given.items():
        have = getattr(recorded, key)
        if have != value:
            flag = "--etcd-members" if key == "members" else "--etcd-tls"
            shown = (lambda v: str(v).lower()) if key == "tls" else str
            raise LabError(
                f"lab {lab!r} is already up with {flag} {shown(have)}, not {shown(value)} "
                f"(run: calico-lab down --name {lab})"
            )
    return recorded

"""The lab's network options and addressing: subnets, encapsulation, natOutgoing, BGP backend.

``calico-lab up --subnets N --ipip MODE --vxlan MODE --nat-outgoing/--no-nat-outgoing --backend B``
is checked here before anything is made, recorded in the lab state, and turned into calico-node's
environment (``CALICO_IPV4POOL_IPIP``, ``CALICO_IPV4POOL_VXLAN``, ``CALICO_IPV4POOL_NAT_OUTGOING``,
``CALICO_NETWORKING_BACKEND``) and the CNI config's MTU. Addressing (pure functions, for the
topology and its tests): node ``i`` (1-based) sits on subnet ``(i - 1) % N``, ``10.99.<k>.0/24``, at
``10.99.<k>.(10 + i)``; the router (the core namespace) has ``10.99.<k>.1`` on each subnet, and
``10.99.0.1`` carries etcd and the pod API for every subnet. ``outside`` is ``203.0.113.1/24``
behind the router's ``203.0.113.254``.
"""

from __future__ import annotations

from dataclasses import dataclass

from calico_lab.errors import LabError

MODES = ("Always", "CrossSubnet", "Never")
BACKENDS = ("bird", "vxlan", "none")
MAX_SUBNETS = 200
PREFIX_LEN = 24
SUBNET_BASE = "10.99"  # 10.99.<k>.0/24: private, exists only inside the lab's namespaces
OUTSIDE_NET = "203.0.113.0/24"  # TEST-NET-3: documentation range, only inside the lab
OUTSIDE_IP = "203.0.113.1"
OUTSIDE_GATEWAY = "203.0.113.254"  # the router's side of the outside link
MTU = {"none": 1500, "vxlan": 1450, "ipip": 1480}  # the pod MTU: parent minus the overhead


@dataclass(frozen=True)
class Network:
    """What ``up`` was asked for, recorded in the lab state (lab defaults here)."""

    subnets: int = 1
    ipip: str = "Never"
    vxlan: str = "CrossSubnet"
    nat_outgoing: bool = True
    backend: str = "bird"

    @property
    def mtu(self) -> int:
        """The CNI config's ``mtu``: lowered by the encapsulation a pool may use."""
        if self.vxlan != "Never":
            return MTU["vxlan"]
        if self.ipip != "Never":
            return MTU["ipip"]
        return MTU["none"]

    @property
    def bgp(self) -> bool:
        """Whether calico-node runs BIRD (so ``up`` waits for a full BGP mesh)."""
        return self.backend == "bird"

    def node_env(self) -> dict[str, str]:
        """calico-node's environment for these options (Calico's variable names)."""
        return {
            "CALICO_IPV4POOL_IPIP": self.ipip,
            "CALICO_IPV4POOL_VXLAN": self.vxlan,
            "CALICO_IPV4POOL_NAT_OUTGOING": "true" if self.nat_outgoing else "false",
            "CALICO_NETWORKING_BACKEND": self.backend,
        }

    def flags(self) -> str:
        """The options as ``up`` flags (for messages)."""
        nat = "--nat-outgoing" if self.nat_outgoing else "--no-nat-outgoing"
        return (
            f"--subnets {self.subnets} --ipip {self.ipip} --vxlan {self.vxlan} {nat} "
            f"--backend {self.backend}"
        )


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` as spelled in ``choices`` (any case), else an error naming flag and value."""
    for choice in choices:
        if value.strip().lower() == choice.lower():
            return choice
    raise LabError(f"{flag} {value!r}: use one of {', '.join(choices)}")


def _subnets(value: int, n_nodes: int) -> int:
    if not 1 <= value <= min(n_nodes, MAX_SUBNETS):
        raise LabError(
            f"--subnets {value}: must be between 1 and the node count ({n_nodes}; at most "
            f"{MAX_SUBNETS})"
        )
    return value


def requested(
    n_nodes: int,
    *,
    subnets: int | None = None,
    ipip: str | None = None,
    vxlan: str | None = None,
    nat_outgoing: bool | None = None,
    backend: str | None = None,
) -> dict[str, object]:
    """The options given (``None``: not given), checked and spelled canonically."""
    given: dict[str, object] = {}
    if subnets is not None:
        given["subnets"] = _subnets(subnets, n_nodes)
    if ipip is not None:
        given["ipip"] = _choice("--ipip", ipip, MODES)
    if vxlan is not None:
        given["vxlan"] = _choice("--vxlan", vxlan, MODES)
    if nat_outgoing is not None:
        given["nat_outgoing"] = nat_outgoing
    if backend is not None:
        given["backend"] = _choice("--backend", backend, BACKENDS)
    _one_encapsulation(str(given.get("ipip", "Never")), str(given.get("vxlan", "Never")))
    return given


def _one_encapsulation(ipip: str, vxlan: str) -> None:
    if ipip != "Never" and vxlan != "Never":
        raise LabError(
            f"--ipip {ipip} with --vxlan {vxlan}: an IP pool uses one encapsulation "
            "(set the other to Never)"
        )


def resolve(given: dict[str, object], recorded: Network | None, *, lab: str) -> Network:
    """The options a lab runs with: a new lab takes ``given`` over the lab defaults (VXLAN
    defaults to Never when IPIP is asked for); an existing lab keeps what it was made with and
    refuses a different value (changing them means a new lab: the pool is made once)."""
    if recorded is not None:
        for key, value in given.items():
            have = getattr(recorded, key)
            if have != value:
                flag = "--" + key.replace("_", "-")
                raise LabError(
                    f"lab {lab!r} is already up with {flag} {_show(have)}, not {_show(value)} "
                    f"(run: calico-lab down --name {lab})"
                )
        return recorded
    values = dict(given)
    if "vxlan" not in values and values.get("ipip", "Never") != "Never":
        values["vxlan"] = "Never"
    net = Network(**values)  # type: ignore[arg-type]
    _one_encapsulation(net.ipip, net.vxlan)
    return net


def _show(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---- addressing ---------------------------------------------------------------------------


def subnet_of(index: int, subnets: int) -> int:
    """The subnet (0-based) of node ``index`` (1-based): round robin."""
    return (index - 1) % subnets


def subnet_cidr(k: int) -> str:
    return f"{SUBNET_BASE}.{k}.0/{PREFIX_LEN}"


def router_ip(k: int) -> str:
    """The router's (core namespace's) address on subnet ``k``: the nodes' default gateway."""
    return f"{SUBNET_BASE}.{k}.1"


def node_ip(index: int, subnets: int = 1) -> str:
    """Address of node ``index`` (1-based): ``10.99.<its subnet>.(10 + index)``."""
    return f"{SUBNET_BASE}.{subnet_of(index, subnets)}.{10 + index}"


def bridge_name(k: int) -> str:
    """The router's bridge for subnet ``k`` (``br0`` is today's single lab bridge)."""
    return f"br{k}"

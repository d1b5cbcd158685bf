"""EtcdCluster: a real multi-member etcd cluster (one EtcdServer per member) for the lab and tests.

Each member has its own data directory, client port and peer port, and its own address when
``hosts`` gives one per member (inside a lab namespace: addresses the lab put there; outside a
namespace only loopback is allowed, and members differ by port). All members are spawned before
any is waited for, since none answers until a majority is up. A killed member is restarted with
``member(i).start()`` and rejoins from its data directory.

    cluster = EtcdCluster.on_free_ports(tmp / "etcd", size=3)
    with cluster:
        client = EtcdClient(cluster.endpoints)      # fails over between the members
        cluster.member(cluster.leader()).kill()
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from calico.datastore.etcd import EtcdClient, EtcdError, TLSFiles
from calico.datastore.etcd_server import EtcdServer, ServerTLS, free_port


class EtcdCluster:
    def __init__(
        self,
        data_dir: str | Path,
        *,
        size: int = 3,
        hosts: Sequence[str] | None = None,
        ports: Sequence[int] | None = None,
        peer_ports: Sequence[int] | None = None,
        netns: str | None = None,
        name: str = "calico-etcd",
        tls: ServerTLS | None = None,
        client_tls: TLSFiles | None = None,
        progress_notify_interval: str | None = "5s",
    ) -> None:
        if size < 1:
            raise ValueError(f"etcd cluster size {size}: at least one member")
        hosts = list(hosts or ["127.0.0.1"] * size)
        ports = list(ports or [2379] * size)
        peer_ports = list(peer_ports or [p + 1 for p in ports])
        if not len(hosts) == len(ports) == len(peer_ports) == size:
            raise ValueError(f"etcd cluster of {size}: give one host, port and peer port each")
        if len(set(zip(hosts, ports, strict=True))) != size:
            raise ValueError("etcd cluster: two members on one address and port")
        data = Path(data_dir)
        token = f"{name}-{secrets.token_hex(4)}"  # a fresh cluster id per cluster made
        self.members = [
            EtcdServer(
                data / f"member{i}",
                host=hosts[i],
                port=ports[i],
                peer_port=peer_ports[i],
                netns=netns,
                name=f"{name}-{i}",
                log_file=data / f"member{i}.log",
                tls=tls,
                client_tls=client_tls,
                progress_notify_interval=progress_notify_interval,
                cluster_token=token,
            )
            for i in range(size)
        ]
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.initial_cluster = initial
        self.client_tls = client_tls

    @classmethod
    def on_free_ports(cls, data_dir: str | Path, *, size: int = 3, **kw: object) -> EtcdCluster:
        """A loopback cluster on ports nothing else holds (members differ by port)."""
        ports = [free_port() for _ in range(size)]
        peers = [free_port() for _ in range(size)]
        return cls(data_dir, size=size, ports=ports, peer_ports=peers, **kw)  # type: ignore[arg-type]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def endpoints_text(self) -> str:
        """The comma-separated form ``ETCD_ENDPOINTS`` and calicoctl.cfg take."""
        return ",".join(self.endpoints)

    def member(self, index: int) -> EtcdServer:
        return self.members[index]

    def __enter__(self) -> EtcdCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        for m in self.members:
            m.data_dir.parent.mkdir(parents=True, exist_ok=True)
            m.spawn()
        try:
            for m in self.members:
                m.wait_ready(timeout)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def leader(self, timeout: float = 10.0) -> int:
        """The index of the member the running members agree leads (waits for an election)."""

        def running() -> dict[int, str]:
            return {i: m.endpoint for i, m in enumerate(self.members) if m.running}

        lead = wait_for_leader(running, self.client_tls, timeout)
        if lead is None:
            raise RuntimeError("etcd cluster: the members agree on no leader")
        return lead

    def followers(self) -> list[int]:
        lead = self.leader()
        return [i for i, m in enumerate(self.members) if m.running and i != lead]


def agreed_leader(endpoints: dict[int, str], tls: TLSFiles | None) -> int | None:
    """The index (a key of ``endpoints``) of the member every answering member names as leader,
    or None when they do not agree (yet) or the leader did not answer."""
    ids: dict[str, int] = {}
    leaders: set[str] = set()
    for i, endpoint in endpoints.items():
        client = EtcdClient([endpoint], tls=tls, timeout=1)
        try:
            st = client.member_status()
        except EtcdError:
            continue
        finally:
            client.close()
        ids[st.member_id] = i
        leaders.add(st.leader)
    if len(leaders) == 1 and (lead := leaders.pop()) in ids:
        return ids[lead]
    return None


def wait_for_leader(
    endpoints: Callable[[], dict[int, str]], tls: TLSFiles | None, timeout: float
) -> int | None:
    """:func:`agreed_leader` of the running members (``endpoints()``, asked again each round)
    until they agree, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        lead = agreed_leader(endpoints(), tls)
        if lead is not None:
            return lead
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)

"""The lab's etcd: one member, or a real N-member cluster (``up --etcd-members N``), optionally
with client mTLS (``up --etcd-tls``), in the core namespace.

``ensure`` is idempotent: it puts each member's address on the subnet-0 bridge, makes the
certificates (TLS), starts every member that is not running (all of them before waiting for any,
since a cluster answers only once a majority is up; a member that died rejoins from its data
directory) and records their PIDs. Chaos tests kill members by the recorded PID and call
``ensure`` again to bring them back, as ``calico-lab up`` does.
"""

from __future__ import annotations

from calico.datastore import etcd_cluster
from calico.datastore.etcd_cluster import EtcdCluster
from calico.datastore.etcd_server import EtcdServer, ServerTLS
from calico.lib import netns
from calico.lib.cmd import run
from calico_lab import daemons, datastore, network, pki
from calico_lab.state import LabError, LabState

LAB_CLIENT = "calico-lab"  # the certificate the lab's own store uses


def servers(lab: LabState) -> list[EtcdServer]:
    """The configured members (nothing started): a one-member lab keeps its old layout (data
    ``etcd/``, log ``etcd.log``, name ``calab-<lab>``)."""
    opts = lab.etcd
    client_tls = lab.etcd_tls(LAB_CLIENT)
    tls = [_server_tls(lab, i) for i in range(opts.members)]
    if opts.members == 1:
        return [
            EtcdServer(
                lab.path / "etcd",
                host=datastore.member_ip(0),
                port=datastore.CLIENT_PORT,
                peer_port=datastore.PEER_PORT,
                netns=lab.core,
                name=f"calab-{lab.name}",
                log_file=lab.path / "etcd.log",
                tls=tls[0],
                client_tls=client_tls,
            )
        ]
    cluster = EtcdCluster(
        lab.path / "etcd",
        size=opts.members,
        hosts=opts.hosts(),
        ports=[datastore.CLIENT_PORT] * opts.members,
        peer_ports=[datastore.PEER_PORT] * opts.members,
        netns=lab.core,
        name=f"calab-{lab.name}",
        client_tls=client_tls,
    )
    for member, member_tls in zip(cluster.members, tls, strict=True):
        member.tls = member_tls  # each member its own certificate
    return cluster.members


def _server_tls(lab: LabState, index: int) -> ServerTLS | None:
    if not lab.etcd.tls:
        return None
    pki_dir = lab.pki_dir
    return ServerTLS(
        str(pki_dir / f"etcd-{index}.crt"),
        str(pki_dir / f"etcd-{index}.key"),
        str(pki_dir / "ca.crt"),
        client_cert_auth=True,
    )


def ensure_certificates(lab: LabState) -> None:
    """The CA and every certificate the lab's components use (kept when present)."""
    pki.ensure_ca(lab.pki_dir, lab.name)
    hosts = lab.etcd.hosts()
    for i in range(lab.etcd.members):
        pki.issue(lab.pki_dir, f"etcd-{i}", ips=hosts, server=True)
    for node in lab.nodes:
        pki.issue(lab.pki_dir, f"calico-node-{node.name}")
        pki.issue(lab.pki_dir, f"cni-{node.name}")
    pki.issue(lab.pki_dir, LAB_CLIENT)


def ensure_addresses(lab: LabState) -> None:
    """Members past the first get their own address on the subnet-0 bridge."""
    bridge = network.bridge_name(0)
    have = run(["ip", "-n", lab.core, "-o", "-4", "addr", "show", "dev", bridge]).stdout
    for host in lab.etcd.hosts()[1:]:
        if f" {host}/" not in have:
            addr = f"{host}/{network.PREFIX_LEN}"
            run(["ip", "-n", lab.core, "addr", "add", addr, "dev", bridge])


def ensure(lab: LabState) -> list[int]:
    """Start every member that is not running; return the indexes started."""
    if lab.etcd.tls:
        ensure_certificates(lab)
    ensure_addresses(lab)
    members = servers(lab)
    pids = list(lab.etcd_pids) + [0] * (len(members) - len(lab.etcd_pids))
    dead = [i for i, pid in enumerate(pids) if not daemons.alive(pid)]
    if not dead:
        return []
    for i in dead:
        member = members[i]
        member.spawn()
        assert member.proc is not None
        pids[i] = member.proc.pid
    lab.etcd_pids = pids
    lab.save()
    for i in dead:
        try:
            netns.call_in(lab.core, members[i].wait_ready)
        except RuntimeError as exc:
            raise LabError(f"etcd member {i} ({members[i].endpoint}): {exc}") from None
    return dead


def stop(lab: LabState) -> None:
    for pid in lab.etcd_pids:
        daemons.stop(pid)


def running(lab: LabState) -> list[bool]:
    return [daemons.alive(pid) for pid in lab.etcd_pids]


def leader(lab: LabState, timeout: float = 10.0) -> int:
    """The index of the member the running members agree leads (waits for an election)."""
    members = servers(lab)

    def running() -> dict[int, str]:
        pids = lab.etcd_pids
        return {
            i: m.endpoint
            for i, m in enumerate(members)
            if daemons.alive(pids[i] if i < len(pids) else 0)
        }

    def ask() -> int:
        lead = etcd_cluster.wait_for_leader(running, lab.etcd_tls(LAB_CLIENT), timeout)
        if lead is None:
            raise LabError("etcd: the running members agree on no leader")
        return lead

    return netns.call_in(lab.core, ask)

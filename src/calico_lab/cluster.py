"""Lab lifecycle: ``up`` (idempotent) and ``down`` (removes everything recorded).

``up`` order: check the options → record names → core namespace as the router (a bridge per
subnet, firewall) → etcd → calico-typha (``--typha``) → pod API → the outside host and its
server → node namespaces + veths → CNI install → calico-node per node → wait for every Node
resource (and, with BIRD, a full BGP mesh) → the ``default`` namespace. Each step checks before
it acts, so running ``up`` again repairs what is missing (a dead calico-node is restarted) and
changes nothing else. ``down`` reads the state file and removes exactly what it lists.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping

from calico.lib import netns
from calico_lab import daemons, datastore, etcd, kdd, network, nodes, outside, state, topology
from calico_lab import typha as lab_typha
from calico_lab.datastore import EtcdOptions
from calico_lab.network import Network
from calico_lab.state import API_PORT, LabError, LabState, NodeState, bridge_ip
from calico_lab.store import LabStore

Step = Callable[[str], None]  # progress callback: one line saying what is happening now
UP_TIMEOUT = 90.0


def _quiet(_: str) -> None:
    pass


def new_state(
    name: str, n_nodes: int, net: Network | None = None, etcd_opts: EtcdOptions | None = None
) -> LabState:
    net = net or Network()
    lab = LabState(
        name=name,
        dir=str(state.lab_dir(name)),
        run_root=state.run_root_for(name),
        network=net,
        etcd=etcd_opts or EtcdOptions(),
    )
    lab.nodes = [
        NodeState(
            name=f"node{i}",
            netns=state.node_netns(name, f"node{i}"),
            ip=state.node_ip(i, net.subnets),
            subnet=network.subnet_of(i, net.subnets),
        )
        for i in range(1, n_nodes + 1)
    ]
    lab.netns = [lab.core, lab.outside, *(n.netns for n in lab.nodes)]
    return lab


def up(
    name: str,
    n_nodes: int = 3,
    *,
    options: Mapping[str, object] | None = None,
    etcd_options: Mapping[str, object] | None = None,
    typha: bool | None = None,
    step: Step = _quiet,
    timeout: float = UP_TIMEOUT,
    kubernetes: dict[str, object] | None = None,
    kdd_options: dict[str, object] | None = None,
) -> LabState:
    """Bring lab ``name`` up. ``options``: :func:`calico_lab.network.requested` (``--subnets``,
    ``--ipip``, ...), ``etcd_options``: :func:`calico_lab.datastore.requested` (``--etcd-members``,
    ``--etcd-tls``), ``typha``: ``--typha``/``--no-typha``; absent ones keep the lab's recorded
    value, or the lab default. ``kubernetes``: a new lab's :mod:`calico_lab.k8s_state`
    (``up --kubernetes``); ``kdd_options``: :func:`calico_lab.kdd.requested` (``--datastore``),
    None: not given."""
    if not 1 <= n_nodes <= 200:
        raise LabError(f"--nodes {n_nodes}: must be between 1 and 200")
    if typha and kubernetes:
        raise LabError("--typha with --kubernetes: not supported yet (a lab's own agents only)")
    given = dict(options or {})
    given_etcd = dict(etcd_options or {})
    with state.locked(name):
        lab = state.load(name)
        if lab is None:
            lab = new_state(
                name,
                n_nodes,
                network.resolve(given, None, lab=name),
                datastore.resolve(given_etcd, None, lab=name),
            )
            lab.kubernetes = dict(kubernetes or {})
            kdd.resolve(lab, kdd_options, new=True)
            lab.typha = lab_typha.resolve(typha, None, lab=name)
        elif len(lab.nodes) != n_nodes:
            raise LabError(
                f"lab {name!r} is already up with {len(lab.nodes)} nodes, not {n_nodes} "
                f"(run: calico-lab down --name {name})"
            )
        else:
            network.resolve(given, lab.network, lab=name)
            datastore.resolve(given_etcd, lab.etcd, lab=name)
            _same_kubernetes(lab, kubernetes)
            kdd.resolve(lab, kdd_options, new=False)
            lab_typha.resolve(typha, lab.typha, lab=name)
            if lab.outside not in lab.netns:  # a lab made before the outside host existed
                lab.netns.append(lab.outside)
        lab.save()  # write-ahead: down can now find everything below
        _build(lab, step, timeout)
        lab.ready = True
        lab.save()
        return lab


def _same_kubernetes(lab: LabState, kubernetes: dict[str, object] | None) -> None:
    """``up`` again keeps the lab's kind: with or without Kubernetes, and the same Calico form."""
    had = lab.kubernetes.get("calico") if lab.kubernetes else None
    want = kubernetes.get("calico") if kubernetes else None
    if kubernetes is not None and had != want:
        made = f"--kubernetes --calico {had}" if had else "without --kubernetes"
        raise LabError(f"lab {lab.name!r} was made {made} (run: calico-lab down --name {lab.name})")


def _build(lab: LabState, step: Step, timeout: float) -> None:
    net = lab.network
    bridges = ", ".join(
        f"{network.bridge_name(k)} {network.router_ip(k)}/24" for k in range(net.subnets)
    )
    step(f"network namespace {lab.core}: the router ({bridges})")
    topology.ensure_core(lab.core, lab.name, net.subnets)
    members = lab.etcd.members
    step(
        f"etcd in the core namespace ({members} member{'s' if members > 1 else ''}"
        f"{', client mTLS' if lab.etcd.tls else ''}: {lab.etcd_endpoint})"
    )
    etcd.ensure(lab)
    if lab.typha and not daemons.alive(lab.typha_pid):
        step(f"calico-typha in the core namespace ({lab_typha.address()})")
        lab_typha.ensure(lab)
    if not lab.kubernetes and not lab.kdd:  # else the CNI plugin reads a real API server
        _ensure_apiserver(lab)
    step(f"outside host: namespace {lab.outside}, {network.OUTSIDE_IP} port {outside.PORT}")
    outside.ensure(lab)
    for node in lab.nodes:
        step(f"host {node.name}: namespace {node.netns}, eth0 {node.ip}/24")
        topology.ensure_node(lab.core, node.name, node.netns, node.ip, subnet=node.subnet)
        nodes.make_dirs(lab, node.name)
    if lab.kubernetes:
        from calico_lab import k8s_cluster

        k8s_cluster.build(lab, step, timeout)
        return
    if lab.kdd:
        kdd.ensure(lab, step, timeout=timeout)
    step(f"CNI plugins and network configs (mtu {net.mtu})")
    nodes.install_cni(lab)
    for node in lab.nodes:
        if not daemons.alive(node.pid):
            step(f"calico-node on {node.name}")
            node.pid = nodes.start(lab, node)
            lab.save()
    store = LabStore.of(lab)
    try:
        _wait_ready(lab, store, step, timeout)
        for pod in lab.pods.values():
            if pod.ip and netns.exists(pod.netns) and not daemons.alive(pod.responder_pid):
                step(f"restarting pod {pod.key}'s responder")
                from calico_lab import pods

                pods.start_responder(lab, pod)
        step("namespace default")
        from calico_lab import objects

        objects.ensure_namespace(lab, store, "default", {})
    finally:
        store.close()


def _ensure_apiserver(lab: LabState) -> None:
    if daemons.alive(lab.apiserver_pid):
        return
    from calico_lab import apiserver

    lab.api_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-I",
        "-S",
        apiserver.__file__,
        "--root",
        str(lab.api_dir),
        "--host",
        bridge_ip(),
        "--port",
        str(API_PORT),
    ]
    lab.apiserver_pid = daemons.spawn(argv, netns=lab.core, log_file=lab.path / "apiserver.log")
    lab.save()

    def listening() -> bool:
        if not daemons.alive(lab.apiserver_pid):
            raise LabError(f"the lab's pod API exited; see {lab.path / 'apiserver.log'}")
        return netns.call_in(lab.core, lambda: _port_open(bridge_ip(), API_PORT))

    daemons.wait_until(listening, timeout=10, interval=0.02, what="the lab's pod API")


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def _wait_ready(lab: LabState, store: LabStore, step: Step, timeout: float) -> None:
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        return max(1.0, deadline - time.monotonic())

    step("waiting for every node to register")
    daemons.wait_until(
        lambda: _registered(lab, store),
        timeout=remaining(),
        what="Node resources (see " + str(lab.path / "nodes") + "/*/log)",
    )
    if len(lab.nodes) > 1 and lab.network.bgp:
        want = len(lab.nodes) - 1
        step(f"waiting for the BGP mesh ({want} session(s) per node)")
        try:
            daemons.wait_until(
                lambda: all(_bgp_up(lab, n) >= want for n in lab.nodes),
                timeout=remaining(),
                interval=0.5,
                what="BGP sessions to establish",
            )
        except TimeoutError as exc:
            seen = "; ".join(
                f"{n.name}: "
                + (
                    ", ".join(
                        f"{s['name']} {s['info'] or s['state']}" for s in nodes.bgp_sessions(lab, n)
                    )
                    or "BIRD not answering"
                )
                for n in lab.nodes
            )
            raise LabError(f"{exc} ({seen}); logs: {lab.path / 'nodes'}/*/log") from None


def _registered(lab: LabState, store: LabStore) -> bool:
    for node in lab.nodes:
        if not daemons.alive(node.pid):
            raise LabError(
                f"calico-node on {node.name} exited; see "
                f"{nodes.log_dir(lab, node.name) / 'calico-node.log'}"
            )
    found = store.list("nodes")
    if lab.kdd:  # the Kubernetes Nodes exist first: registered is calico-node's annotation
        found = [n for n in found if ((n.get("spec") or {}).get("bgp") or {}).get("ipv4Address")]
    names = {n.get("metadata", {}).get("name") for n in found}
    return all(node.name in names for node in lab.nodes)


def _bgp_up(lab: LabState, node: NodeState) -> int:
    return nodes.established(nodes.bgp_sessions(lab, node))


def down(name: str, *, step: Step = _quiet) -> bool:
    """Remove the lab; False when there was nothing to remove."""
    with state.locked(name):
        lab = state.load(name)
        lab_dir = state.lab_dir(name)
        if lab is None and not lab_dir.exists():
            state.remove_lock(name)
            return False
        if lab is not None:
            _teardown(lab, step)
        step(f"removing {lab_dir}")
        shutil.rmtree(lab_dir, ignore_errors=True)
        if lab is not None and lab.run_root:
            shutil.rmtree(lab.run_root, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(state.RUN_BASE)  # only when no other lab uses it
    state.remove_lock(name)
    return True


def _teardown(lab: LabState, step: Step) -> None:
    if lab.kubernetes:
        from calico_lab import k8s_cluster

        k8s_cluster.teardown(lab, step)
    if daemons.alive(lab.kube_pid):
        step("stopping the Kubernetes sync")
        daemons.stop(lab.kube_pid)
    if lab.kdd.get("apiserver") == "external":
        _leave_external(lab, step)  # its Nodes (and Leases) go once calico-node stopped
    elif lab.kube_config:
        from calico_lab import kube

        kube.unregister(lab, step)
    for pod in lab.pods.values():
        daemons.stop(pod.responder_pid, grace=1)
    daemons.stop(lab.outside_pid, grace=1)
    for node in lab.nodes:
        if daemons.alive(node.pid):
            step(f"stopping calico-node on {node.name}")
            daemons.stop(node.pid)
    daemons.stop(lab.apiserver_pid, grace=1)
    if daemons.alive(lab.typha_pid):
        step("stopping calico-typha")
        lab_typha.stop(lab)
    if lab.kdd:
        _teardown_kdd(lab, step)
    step("stopping etcd")
    etcd.stop(lab)
    _delete_namespaces(lab, step)


def _delete_namespaces(lab: LabState, step: Step) -> None:
    """Pods' namespaces first (their veths live in node namespaces), the core last; only names
    with the lab's prefix."""
    pods_ns = [p.netns for p in lab.pods.values()]
    order = [*pods_ns, *[n for n in lab.netns if n not in pods_ns and n != lab.core], lab.core]
    mine = state.netns_prefix(lab.name)
    for ns in dict.fromkeys(order):
        if not ns.startswith(mine):  # a damaged state file never names another namespace
            step(f"not deleting namespace {ns!r}: not named {mine}...")
            continue
        if netns.exists(ns):
            step(f"deleting namespace {ns}")
            netns.delete(ns)


def _relay_up(lab: LabState, step: Step) -> bool:
    if daemons.alive(int(lab.kdd.get("relay_pid") or 0)):
        return True
    step("the API relay is not running: leaving the lab's objects in the API server")
    return False


def _leave_external(lab: LabState, step: Step) -> None:
    """The user's API server outlives the lab: its pods get CNI DEL (addresses released) and are
    deleted there (the Nodes follow once calico-node has stopped: :func:`_teardown_kdd`)."""
    if not _relay_up(lab, step):
        return
    step("removing the lab's pods from the API server")
    from calico_lab import pods

    try:
        with session(lab.name, lock=False) as (_, store):
            for key in list(lab.pods):
                pods.delete(lab, store, key)
    except Exception as exc:  # down goes on: the namespaces must go whatever the server says
        step(f"could not remove the pods: {exc}")


def _teardown_kdd(lab: LabState, step: Step) -> None:
    from calico_lab import kdd_server

    if lab.kdd.get("apiserver") == "external" and _relay_up(lab, step):
        step("removing the lab's Nodes (and their Calico addresses and blocks) from the API server")
        try:
            kdd.remove_nodes(lab)
        except Exception as exc:
            step(f"could not remove the Nodes: {exc}")

    step(f"stopping the datastore's API server ({lab.kdd.get('apiserver')})")
    kdd_server.stop(lab)


@contextlib.contextmanager
def session(name: str, *, lock: bool = True) -> Iterator[tuple[LabState, LabStore]]:
    """The lab's state (locked against other writers) and a store on its etcd."""
    with state.locked(name) if lock else contextlib.nullcontext():
        lab = state.require(name)
        if not netns.exists(lab.core):
            raise LabError(f"lab {name!r}: namespace {lab.core} is gone (run: calico-lab up)")
        store = LabStore.of(lab)
        try:
            yield lab, store
        finally:
            store.close()

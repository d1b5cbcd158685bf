"""CNI storm: pods added in parallel on three nodes with random deletes, from a pool small enough
that blocks run out and nodes must borrow from each other's blocks: no address handed to two pods,
``calicoctl ipam check`` clean, no handle leaked, one WorkloadEndpoint per pod, borrowing did
happen. And ``kill -9`` of the plugin in the middle of an ADD (after its IPAM transaction, before
the veth), followed by the runtime's DEL, leaks nothing — served by the node's CNI server (the
launcher dies, the server's ADD goes on) and in-process (the ADD itself dies).

Short form: a /25 pool of /29 blocks (16 blocks), 140 ADDs; long form (``make chaos``): a /24
pool (32 blocks), 300 ADDs. Phase A fills the pool from node1 and node2; phase B adds on node3
(which finds no free block for most of its pods: it borrows) while deleting random pods.
"""

from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from calico.cni.testhook import VARIABLE as PAUSE
from calico.cni.veth import host_veth_name
from calico.datastore.backend import KV
from calico.ipam import keys
from tests.chaos import cni
from tests.chaos.chaoslab import ChaosLab
from tests.chaos.figures import Figures, long_form
from tests.chaos.scenario import ipam_problems
from tests.e2e.lab_support import has_link

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.timeout(1200)]

POOL = "chaos-storm"
PAUSE_S = 3
WORKERS = 8


@dataclass(frozen=True)
class Size:
    cidr: str
    phase_a: int  # ADDs on node1 + node2
    phase_b_adds: int  # ADDs on node3
    phase_b_deletes: int  # random DELs of node1/node2 pods, meanwhile


SHORT = Size("10.250.0.0/25", 100, 40, 30)
LONG = Size("10.250.0.0/24", 220, 80, 70)


@dataclass
class Storm:
    lab: ChaosLab
    figures: Figures
    conf: dict[str, dict[str, Any]]
    boxes: list[cni.Sandbox] = field(default_factory=list)
    live: dict[str, tuple[cni.Sandbox, str]] = field(default_factory=dict)  # cid -> (box, ip)
    in_use: set[str] = field(default_factory=set)
    duplicates: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, node: str, name: str) -> None:
        box = cni.new_sandbox(self.lab.name, node, name)
        with self.lock:
            self.boxes.append(box)
        st = self.lab.state()
        r = cni.call(st, box, "ADD", conf=self.conf[node])
        self.figures.op("CNI ADD")
        if r.rc != 0:
            with self.lock:
                self.failures.append(f"ADD {name} on {node}: {r.out} {r.stderr[-300:]}")
            return
        with self.lock:
            if r.ip in self.in_use:
                self.duplicates.append(f"{r.ip} handed to {name} while in use")
            self.in_use.add(r.ip)
            self.live[box.container_id] = (box, r.ip)

    def delete_random(self, rng: random.Random, nodes: tuple[str, ...]) -> None:
        with self.lock:
            choices = [cid for cid, (b, _) in self.live.items() if b.node in nodes]
            if not choices:
                return
            cid = rng.choice(choices)
            box, ip = self.live.pop(cid)
            self.in_use.discard(ip)  # released from now on: it may be handed out again
        self.delete(box)

    def delete(self, box: cni.Sandbox) -> None:
        r = cni.call(self.lab.state(), box, "DEL", conf=self.conf[box.node])
        self.figures.op("CNI DEL")
        if r.rc != 0:
            with self.lock:
                self.failures.append(f"DEL {box.name}: {r.out} {r.stderr[-300:]}")


def storm_pool(cidr: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": POOL},
        "spec": {"cidr": cidr, "blockSize": 29, "ipipMode": "Never", "vxlanMode": "Never",
                 "natOutgoing": False},
    }  # fmt: skip


def ipam_state(lab: ChaosLab) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(blocks by CIDR, handles by id) straight from etcd."""

    def read(etcd: Any) -> tuple[list[Any], list[Any]]:
        return etcd.get_prefix(keys.block_prefix(4))[0], etcd.get_prefix(keys.HANDLE_PREFIX)[0]

    blocks, handles = lab.etcd_call(read)
    by_cidr = {}
    for kv in blocks:
        b = json.loads(kv.value)
        by_cidr[b["cidr"]] = b
    return by_cidr, {
        kv.key.removeprefix(keys.HANDLE_PREFIX): json.loads(kv.value) for kv in handles
    }


def handle_record(lab: ChaosLab, handle: str) -> KV | None:
    """The IPAM handle's record in etcd (None: there is none)."""
    return lab.etcd_call(lambda e: e.get(keys.handle_key(handle)))


def owner(blocks: dict[str, dict[str, Any]], ip: str) -> tuple[str, str | None]:
    """(block CIDR, handle id) that IPAM records for ``ip``."""
    addr = ipaddress.ip_address(ip)
    for cidr, b in blocks.items():
        net = ipaddress.ip_network(cidr)
        if addr in net:
            slot = b["allocations"][int(addr) - int(net.network_address)]
            handle = None if slot is None else b["attributes"][slot].get("handle_id")
            return cidr, handle
    return "", None


def test_cni_storm_borrows_blocks_and_leaks_nothing(chaos_lab: ChaosLab, figures: Figures) -> None:
    lab = chaos_lab
    size = LONG if long_form() else SHORT
    st = lab.state()
    lab.apply(storm_pool(size.cidr))
    conf = {
        n.name: cni.plugin_conf(st, n.name, ipam={"type": "calico-ipam", "ipv4_pools": [POOL]})
        for n in st.nodes
    }
    storm = Storm(lab, figures, conf)
    rng = random.Random(13)
    figures.fault(
        f"{size.phase_a + size.phase_b_adds} pods, {WORKERS} in parallel, pool {size.cidr} of "
        f"/29 blocks; {size.phase_b_deletes} random deletes"
    )
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda i: storm.add(("node1", "node2")[i % 2], f"a{i}"),
                          range(size.phase_a)))  # fmt: skip
            jobs = []
            for i in range(max(size.phase_b_adds, size.phase_b_deletes)):
                if i < size.phase_b_deletes:
                    jobs.append(pool.submit(storm.delete_random, rng, ("node1", "node2")))
                if i < size.phase_b_adds:
                    jobs.append(pool.submit(storm.add, "node3", f"b{i}"))
            for job in jobs:
                job.result()
        figures.notes.append(f"storm took {time.monotonic() - started:.1f} s")
        check_storm(lab, storm, figures)
        mid_add_kill(lab, figures, storm)
    finally:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(storm.delete, [b for b, _ in storm.live.values()]))
        storm.live.clear()
        cni.remove_sandboxes(lab.name, storm.boxes)
    blocks, handles = ipam_state(lab)
    ours = {b.container_id for b in storm.boxes}
    left = [h for h in handles if h.split(".", 1)[-1] in ours]
    in_pool = [
        c for c, b in blocks.items()
        if ipaddress.ip_network(c).subnet_of(ipaddress.ip_network(size.cidr))  # type: ignore[arg-type]
        and any(a is not None for a in b["allocations"])
    ]  # fmt: skip
    lab.delete("IPPool", POOL)
    assert not left, f"handles left after every pod was deleted: {left[:5]}"
    assert not in_pool, f"addresses still allocated in {in_pool}"
    assert ipam_problems(lab) == 0


def check_storm(lab: ChaosLab, storm: Storm, figures: Figures) -> None:
    assert not storm.failures, storm.failures[:5]
    blocks, handles = ipam_state(lab)
    borrowed = 0
    for box, ip in storm.live.values():
        cidr, handle = owner(blocks, ip)
        if handle != f"k8s-pod-network.{box.container_id}":
            storm.duplicates.append(f"{ip} of {box.name}: IPAM says handle {handle}")
        if blocks[cidr].get("affinity") != f"host:{box.node}":
            borrowed += 1
    ips = [ip for _, ip in storm.live.values()]
    dup_ips = len(ips) - len(set(ips))
    figures.duplicates = len(storm.duplicates) + dup_ips
    live_ids = {box.container_id for box, _ in storm.live.values()}
    deleted_ids = {b.container_id for b in storm.boxes} - live_ids
    leaked = [h for h in handles if h.split(".", 1)[-1] in deleted_ids]
    missing = [c for c in live_ids if f"k8s-pod-network.{c}" not in handles]
    weps = lab.store.list("workloadendpoints")
    per_container: dict[str, int] = {}
    for w in weps:
        cid = (w.get("spec") or {}).get("containerID", "")
        per_container[cid] = per_container.get(cid, 0) + 1
    wep_problems = [c for c in live_ids if per_container.get(c) != 1]
    wep_problems += [c for c in deleted_ids if per_container.get(c)]
    problems = ipam_problems(lab)
    figures.leaks = len(leaked) + problems + len(wep_problems)
    figures.notes.append(
        f"{len(storm.live)} pods live after the storm, {borrowed} of them on borrowed addresses"
    )
    figures.op("borrowed addresses", borrowed)
    assert figures.duplicates == 0, storm.duplicates[:5]
    assert not leaked, f"handles of deleted pods: {leaked[:5]}"
    assert not missing, f"live pods without a handle: {missing[:5]}"
    assert not wep_problems, f"WorkloadEndpoints not one per live pod: {wep_problems[:5]}"
    assert problems == 0
    assert borrowed > 0, "no pod got a borrowed address: the storm did not force borrowing"


def mid_add_kill(lab: ChaosLab, figures: Figures, storm: Storm) -> None:
    """kill -9 of the plugin while its ADD sits after the IPAM transaction, then DEL."""
    st = lab.state()
    for served in (True, False):
        box = cni.new_sandbox(lab.name, "node2", f"killed-{'served' if served else 'local'}")
        storm.boxes.append(box)
        # served: the compiled launcher hands the call to node2's CNI server; else the Python
        # launcher without a socket runs the call in its own process
        proc = cni.start(st, box, "ADD", conf=storm.conf["node2"],
                         extra={PAUSE: f"after-ipam:{PAUSE_S}"},
                         plugin=None if served else ".calico-py")  # fmt: skip
        handle = f"k8s-pod-network.{box.container_id}"
        deadline = time.monotonic() + 20
        while handle_record(lab, handle) is None:
            assert time.monotonic() < deadline, "the ADD never reached its IPAM transaction"
            time.sleep(0.05)
        paused_at = time.monotonic()
        proc.kill()  # SIGKILL: the plugin process dies mid-ADD
        proc.wait()
        figures.fault(f"kill -9 of the plugin mid-ADD ({'CNI server' if served else 'in-process'})")
        r = cni.call(st, box, "DEL", conf=storm.conf["node2"])  # the runtime's DEL
        assert r.rc == 0, r.out
        # whatever the killed call could still do is done by now (a served ADD goes on)
        time.sleep(max(0.0, paused_at + PAUSE_S + 2 - time.monotonic()))
        assert handle_record(lab, handle) is None
        weps = [
            w for w in lab.store.list("workloadendpoints")
            if (w.get("spec") or {}).get("containerID") == box.container_id
        ]  # fmt: skip
        assert weps == [], "the killed ADD left its WorkloadEndpoint"
        node2 = st.node("node2").netns
        veth = host_veth_name(f"{box.namespace}.{box.name}")
        assert not has_link(node2, veth), f"{veth} left on node2 after the DEL"
        routes = subprocess.run(["ip", "-n", node2, "route", "show", "dev", veth],
                                capture_output=True, text=True, check=False).stdout  # fmt: skip
        assert not routes.strip(), f"routes left: {routes}"
    assert ipam_problems(lab) == 0

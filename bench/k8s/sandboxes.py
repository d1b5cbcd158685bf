"""Pods on a real node, as the kubelet starts and stops them, with one CNI config or another.

The node's CNI config directory (``/etc/cni/net.d`` inside the node: the lab's ``cni-net.d``)
holds the hosted install's ``10-calico.conflist``; containerd uses the first file by name
(``max_conf_num = 1``), so writing ``05-ptp.conflist`` (Debian's Go ``ptp`` + ``host-local``,
plus ``portmap`` as the hosted config has it) switches the node to the reference plugins and
removing it switches back. Every sample's address says which plugin served it (pool
``192.168.0.0/16`` or the reference's ``10.250.<n>.0/24``); a mismatch is an error, not a sample.

Per pod: ``POST`` (t0) -> ``status.phase == Running`` with an IP (polled every 20 ms): "pod
create -> Running"; containerd's own log gives RunPodSandbox (the CRI call the kubelet makes:
pause container + CNI ADD) and the first StopPodSandbox after the pod is deleted (pause stopped +
CNI DEL), to the nanosecond.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import time
from pathlib import Path
from typing import Any

from calico_lab import k8s_api, k8s_images, k8s_node, k8s_state
from calico_lab.state import LabState

NAMESPACE = "bench"
REF_CONF = "05-ptp.conflist"
REF_PLUGINS = ("ptp", "host-local")
LINE = re.compile(r'^time="([^"]+)" level=\w+ msg="(.*)"')
RUN_START = re.compile(r"^RunPodSandbox for &PodSandboxMetadata\{Name:([^,]+),")
RUN_DONE = re.compile(
    r'^RunPodSandbox for &PodSandboxMetadata\{Name:([^,]+),.* returns sandbox id \\"(\w+)\\"'
)
STOP = re.compile(r'^StopPodSandbox for \\"(\w+)\\"( returns successfully)?$')


def ref_conflist(subnet: str) -> dict[str, Any]:
    return {
        "cniVersion": "0.3.1",
        "name": "bench-ptp",
        "plugins": [
            {
                "type": "ptp",
                "mtu": 1450,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "dataDir": "/var/lib/cni/bench-ptp",
                },
            },
            {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
        ],
    }


def use_reference(lab: LabState, node: str, on: bool, *, subnet: str) -> None:
    """Switch ``node`` to ptp + host-local (``on``) or back to the hosted install's config."""
    net_d = k8s_node.node_dir(lab, node, "cni-net.d")
    bin_dir = k8s_node.node_dir(lab, node, "cni-bin")
    for plugin in REF_PLUGINS:
        if not (bin_dir / plugin).exists():
            (bin_dir / plugin).symlink_to(f"/usr/lib/cni/{plugin}")
    conf = net_d / REF_CONF
    if on:
        tmp = net_d / f".{REF_CONF}.tmp"
        tmp.write_text(json.dumps(ref_conflist(subnet)))
        tmp.replace(conf)
    else:
        conf.unlink(missing_ok=True)
    time.sleep(1.0)  # containerd reloads its CNI config on the directory's change


def pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"bench": "sandbox"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "c",
                    "image": k8s_images.responder_ref(),
                    "imagePullPolicy": "Never",
                    "args": ["--tcp", "80"],
                }
            ],
        },
    }


def create_until_running(
    api: k8s_api.Api, name: str, node: str, *, timeout: float = 120
) -> tuple[float, str]:
    """Seconds from the POST to phase Running with an address, and the address."""
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    t0 = time.monotonic()
    api.send("POST", path, pod(name, node))
    while time.monotonic() - t0 < timeout:
        status = api.get(f"{path}/{name}").get("status") or {}
        if status.get("phase") == "Running" and status.get("podIP"):
            return time.monotonic() - t0, str(status["podIP"])
        time.sleep(0.02)
    raise TimeoutError(f"pod {name} not Running after {timeout}s")


def delete_until_gone(api: k8s_api.Api, name: str, *, timeout: float = 120) -> None:
    path = f"/api/v1/namespaces/{NAMESPACE}/pods/{name}"
    api.send("DELETE", path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api.get(path)
        except k8s_api.ApiError as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.05)
    raise TimeoutError(f"pod {name} still there after {timeout}s")


def check_address(ip: str, contender: str, ref_subnet: str) -> None:
    want = ipaddress.ip_network(ref_subnet if contender == "ptp" else "192.168.0.0/16")
    if ipaddress.ip_address(ip) not in want:
        raise RuntimeError(f"{contender} pod got {ip}, not in {want}: the wrong plugin served it")


def _when(stamp: str) -> float:
    whole, _, frac = stamp.rstrip("Z").partition(".")
    base = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC).timestamp()
    return base + float(f"0.{frac or '0'}")


def sandbox_times(log: Path, names: set[str]) -> dict[str, tuple[float, float]]:
    """{pod name: (RunPodSandbox ms, first StopPodSandbox ms)} from containerd's log."""
    started: dict[str, float] = {}
    run: dict[str, float] = {}
    sandbox_of: dict[str, str] = {}
    stop_start: dict[str, float] = {}
    stop: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if not m:
            continue
        t, msg = _when(m[1]), m[2]
        if (done := RUN_DONE.match(msg)) and done[1] in started and done[1] not in run:
            run[done[1]] = (t - started[done[1]]) * 1000
            sandbox_of[done[2]] = done[1]
        elif (begin := RUN_START.match(msg)) and begin[1] in names and "returns" not in msg:
            started.setdefault(begin[1], t)
        elif (s := STOP.match(msg)) and s[1] in sandbox_of:
            pod_name = sandbox_of[s[1]]
            if s[2] is None:
                stop_start.setdefault(pod_name, t)
            elif pod_name in stop_start and pod_name not in stop:
                stop[pod_name] = (t - stop_start[pod_name]) * 1000
    return {n: (run[n], stop[n]) for n in names if n in run and n in stop}


def containerd_log(lab: LabState, node: str) -> Path:
    return k8s_state.log_file(lab, node, "containerd")


def felix_pids(lab: LabState, node: str) -> list[int]:
    """calico-felix of ``node`` (in its calico-node pod: the node's cgroup root)."""
    root = f"/{k8s_state.cgroup_root(lab, node)}/"
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue
        if b"calico-felix" in cmdline and root in cgroup:
            out.append(int(entry.name))
    return out


def served_adds(lab: LabState, node: str) -> list[float]:
    """The CNI server's own time per ADD (ms), from calico-node's cni log on ``node``."""
    log = lab.node_dir(node) / "log" / "cni" / "current"
    found = re.findall(r"served calico ADD \w+ rc=0 \(([\d.]+) ms\)", log.read_text())
    return [float(x) for x in found]

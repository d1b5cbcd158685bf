"""Drive the lab's CNI plugin as a runtime would, for the chaos scenarios: raw ADD/DEL calls whose
exit code, stdout JSON and duration are kept (``calico_lab.cni_runner`` turns failures into
exceptions; here a failure is the thing under test), and pod namespaces the test owns.

A call execs what the lab installed in ``<lab>/bin`` (the compiled launcher, which hands the call
to the node's CNI server, or runs it in-process when told to or when no server answers), in the
node's network namespace (and the test's mount namespace, as a runtime's plugin shares the host's),
with kubelet's environment and the node's conflist entry on stdin.
``start_add`` returns the running process, so a test can ``kill -9`` it mid-call.

Pod namespaces are named ``calab-<lab>-s<hex>`` and recorded in the lab's state before they are
made (so ``calico-lab down`` removes any a failed test leaves), and removed by the test.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from calico.lib import netns
from calico_lab import nodes, state
from calico_lab.cni_runner import NETNS_DIR
from calico_lab.state import LabState


@dataclass
class Call:
    rc: int
    out: dict[str, Any]
    stderr: str
    seconds: float

    @property
    def ip(self) -> str:
        return str(self.out["ips"][0]["address"]).split("/")[0]


@dataclass
class Sandbox:
    """One pod as the runtime knows it: its namespace, container ID and node."""

    lab: str
    node: str
    name: str
    namespace: str = "default"
    container_id: str = field(default_factory=lambda: secrets.token_hex(16))
    netns: str = ""

    def env(self, command: str, lab: LabState, extra: dict[str, str] | None = None) -> list[str]:
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": self.container_id,
            "CNI_NETNS": f"{NETNS_DIR}/{self.netns}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": nodes.cni_path(lab),
            "CNI_ARGS": (
                f"IgnoreUnknown=1;K8S_POD_NAMESPACE={self.namespace};K8S_POD_NAME={self.name};"
                f"K8S_POD_INFRA_CONTAINER_ID={self.container_id}"
            ),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            **(extra or {}),
        }
        return [f"{k}={v}" for k, v in env.items()]


def new_sandbox(lab_name: str, node: str, name: str) -> Sandbox:
    """A pod namespace, recorded in the lab's state first (write-ahead), then made."""
    box = Sandbox(lab_name, node, name)
    box.netns = f"{state.netns_prefix(lab_name)}s{secrets.token_hex(5)}"
    with state.locked(lab_name):
        lab = state.require(lab_name)
        lab.netns.append(box.netns)
        lab.save()
    netns.add(box.netns)
    subprocess.run(["ip", "-n", box.netns, "link", "set", "lo", "up"], check=True)
    return box


def remove_sandboxes(lab_name: str, boxes: list[Sandbox]) -> None:
    for box in boxes:
        if box.netns and netns.exists(box.netns):
            netns.delete(box.netns)
    gone = {b.netns for b in boxes}
    with state.locked(lab_name):
        lab = state.require(lab_name)
        lab.netns = [n for n in lab.netns if n not in gone]
        lab.save()


def plugin_conf(lab: LabState, node: str, **overrides: Any) -> dict[str, Any]:
    """The calico entry of ``node``'s conflist, as libcni hands it to the plugin, without the
    pod lookup (``kubernetes``: these pods are not in the lab's pod API; their WorkloadEndpoints
    carry the Calico labels only), with ``overrides`` merged in."""
    conflist = nodes.load_conflist(lab, node)
    conf = {
        **conflist["plugins"][0],
        "name": conflist["name"],
        "cniVersion": conflist["cniVersion"],
    }
    conf.pop("kubernetes", None)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(conf.get(key), dict):
            conf[key] = {**conf[key], **value}
        else:
            conf[key] = value
    return conf


def argv(
    lab: LabState,
    box: Sandbox,
    command: str,
    extra: dict[str, str] | None,
    plugin: str | None = None,
) -> list[str]:
    """``plugin``: the file in the lab's bin dir (default ``calico``, the compiled launcher that
    hands the call to the node's CNI server; ``.calico-py`` runs the call in its own process)."""
    host = lab.node(box.node).netns
    exe = str(lab.bin_dir / (plugin or "calico"))
    # nsenter, not ``ip netns exec``: the plugin shares the runtime's mount namespace, as on a
    # real host (``ip netns exec`` makes a private one, which dies with the plugin process)
    return ["nsenter", f"--net={NETNS_DIR}/{host}", "env", "-i", *box.env(command, lab, extra), exe]


def start(
    lab: LabState,
    box: Sandbox,
    command: str,
    *,
    conf: dict[str, Any] | None = None,
    extra: dict[str, str] | None = None,
    plugin: str | None = None,
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        argv(lab, box, command, extra, plugin),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(conf or plugin_conf(lab, box.node)))
    proc.stdin.close()
    return proc


def call(
    lab: LabState,
    box: Sandbox,
    command: str,
    *,
    conf: dict[str, Any] | None = None,
    extra: dict[str, str] | None = None,
    timeout: float = 120,
) -> Call:
    began = time.monotonic()
    proc = subprocess.run(
        argv(lab, box, command, extra),
        input=json.dumps(conf or plugin_conf(lab, box.node)),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        parsed = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError:
        parsed = {"unparsed": proc.stdout}
    return Call(proc.returncode, parsed, proc.stderr, time.monotonic() - began)

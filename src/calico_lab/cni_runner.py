"""Invoke CNI plugins the way kubelet (libcni) does: conflist chains, env, stdin, result JSON.

ADD runs the plugins of the network config list in order, handing each the previous result as
``prevResult``; DEL runs them in reverse. The plugin executables are found on ``CNI_PATH`` and run
*inside the node's namespace* (``ip netns exec <node>``), because that is the host they belong to.
Kubelet also brings up the pod's ``lo`` with the ``loopback`` plugin; so do we.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico.lib.cmd import netns_argv, run
from calico_lab.state import NETNS_PREFIX

NETNS_DIR = "/var/run/netns"


class CNIError(Exception):
    """A plugin failed; carries the CNI error code and message when the plugin printed one."""

    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "") -> None:
        self.code = code
        self.msg = msg
        text = f"CNI {command} failed in plugin {plugin}: {msg}"
        super().__init__(f"{text} ({details})" if details else text)


@dataclass(frozen=True, slots=True)
class PodRef:
    namespace: str
    name: str
    container_id: str
    netns: str  # name of the pod's network namespace

    def cni_args(self) -> str:
        return (
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE={self.namespace};K8S_POD_NAME={self.name};"
            f"K8S_POD_INFRA_CONTAINER_ID={self.container_id}"
        )


def _find(plugin: str, cni_path: str) -> str:
    for d in cni_path.split(":"):
        candidate = Path(d) / plugin
        if d and candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise CNIError(plugin, "find", 0, f"plugin {plugin!r} not found in CNI_PATH {cni_path}")


def _exec(
    command: str,
    plugin_conf: dict[str, Any],
    pod: PodRef,
    *,
    ifname: str,
    cni_path: str,
    host_netns: str | None,
) -> dict[str, Any]:
    plugin = str(plugin_conf["type"])
    for what, ns in (("node", host_netns), ("pod", pod.netns)):
        # the plugins program "this" namespace: never let that be the root one
        if not ns or not ns.startswith(NETNS_PREFIX):
            raise CNIError(plugin, command, 0, f"{what} namespace {ns!r} is not a lab namespace")
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": pod.container_id,
        "CNI_NETNS": f"{NETNS_DIR}/{pod.netns}",
        "CNI_IFNAME": ifname,
        "CNI_PATH": cni_path,
        "CNI_ARGS": pod.cni_args(),
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }
    argv = netns_argv(
        host_netns, ["env", "-i", *(f"{k}={v}" for k, v in env.items()), _find(plugin, cni_path)]
    )
    proc = run(argv, input=json.dumps(plugin_conf), check=False, timeout=60)
    out = proc.stdout.strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            raise CNIError(
                plugin,
                command,
                int(err.get("code", 0)),
                str(err.get("msg", out)),
                str(err.get("details", "")),
            )
        except ValueError:
            raise CNIError(
                plugin, command, proc.returncode, (out or proc.stderr.strip() or "no output")
            ) from None
    if not out:
        return {}
    result: dict[str, Any] = json.loads(out)
    return result


def _plugin_conf(
    conflist: dict[str, Any], plugin: dict[str, Any], prev: dict[str, Any] | None
) -> dict[str, Any]:
    conf = {**plugin, "name": conflist["name"], "cniVersion": conflist.get("cniVersion", "0.3.1")}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def add(
    conflist: dict[str, Any],
    pod: PodRef,
    *,
    cni_path: str,
    host_netns: str | None,
    ifname: str = "eth0",
) -> dict[str, Any]:
    """CNI ADD of the whole list; the final result (IPs, interfaces, routes)."""
    loopback(pod, cni_path=cni_path, host_netns=host_netns, command="ADD")
    result: dict[str, Any] | None = None
    for plugin in conflist["plugins"]:
        result = _exec(
            "ADD",
            _plugin_conf(conflist, plugin, result),
            pod,
            ifname=ifname,
            cni_path=cni_path,
            host_netns=host_netns,
        )
    return result or {}


def delete(
    conflist: dict[str, Any],
    pod: PodRef,
    *,
    cni_path: str,
    host_netns: str | None,
    ifname: str = "eth0",
) -> None:
    """CNI DEL of the whole list, last plugin first."""
    for plugin in reversed(conflist["plugins"]):
        _exec(
            "DEL",
            _plugin_conf(conflist, plugin, None),
            pod,
            ifname=ifname,
            cni_path=cni_path,
            host_netns=host_netns,
        )


def loopback(pod: PodRef, *, cni_path: str, host_netns: str | None, command: str) -> None:
    conf = {"cniVersion": "0.3.1", "name": "cni-loopback", "type": "loopback"}
    try:
        _exec(command, conf, pod, ifname="lo", cni_path=cni_path, host_netns=host_netns)
    except CNIError as exc:
        if exc.code != 0 or "not found" not in exc.msg:
            raise
        # No loopback plugin installed: bring lo up ourselves, as it would.
        run(["ip", "-n", pod.netns, "link", "set", "lo", "up"])


def pod_ip(result: dict[str, Any]) -> str:
    """The first IPv4 address of a CNI result (without prefix length)."""
    for ip in result.get("ips", []):
        addr = str(ip.get("address", "")).split("/")[0]
        if addr and ":" not in addr:
            return addr
    raise CNIError("calico", "ADD", 0, f"result has no IPv4 address: {json.dumps(result)}")

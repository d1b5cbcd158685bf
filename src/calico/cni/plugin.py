"""The ``calico`` CNI plugin: ADD, DEL, CHECK and VERSION, in a fresh process or the CNI server.

Dataflow of ADD (one path for IPv4, IPv6 and dual stack; no background threads)::

    stdin + CNI_* env ─► netconf ─► open CNI_NETNS (the server: the caller's fd) ─► [k8s: GET pod]
        ─► calico-ipam: ONE etcd txn = addresses + handle + WorkloadEndpoint (+ the network's
           Profile when missing, non-k8s) via ipam.atomic
           (other IPAM types: exec ipam.type, then the Profile and the WorkloadEndpoint)
        ─► veth.setup (rtnetlink: the veth, pod end born in the pod netns; host side and host
           routes; pod side: addresses, link, routes; both families on the same code)
        ─► CNI_NETNS still names the namespace built in ─► result JSON for the cniVersion
           (printed by calico.cni.invocation)

Anything that fails after the addresses were taken undoes what was done (veth, endpoint, addresses)
before the error is reported. DEL removes the endpoint and the addresses in one etcd txn and the
veth (in the CNI server: after replying, see ``shared``), and succeeds when any or all of them are
already gone, with or without CNI_NETNS. CHECK lives in ``check``. Imports stay stdlib + our
datastore/IPAM code: without the server a call is a fresh process, so import time is latency.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from calico.cni import endpoint, invocation, shared, store, testhook, veth
from calico.cni.netconf import (
    ERR_DATAPLANE,
    ERR_INVALID_CONFIG,
    ERR_INVALID_ENV,
    ERR_IPAM,
    ERR_TRY_AGAIN,
    ERR_UNKNOWN_CONTAINER,
    SUPPORTED_VERSIONS,
    CNIEnv,
    CNIError,
    NetConf,
    parse_conf,
)
from calico.cni.result import Result
from calico.datastore.backend import Backend, op_get
from calico.datastore.client import Client
from calico.ipam import atomic, keys
from calico.lib.cmd import run


class Call:
    """One plugin invocation: config, environment and the clients it needs."""

    def __init__(self, conf: NetConf, env: CNIEnv, *, netns_fd: int | None = None) -> None:
        self.conf = conf
        self.env = env
        self.netns_fd = netns_fd  # CNI_NETNS opened by the caller (the CNI server's launchers)
        self.store_key = store.key(conf)
        self.store: Backend = shared.borrow(self.store_key, lambda: store.connect(conf))
        self.client = Client(self.store)
        self.node = conf.nodename(env.env)
        k8s = env.is_k8s
        self.workload = endpoint.Workload(
            node=self.node,
            container_id=env.container_id,
            ifname=env.ifname,
            namespace=env.pod_namespace if k8s else "default",  # Calico's, for non-k8s too
            pod=env.pod_name if k8s else "",
        )
        self.handle_id = f"{conf.name}.{env.container_id}"
        self.host_if = veth.host_veth_name(self.workload.veth_key)

    def log(self, msg: str) -> None:
        """What the call did: to ``log_file_path`` (if set); with ``log_level: debug`` to stderr."""
        line = f"calico-cni {self.env.command} {self.env.container_id}: {msg}"
        if self.conf.log_level == "debug":
            invocation.warn(line)
        else:
            invocation.note(line)

    @property
    def calico_ipam(self) -> bool:
        return str(self.conf.ipam.get("type")) == "calico-ipam"

    # ---- IPAM ---------------------------------------------------------------------------------

    def ipam_add(self, mac: str = "") -> Result:
        """The addresses (calico-ipam: with the WorkloadEndpoint, ``mac`` its pod MAC, written in
        the same etcd transaction; a repeated ADD keeps the handle's addresses)."""
        if not self.calico_ipam:
            return Result.parse(self.delegate("ADD"))
        attrs = {"node": self.node}
        if self.workload.pod:
            attrs |= {"namespace": self.workload.namespace, "pod": self.workload.pod}
        ensure = None
        if mac and self.workload.orchestrator != "k8s":  # the network's Profile, if missing
            network = str(self.conf.name)
            ensure = {endpoint.profile_key(network): endpoint.encode_new(
                endpoint.network_profile(network))}  # fmt: skip
        ips, _ = atomic.assign(
            self.store,
            handle_id=self.handle_id,
            host=self.node,
            num_v4=1 if self.conf.ipam["assign_ipv4"] else 0,
            num_v6=1 if self.conf.ipam["assign_ipv6"] else 0,
            pools=self.conf.ipam["ipv4_pools"] or None,
            pools_v6=self.conf.ipam["ipv6_pools"] or None,
            attrs=attrs,
            cache=shared.ipam_cache(self.store_key),
            extra=(lambda got: {endpoint.key(self.workload): self._wep_json(got, mac)})
            if mac
            else None,
            ensure=ensure,
        )
        res = Result()
        for ip in ips:
            res.ips.append({"address": f"{ip}/128" if ":" in ip else f"{ip}/32"})
        return res

    def ipam_del(self) -> None:
        if not self.calico_ipam:
            self.delegate("DEL")
            return
        for handle_id in (self.handle_id, self.env.container_id):  # then older Calico's handle
            if atomic.release(self.store, self.store.get(keys.handle_key(handle_id))):
                return

    def delegate(self, command: str) -> dict[str, Any] | None:
        """Run the configured IPAM plugin (found on CNI_PATH) with our stdin and environment."""
        ptype = str(self.conf.ipam["type"])
        for d in self.env.path.split(os.pathsep):
            exe = os.path.join(d, ptype)
            if d and os.access(exe, os.X_OK):
                break
        else:
            raise CNIError(
                ERR_INVALID_CONFIG,
                f"ipam.type: plugin {ptype!r} not found in CNI_PATH {self.env.path!r}",
            )
        os.environ["CNI_COMMAND"] = command
        proc = run([exe], input=json.dumps(self.conf.raw), check=False)
        out: dict[str, Any] | None = json.loads(proc.stdout) if proc.stdout.strip() else None
        if proc.returncode != 0:
            err = out or {}
            raise CNIError(
                int(err.get("code", ERR_IPAM)),
                f"ipam plugin {ptype}: {err.get('msg') or proc.stderr.strip()}",
                str(err.get("details", "")),
            )
        return out

    # ---- commands -----------------------------------------------------------------------------

    def load_pod(self) -> None:
        """Labels, service account and ports from the Kubernetes API, when it is configured."""
        w = self.workload
        if not w.pod or not (self.conf.kubeconfig or self.conf.k8s_api_root):
            return
        from calico.cni import k8s

        try:
            api = k8s.api_for(
                kubeconfig=str(self.conf.kubeconfig) if self.conf.kubeconfig else None,
                api_root=self.conf.k8s_api_root,
                token=self.conf.k8s_auth_token,
                keep=shared.enabled(),
            )
            try:
                w.labels, w.service_account, w.ports = k8s.pod_info(api.get_pod(w.namespace, w.pod))
            finally:
                if not shared.enabled():
                    api.close()
        except k8s.K8sError as exc:
            raise CNIError(ERR_TRY_AGAIN, f"kubernetes: {exc}") from exc

    def require(self, *, netns: bool) -> None:
        """The call's environment is usable (CNIError code 4 naming the field otherwise)."""
        self.env.require(netns=netns)
        try:
            self.workload.wep_name  # noqa: B018 - computing it checks every name segment
        except ValueError as exc:
            raise CNIError(ERR_INVALID_ENV, f"WorkloadEndpoint name: {exc}") from exc

    def add(self) -> dict[str, Any]:
        self.require(netns=True)
        fd = self._open_netns()
        try:
            return self._add(fd)
        finally:
            if self.netns_fd is None:
                os.close(fd)

    def _open_netns(self) -> int:
        """The pod's network namespace as a file descriptor (the server's: passed by the caller)."""
        if self.netns_fd is not None:
            return self.netns_fd
        try:
            return os.open(self.env.netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise CNIError(
                ERR_UNKNOWN_CONTAINER,
                f"CNI_NETNS {self.env.netns}: no such network namespace ({exc.strerror})",
            ) from exc

    def _add(self, fd: int) -> dict[str, Any]:
        """IPAM + WorkloadEndpoint ─► the veth and both sides' configuration; undone on failure."""
        self.load_pod()
        invocation.mark("prep")
        mac = veth.random_mac()
        res = self.ipam_add(mac)  # calico-ipam: the WorkloadEndpoint is written with it
        invocation.mark("ipam")
        testhook.pause(self.env.env, "after-ipam")
        addrs = [str(ip["address"]).split("/")[0] for ip in res.ips]
        v4 = [a for a in addrs if ":" not in a]
        v6 = [a for a in addrs if ":" in a]
        nets = [f"{a}/32" for a in v4] + [f"{a}/128" for a in v6]
        try:
            if not self.calico_ipam:
                if self.workload.orchestrator != "k8s":
                    endpoint.ensure_network_profile(self.client, str(self.conf.name))
                endpoint.write(self.client, self._wep(nets, mac))
            # a DEL of this pod's last sandbox (same veth name), or an old veth still holding
            # one of these addresses, may be finishing in the background (CNI server)
            shared.wait_deletes(self.host_if, addrs)
            veth.setup(netns_fd=fd, ifname=self.env.ifname, host_if=self.host_if,
                       mtu=self.conf.mtu, pod_mac=mac, ipv4=v4, ipv6=v6)  # fmt: skip
            invocation.mark("net")
            self._netns_still_there(fd)
        except BaseException as exc:
            self._undo()
            if isinstance(exc, veth.DataplaneError | OSError):
                raise CNIError(ERR_DATAPLANE, f"setting up the pod network failed: {exc}") from exc
            raise
        self.log(
            f"{nets} on {self.host_if}; WorkloadEndpoint {self.workload.namespace}/"
            f"{self.workload.wep_name}; handle {self.handle_id}"
        )
        return self.result(res, mac, nets)

    def _netns_still_there(self, fd: int) -> None:
        """CNI_NETNS must still name the namespace the pod was built in: a runtime that removed
        it during ADD gets code 3 and nothing is left behind."""
        try:
            now = os.stat(self.env.netns)
        except OSError:
            now = None
        built = os.fstat(fd)
        if now is None or (now.st_dev, now.st_ino) != (built.st_dev, built.st_ino):
            raise CNIError(
                ERR_UNKNOWN_CONTAINER,
                f"CNI_NETNS {self.env.netns}: the network namespace went away during ADD",
            )

    def _wep(self, nets: list[str], mac: str) -> dict[str, Any]:
        return endpoint.build(
            self.workload, network=str(self.conf.name), host_if=self.host_if, mac=mac,
            ip_networks=nets,
        )  # fmt: skip

    def _wep_json(self, ips: list[str], mac: str) -> str:
        nets = [f"{a}/128" if ":" in a else f"{a}/32" for a in ips]
        nets = sorted(nets, key=lambda n: ":" in n)  # IPv4 first, as the result lists them
        return endpoint.encode_new(self._wep(nets, mac))

    def _undo(self) -> None:
        """A failed ADD leaves nothing: no veth, no endpoint, no addresses (best effort each)."""
        steps: list[Callable[[], object]] = [
            lambda: veth.delete_link(self.host_if),
            lambda: endpoint.delete_if_ours(self.client, self.workload),
            self.ipam_del,
        ]
        for step in steps:
            try:
                step()
            except Exception as exc:  # the original error is the one to report
                invocation.warn(f"calico: cleaning up after a failed ADD: {exc}")

    def result(self, res: Result, mac: str, nets: list[str]) -> dict[str, Any]:
        out = Result()
        out.add_interface(self.host_if, veth.HOST_MAC)
        pod_idx = out.add_interface(self.env.ifname, mac, self.env.netns)
        out.ips = [{"address": n, "interface": pod_idx} for n in nets]
        if any(":" not in n for n in nets):
            out.routes.append({"dst": "0.0.0.0/0", "gw": veth.GATEWAY_V4})
        if any(":" in n for n in nets):
            out.routes.append({"dst": "::/0", "gw": veth.HOST_LINK_LOCAL})
        out.dns = dict(self.conf.dns) or res.dns
        return out.render(self.conf.cni_version)

    def delete(self) -> None:
        self.require(netns=False)
        invocation.mark("prep")
        if not self.calico_ipam:
            self._delete_slow()
            return
        wkey = endpoint.key(self.workload)
        legacy = keys.handle_key(self.env.container_id)
        cache = shared.ipam_cache(self.store_key)
        guess = cache.block_keys(self.node) if cache is not None else []  # the handle's, likely
        wep, handle, old, *read = self.store.txn(
            [],
            [op_get(wkey), op_get(keys.handle_key(self.handle_id)), op_get(legacy)]
            + [op_get(k) for k in guess],
        ).responses
        blocks = {r[0].key: r[0] for r in read if r}
        owner = (json.loads(wep[0].value).get("spec") or {}).get("containerID") if wep else None
        if owner and owner != self.env.container_id:
            self.log(f"{self.workload.wep_name} belongs to another container; releasing only")
            if not atomic.release(self.store, handle[0] if handle else None) and old:
                atomic.release(self.store, old[0])  # the handle of older Calico versions
            return
        released = atomic.release(
            self.store,
            (handle or old)[0] if handle or old else None,
            guards={wkey: wep[0].mod_revision} if wep else {},
            blocks=blocks,
            cache=cache,
            host=self.node,
        )
        if handle and old and not released:
            released = atomic.release(self.store, old[0])
        invocation.mark("etcd")
        # The kernel's veth teardown (~20 ms) is most of a DEL: the CNI server finishes it after
        # replying (a later ADD meeting its leftovers waits for it). By interface index: a newer
        # veth of the same name is never touched.
        index = veth.link_index(self.host_if)
        if index is not None:
            delete = functools.partial(veth.delete_index, index)
            if not shared.delete_later(self.host_if, released, delete):
                delete()
        invocation.mark("link")
        self.log(f"removed {self.host_if}, {self.workload.wep_name}, handle {self.handle_id}")

    def _delete_slow(self) -> None:
        """DEL with a delegated IPAM plugin: endpoint, the plugin's release, then the veth."""
        if not endpoint.delete_if_ours(self.client, self.workload):
            self.log(f"{self.workload.wep_name} belongs to another container; releasing only")
            self.ipam_del()  # a newer sandbox of this pod owns the endpoint and the veth
            return
        self.ipam_del()
        veth.delete_link(self.host_if)
        self.log(f"removed {self.host_if}, {self.workload.wep_name}, handle {self.handle_id}")

    def check(self) -> None:
        from calico.cni import check  # lazy: only CHECK needs it

        check.run(self)


def version_info(data: bytes) -> dict[str, Any]:
    try:
        asked = json.loads(data or b"{}").get("cniVersion") or "1.0.0"
    except (ValueError, AttributeError):
        asked = "1.0.0"
    return {
        "cniVersion": asked if asked in SUPPORTED_VERSIONS else "1.0.0",
        "supportedVersions": list(SUPPORTED_VERSIONS),
    }


def dispatch(command: str, data: bytes, env: Mapping[str, str]) -> dict[str, Any] | None:
    if command == "VERSION":
        return version_info(data)
    if command not in ("ADD", "DEL", "CHECK"):
        raise CNIError(
            ERR_INVALID_ENV,
            f"CNI_COMMAND: unknown command {command!r} (expected ADD, DEL, CHECK or VERSION)",
        )
    conf = parse_conf(data, env)
    call = Call(conf, CNIEnv(env))
    try:
        if command == "ADD":
            return call.add()
        if command == "DEL":
            call.delete()
        else:
            call.check()
        return None
    finally:
        shared.give_back(call.store_key, call.store)


def main() -> int:
    return invocation.serve(dispatch)


if __name__ == "__main__":
    sys.exit(main())

"""CHECK: is the pod's network still what ADD built (dataplane, WorkloadEndpoint, IPAM handle)?

Needs cniVersion 0.4.0 or later and the ADD's result as ``prevResult``; every difference found is
listed in one ``CNIError(ERR_CHECK, ...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from calico.cni import veth
from calico.cni.netconf import (
    ERR_CHECK,
    ERR_INCOMPATIBLE_VERSION,
    ERR_INVALID_CONFIG,
    CNIError,
    version_tuple,
)
from calico.cni.result import Result
from calico.datastore.client import DatastoreError
from calico.ipam.client import IPAMClient

if TYPE_CHECKING:
    from calico.cni.plugin import Call


def run(call: Call) -> None:
    if version_tuple(call.conf.cni_version) < (0, 4, 0):
        raise CNIError(
            ERR_INCOMPATIBLE_VERSION,
            f"CHECK needs cniVersion 0.4.0 or later, got {call.conf.cni_version}",
        )
    call.require(netns=True)
    if not call.conf.prev_result:
        raise CNIError(ERR_INVALID_CONFIG, "prevResult: CHECK needs the result of ADD")
    prev = Result.parse(call.conf.prev_result)
    problems = veth.check(
        netns=call.env.netns,
        ifname=call.env.ifname,
        host_if=call.host_if,
        addresses=prev.addresses(),
    )
    try:
        wep = call.client.get("WorkloadEndpoint", call.workload.wep_name, call.workload.namespace)
        if sorted(wep["spec"].get("ipNetworks") or []) != sorted(prev.addresses()):
            problems.append(
                f"WorkloadEndpoint {call.workload.wep_name} lists "
                f"{wep['spec'].get('ipNetworks')}, not {prev.addresses()}"
            )
    except DatastoreError:
        problems.append(f"WorkloadEndpoint {call.workload.wep_name} does not exist")
    if call.calico_ipam:
        held = {
            f"{ip}/{128 if ':' in ip else 32}"
            for ip in IPAMClient(call.store, client=call.client).ips_by_handle(call.handle_id)
        }
        problems += [
            f"address {a} is not assigned to {call.handle_id}"
            for a in prev.addresses()
            if a not in held
        ]
    if problems:
        raise CNIError(ERR_CHECK, "CHECK failed: " + "; ".join(problems))

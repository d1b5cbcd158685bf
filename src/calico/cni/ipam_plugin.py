"""The ``calico-ipam`` CNI IPAM plugin: Calico block IPAM for any CNI main plugin.

ADD assigns addresses to the handle ``<network-name>.<container-id>`` (IPv4 unless
``ipam.assign_ipv4`` is false, IPv6 when ``ipam.assign_ipv6`` is true, from ``ipam.ipv4_pools`` /
``ipv6_pools`` when given) and prints an IPAM result (``ips`` only); DEL releases the handle and
succeeds when there is nothing to release; CHECK verifies the handle still holds the prevResult's
addresses. The ``calico`` plugin runs the same code in-process instead of exec'ing this one.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from calico.cni import invocation, plugin
from calico.cni.netconf import ERR_CHECK, CNIEnv, CNIError, parse_conf
from calico.cni.result import Result
from calico.ipam.client import IPAMClient


def dispatch(command: str, data: bytes, env: Mapping[str, str]) -> dict[str, Any] | None:
    if command == "VERSION":
        return plugin.version_info(data)
    if command not in ("ADD", "DEL", "CHECK"):
        return plugin.dispatch(command, data, env)  # raises the unknown-command error
    conf = parse_conf(data, env)
    conf.ipam["type"] = "calico-ipam"  # we are the IPAM plugin: never delegate to ourselves
    call = plugin.Call(conf, CNIEnv(env))
    try:
        call.env.require(netns=False)
        if command == "ADD":
            res = call.ipam_add()
            res.dns = dict(conf.dns)
            return res.render(conf.cni_version)
        if command == "DEL":
            call.ipam_del()
            return None
        prev = Result.parse(conf.prev_result)
        held = IPAMClient(call.store, client=call.client).ips_by_handle(call.handle_id)
        want = [a.split("/")[0] for a in prev.addresses()]
        missing = [a for a in want if a not in held]
        if missing or not held:
            raise CNIError(
                ERR_CHECK, f"CHECK failed: {call.handle_id} does not hold {missing or want}"
            )
        return None
    finally:
        call.store.close()


def main() -> int:
    return invocation.serve(dispatch)


if __name__ == "__main__":
    sys.exit(main())

"""Pools, hosts, VTEPs and encapsulated routes through the managers into the drivers, against
recording runners: what ``ip``/``bridge``/``nft`` would be told (kernel tests: integration)."""

from __future__ import annotations

import json
from typing import Any

from calico.dataplane import encap_manager, links, loop, neighbors, route_table
from calico.dpapi import messages as m
from calico.lib import cmd
from tests.unit.dataplane import dp_fixtures

ETH0 = {
    "ifname": "eth0",
    "mtu": 1500,
    "flags": ["UP"],
    "addr_info": [{"family": "inet", "local": "10.99.0.11", "prefixlen": 24}],
}
VXLAN_UP = {
    "ifname": "vxlan.calico",
    "mtu": 1450,
    "address": "66:ca:11:00:00:01",
    "flags": ["UP"],
    "linkinfo": {
        "info_kind": "vxlan",
        "info_data": {
            "id": 4096,
            "port": 4789,
            "local": "10.99.0.11",
            "link": "eth0",
            "learning": False,
        },
    },
    "addr_info": [{"family": "inet", "local": "10.65.0.128", "prefixlen": 32}],
}
LINKS_READ = "ip -d -j addr show"


class FailingIP(dp_fixtures.FakeIP):
    """A FakeIP whose commands listed in ``fail`` exit non-zero with that stderr."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: dict[str, str] = {}

    def run(self, argv: list[str], *, input: str | None = None) -> str:
        text = " ".join(argv)
        if text in self.fail:
            self.calls.append((list(argv), input))
            raise cmd.CmdError(argv, 2, self.fail[text])
        return super().run(argv, input=input)


def lines(batches: list[str]) -> list[str]:
    return [line for b in batches for line in b.splitlines()]


def started(
    ip: dp_fixtures.FakeIP | None = None,
) -> tuple[dp_fixtures.RecordingRunner, dp_fixtures.FakeIP, loop.InternalDataplane]:
    ip = ip or dp_fixtures.FakeIP()
    ip.reads[LINKS_READ] = json.dumps([ETH0])
    runner = dp_fixtures.RecordingRunner()
    dp = dp_fixtures.dataplane(runner, ip)
    for msg in dp_fixtures.messages():
        dp.on_update(msg)
    assert dp.apply()
    ip.reads[LINKS_READ] = json.dumps([ETH0, VXLAN_UP])  # what the kernel now has
    return runner, ip, dp


def test_vxlan_device_route_arp_and_fdb_from_the_datastore() -> None:
    _, ip, dp = started()
    assert lines(ip.batches("ip"))[:3] == [
        "link add name vxlan.calico type vxlan id 4096 local 10.99.0.11 dev eth0 dstport 4789"
        " nolearning",
        "link set vxlan.calico address 66:ca:11:00:00:01 mtu 1450 up",
        "addr add 10.65.0.128/32 dev vxlan.calico",
    ]
    assert "neigh replace 10.65.1.0 lladdr 66:ca:11:00:00:02 dev vxlan.calico nud permanent" in (
        lines(ip.batches("ip"))
    )
    assert lines(ip.batches("bridge")) == [
        "fdb replace 66:ca:11:00:00:02 dev vxlan.calico dst 10.99.1.12 self permanent"
    ]
    assert dp.routes._desired[m.VXLAN_DEVICE] == {"10.65.1.0/26": "10.65.1.0"}
    assert dp.problems() == []
    chain = dp.table.chains()[encap_manager.CHAIN]
    assert any("udp dport 4789" in rule and "accept" in rule for rule in chain)


def test_pool_change_is_a_set_element_delta_not_a_reload() -> None:
    runner, _, dp = started()
    dp.on_update(m.IPAMPoolUpdate("more", m.IPPool("10.70.0.0/16", masquerade=True)))
    assert dp.apply()
    script = runner.scripts[-1]
    assert script == (
        "table inet calico {\n  set cali40-all-pools { type ipv4_addr; flags interval;"
        " elements = { 10.70.0.0/16 } }\n}\n"
        "table inet calico {\n  set cali40-masq-pools { type ipv4_addr; flags interval;"
        " elements = { 10.70.0.0/16 } }\n}\n"
    )
    dp.on_update(m.IPAMPoolRemove("more"))
    assert dp.apply()
    assert runner.scripts[-1] == (
        "delete element inet calico cali40-all-pools { 10.70.0.0/16 }\n"
        "delete element inet calico cali40-masq-pools { 10.70.0.0/16 }\n"
    )


def test_host_change_is_a_set_element_delta() -> None:
    runner, _, dp = started()
    dp.on_update(m.HostMetadataUpdate("node9", ipv4_addr="10.99.9.9/24"))
    assert dp.apply()
    assert runner.scripts[-1] == (
        "table inet calico {\n  set cali40-all-hosts { type ipv4_addr;"
        " elements = { 10.99.9.9 } }\n}\n"
    )


def test_nat_outgoing_address_snats_ipv4() -> None:
    runner, _, dp = started()
    dp.set_config(loop.DataplaneConfig(nat_outgoing_address="192.0.2.7"))
    assert dp.apply()
    assert "snat ip to 192.0.2.7" in runner.scripts[-1]
    assert "ip6 saddr @cali60-masq-pools" not in runner.scripts[-1].split("snat")[0]


def test_vxlan_off_deletes_the_device_and_forgets_its_routes() -> None:
    _, ip, dp = started()
    dp.on_update(m.IPAMPoolUpdate("pool4", m.IPPool("10.65.0.0/16", masquerade=True)))
    dp.on_update(m.RouteRemove("10.65.1.0/26"))
    ip.calls.clear()
    assert dp.apply()
    assert lines(ip.batches("ip")) == ["link del vxlan.calico"]  # its routes and ARP go with it
    assert m.VXLAN_DEVICE not in dp.routes._applied
    assert dp.table.chains()[encap_manager.CHAIN] == ()
    assert not dp.dirty


def test_ipip_without_the_kernel_module_is_a_problem_not_a_failure() -> None:
    ip = FailingIP()
    ip.fail["ip link add name tunl0 type ipip"] = "Error: Unknown device type."
    _, _, dp = started(ip)
    dp.on_update(m.IPAMPoolUpdate("ipip-pool", m.IPPool("10.80.0.0/16", ipip_mode="Always")))
    dp.on_update(
        m.RouteUpdate("10.80.1.0/26", m.ROUTE_REMOTE_BLOCK, "node2", "10.99.1.12", m.IPIP_DEVICE)
    )
    dp.on_update(m.IPAMPoolUpdate("more", m.IPPool("10.70.0.0/16", masquerade=True)))
    assert dp.apply()
    assert dp.failures == 0
    problems = dp.problems()
    assert len(problems) == 1
    assert "ipip-pool" in problems[0]
    assert "the kernel has no 'ipip' module" in problems[0]
    assert m.IPIP_DEVICE not in dp.routes._desired  # held back: no device to route on
    assert "10.70.0.0/16" in str(dp.table.render())  # everything else programmed
    assert "ip protocol 4" in " ".join(dp.table.chains()[encap_manager.CHAIN])
    assert not dp.dirty  # no retry loop: tried again on change or refresh


def test_neighbors_resync_sweeps_stale_permanent_entries_only() -> None:
    ip = dp_fixtures.FakeIP()
    ip.reads["ip -j neigh show dev vxlan.calico"] = json.dumps(
        [
            {"dst": "10.65.9.0", "lladdr": "66:ca:00:00:00:09", "state": ["PERMANENT"]},
            {"dst": "10.65.1.0", "lladdr": "66:ca:00:00:00:02", "state": ["PERMANENT"]},
            {"dst": "10.65.8.0", "lladdr": "66:ca:00:00:00:08", "state": ["STALE"]},
        ]
    )
    ip.reads["bridge -j fdb show dev vxlan.calico"] = json.dumps(
        [
            {"mac": "66:ca:00:00:00:09", "dst": "10.99.9.9", "state": "permanent"},
            {"mac": "66:ca:00:00:00:02", "dst": "10.99.1.99", "state": "permanent"},
        ]
    )
    nbrs = neighbors.Neighbors(runner=ip)
    nbrs.device_present = True
    nbrs.set_entries({"10.65.1.0": "66:CA:00:00:00:02"}, {"66:ca:00:00:00:02": "10.99.1.12"})
    nbrs.apply()
    assert lines(ip.batches("ip")) == ["neigh del 10.65.9.0 dev vxlan.calico"]
    assert lines(ip.batches("bridge")) == [
        "fdb del 66:ca:00:00:00:09 dev vxlan.calico dst 10.99.9.9 self",
        "fdb replace 66:ca:00:00:00:02 dev vxlan.calico dst 10.99.1.12 self permanent",
    ]
    assert not nbrs.dirty


def test_route_table_one_route_change_is_one_command() -> None:
    ip = dp_fixtures.FakeIP()
    ip.reads["ip -j link show"] = json.dumps([{"ifname": "vxlan.calico"}])
    table = route_table.RouteTable(runner=ip)
    routes = {f"10.65.{i}.0/26": f"10.65.{i}.1" for i in range(100)}
    table.set_gateway_routes(m.VXLAN_DEVICE, routes)
    table.apply()
    assert len(lines(ip.batches())) == 100
    table.set_gateway_route(m.VXLAN_DEVICE, "10.65.7.0/26", "10.65.7.9")
    table.set_gateway_route(m.VXLAN_DEVICE, "10.65.8.0/26", None)
    table.apply()
    assert lines(ip.batches()[-1:]) == [
        "route replace 10.65.7.0/26 via 10.65.7.9 dev vxlan.calico proto 80 onlink",
        "route del 10.65.8.0/26 dev vxlan.calico proto 80",
    ]


def test_route_table_resync_owns_proto_80_on_cali_and_tunnel_devices_only() -> None:
    ip = dp_fixtures.FakeIP()
    ip.reads["ip -j link show"] = json.dumps([{"ifname": n} for n in ("eth0", "vxlan.calico")])
    kernel: list[dict[str, Any]] = [
        {"dst": "10.65.5.0/26", "gateway": "10.65.5.1", "dev": "vxlan.calico"},  # stale
        {"dst": "10.65.1.0/26", "gateway": "10.65.1.9", "dev": "vxlan.calico"},  # wrong gateway
        {"dst": "10.66.0.0/16", "gateway": "10.99.0.1", "dev": "eth0"},  # not ours
        {"dst": "10.65.0.7", "dev": "cali1234"},  # stale workload route
    ]
    ip.reads["ip -j -4 route show proto 80"] = json.dumps(kernel)
    table = route_table.RouteTable(runner=ip)
    table.set_gateway_routes(m.VXLAN_DEVICE, {"10.65.1.0/26": "10.65.1.0"})
    table.apply()
    assert lines(ip.batches()) == [
        "route del 10.65.0.7/32 dev cali1234 proto 80",
        "route del 10.65.5.0/26 dev vxlan.calico proto 80",
        "route replace 10.65.1.0/26 via 10.65.1.0 dev vxlan.calico proto 80 onlink",
    ]


def test_links_recreate_vxlan_when_the_vni_differs_and_follow_mtu_config() -> None:
    ip = dp_fixtures.FakeIP()
    wrong = json.loads(json.dumps(VXLAN_UP))
    wrong["linkinfo"]["info_data"]["id"] = 1
    ip.reads[LINKS_READ] = json.dumps([ETH0, wrong])
    drv = links.Links(runner=ip)
    dev = links.Device(
        m.VXLAN_DEVICE,
        "vxlan",
        mtu=1400,
        addrs=("10.65.0.128/32",),
        local="10.99.0.11",
        mac="66:ca:11:00:00:01",
    )
    drv.set_device(m.VXLAN_DEVICE, dev)
    changes = drv.apply()
    assert changes.created == {m.VXLAN_DEVICE}
    assert lines(ip.batches()) == [
        "link del vxlan.calico",
        "link add name vxlan.calico type vxlan id 4096 local 10.99.0.11 dev eth0 dstport 4789"
        " nolearning",
        "link set vxlan.calico address 66:ca:11:00:00:01 mtu 1400 up",
        "addr add 10.65.0.128/32 dev vxlan.calico",
    ]
    ip.reads[LINKS_READ] = json.dumps([ETH0, VXLAN_UP])  # right VNI, MTU 1450
    ip.calls.clear()
    drv.queue_resync()
    assert drv.apply().created == set()
    assert lines(ip.batches()) == ["link set vxlan.calico mtu 1400"]


def test_tunnel_filter_follows_the_vxlan_port() -> None:
    _, _, dp = started()
    dp.set_config(loop.DataplaneConfig(encap=encap_manager.EncapConfig(vxlan_port=8472)))
    dp.apply()
    chain = " ".join(dp.table.chains()[encap_manager.CHAIN])
    assert "udp dport 8472" in chain
    assert "4789" not in chain

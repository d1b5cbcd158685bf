"""``calicoctl ipam``: show (totals per pool, ``--show-blocks``, ``--ip``), release and check.

* ``ipam show``: a table per pool (CIDR, addresses in total, in use, free); ``--show-blocks`` adds a
  row per block with its affinity; ``--ip=ADDR`` says whether the address is in use and by whom.
* ``ipam release --ip=ADDR``: frees one address (exit 1 when it was not assigned).
* ``ipam check``: compares the allocations with the WorkloadEndpoints; every allocated address no
  endpoint (or node tunnel) uses is a leak. Exit 1 when problems were found.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from calico.cli import failures
from calico.ipam.errors import IPAMError


def _ipam(config_file: str | None) -> Any:
    from calico.ipam.client import IPAMClient

    return IPAMClient(failures.datastore_config(config_file).backend())


def _check_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"--ip: {text!r} is not a valid IP address") from None


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(r: list[str]) -> str:
        return "|" + "|".join(f" {c!s:<{w}} " for c, w in zip(r, widths, strict=True)) + "|"

    return "\n".join([line, fmt(header), line, *(fmt(r) for r in rows), line])


def _pct(n: int, total: int) -> str:
    return f"{n} ({round(100 * n / total) if total else 0}%)"


@click.group()
def ipam() -> None:
    """IP address management: show usage, release an address, check for leaks."""


@ipam.command()
@click.option("--ip", "ip", default=None, help="report who holds this address")
@click.option("--show-blocks", is_flag=True, help="also list each block of each pool")
@failures.config_option
@failures.fails_cleanly(IPAMError)
def show(ip: str | None, show_blocks: bool, config_file: str | None) -> None:
    """Show IP address usage per pool (and per block), or the owner of one address."""
    client = _ipam(config_file)
    if ip is not None:
        addr = _check_ip(ip)
        info = client.ip_info(addr)
        if info is None:
            click.echo(f"IP {addr} is not assigned")
            return
        click.echo(f"IP {addr} is in use")
        click.echo(f"Block: {info['block']} ({info['affinity'] or 'no affinity'})")
        click.echo(f"Handle: {info['handle_id']}")
        if info["attributes"]:
            click.echo("Attributes:")
            for k, v in sorted(info["attributes"].items()):
                click.echo(f"  {k}: {v}")
        return
    from calico.ipam import report

    rows = []
    for pool in report.usage(client):
        free = pool.size - pool.in_use
        rows.append(
            [
                "IP Pool",
                pool.cidr,
                str(pool.size),
                _pct(pool.in_use, pool.size),
                _pct(free, pool.size),
            ]
        )
        if show_blocks:
            for b in pool.blocks:
                rows.append(
                    [
                        "Block",
                        b.cidr,
                        str(b.size),
                        _pct(b.in_use, b.size),
                        _pct(b.size - b.in_use, b.size),
                    ]
                )
    click.echo(table(["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"], rows))


@ipam.command()
@click.option("--ip", "ip", required=True, help="the address to release")
@failures.config_option
@failures.fails_cleanly(IPAMError)
def release(ip: str, config_file: str | None) -> None:
    """Release one IP address from IPAM (for cleaning up a leaked address)."""
    addr = _check_ip(ip)
    client = _ipam(config_file)
    if client.release_ips([addr]):
        raise ValueError(f"IP address {addr} is not assigned")
    click.echo(f"Successfully released IP address {addr}")


@ipam.command()
@failures.config_option
@failures.fails_cleanly(IPAMError)
def check(config_file: str | None) -> None:
    """Check IPAM for leaked addresses (allocated, but used by no workload endpoint)."""
    from calico.ipam import report

    client = _ipam(config_file)
    click.echo("Checking IPAM for inconsistencies...")
    rep = report.check(client)
    click.echo(f"Found {rep.allocations} allocated IPs and {rep.endpoints} workload endpoints.")
    click.echo(f"Found {len(rep.leaked)} IPs that are allocated in IPAM but not in use:")
    for a in rep.leaked:
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(a.attributes.items()))
        click.echo(
            f"  {a.ip} (block {a.block}, handle {a.handle_id}{', ' + attrs if attrs else ''})"
        )
    click.echo(f"Found {len(rep.unallocated_in_use)} in-use IPs that are not allocated in IPAM:")
    for ip, who in rep.unallocated_in_use:
        click.echo(f"  {ip} (WorkloadEndpoint {who})")
    problems = len(rep.leaked) + len(rep.unallocated_in_use)
    click.echo(f"Check complete; found {problems} problems.")
    if problems:
        raise click.exceptions.Exit(1)

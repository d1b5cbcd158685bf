"""Shared fixtures: a real etcd per test, network namespaces named by prefix."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer

NETNS_PREFIX = "calt-"  # every test namespace starts with this; the sweep removes only these
# nft tables our code makes (the agent's, the lab's): none may ever be in the root namespace
OUR_TABLE_PREFIXES = ("calico", "calab", "calt")
# the namespace pytest started in (the root one), held open: a check made from a thread that a
# test moved elsewhere still looks here
_ROOT_NETNS = os.open("/proc/thread-self/ns/net", os.O_RDONLY)


def is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = is_root()
    have_etcd = shutil.which("etcd") is not None
    for item in items:
        if not root and ("netns" in item.keywords or "e2e" in item.keywords):
            item.add_marker(pytest.mark.skip(reason="needs root"))
        if not have_etcd and "etcd" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs etcd (make install)"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove test namespaces left by an earlier, killed run (only names with our prefix)."""
    if not is_root() or hasattr(session.config, "workerinput"):
        return
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(NETNS_PREFIX) and not _owner_alive(name):
            subprocess.run(["ip", "netns", "del", name], check=False)


def _in_root_namespace(*argv: str) -> list[str]:
    return ["nsenter", f"--net=/proc/self/fd/{_ROOT_NETNS}", *argv]


def root_namespace_tables() -> list[str]:
    """Our nft tables in the namespace pytest started in (the root one)."""
    out = subprocess.run(
        _in_root_namespace("nft", "list", "tables"),
        capture_output=True, text=True, check=True, pass_fds=(_ROOT_NETNS,),
    ).stdout  # fmt: skip
    found = []
    for line in out.splitlines():  # "table inet calico"
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith(OUR_TABLE_PREFIXES):
            found.append(f"{parts[1]} {parts[2]}")
    return found


@pytest.fixture(autouse=True)
def _root_namespace_untouched(request: pytest.FixtureRequest) -> Iterator[None]:
    """Network safety: a test that programs nft must do it in a namespace of ours. After every
    netns/e2e/chaos test the root namespace is checked; a table of ours there fails the test and
    is removed (by its exact name). With xdist, the culprit may be another worker's test."""
    kinds = ("netns", "e2e", "chaos")
    if not is_root() or not any(request.node.get_closest_marker(k) for k in kinds):
        yield
        return
    yield
    leaked = root_namespace_tables()
    for table in leaked:
        argv = _in_root_namespace("nft", "delete", "table", *table.split())
        subprocess.run(argv, check=False, pass_fds=(_ROOT_NETNS,))
    assert not leaked, f"nft tables of ours in the ROOT network namespace (removed): {leaked}"


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[EtcdServer]:
    """A fresh etcd on a loopback port with a temp data dir, stopped by PID."""
    with EtcdServer.on_free_ports(tmp_path / "etcd") as server:
        yield server


@pytest.fixture
def etcd(etcd_server: EtcdServer) -> Iterator[EtcdClient]:
    client = EtcdClient([etcd_server.endpoint])
    yield client
    client.close()


@pytest.fixture
def datastore(etcd: EtcdClient) -> Client:
    return Client(etcd)


def _netns_name(worker: str) -> str:
    # the creating process's pid is in the name, so a concurrent session's sweep spares it
    return f"{NETNS_PREFIX}{worker}-{os.getpid()}-{secrets.token_hex(3)}"


def _owner_alive(name: str) -> bool:
    """True when the namespace's name carries the pid of a process that is still running."""
    parts = name.split("-")
    return len(parts) >= 4 and parts[2].isdigit() and os.path.exists(f"/proc/{parts[2]}")


@pytest.fixture
def make_netns(request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """Factory: make_netns() -> name of a new namespace with lo up; all deleted at teardown."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    made: list[str] = []

    def make() -> str:
        name = _netns_name(worker)
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "pids", name], capture_output=True, check=False)
        pids = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], check=False)
        subprocess.run(["ip", "netns", "del", name], check=False)

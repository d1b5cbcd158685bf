"""Network-safety guards: a missing or malformed namespace name never becomes "this namespace"
(the root one, for tests and the lab), and nothing listens beyond loopback outside a namespace."""

from __future__ import annotations

import pytest

from calico.datastore.etcd_server import EtcdServer
from calico.lib import netns
from calico.lib.cmd import netns_argv

BAD_NAMES = ["", ".", "..", "../../proc/1/ns/net", "/proc/1/ns/net", "a/b"]


def test_netns_argv_none_is_this_namespace_and_a_name_is_ip_netns_exec() -> None:
    assert netns_argv(None, ["ip", "link"]) == ["ip", "link"]
    assert netns_argv("calt-x", ["ip", "link"]) == ["ip", "netns", "exec", "calt-x", "ip", "link"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_netns_argv_refuses_an_empty_or_path_name(name: str) -> None:
    with pytest.raises(ValueError, match="not a namespace name"):
        netns_argv(name, ["ip", "link"])


@pytest.mark.parametrize("name", BAD_NAMES)
def test_enter_and_exists_refuse_an_empty_or_path_name(name: str) -> None:
    # "" named /var/run/netns itself (exists: True); a path could name the root namespace
    with pytest.raises(ValueError, match="not a namespace name"):
        netns.exists(name)
    with pytest.raises(ValueError, match="not a namespace name"):
        netns.call_in(name, lambda: None)


def test_etcd_outside_a_namespace_listens_on_loopback_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for host in ("0.0.0.0", "::", "10.99.0.1"):
        with pytest.raises(ValueError, match="loopback"):
            EtcdServer(tmp_path / "etcd", host=host)
    assert EtcdServer(tmp_path / "etcd").host == "127.0.0.1"
    assert EtcdServer(tmp_path / "etcd", host="localhost").host == "localhost"
    # inside a namespace (the lab's core) a private address is fine
    assert EtcdServer(tmp_path / "etcd", host="10.99.0.1", netns="calab-x-core").netns


@pytest.mark.parametrize("path", ["", "calt-x", "/proc/self/ns/net", "/proc/1/ns/mnt", "/x/ns/net"])
def test_enter_process_takes_only_a_process_netns_path(path: str) -> None:
    with pytest.raises(ValueError, match=r"is not /proc/<pid>/ns/net"):
        netns.enter_process(path)


def test_enter_process_never_enters_this_processs_own_namespace() -> None:
    import os

    with pytest.raises(ValueError, match="this process's own network namespace"):
        netns.enter_process(f"/proc/{os.getpid()}/ns/net")

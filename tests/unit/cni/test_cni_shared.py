"""What the CNI server keeps between calls: pooled datastore clients, background veth deletes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from calico.cni import shared
from calico.datastore.etcd import EtcdClient


def etcd(endpoint: str) -> EtcdClient:
    return EtcdClient(endpoint)


@pytest.fixture
def server_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(shared, "_enabled", True)
    monkeypatch.setattr(shared, "_idle", {})
    monkeypatch.setattr(shared, "_caches", {})
    yield
    shared.wait_all_deletes()


def test_plain_process_keeps_nothing() -> None:
    assert not shared.enabled()
    assert shared.ipam_cache("http://127.0.0.1:1") is None
    assert not shared.delete_later("caliX", [], lambda: None)  # the caller deletes now
    a = shared.borrow("e1", lambda: etcd("http://127.0.0.1:1"))
    shared.give_back("e1", a)
    assert shared.borrow("e1", lambda: etcd("http://127.0.0.1:1")) is not a


def test_server_pools_clients_per_datastore(server_mode: None) -> None:
    a = shared.borrow("e1", lambda: etcd("http://127.0.0.1:1"))
    shared.give_back("e1", a)
    assert shared.borrow("e2", lambda: etcd("http://127.0.0.1:2")) is not a
    assert shared.borrow("e1", lambda: etcd("http://127.0.0.1:1")) is a
    assert shared.borrow("e1", lambda: etcd("http://127.0.0.1:1")) is not a  # one at a time
    assert shared.ipam_cache("e1") is shared.ipam_cache("e1") is not shared.ipam_cache("e2")


def test_add_waits_for_deletes_it_could_meet(server_mode: None) -> None:
    gate = threading.Event()
    done: list[str] = []

    def slow_delete(name: str) -> None:
        gate.wait(5)
        done.append(name)

    assert shared.delete_later("caliA", ["10.0.0.1"], lambda: slow_delete("caliA"))
    assert shared.delete_later("caliB", ["10.0.0.2"], lambda: slow_delete("caliB"))
    shared.wait_deletes("caliC", ["10.0.0.3"])  # unrelated: returns at once
    assert done == []  # (had it waited, the 5 s gate timeout would have run a delete)
    threading.Timer(0.1, gate.set).start()
    shared.wait_deletes("caliC", ["10.0.0.2"])  # holds one of the released addresses
    assert "caliB" in done
    shared.wait_deletes("caliA", [])  # the same host veth name
    assert sorted(done) == ["caliA", "caliB"]


def test_a_failed_background_delete_is_logged(
    server_mode: None, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom() -> None:
        raise OSError("device busy")

    assert shared.delete_later("caliE", [], boom)
    shared.wait_all_deletes()
    assert "background delete of caliE failed: device busy" in capsys.readouterr().err

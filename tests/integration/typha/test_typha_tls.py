"""Typha with mTLS, as Calico sets it up (certificates made here with openssl): a client with the
right CN or URI SAN syncs; the wrong identity, another CA's certificate or plain TCP are refused,
and a client refuses a Typha whose certificate is not the one it expects. Each says why."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.datastore.typha_tls import TLSSettings
from tests.integration.datastore.support import PREFIX, snapshot, wait_until
from tests.integration.typha.support import Agent, TyphaProcess, make_certs

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("typha-tls")
    make_certs(d)
    return d


def client(d: Path, name: str, *, cn: str = "calico-typha", uri: str = "") -> TLSSettings:
    return TLSSettings(str(d / "ca.crt"), str(d / f"{name}.crt"), str(d / f"{name}.key"), cn, uri)


def typha_env(d: Path, **extra: str) -> dict[str, str]:
    return {
        "TYPHA_CAFILE": str(d / "ca.crt"),
        "TYPHA_SERVERCERTFILE": str(d / "typha.crt"),
        "TYPHA_SERVERKEYFILE": str(d / "typha.key"),
        **extra,
    }


def test_mtls_by_client_cn(
    etcd_server: EtcdServer, etcd: EtcdClient, tmp_path: Path, certs: Path
) -> None:
    etcd.put(PREFIX + "profiles/p1", '{"kind": "Profile", "metadata": {"name": "p1"}}')
    typha = TyphaProcess(
        etcd_server.endpoint, tmp_path / "t.log", **typha_env(certs, TYPHA_CLIENTCN="calico-felix")
    ).start()
    good = Agent([typha.addr], "good", tls=client(certs, "felix"))
    other = Agent([typha.addr], "other", tls=client(certs, "other"))
    rogue = Agent([typha.addr], "rogue", tls=client(certs, "rogue"))
    picky = Agent([typha.addr], "picky", tls=client(certs, "felix", cn="not-typha"))
    plain = Agent([typha.addr], "plain")
    try:
        good.wait_for(snapshot(etcd, PREFIX))
        for agent in (other, rogue, picky, plain):
            wait_until(lambda a=agent: a.syncer.last_error != "", 10, "a failed attempt")
            assert agent.syncer.connects == 0
            assert agent.state == {}
        assert "client certificate has CN 'someone-else'" in other.syncer.last_error
        assert "wanted CN 'calico-felix'" in other.syncer.last_error
        assert "CERTIFICATE_VERIFY_FAILED" in picky.syncer.last_error or (
            "Typha's certificate has CN 'calico-typha'" in picky.syncer.last_error
        )
        assert "wanted CN 'not-typha'" in picky.syncer.last_error
        assert rogue.syncer.last_error
        assert typha.metric("typha_connections_dropped_total", 'reason="tls"') >= 1
    finally:
        for agent in (good, other, rogue, picky, plain):
            agent.stop()
        typha.stop()


def test_mtls_by_client_uri_san(
    etcd_server: EtcdServer, etcd: EtcdClient, tmp_path: Path, certs: Path
) -> None:
    etcd.put(PREFIX + "profiles/p1", '{"kind": "Profile", "metadata": {"name": "p1"}}')
    typha = TyphaProcess(
        etcd_server.endpoint,
        tmp_path / "t.log",
        **typha_env(certs, TYPHA_CLIENTURISAN="spiffe://cluster/felix"),
    ).start()
    good = Agent([typha.addr], "good", tls=client(certs, "felix", cn="calico-typha"))
    other = Agent([typha.addr], "other", tls=client(certs, "other"))
    try:
        good.wait_for(snapshot(etcd, PREFIX))
        wait_until(lambda: other.syncer.last_error != "", 10, "a refusal")
        assert "URI SANs ['spiffe://cluster/other']" in other.syncer.last_error
        assert other.syncer.connects == 0
    finally:
        good.stop()
        other.stop()
        typha.stop()


def test_partial_tls_configuration_stops_typha(etcd_server: EtcdServer, tmp_path: Path) -> None:
    typha = TyphaProcess(etcd_server.endpoint, tmp_path / "t.log", TYPHA_CAFILE="/x/ca.crt")
    typha.start(wait_ready=False)
    assert typha.proc is not None
    assert typha.proc.wait(20) == 2
    assert "TYPHA_SERVERCERTFILE, TYPHA_SERVERKEYFILE not set" in typha.tail()

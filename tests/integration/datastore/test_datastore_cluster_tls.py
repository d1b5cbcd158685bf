"""etcd mTLS with a member list: a 3-member cluster serving HTTPS that requires client
certificates (made here with openssl). Requests and the watch fail over between members over
TLS, and a client without a valid certificate gets an error that says what is wrong."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.datastore.etcd import EtcdClient, EtcdTLSError, EtcdUnavailable, TLSFiles
from calico.datastore.etcd_cluster import EtcdCluster
from calico.datastore.etcd_server import ServerTLS
from calico.datastore.syncer import Syncer
from tests.integration.cli.test_cli_tls import make_certs, run
from tests.integration.datastore.support import PREFIX, Recorder, snapshot

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Our CA's files, and another CA's (whose client certificate our etcd must refuse)."""
    ours, other = tmp_path_factory.mktemp("tls"), tmp_path_factory.mktemp("tls-other")
    make_certs(ours)
    make_certs(other)
    return ours, other


def put_retrying(etcd: EtcdClient, key: str, value: str) -> None:
    """A put that a leader's death may leave unanswered (EtcdUnavailable: "may or may not have
    been applied") is sent again, as a caller would."""
    for _ in range(5):
        try:
            etcd.put(key, value)
            return
        except EtcdUnavailable:
            continue
    raise AssertionError(f"put {key}: failed 5 times")


def client_tls(d: Path) -> TLSFiles:
    return TLSFiles(str(d / "ca.crt"), str(d / "client.crt"), str(d / "client.key"))


@pytest.fixture
def tls_cluster(tmp_path: Path, certs: tuple[Path, Path]) -> Iterator[EtcdCluster]:
    d = certs[0]
    server_tls = ServerTLS(
        str(d / "server.crt"), str(d / "server.key"), str(d / "ca.crt"), client_cert_auth=True
    )
    cluster = EtcdCluster.on_free_ports(
        tmp_path / "etcd", tls=server_tls, client_tls=client_tls(d), progress_notify_interval=None
    )
    with cluster:
        yield cluster


def test_requests_and_watch_fail_over_over_mtls(
    tls_cluster: EtcdCluster, certs: tuple[Path, Path]
) -> None:
    tls = client_tls(certs[0])
    assert all(e.startswith("https://127.0.0.1:") for e in tls_cluster.endpoints)
    etcd = EtcdClient(tls_cluster.endpoints_text, tls=tls, timeout=3)
    rec = Recorder()
    watch_client = EtcdClient(tls_cluster.endpoints, tls=tls, timeout=2)
    syncer = Syncer(
        watch_client,
        [PREFIX + "ippools/"],
        on_updates=rec.on_updates,
        retry_delay=0.05,
        probe_after=0.5,
        probe_timeout=1.0,
    )
    syncer.start()
    try:
        for i in range(5):
            etcd.put(f"{PREFIX}ippools/p{i}", f'{{"n": {i}}}')
        rec.wait_for(snapshot(etcd))
        time.sleep(2)  # quiet: the TLS stream's read times out and probes keep it
        assert watch_client.probes >= 2
        assert watch_client.watches_opened == 1
        tls_cluster.member(0).kill()  # both clients are on member 0
        for i in range(5, 10):
            put_retrying(etcd, f"{PREFIX}ippools/p{i}", f'{{"n": {i}}}')
        assert etcd.current != 0
        rec.wait_for(snapshot(etcd))
        assert watch_client.watches_opened >= 2
        assert (syncer.relists, rec.repeated()) == (0, {})
    finally:
        syncer.stop()


def test_clients_without_a_valid_certificate_are_refused_clearly(
    tls_cluster: EtcdCluster, certs: tuple[Path, Path]
) -> None:
    ours, other = certs
    endpoints = tls_cluster.endpoints
    cases = [
        (TLSFiles(str(ours / "ca.crt")), "requires a client certificate and none is configured"),
        (TLSFiles(str(ours / "ca.crt"), str(other / "client.crt"), str(other / "client.key")),
         f"refused the client certificate {other / 'client.crt'}"),
        (TLSFiles(None, str(ours / "client.crt"), str(ours / "client.key")),
         "not trusted by the system's CA certificates"),
        (TLSFiles(str(ours / "ca.crt"), str(ours / "nope.crt"), str(ours / "client.key")),
         f"etcd client certificate {ours / 'nope.crt'}"),
    ]  # fmt: skip
    for tls, says in cases:
        with pytest.raises(EtcdTLSError) as err:
            EtcdClient(endpoints, tls=tls, timeout=3).get("/x")
        assert says in str(err.value)
        if "nope" not in says:  # a TLS refusal is per member: each is named
            assert all(e in str(err.value) for e in endpoints)


def test_calicoctl_with_a_member_list_whose_first_member_is_down(
    tls_cluster: EtcdCluster, certs: tuple[Path, Path]
) -> None:
    d = certs[0]
    tls_cluster.member(0).kill()
    (d / "pool.yaml").write_text(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: listed}\n"
        "spec: {cidr: 10.9.0.0/16}\n"
    )
    env = {
        "ETCD_ENDPOINTS": tls_cluster.endpoints_text,
        "ETCD_CA_CERT_FILE": str(d / "ca.crt"),
        "ETCD_CERT_FILE": str(d / "client.crt"),
        "ETCD_KEY_FILE": str(d / "client.key"),
    }
    proc = run(["apply", "-f", str(d / "pool.yaml")], **env)
    assert proc.returncode == 0, proc.stderr
    proc = run(["get", "ippool", "listed"], **env)
    assert proc.returncode == 0, proc.stderr
    assert "10.9.0.0/16" in proc.stdout
    bare = run(["get", "ippool"], ETCD_ENDPOINTS=tls_cluster.endpoints_text,
               ETCD_CA_CERT_FILE=str(d / "ca.crt"))  # fmt: skip
    assert bare.returncode == 1
    assert "requires a client certificate" in bare.stderr
    assert "Traceback" not in bare.stderr

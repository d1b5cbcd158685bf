"""calicoctl against an etcd that serves HTTPS and requires client certificates (made here with
openssl), configured through the environment and through a CalicoAPIConfig file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from calico.datastore.etcd import TLSFiles
from calico.datastore.etcd_server import EtcdServer, ServerTLS, free_port

pytestmark = [
    pytest.mark.etcd,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl"),
]

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    openssl("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=calt-test-ca", cwd=d)  # fmt: skip
    # etcd's JSON gateway dials etcd itself with the server certificate, so it needs clientAuth too
    for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
        (d / f"{name}.ext").write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        openssl("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "1",
                "-extfile", f"{name}.ext", cwd=d)  # fmt: skip


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EtcdServer, Path]]:
    d = tmp_path_factory.mktemp("tls")
    make_certs(d)
    server = EtcdServer(
        d / "etcd", port=free_port(), peer_port=free_port(),
        tls=ServerTLS(str(d / "server.crt"), str(d / "server.key"), str(d / "ca.crt"),
                      client_cert_auth=True),
        client_tls=TLSFiles(str(d / "ca.crt"), str(d / "client.crt"), str(d / "client.key")),
    )  # fmt: skip
    server.start()
    try:
        yield server, d
    finally:
        server.stop()


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "DATASTORE_"))}
    return subprocess.run([CALICOCTL, *args], capture_output=True, text=True, timeout=60,
                          env={**base, **env}, check=False)  # fmt: skip


POOL = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: %s}\nspec: {cidr: %s}\n"


def test_tls_with_client_certificate_via_env(tls_etcd: tuple[EtcdServer, Path]) -> None:
    server, d = tls_etcd
    assert server.endpoint.startswith("https://127.0.0.1:")
    (d / "p.yaml").write_text(POOL % ("tls-env", "10.7.0.0/16"))
    env = {
        "ETCD_ENDPOINTS": server.endpoint,
        "ETCD_CA_CERT_FILE": str(d / "ca.crt"),
        "ETCD_CERT_FILE": str(d / "client.crt"),
        "ETCD_KEY_FILE": str(d / "client.key"),
    }
    proc = run(["apply", "-f", str(d / "p.yaml")], **env)
    assert proc.returncode == 0, proc.stderr
    proc = run(["get", "ippool", "tls-env", "-o", "yaml"], **env)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["spec"]["cidr"] == "10.7.0.0/16"


def test_tls_via_config_file(tls_etcd: tuple[EtcdServer, Path]) -> None:
    server, d = tls_etcd
    cfg = d / "calicoctl.cfg"
    cfg.write_text(yaml.safe_dump({"apiVersion": "projectcalico.org/v3", "kind": "CalicoAPIConfig",
        "metadata": {}, "spec": {"datastoreType": "etcdv3", "etcdEndpoints": server.endpoint,
        "etcdCACertFile": str(d / "ca.crt"), "etcdCertFile": str(d / "client.crt"),
        "etcdKeyFile": str(d / "client.key")}}))  # fmt: skip
    (d / "q.yaml").write_text(POOL % ("tls-cfg", "10.8.0.0/16"))
    proc = run(["create", "-f", str(d / "q.yaml"), "--config", str(cfg)])
    assert proc.returncode == 0, proc.stderr
    proc = run(["get", "ippool", "tls-cfg", "-c", str(cfg)])
    assert proc.returncode == 0
    assert "10.8.0.0/16" in proc.stdout


def test_tls_without_client_certificate_fails_cleanly(tls_etcd: tuple[EtcdServer, Path]) -> None:
    server, d = tls_etcd
    proc = run(["get", "ippool"], ETCD_ENDPOINTS=server.endpoint,
               ETCD_CA_CERT_FILE=str(d / "ca.crt"))  # fmt: skip
    assert proc.returncode == 1
    assert "etcd unavailable" in proc.stderr
    assert "Traceback" not in proc.stderr

"""calico.cni.install_cni: the config template, the kubeconfig, what lands in the bin dir."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from calico.cni import fastpath, install_cni


def _payload(tmp_path: Path, *, compiled_for: str | None = None) -> Path:
    payload = tmp_path / "payload"
    runtime = payload / install_cni.RUNTIME
    (runtime / "bin").mkdir(parents=True)
    (runtime / "bin/python3").write_text("not really python")
    (runtime / "lib").mkdir()
    (runtime / "lib" / install_cni.LOADER).write_text("loader")
    (payload / "loopback").write_bytes(b"\x7fELF loopback")
    if compiled_for is not None:
        (payload / "calico").write_bytes(b"\x7fELF launcher")
        (payload / install_cni.LAUNCHER_FOR).write_text(
            f"{compiled_for}\n{fastpath.DEFAULT_SOCKET}\n"
        )
    return payload


def _sa(tmp_path: Path) -> Path:
    sa = tmp_path / "sa"
    sa.mkdir(exist_ok=True)
    (sa / "token").write_text("tok-123\n")
    (sa / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nabc\n")
    return sa


ENV = {
    "KUBERNETES_SERVICE_HOST": "10.96.0.1",
    "KUBERNETES_SERVICE_PORT": "443",
    "KUBERNETES_NODE_NAME": "node-a",
    "ETCD_ENDPOINTS": "https://10.0.0.5:2379",
    "CNI_MTU": "1440",
}


def test_render_fills_calicos_placeholders_and_refuses_unknown_ones() -> None:
    values = {"__A__": "x", "__MTU__": "1500"}
    assert json.loads(install_cni.render('{"a": "__A__", "mtu": __MTU__}', values)) == {
        "a": "x",
        "mtu": 1500,
    }
    with pytest.raises(install_cni.InstallError, match="__TYPO__"):
        install_cni.render('{"a": "__TYPO__"}', values)
    with pytest.raises(install_cni.InstallError, match="not JSON"):
        install_cni.render('{"mtu": __MTU__,}', values)


def test_install_writes_runtime_launchers_plugins_kubeconfig_and_conflist(tmp_path: Path) -> None:
    host = tmp_path / "host"
    done = install_cni.install(
        ENV, host_root=host, payload=_payload(tmp_path), sa_dir=_sa(tmp_path)
    )
    bin_dir, net_dir = host / "opt/cni/bin", host / "etc/cni/net.d"
    runtimes = list(bin_dir.glob(".calico-runtime-*"))
    assert len(runtimes) == 1
    assert (runtimes[0] / ".complete").exists()
    launcher = (bin_dir / "calico").read_text()
    assert launcher.startswith("#!/bin/sh\n")
    assert f"rt=/opt/cni/bin/{runtimes[0].name}\n" in launcher  # the host's path, not /host/...
    assert f"'{fastpath.DEFAULT_SOCKET}' calico" in launcher  # tries the CNI server first
    assert "'' calico-ipam" in (bin_dir / ".calico-ipam-py").read_text()  # the fallback never does
    assert (bin_dir / "loopback").read_bytes() == b"\x7fELF loopback"
    assert stat.S_IMODE((bin_dir / "calico-ipam").stat().st_mode) == 0o755
    kubeconfig = (net_dir / "calico-kubeconfig").read_text()
    assert "server: https://10.96.0.1:443" in kubeconfig
    assert "token: tok-123" in kubeconfig
    assert "certificate-authority-data: " in kubeconfig
    assert stat.S_IMODE((net_dir / "calico-kubeconfig").stat().st_mode) == 0o600
    conf = json.loads((net_dir / "10-calico.conflist").read_text())
    calico = conf["plugins"][0]
    assert calico["kubernetes"]["kubeconfig"] == "/etc/cni/net.d/calico-kubeconfig"
    assert (calico["nodename"], calico["mtu"]) == ("node-a", 1440)
    assert calico["etcd_endpoints"] == "https://10.0.0.5:2379"
    assert calico["etcd_ca_cert_file"] == ""
    assert conf["plugins"][1]["type"] == "portmap"
    assert done[-1] == "/etc/cni/net.d/10-calico.conflist"  # the config is written last


def test_second_install_reuses_the_runtime_and_a_new_one_replaces_it(tmp_path: Path) -> None:
    host, payload = tmp_path / "host", _payload(tmp_path)
    install_cni.install(ENV, host_root=host, payload=payload, sa_dir=_sa(tmp_path))
    first = {p.name for p in (host / "opt/cni/bin").glob(".calico-runtime-*")}
    install_cni.install(ENV, host_root=host, payload=payload, sa_dir=_sa(tmp_path))
    assert {p.name for p in (host / "opt/cni/bin").glob(".calico-runtime-*")} == first
    (payload / install_cni.RUNTIME / "bin/python3").write_text("a newer python")
    install_cni.install(ENV, host_root=host, payload=payload, sa_dir=_sa(tmp_path))
    now = {p.name for p in (host / "opt/cni/bin").glob(".calico-runtime-*")}
    assert len(now) == 1
    assert now != first
    assert now.pop() in (host / "opt/cni/bin/calico").read_text()


def test_compiled_launcher_only_for_the_bin_dir_it_was_built_for(tmp_path: Path) -> None:
    payload = _payload(tmp_path, compiled_for="/opt/cni/bin")
    host = tmp_path / "host"
    install_cni.install(ENV, host_root=host, payload=payload, sa_dir=_sa(tmp_path))
    assert (host / "opt/cni/bin/calico").read_bytes() == b"\x7fELF launcher"
    assert (host / "opt/cni/bin/calico-ipam").read_bytes() == b"\x7fELF launcher"
    assert (host / "opt/cni/bin/.calico-py").read_text().startswith("#!/bin/sh")
    other = {**ENV, "CNI_BIN_DIR": "/usr/libexec/cni"}
    install_cni.install(other, host_root=host, payload=payload, sa_dir=_sa(tmp_path))
    assert (host / "usr/libexec/cni/calico").read_text().startswith("#!/bin/sh")


def test_etcd_tls_files_are_copied_and_named_by_their_host_paths(tmp_path: Path) -> None:
    secrets = tmp_path / "calico-secrets"
    secrets.mkdir()
    for name in ("etcd-ca", "etcd-cert", "etcd-key"):
        (secrets / name).write_text(f"pem of {name}")
    env = {
        **ENV,
        "ETCD_CA_CERT_FILE": str(secrets / "etcd-ca"),
        "ETCD_CERT_FILE": str(secrets / "etcd-cert"),
        "ETCD_KEY_FILE": str(secrets / "etcd-key"),
        "CNI_NET_DIR": "/etc/cni/alt.d",
    }
    host = tmp_path / "host"
    install_cni.install(env, host_root=host, payload=_payload(tmp_path), sa_dir=_sa(tmp_path))
    calico = json.loads((host / "etc/cni/alt.d/10-calico.conflist").read_text())["plugins"][0]
    assert calico["etcd_key_file"] == "/etc/cni/alt.d/calico-tls/etcd-key"
    assert (host / "etc/cni/alt.d/calico-tls/etcd-key").read_text() == "pem of etcd-key"
    assert stat.S_IMODE((host / "etc/cni/alt.d/calico-tls/etcd-key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"CNI_MTU": "jumbo"}, "CNI_MTU: expected an integer"),
        ({"ETCD_CA_CERT_FILE": "/nonexistent/etcd-ca"}, "ETCD_CA_CERT_FILE: /nonexistent"),
        ({"CNI_NETWORK_CONFIG": '{"x": "__NOPE__"}'}, "unknown placeholder"),
        ({"CNI_CONF_NAME": "../10-calico.conflist"}, "CNI_CONF_NAME"),
    ],
)
def test_bad_input_names_the_variable_and_writes_nothing(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    host = tmp_path / "host"
    with pytest.raises(install_cni.InstallError, match=message):
        install_cni.install({**ENV, **change}, host_root=host, payload=_payload(tmp_path),
                            sa_dir=_sa(tmp_path))  # fmt: skip
    assert not host.exists()


def test_outside_a_pod_there_is_no_kubeconfig(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if not k.startswith("KUBERNETES_SERVICE")}
    host = tmp_path / "host"
    install_cni.install(env, host_root=host, payload=_payload(tmp_path), sa_dir=tmp_path / "none")
    calico = json.loads((host / "etc/cni/net.d/10-calico.conflist").read_text())["plugins"][0]
    assert calico["kubernetes"]["kubeconfig"] == ""
    assert not (host / "etc/cni/net.d/calico-kubeconfig").exists()


def test_main_reports_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "environ", {"CNI_MTU": "x"})
    assert install_cni.main(["--host-root", str(tmp_path), "--payload", str(tmp_path)]) == 1
    assert "install-cni: CNI_MTU" in capsys.readouterr().err

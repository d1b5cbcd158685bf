"""``calico-lab up --etcd-members 3 --etcd-tls``: a real 3-member etcd in the core, each member on
its own address, client mTLS for every component; a client without a valid certificate is
refused; a dead member is restarted by ``up``; ``down`` leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico_lab import etcd, pki
from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle, check, expected, leftovers, root_links

pytestmark = [pytest.mark.e2e, pytest.mark.etcd, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with lab_support.lab_root(tmp_path_factory.mktemp("labroot")) as path:
        yield path


@pytest.fixture(scope="module")
def lab(root: Path) -> Iterator[LabHandle]:
    handle = LabHandle(lab_support.unique_name("et"), root)
    handle.root_before = root_links()  # type: ignore[attr-defined]
    try:
        handle.cli("up", "--nodes", "2", "--etcd-members", "3", "--etcd-tls", "--quiet")
        handle.cli("apply", "-f", "-", input=lab_support.pods_on("node1", "node2"))
        yield handle
    finally:
        handle.cli("down", "--quiet", check=False)


def calicoctl(lab: LabHandle, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """calicoctl in node1's namespace with node1's environment, ``env`` overriding it."""
    extra = [f"{k}={v}" for k, v in env.items()]
    return lab.cli("exec", "node1", "--", "env", *extra, "calicoctl", *args, check=False)


def test_three_members_each_on_its_own_address(lab: LabHandle) -> None:
    st = lab.state()
    assert len(st.etcd_pids) == 3
    assert all(lab_support.pid_alive(p) for p in st.etcd_pids)
    out = subprocess.run(
        ["ip", "netns", "exec", st.core, "ss", "-Hltn"], capture_output=True, text=True, check=True
    ).stdout
    for host in ("10.99.0.1", "10.99.0.2", "10.99.0.3"):
        assert f"{host}:2379" in out, out
    snap = json.loads(lab.cli("status", "-o", "json").stdout)
    assert [m["running"] for m in snap["etcd"]["members"]] == [True, True, True]
    assert snap["etcd"]["tls"] is True
    # every component was given the list and a certificate: calico-node registered both nodes,
    # the CNI plugin added the pods, calicoctl (node1's environment) reads them
    check(lab, expected(["default/a", "default/b"], [(8080, "TCP")], lambda *_: True))
    proc = calicoctl(lab, "get", "workloadendpoints", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["items"]) == 2


def test_a_client_without_a_valid_certificate_is_refused(lab: LabHandle, tmp_path: Path) -> None:
    proc = calicoctl(lab, "get", "nodes", ETCD_CERT_FILE="", ETCD_KEY_FILE="")
    assert proc.returncode == 1
    assert "requires a client certificate and none is configured" in proc.stderr
    # a certificate from another CA: refused by every member
    pki.ensure_ca(tmp_path, "rogue")
    pki.issue(tmp_path, "rogue-client")
    proc = calicoctl(
        lab,
        "get",
        "nodes",
        ETCD_CERT_FILE=str(tmp_path / "rogue-client.crt"),
        ETCD_KEY_FILE=str(tmp_path / "rogue-client.key"),
    )
    assert proc.returncode == 1
    assert proc.stderr.count("refused") >= 3, proc.stderr  # once per member
    # plain HTTP to a TLS member is no way round it
    proc = calicoctl(lab, "get", "nodes", ETCD_ENDPOINTS="http://10.99.0.2:2379")
    assert proc.returncode == 1


def test_a_dead_member_is_survived_and_restarted_by_up(lab: LabHandle) -> None:
    st = lab.state()
    first = st.etcd_pids[0]  # every client starts with member 0
    os.killpg(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lab_support.pid_alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    # with 2 of 3 members (once they have a leader: member 0 may have been it) everything keeps
    # working: a new pod (CNI; a "try again" during the election is retried as kubelet does),
    # calicoctl
    etcd.leader(lab.state())
    lab.cli("apply", "-f", "-", input=lab_support.POD_ON_NODE.format(name="late", node="node2"))
    assert calicoctl(lab, "get", "nodes").returncode == 0
    out = lab.cli("up", "--nodes", "2").stderr
    assert "etcd in the core namespace (3 members, client mTLS" in out
    repaired = lab.state()
    assert repaired.etcd_pids[0] != first
    assert repaired.etcd_pids[1:] == st.etcd_pids[1:]
    snap = json.loads(lab.cli("status", "-o", "json").stdout)
    assert [m["running"] for m in snap["etcd"]["members"]] == [True, True, True]
    check(lab, expected(sorted(repaired.pods), [(8080, "TCP")], lambda *_: True))


def test_other_etcd_options_are_refused(lab: LabHandle) -> None:
    proc = lab.cli("up", "--nodes", "2", "--etcd-members", "1", "--quiet", check=False)
    assert proc.returncode == 1
    assert "already up with --etcd-members 3, not 1" in proc.stderr
    proc = lab.cli("up", "--nodes", "2", "--no-etcd-tls", "--quiet", check=False)
    assert "already up with --etcd-tls true, not false" in proc.stderr
    proc = lab.cli("up", "--name", "etbad", "--etcd-members", "9", check=False)
    assert proc.returncode == 1
    assert "--etcd-members 9: must be between 1 and 7" in proc.stderr
    assert not (lab.root / "etbad").exists()


def test_down_leaves_nothing(lab: LabHandle) -> None:
    st = lab.state()
    recorded, pids = list(st.netns), lab_support.lab_pids(st) + st.etcd_pids
    lab.cli("down", "--quiet")
    assert leftovers(lab.name, lab.root, recorded, pids) == []
    assert root_links() == lab.root_before  # type: ignore[attr-defined]

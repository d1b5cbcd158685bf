"""The real ``calicoctl`` entry point (a subprocess) against a real etcd: create, apply, replace,
delete, get, label, version; skip flags; exit codes; whole-file atomicity; 1,000 resources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico.datastore.client import Client
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer, free_port

pytestmark = pytest.mark.etcd

CALICOCTL = str(Path(sys.executable).parent / "calicoctl")
RESOURCES = "/calico/resources/"


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with EtcdServer.on_free_ports(tmp_path_factory.mktemp("cli-etcd") / "etcd") as server:
        yield server


@pytest.fixture
def store(shared_etcd: EtcdServer) -> Iterator[EtcdClient]:
    """An etcd client on the module's server, emptied before each test."""
    client = EtcdClient([shared_etcd.endpoint])
    client.delete_prefix("/calico/")
    yield client
    client.close()


def ctl_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "DATASTORE_"))}
    env.update(extra)
    return env


class Ctl:
    def __init__(self, endpoint: str) -> None:
        self.env = ctl_env(ETCD_ENDPOINTS=endpoint)

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CALICOCTL, *args], input=stdin, capture_output=True, text=True,
                              env=self.env, timeout=60, check=False)  # fmt: skip

    def ok(self, *args: str, stdin: str | None = None) -> str:
        proc = self(*args, stdin=stdin)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    def fails(self, *args: str, stdin: str | None = None) -> str:
        proc = self(*args, stdin=stdin)
        assert proc.returncode != 0, (args, proc.stdout, proc.stderr)
        return proc.stdout + proc.stderr


@pytest.fixture
def ctl(shared_etcd: EtcdServer, store: EtcdClient) -> Ctl:
    return Ctl(shared_etcd.endpoint)


def pool(name: str, cidr: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
            "spec": {"cidr": cidr, **spec}}  # fmt: skip


def write(tmp_path: Path, docs: list[dict[str, Any]], name: str = "in.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def keys(store: EtcdClient) -> list[str]:
    return [kv.key for kv in store.get_prefix(RESOURCES)[0]]


def test_create_get_and_skip_exists(ctl: Ctl, tmp_path: Path) -> None:
    path = write(tmp_path, [pool("p1", "10.1.0.0/16"), pool("p2", "10.2.0.0/16")])
    assert ctl.ok("create", "-f", path) == "Successfully created 2 'IPPool' resource(s)\n"
    out = ctl.fails("create", "-f", path)
    assert "Failed to create any 'IPPool' resources" in out
    assert "resource already exists: IPPool(p1)" in out
    assert ctl.ok("create", "-f", path, "--skip-exists").startswith("Successfully created 2")
    table = ctl.ok("get", "ippools").splitlines()
    assert table[0].split() == ["NAME", "CIDR", "SELECTOR"]
    assert [line.split()[:2] for line in table[1:]] == [["p1", "10.1.0.0/16"],
                                                         ["p2", "10.2.0.0/16"]]  # fmt: skip
    got = yaml.safe_load(ctl.ok("get", "ippool", "p1", "-o", "yaml"))
    assert got["kind"] == "IPPool"
    assert got["spec"]["blockSize"] == 26
    assert got["metadata"]["uid"]
    assert got["metadata"]["resourceVersion"]
    both = yaml.safe_load(ctl.ok("get", "ippool", "p1", "p2", "-o", "yaml"))
    assert both["kind"] == "List"
    assert [r["metadata"]["name"] for r in both["items"]] == ["p1", "p2"]
    out = ctl.fails("get", "ippool", "nope")
    assert "resource does not exist: IPPool(nope)" in out
    assert "unknown resource type" in ctl.fails("get", "pods")


def test_partial_create_reports_the_failure_and_writes_the_rest(
    ctl: Ctl, tmp_path: Path, store: EtcdClient
) -> None:
    ctl.ok("create", "-f", write(tmp_path, [pool("p1", "10.1.0.0/16")], "a.yaml"))
    path = write(tmp_path, [pool("p1", "10.1.0.0/16"), pool("p2", "10.2.0.0/16")], "b.yaml")
    proc = ctl("create", "-f", path)
    assert proc.returncode == 1
    assert "Partial success: created 1 out of 2 'IPPool' resources" in proc.stdout
    assert "resource already exists: IPPool(p1)" in proc.stderr
    assert len(keys(store)) == 2


def test_apply_replace_and_stdin(ctl: Ctl, tmp_path: Path) -> None:
    doc = yaml.safe_dump(pool("p1", "10.1.0.0/16"))
    assert ctl.ok("apply", "-f", "-", stdin=doc) == "Successfully applied 1 'IPPool' resource(s)\n"
    assert ctl.ok("apply", "-f", "-", stdin=yaml.safe_dump(pool("p1", "10.1.0.0/16",
                                                                natOutgoing=True)))  # fmt: skip
    current = json.loads(ctl.ok("get", "ippool", "p1", "-o", "json"))
    assert current["spec"]["natOutgoing"] is True
    # replace with the current resourceVersion works; a stale one is a conflict
    current["spec"]["ipipMode"] = "Always"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(current))
    assert ctl.ok("replace", "-f", str(path)).startswith("Successfully replaced 1 'IPPool'")
    out = ctl.fails("replace", "-f", str(path))
    assert "conflict" in out
    assert "IPPool(p1)" in out
    out = ctl.fails("replace", "-f", "-", stdin=yaml.safe_dump(pool("p9", "10.9.0.0/16")))
    assert "Failed to replace 'IPPool' resource" in out
    assert "IPPool(p9)" in out


def test_invalid_resource_among_valid_ones_writes_nothing(
    ctl: Ctl, tmp_path: Path, store: EtcdClient
) -> None:
    docs = [pool(f"p{i}", f"10.{i}.0.0/16") for i in range(5)]
    docs.insert(3, pool("bad-pool", "10.99.0.0/16", blockSize=99))
    for verb in ("create", "apply", "replace"):
        out = ctl.fails(verb, "-f", write(tmp_path, docs))
        assert "IPPool(bad-pool): spec.blockSize: invalid blockSize 99" in out
        assert "document 4" in out
        assert "nothing was written" in out
        assert keys(store) == []


def test_mixed_kinds_list_namespaces_and_delete(ctl: Ctl, tmp_path: Path) -> None:
    lst = {"apiVersion": "projectcalico.org/v3", "kind": "List", "items": [
        pool("p1", "10.1.0.0/16"),
        {"kind": "NetworkPolicy", "metadata": {"name": "np1"}, "spec": {"ingress": [
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}]}},
        {"kind": "NetworkPolicy", "metadata": {"name": "np2", "namespace": "prod"},
         "spec": {"order": 10, "selector": "app == 'db'"}},
    ]}  # fmt: skip
    path = tmp_path / "list.json"
    path.write_text(json.dumps(lst))
    assert ctl.ok("apply", "-f", str(path)) == "Successfully applied 3 resource(s)\n"
    assert [ln.split() for ln in ctl.ok("get", "networkpolicy").splitlines()] == [
        ["NAMESPACE", "NAME"], ["default", "np1"]]  # fmt: skip
    wide = [ln.split() for ln in ctl.ok("get", "policy", "-A", "-o", "wide").splitlines()]
    assert wide == [["NAMESPACE", "NAME", "TIER", "ORDER", "SELECTOR"],
                    ["default", "np1", "default"],
                    ["prod", "np2", "default", "10", "app", "==", "'db'"]]  # fmt: skip
    got = json.loads(ctl.ok("get", "networkpolicy", "np2", "-n", "prod", "-o", "json"))
    assert got["spec"]["types"] == ["Ingress"]
    assert "IPPool is not namespaced" in ctl.fails("get", "ippool", "-n", "prod")
    # delete by file, by name, missing with and without --skip-not-exists
    assert ctl.ok("delete", "-f", str(path)) == "Successfully deleted 3 resource(s)\n"
    assert "resource does not exist: IPPool(p1)" in ctl.fails("delete", "ippool", "p1")
    assert ctl.ok("delete", "ippool", "p1", "--skip-not-exists").startswith(
        "Successfully deleted 1 'IPPool'")  # fmt: skip
    assert ctl.ok("get", "ippools", "-o", "json").count('"items": []') == 1


def test_get_nodes_wide_shows_address_and_as(ctl: Ctl, tmp_path: Path) -> None:
    docs = [
        {"kind": "Node", "metadata": {"name": "node1"},
         "spec": {"bgp": {"ipv4Address": "10.0.0.1/24", "asNumber": 65001}}},
        {"kind": "Node", "metadata": {"name": "node2"},
         "spec": {"bgp": {"ipv4Address": "10.0.0.2/24"}}},
        {"kind": "BGPConfiguration", "metadata": {"name": "default"},
         "spec": {"asNumber": 64600, "nodeToNodeMeshEnabled": True, "logSeverityScreen": "Info"}},
    ]  # fmt: skip
    ctl.ok("create", "-f", write(tmp_path, docs))
    rows = [ln.split() for ln in ctl.ok("get", "nodes", "-o", "wide").splitlines()]
    assert rows == [["NAME", "ASN", "IPV4", "IPV6"], ["node1", "65001", "10.0.0.1/24"],
                    ["node2", "(64600)", "10.0.0.2/24"]]  # fmt: skip
    rows = [ln.split() for ln in ctl.ok("get", "bgpconfig").splitlines()]
    assert rows == [["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
                    ["default", "Info", "true", "64600"]]  # fmt: skip


def test_label_set_overwrite_remove(ctl: Ctl, tmp_path: Path) -> None:
    ctl.ok("create", "-f", write(tmp_path, [pool("p1", "10.1.0.0/16")]))
    assert (
        ctl.ok("label", "ippool", "p1", "env=prod") == "Successfully set label env on ippool p1\n"
    )
    assert "already present" in ctl.fails("label", "ippool", "p1", "env=dev")
    ctl.ok("label", "ippool", "p1", "env=dev", "--overwrite")
    got = json.loads(ctl.ok("get", "ippool", "p1", "-o", "json"))
    assert got["metadata"]["labels"] == {"env": "dev"}
    assert ctl.ok("label", "ippool", "p1", "env", "--remove").startswith("Successfully removed")
    assert "not present" in ctl.fails("label", "ippool", "p1", "env", "--remove")
    assert "invalid label value" in ctl.fails("label", "ippool", "p1", "env=bad value")
    assert "resource does not exist" in ctl.fails("label", "ippool", "nope", "a=b")


def test_version_reports_cluster_information(ctl: Ctl, tmp_path: Path) -> None:
    assert "Client Version:" in ctl.ok("version")
    ci = {"kind": "ClusterInformation", "metadata": {"name": "default"},
          "spec": {"calicoVersion": "v3.3.0", "clusterType": "bgp"}}  # fmt: skip
    ctl.ok("create", "-f", write(tmp_path, [ci]))
    out = ctl.ok("version")
    assert "Cluster Version:   v3.3.0" in out
    assert "Cluster Type:      bgp" in out


def test_config_file_and_unreachable_etcd(
    ctl: Ctl, shared_etcd: EtcdServer, tmp_path: Path
) -> None:
    cfg = tmp_path / "calicoctl.cfg"
    cfg.write_text(yaml.safe_dump({"apiVersion": "projectcalico.org/v3", "kind": "CalicoAPIConfig",
                                   "metadata": {}, "spec": {"datastoreType": "etcdv3",
                                   "etcdEndpoints": shared_etcd.endpoint}}))  # fmt: skip
    no_env = Ctl("")
    no_env.env.pop("ETCD_ENDPOINTS")
    path = write(tmp_path, [pool("p1", "10.1.0.0/16")])
    assert no_env.ok("create", "-f", path, "--config", str(cfg)).startswith("Successfully")
    assert "p1" in no_env.ok("--config", str(cfg), "get", "ippool")  # the group-level option too
    assert "does not exist" in no_env.fails("get", "ippool", "--config", str(tmp_path / "none"))
    dead = Ctl(f"http://127.0.0.1:{free_port()}")
    assert "etcd unavailable" in dead.fails("get", "ippool")


def test_thousand_resources_in_one_command(ctl: Ctl, tmp_path: Path) -> None:
    docs: list[dict[str, Any]] = []
    for i in range(1000):
        docs.append({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                     "metadata": {"name": f"policy-{i:04d}"},
                     "spec": {"order": i, "selector": f"app == 'a{i}'", "ingress": [
                         {"action": "Allow", "protocol": "TCP",
                          "source": {"selector": "role == 'client'"},
                          "destination": {"ports": [80, "8000:8080"]}}]}})  # fmt: skip
    path = write(tmp_path, docs)
    start = time.monotonic()
    out = ctl.ok("apply", "-f", path)
    elapsed = time.monotonic() - start
    assert out == "Successfully applied 1000 'GlobalNetworkPolicy' resource(s)\n"
    listed = json.loads(ctl.ok("get", "globalnetworkpolicies", "-o", "json"))
    assert listed["kind"] == "GlobalNetworkPolicyList"
    assert sorted(r["metadata"]["name"] for r in listed["items"]) == [
        f"policy-{i:04d}" for i in range(1000)]  # fmt: skip
    print(f"apply of 1000 GlobalNetworkPolicies: {elapsed:.2f}s")
    assert ctl.ok("apply", "-f", path).startswith("Successfully applied 1000")  # all updates


def test_client_sees_what_calicoctl_wrote(ctl: Ctl, tmp_path: Path, store: EtcdClient) -> None:
    ctl.ok("apply", "-f", write(tmp_path, [pool("p1", "10.1.2.3/16")]))
    stored = Client(store).get("IPPool", "p1")
    assert stored["spec"]["cidr"] == "10.1.0.0/16"  # normalized before it was written
    assert keys(store) == ["/calico/resources/v3/projectcalico.org/ippools/p1"]


def test_overlapping_or_changed_pools_write_nothing(
    ctl: Ctl, tmp_path: Path, store: EtcdClient
) -> None:
    ctl.ok("create", "-f", write(tmp_path, [pool("p1", "10.1.0.0/16")], "a.yaml"))
    batch = [pool("p2", "10.2.0.0/16"), pool("p3", "10.1.4.0/24")]
    out = ctl.fails("apply", "-f", write(tmp_path, batch, "b.yaml"))
    assert "IPPool(p3): spec.cidr: 10.1.4.0/24 overlaps IPPool(p1) (10.1.0.0/16)" in out
    assert "nothing was written" in out
    out = ctl.fails("apply", "-f", write(tmp_path, [pool("p1", "10.9.0.0/16")], "c.yaml"))
    assert "IPPool(p1): spec.cidr: cannot be changed from '10.1.0.0/16' to '10.9.0.0/16'" in out
    out = ctl.fails("replace", "-f", write(tmp_path, [pool("p1", "10.1.0.0/16", blockSize=28)],
                                           "d.yaml"))  # fmt: skip
    assert "IPPool(p1): spec.blockSize: cannot be changed from 26 to 28" in out
    assert keys(store) == ["/calico/resources/v3/projectcalico.org/ippools/p1"]
    # the same pool applied again, and IPv6 next to IPv4, are fine
    ctl.ok("apply", "-f", write(tmp_path, [pool("p1", "10.1.0.0/16", natOutgoing=True),
                                           pool("v6", "fd00::/48")], "e.yaml"))  # fmt: skip


def test_get_by_name_across_namespaces(ctl: Ctl, tmp_path: Path) -> None:
    sets = [
        {"kind": "NetworkSet", "metadata": {"name": "ext", "namespace": ns},
         "spec": {"nets": ["192.0.2.0/24"]}}
        for ns in ("a", "b")
    ]  # fmt: skip
    ctl.ok("apply", "-f", write(tmp_path, sets))
    got = json.loads(ctl.ok("get", "networkset", "ext", "-A", "-o", "json"))
    assert [r["metadata"]["namespace"] for r in got["items"]] == ["a", "b"]
    assert "resource does not exist" in ctl.fails("get", "networkset", "nope", "-A")
    assert "resource does not exist: NetworkSet(default/ext)" in ctl.fails("get", "netset", "ext")
    rows = [ln.split() for ln in ctl.ok("get", "networksets", "-n", "b", "-o", "wide").splitlines()]
    assert rows == [["NAMESPACE", "NAME", "NETS"], ["b", "ext", "192.0.2.0/24"]]

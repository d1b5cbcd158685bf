"""Pure parts of the CNI plugin: config parsing, results, names, the kubeconfig reader, imports."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from calico.cni import endpoint, install, k8s, netconf, result, veth


def conf(**kw: Any) -> bytes:
    base = {"cniVersion": "0.3.1", "name": "n", "type": "calico", "ipam": {"type": "calico-ipam"}}
    base.update(kw)
    return json.dumps(base).encode()


def test_guide_config_parses() -> None:
    c = netconf.parse_conf(
        json.dumps(
            {
                "name": "calico-k8s-network",
                "type": "calico",
                "etcd_endpoints": "http://10.0.0.1:2379",
                "log_level": "info",
                "ipam": {"type": "calico-ipam"},
                "policy": {"type": "k8s"},
                "kubernetes": {"kubeconfig": "/etc/kubeconfig"},
            }
        ).encode()
    )
    assert c.cni_version == "0.1.0"  # absent means 0.1.0, as in libcni
    assert c.k8s_policy
    assert c.kubeconfig == "/etc/kubeconfig"
    assert c.mtu == 1500
    assert c.ipam["assign_ipv4"] is True
    assert c.ipam["assign_ipv6"] is False


@pytest.mark.parametrize(
    ("kw", "code", "msg"),
    [
        ({"ipam": None}, 7, "ipam: missing"),
        ({"ipam": {}}, 7, "ipam.type"),
        ({"cniVersion": "0.9.0"}, 1, "cniVersion"),
        ({"mtu": True}, 7, "mtu"),
        ({"mtu": 20}, 7, "mtu"),
        ({"ipam": {"type": "calico-ipam", "ipv4_pools": "10.0.0.0/8"}}, 7, "ipam.ipv4_pools"),
        ({"policy": "k8s"}, 7, "policy"),
    ],
)
def test_bad_configs(kw: dict[str, Any], code: int, msg: str) -> None:
    raw = json.loads(conf())
    raw.update(kw)
    if raw.get("ipam") is None:
        del raw["ipam"]
    with pytest.raises(netconf.CNIError) as err:
        netconf.parse_conf(json.dumps(raw).encode())
    assert err.value.code == code
    assert msg in err.value.msg
    assert err.value.to_json("1.0.0")["code"] == code


def test_not_json() -> None:
    with pytest.raises(netconf.CNIError) as err:
        netconf.parse_conf(b"{nope")
    assert err.value.code == 6


def test_cni_args() -> None:
    assert netconf.parse_args("IgnoreUnknown=1;K8S_POD_NAME=a;X=y") == {
        "IgnoreUnknown": "1",
        "K8S_POD_NAME": "a",
        "X": "y",
    }
    assert netconf.parse_args("") == {}
    with pytest.raises(netconf.CNIError, match="unknown args"):
        netconf.parse_args("K8S_POD_NAME=a;X=y")
    with pytest.raises(netconf.CNIError, match="KEY=VALUE"):
        netconf.parse_args("garbage")


def test_nodename_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = netconf.parse_conf(conf(nodename="explicit"))
    assert c.nodename({"NODENAME": "env"}) == "explicit"
    c = netconf.parse_conf(conf())
    assert c.nodename({"NODENAME": "env"}) == "env"
    f = tmp_path / "nodename"
    f.write_text("from-file\n")
    monkeypatch.setattr(netconf, "NODENAME_FILE", str(f))
    assert c.nodename({}) == "from-file"


def test_result_rendering() -> None:
    r = result.Result()
    r.add_interface("caliabc", "ee:ee:ee:ee:ee:ee")
    idx = r.add_interface("eth0", "02:00:00:00:00:01", "/var/run/netns/x")
    r.ips = [
        {"address": "10.0.0.1/32", "interface": idx},
        {"address": "fd00::1/128", "interface": idx},
    ]
    r.routes = [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
    v04 = r.render("0.4.0")
    assert v04["ips"][0]["version"] == "4"
    assert v04["ips"][1]["version"] == "6"
    v10 = r.render("1.0.0")
    assert "version" not in v10["ips"][0]
    legacy = r.render("0.2.0")
    assert legacy["ip4"] == {
        "ip": "10.0.0.1/32",
        "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
    }
    assert legacy["ip6"] == {"ip": "fd00::1/128"}
    back = result.Result.parse(v04)
    assert back.addresses() == ["10.0.0.1/32", "fd00::1/128"]
    assert result.Result.parse(legacy).addresses() == ["10.0.0.1/32", "fd00::1/128"]


def test_names() -> None:
    w = endpoint.Workload(
        node="node1", container_id="c1", ifname="eth0", namespace="default", pod="web-7d9f"
    )
    assert w.wep_name == "node1-k8s-web--7d9f-eth0"
    expect = "cali" + hashlib.sha1(b"default.web-7d9f").hexdigest()[:11]
    assert veth.host_veth_name(w.veth_key) == expect
    plain = endpoint.Workload(
        node="n-1", container_id="abc-def", ifname="eth0", namespace="", pod=""
    )
    assert plain.wep_name == "n--1-cni-abc--def-eth0"
    assert plain.veth_key == "abc-def"
    wep = endpoint.build(plain, network="net", host_if="calix", mac="m", ip_networks=["1.2.3.4/32"])
    assert wep["spec"]["profiles"] == ["net"]
    assert wep["spec"]["workload"] == "abc-def"
    assert "pod" not in wep["spec"]
    assert wep["metadata"]["labels"] == {
        "projectcalico.org/namespace": "default",
        "projectcalico.org/orchestrator": "cni",
    }


def test_simple_yaml_reader_matches_pyyaml() -> None:
    import yaml

    text = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority: ca.crt   # relative to the file
    server: "https://10.0.0.1:6443"
  name: k
- name: other
  cluster: {}
contexts:
- context: {cluster: k, user: u}
  name: c
current-context: c
kind: Config
preferences: {}
users:
- name: u
  user:
    token: 'abc''d'
    insecure-skip-tls-verify: true
    n: 12
"""
    text = text.replace(
        "- context: {cluster: k, user: u}", "- context:\n    cluster: k\n    user: u"
    )
    assert k8s.read_simple_yaml(text) == yaml.safe_load(text)


def test_kubeconfig_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "kc").write_text(
        json.dumps(
            {
                "clusters": [
                    {"name": "k", "cluster": {"server": "https://x", "certificate-authority": "ca"}}
                ],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "current-context": "c",
                "users": [{"name": "u", "user": {"tokenFile": "/tok"}}],
            }
        )
    )
    cfg = k8s.load_kubeconfig(str(tmp_path / "kc"))
    assert cfg["server"] == "https://x"
    assert cfg["ca_file"] == str(tmp_path / "ca")
    assert cfg["token_file"] == "/tok"


@pytest.mark.parametrize("compiled", [True, False])
def test_install_and_conf(tmp_path: Path, compiled: bool) -> None:
    paths = install.install_binaries(tmp_path / "bin", compiled=compiled)
    assert [p.name for p in paths] == ["calico", "calico-ipam"]
    kind = "compiled" if compiled and install.compiler() else "python"
    assert [install.launcher_kind(p) for p in paths] == [kind, kind]
    scripts = paths if kind == "python" else [p.with_name(f".{p.name}-py") for p in paths]
    first = scripts[0].read_text().splitlines()[0]
    assert first == f"#!{sys.executable} -IS"
    out = subprocess.run(
        [str(paths[0])],
        input=b"{}",
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=True,
    )
    assert json.loads(out.stdout)["supportedVersions"][-1] == "1.0.0"
    # no socket: the compiled launcher would only exec the Python one
    assert install.launcher_kind(install.install_binaries(tmp_path / "b2", socket_path="")[0]) == (
        "python"
    )
    c = install.write_conf(
        tmp_path / "10-calico.conf", etcd_endpoints="http://e:2379", kubeconfig="/k"
    )
    assert json.loads((tmp_path / "10-calico.conf").read_text()) == c
    assert netconf.parse_conf(json.dumps(c).encode()).k8s_policy


def test_plugin_imports_stay_light() -> None:
    """The plugin is one process per pod: none of the heavy libraries may be imported."""
    code = (
        "import sys; import calico.cni.plugin, calico.cni.ipam_plugin; "
        "print(' '.join(sorted(sys.modules)))"
    )
    mods = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    for heavy in (
        "asyncio",
        "yaml",
        "click",
        "msgspec",
        "lightkube",
        "rich",
        "jinja2",
        "prometheus_client",
        "logging",
        "calico.model.validation",
    ):
        assert heavy not in mods, heavy


def test_fastpath_imports_almost_nothing() -> None:
    """What a call served by the CNI server costs beyond the interpreter: the launcher's imports."""
    src = str(Path(install.__file__).resolve().parents[2])
    code = (
        f"import sys; base = set(sys.modules); sys.path.insert(0, {src!r}); "
        "import calico.cni.fastpath; print(' '.join(sorted(set(sys.modules) - base)))"
    )
    new = set(
        subprocess.run(
            [sys.executable, "-IS", "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    heavy = {
        "os",  # ≈ 1 ms under -IS: the launcher uses the built-in posix module
        "json",
        "socket",
        "subprocess",
        "re",
        "enum",
        "typing",
        "threading",
        "ipaddress",
        "http.client",
        "calico.datastore.etcd",
    }
    assert "calico.cni.fastpath" in new
    assert not new & heavy, new & heavy


def test_server_request_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    from calico.cni import fastpath, server

    raw = fastpath._request("calico", b'{"x": 1}')
    env, stdin = server.parse_request(raw)
    assert stdin == b'{"x": 1}'
    assert env["CALICO_PLUGIN"] == "calico"
    assert env["CALICO_NETNS_INO"] == str(server.own_netns_inode())
    assert not server.wants_fallback(env, b'{"ipam": {"type": "calico-ipam"}}')
    assert server.wants_fallback(env, b'{"ipam": {"type": "host-local"}}')
    assert server.wants_fallback({**env, "CALICO_NETNS_INO": "1"}, b"{}")
    with pytest.raises(ValueError, match="CNI2"):
        server.parse_request(b"GET / HTTP/1.1\r\n")
    with pytest.raises(ValueError, match="CNI2"):
        server.parse_request(raw.replace(b"CNI2", b"CNI1", 1))  # an older launcher
    monkeypatch.setenv("CNI_COMMAND", "VERSION")
    request = fastpath._request("calico", b'{"cniVersion": "0.4.0"}')
    assert server.handle(request, caller_root=None) == server.FALLBACK  # no root: not served
    if os.geteuid() != 0:
        pytest.skip("serving a call chroots its thread: needs root")
    replies: list[bytes] = []
    cwd = os.getcwd()
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:  # served on a thread of its own: it re-roots the thread that serves
        worker = threading.Thread(
            target=lambda: replies.append(server.handle(request, caller_root=root))
        )
        worker.start()
        worker.join()
    finally:
        os.close(root)
    rc, size, rest = replies[0].split(b"\n", 2)
    assert (rc, json.loads(rest[: int(size)])["cniVersion"]) == (b"0", "0.4.0")
    assert os.getcwd() == cwd  # only the serving thread was re-rooted (its cwd is "/")


def test_workload_endpoint_names_as_calico_derives_them() -> None:
    name = endpoint.wep_name
    assert name(node="node-1", orchestrator="k8s", pod="web-7d9f", endpoint="eth0") == (
        "node--1-k8s-web--7d9f-eth0"
    )
    assert name(node="n", orchestrator="cni", container_id="ab-cd", endpoint="eth0") == (
        "n-cni-ab--cd-eth0"
    )
    assert (
        name(node="n", orchestrator="libnetwork", endpoint="ep-1")
        == "n-libnetwork-libnetwork-ep--1"
    )
    assert name(node="n", orchestrator="openstack", workload="vm-1", endpoint="tap1") == (
        "n-openstack-vm--1-tap1"
    )
    with pytest.raises(ValueError, match="containerID '-x': must not begin or end"):
        name(node="n", orchestrator="cni", container_id="-x", endpoint="eth0")
    with pytest.raises(ValueError, match="pod: required"):
        name(node="n", orchestrator="k8s", endpoint="eth0")
    with pytest.raises(ValueError, match="containerID 'Ctr_1': a WorkloadEndpoint name takes"):
        name(node="n", orchestrator="cni", container_id="Ctr_1", endpoint="eth0")
    with pytest.raises(ValueError, match=r"name '.*': a WorkloadEndpoint name takes"):
        name(node="n", orchestrator="cni", container_id="a" * 250, endpoint="eth0")


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    cid=st.text(alphabet="abcXYZ019-._", min_size=1, max_size=12),
    pod=st.text(alphabet="abc09-.", min_size=1, max_size=8),
)
def test_workload_endpoint_names_follow_the_models_name_rule(cid: str, pod: str) -> None:
    """The CNI's copy of the resource-name rule agrees with the model's: a name it builds is
    one the model (and so the agent) accepts, and one it refuses by that rule, the model refuses
    too (Calico's '-' rule for segments refuses some names the model would take)."""
    from calico.model import fields

    for kwargs in (
        {"orchestrator": "cni", "container_id": cid},
        {"orchestrator": "k8s", "pod": pod},
    ):
        try:
            built = endpoint.wep_name(node="node1", endpoint="eth0", **kwargs)
        except ValueError as exc:
            if "must not begin or end with '-'" in str(exc):
                continue
            joined = "-".join(
                v.replace("-", "--")
                for v in (
                    "node1",
                    kwargs["orchestrator"],
                    cid if "container_id" in kwargs else pod,
                    "eth0",
                )
            )
            with pytest.raises(fields.FieldError):
                fields.dns_subdomain(joined, "metadata.name")
        else:
            assert fields.dns_subdomain(built, "metadata.name") == built


def test_kubernetes_only_with_namespace_and_name() -> None:
    def env(args: str) -> netconf.CNIEnv:
        return netconf.CNIEnv({"CNI_ARGS": args})

    assert env("K8S_POD_NAMESPACE=a;K8S_POD_NAME=b").is_k8s
    assert not env("IgnoreUnknown=1;K8S_POD_NAME=b").is_k8s  # podman
    assert not env("K8S_POD_NAMESPACE=a").is_k8s
    assert not env("K8S_POD_NAMESPACE=;K8S_POD_NAME=b").is_k8s

"""Key layout and small pure helpers of the datastore layer."""

from __future__ import annotations

import pytest

from calico.datastore.config import ConfigError, load
from calico.datastore.etcd import EtcdClient, prefix_end
from calico.model import kinds


def test_prefix_end() -> None:
    assert prefix_end("/calico/") == "/calico0"
    assert prefix_end("a") == "b"


def test_keys_follow_calico_layout() -> None:
    gnp = kinds.lookup("gnp")
    assert gnp.key("allow-dns") == (
        "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/allow-dns"
    )
    wep = kinds.lookup("WorkloadEndpoint")
    key = wep.key("node1-k8s-web-eth0", "prod")
    assert key == "/calico/resources/v3/projectcalico.org/workloadendpoints/prod/node1-k8s-web-eth0"
    assert kinds.parse_key(key) == (wep, "prod", "node1-k8s-web-eth0")
    assert kinds.parse_key("/calico/ipam/v2/handle/x") is None
    with pytest.raises(ValueError, match="namespace"):
        wep.key("x")


def test_every_kind_has_a_distinct_plural() -> None:
    plurals = [k.plural for k in kinds.KINDS.values()]
    assert len(plurals) == len(set(plurals)) == 17
    tier = kinds.lookup("tier")
    assert tier.key("platform") == "/calico/resources/v3/projectcalico.org/tiers/platform"
    assert kinds.parse_key(tier.key("platform")) == (tier, None, "platform")


def test_unknown_kind_names_the_value() -> None:
    with pytest.raises(ValueError, match="'widget'"):
        kinds.lookup("widget")


def test_config_env_wins_over_file(tmp_path: object) -> None:
    from pathlib import Path

    cfg = Path(str(tmp_path)) / "calicoctl.cfg"
    cfg.write_text(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\n"
        "spec:\n  datastoreType: etcdv3\n  etcdEndpoints: http://10.0.0.1:2379\n"
    )
    assert load(str(cfg), env={}).endpoints == "http://10.0.0.1:2379"
    assert load(str(cfg), env={"ETCD_ENDPOINTS": "http://e:1"}).endpoints == "http://e:1"
    with pytest.raises(ConfigError, match="'consul' is not supported"):
        load(str(cfg), env={"DATASTORE_TYPE": "consul"})
    kdd = load(str(cfg), env={"DATASTORE_TYPE": "kubernetes", "KUBECONFIG": str(cfg)})
    assert kdd.datastore_type == "kubernetes"
    assert kdd.env["KUBECONFIG"] == str(cfg)
    with pytest.raises(ConfigError, match="KUBECONFIG: /nonexistent: no such file"):
        load(str(cfg), env={"DATASTORE_TYPE": "kubernetes", "KUBECONFIG": "/nonexistent"})
    with pytest.raises(ConfigError, match="does not exist"):
        load(str(cfg) + ".missing", env={})


def test_bad_endpoint_is_named() -> None:
    with pytest.raises(ValueError, match="ftp://x"):
        EtcdClient("ftp://x")

"""Which kinds calico-kube-controllers watches, by datastore mode (Calico's: the policy, namespace,
serviceaccount and workloadendpoint controllers are for the etcd datastore only; the Kubernetes
datastore reads those objects itself)."""

from __future__ import annotations

import pytest

from calico.controllers import manager
from calico.datastore.config import DatastoreConfig

ALL = ("policy", "namespace", "serviceaccount", "workloadendpoint")


def test_etcd_mode_watches_every_kind_of_the_enabled_controllers() -> None:
    config = manager.ControllerConfig(datastore=DatastoreConfig(), controllers=ALL)
    assert set(config.kinds()) == {"NetworkPolicy", "AdminNetworkPolicy",
                                   "BaselineAdminNetworkPolicy", "Namespace", "ServiceAccount",
                                   "Pod"}  # fmt: skip


def test_kubernetes_mode_leaves_what_the_datastore_reads_itself() -> None:
    kdd = DatastoreConfig(datastore_type="kubernetes")
    config = manager.ControllerConfig(datastore=kdd, controllers=ALL)
    # only what the Kubernetes datastore does not read: the admin network policy kinds
    assert config.kinds() == ["AdminNetworkPolicy", "BaselineAdminNetworkPolicy"]
    only = manager.ControllerConfig(datastore=kdd, controllers=("namespace", "workloadendpoint"))
    assert only.kinds() == []


@pytest.mark.parametrize("dtype", ["etcdv3", "kubernetes"])
def test_an_unknown_controller_is_refused_in_either_mode(dtype: str) -> None:
    config = manager.ControllerConfig(
        datastore=DatastoreConfig(datastore_type=dtype), controllers=("policy", "bogus")
    )
    with pytest.raises(ValueError, match="bogus"):
        config.kinds()

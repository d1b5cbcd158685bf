"""Fixtures of the datastore tests: a real kube-apiserver with Calico's CRDs (``make kube``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.controllers import kube_apiserver
from tests.integration.datastore.backends import CRD_PATH, install_crds, json_kubeconfig


@pytest.fixture(scope="module")
def real_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kube_apiserver.KubeAPIServer]:
    """One real kube-apiserver (v1.20, ``make kube``) with Calico's CRDs for the module."""
    why = kube_apiserver.missing()
    if why:
        pytest.skip(why)
    with kube_apiserver.running(tmp_path_factory.mktemp("kube")) as api:
        from calico.datastore.kube import KubeBackend
        from calico.datastore.kube_api import Access
        from calico.lib.kubeconfig import load_kubeconfig

        json_kubeconfig(api)
        backend = KubeBackend(Access(load_kubeconfig(str(api.kubeconfig) + ".json"), "test"))
        install_crds(lambda d: backend.api.request("POST", CRD_PATH, body=d))
        api.kubectl("wait", "--for=condition=established", "--timeout=30s", "crd", "--all")
        backend.close()
        yield api

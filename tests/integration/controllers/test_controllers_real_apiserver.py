"""The policy controller against a real kube-apiserver (v1.20, ``make kube``): our CRDs install
and their schema is enforced, and AdminNetworkPolicy / BaselineAdminNetworkPolicy objects made
with kubectl converge into Calico's tiers in etcd, then go away with them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from lightkube import AsyncClient, KubeConfig

from calico.controllers.informer import Informer
from calico.controllers.manager import ControllerConfig, KubeControllers
from calico.datastore.client import Client, NotFound
from calico.datastore.config import DatastoreConfig
from calico.datastore.etcd_server import EtcdServer
from tests.integration.controllers import kube_apiserver, oracle
from tests.integration.controllers.conftest import eventually

pytestmark = pytest.mark.etcd

CRDS = Path(__file__).resolve().parents[3] / "manifests" / "crds"


def test_admin_policies_through_a_real_api_server(
    tmp_path: Path, etcd_server: EtcdServer, datastore: Client
) -> None:
    why = kube_apiserver.missing()
    if why:
        pytest.skip(why)
    with kube_apiserver.running(tmp_path / "kube") as api:
        api.kubectl("apply", "-f", str(CRDS))
        api.kubectl("wait", "--for=condition=established", "--timeout=30s", "crd", "--all")
        api.kubectl("create", "namespace", "x")
        anp = {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
               **oracle.anp("x-from-y", 10, subject_ns="x", deny_from_ns="y")}  # fmt: skip
        api.kubectl("apply", "-f", "-", input=json.dumps(anp))
        # The CRD's schema is enforced by the API server.
        bad = {**anp, "metadata": {"name": "bad"}, "spec": {**anp["spec"], "priority": 1001}}
        with pytest.raises(AssertionError, match=r"spec\.priority"):
            api.kubectl("apply", "-f", "-", input=json.dumps(bad))
        ctl = KubeControllers(
            ControllerConfig(
                datastore=DatastoreConfig(endpoints=etcd_server.endpoint),
                kubeconfig=str(api.kubeconfig),
                listen=None,
                workers=2,
                resync_period=3600.0,
            )
        )
        ctl.start()
        try:
            assert ctl.wait_ready(30), ctl.status()

            def converged() -> dict[str, object]:
                try:
                    gnp = datastore.get("GlobalNetworkPolicy", "kanp.kube-admin.x-from-y")
                    spec: dict[str, object] = gnp["spec"]
                    return spec
                except NotFound as exc:
                    raise AssertionError(str(exc)) from None

            spec = eventually(converged, timeout=30)
            assert (spec["tier"], spec["order"]) == ("kube-admin", 10)
            assert spec["ingress"][0]["action"] == "Deny"
            api.kubectl("patch", "anp", "x-from-y", "--type=merge", "-p", '{"spec":{"priority":4}}')
            eventually(lambda: _check(converged()["order"] == 4), timeout=30)
            api.kubectl("delete", "anp", "x-from-y")
            eventually(lambda: _check(_gone(datastore)), timeout=30)
        finally:
            ctl.stop()


def _check(ok: object) -> None:
    assert ok


def _gone(ds: Client) -> bool:
    try:
        ds.get("GlobalNetworkPolicy", "kanp.kube-admin.x-from-y")
    except NotFound:
        return True
    return False


def test_ready_without_admin_policy_crds(
    tmp_path: Path, etcd_server: EtcdServer, datastore: Client
) -> None:
    """A real API server answers a list of an API group it does not serve with a plain-text
    "404 page not found" (not a Status object): AdminNetworkPolicy and its baseline are then
    "none exist", and the controllers are ready (a hosted install on a cluster without those
    CRDs stayed unready forever before)."""
    why = kube_apiserver.missing()
    if why:
        pytest.skip(why)
    with kube_apiserver.running(tmp_path / "kube") as api:
        ctl = KubeControllers(
            ControllerConfig(
                datastore=DatastoreConfig(endpoints=etcd_server.endpoint),
                kubeconfig=str(api.kubeconfig),
                listen=None,
                workers=2,
                resync_period=3600.0,
            )
        )
        ctl.start()
        try:
            assert ctl.wait_ready(30), ctl.status()
            informers = ctl.status()[2]["informers"]
            for kind in ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy"):
                assert informers[kind]["synced"] is True, informers[kind]
        finally:
            ctl.stop()


def test_a_watch_the_server_ends_is_not_presumed_dead(tmp_path: Path) -> None:
    """The server ends each watch at its timeoutSeconds; the informer sees that end and watches
    again at once. Only a watch still open past timeoutSeconds + grace counts as stalled."""
    why = kube_apiserver.missing()
    if why:
        pytest.skip(why)
    with kube_apiserver.running(tmp_path / "kube") as api:
        api.kubectl("create", "namespace", "x")

        async def watch_for(seconds: float) -> Informer:
            client = AsyncClient(KubeConfig.from_file(str(api.kubeconfig)))
            inf = Informer(
                client, "Namespace", enqueue=lambda key, t: None, server_timeout=1, grace=1.5
            )
            task = asyncio.create_task(inf.run())
            await asyncio.sleep(seconds)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()
            return inf

        inf = asyncio.run(watch_for(8))
        assert inf.synced
        assert ("", "x") in inf.store
        assert inf.stalls == 0

"""The fake API server itself: the Kubernetes behaviours the controller tests rely on."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube import Client, KubeConfig
from lightkube.core.exceptions import ApiError

from calico.controllers.informer import Namespace, NetworkPolicy, Pod
from tests.fakekube import ApiError as FakeApiError
from tests.fakekube import FakeKube


@pytest.fixture
def kube(fake_kube: FakeKube, tmp_path: Path) -> Client:
    return Client(KubeConfig.from_file(str(fake_kube.write_kubeconfig(tmp_path / "kc"))))


def _req(
    fake: FakeKube, method: str, path: str, body: Any = None, ctype: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        fake.url + path, data=data, method=method, headers={"Content-Type": ctype}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_crud_semantics(fake_kube: FakeKube) -> None:
    assert (
        _req(fake_kube, "POST", "/api/v1/namespaces/x/pods", {"metadata": {"name": "p"}})[0] == 404
    )  # namespace must exist
    code, ns = _req(fake_kube, "POST", "/api/v1/namespaces", {"metadata": {"name": "x"}})
    assert code == 201
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "x"}
    code, pod = _req(fake_kube, "POST", "/api/v1/namespaces/x/pods", {"metadata": {"name": "p"}})
    assert code == 201
    assert pod["spec"]["serviceAccountName"] == "default"
    assert (
        _req(fake_kube, "POST", "/api/v1/namespaces/x/pods", {"metadata": {"name": "p"}})[1][
            "reason"
        ]
        == "AlreadyExists"
    )
    stale = dict(pod)
    code, pod2 = _req(
        fake_kube,
        "PATCH",
        "/api/v1/namespaces/x/pods/p",
        {"metadata": {"labels": {"a": "1"}}},
        "application/merge-patch+json",
    )
    assert code == 200
    assert pod2["metadata"]["labels"] == {"a": "1"}
    code, status = _req(fake_kube, "PUT", "/api/v1/namespaces/x/pods/p", stale)
    assert (code, status["reason"]) == (409, "Conflict")
    code, np = _req(
        fake_kube,
        "POST",
        "/apis/networking.k8s.io/v1/namespaces/x/networkpolicies",
        {"metadata": {"name": "n"}, "spec": {"egress": [{}]}},
    )
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert _req(fake_kube, "DELETE", "/api/v1/namespaces/x")[0] == 200
    assert fake_kube.list("pods") == []
    assert fake_kube.list("networkpolicies") == []
    with pytest.raises(FakeApiError):
        fake_kube.get("pods", "p", "x")


def test_paged_list_and_watch_from_resource_version(fake_kube: FakeKube, kube: Client) -> None:
    fake_kube.create("namespaces", {"metadata": {"name": "a"}})
    for i in range(7):
        fake_kube.create("pods", {"metadata": {"name": f"p{i}", "namespace": "a"}})
    listing = kube.list(Pod, namespace="*", chunk_size=3)
    assert [p["metadata"]["name"] for p in listing] == [f"p{i}" for i in range(7)]
    assert fake_kube.list_count("pods") == 3  # three pages
    rv = listing.resourceVersion
    fake_kube.delete("pods", "p0", "a")
    events = []
    for kind, obj in kube.watch(Pod, namespace="*", resource_version=rv):
        events.append((kind, obj["metadata"]["name"]))
        break
    assert events == [("DELETED", "p0")]


def test_410_after_compaction_and_bookmarks(fake_kube: FakeKube, kube: Client) -> None:
    fake_kube.create("namespaces", {"metadata": {"name": "a"}})
    rv = str(fake_kube.store.rv)
    fake_kube.create("namespaces", {"metadata": {"name": "b"}})
    fake_kube.compact()
    with pytest.raises(ApiError) as exc:
        next(iter(kube.watch(Namespace, resource_version=rv)))
    assert exc.value.status.code == 410
    # Bookmarks carry the current resourceVersion and nothing else.
    generic = kube._client
    br = generic.prepare_request(
        "list",
        res=NetworkPolicy,
        namespace="*",
        watch=True,
        params={"resourceVersion": str(fake_kube.store.rv), "allowWatchBookmarks": "true"},
    )
    threading.Timer(0.2, fake_kube.send_bookmarks).start()
    kind, obj = next(iter(generic.watch(br)))
    assert kind == "BOOKMARK"
    assert obj["metadata"] == {"resourceVersion": str(fake_kube.store.rv)}


def test_drop_watches_cuts_the_stream(fake_kube: FakeKube, kube: Client) -> None:
    fake_kube.create("namespaces", {"metadata": {"name": "a"}})
    threading.Timer(0.2, fake_kube.drop_watches).start()
    start = time.monotonic()
    with pytest.raises(httpx2.HTTPError):
        for _ in kube.watch(Namespace, resource_version=str(fake_kube.store.rv)):
            pass
    assert time.monotonic() - start < 5


def test_https_and_token(tmp_path: Path) -> None:
    with FakeKube(tls_dir=tmp_path / "tls", token="t") as fake:
        fake.create("namespaces", {"metadata": {"name": "a"}})
        kube = Client(KubeConfig.from_file(str(fake.write_kubeconfig(tmp_path / "kc"))))
        assert [n["metadata"]["name"] for n in kube.list(Namespace)] == ["a"]
        with pytest.raises(urllib.error.URLError):  # not trusted without the test CA
            urllib.request.urlopen(fake.url + "/api/v1/namespaces", timeout=5)


def test_error_answer_keeps_a_kept_alive_connection_usable(fake_kube: FakeKube) -> None:
    """A 404 for a POST must consume the body, or the next request on the connection breaks."""
    import http.client
    import urllib.parse

    url = urllib.parse.urlsplit(fake_kube.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=5)
    try:
        body = json.dumps({"kind": "Widget", "metadata": {"name": "w"}})
        conn.request(
            "POST", "/apis/example.com/v1/widgets", body, {"Content-Type": "application/json"}
        )
        first = conn.getresponse()
        first.read()
        assert first.status == 404
        conn.request("GET", "/api/v1/namespaces")
        second = conn.getresponse()
        assert second.status == 200, second.read()
        assert json.loads(second.read())["kind"] == "NamespaceList"
    finally:
        conn.close()

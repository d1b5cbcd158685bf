"""Talking to a Kubernetes lab's API server: ``kubectl`` and a small JSON client.

The API server listens on the router's address inside the core namespace only, so both run there:
``kubectl`` under ``ip netns exec <core>`` with the lab's admin kubeconfig (``calico-lab kubectl``,
``apply``/``delete``/``label`` of Kubernetes objects), and :class:`Api` on a thread that entered the
core namespace (reads: pods, nodes, readiness) over one kept-alive HTTPS connection with the admin
client certificate. The caller's thread never changes namespace.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from calico.lib import netns
from calico.lib.cmd import CmdError, run
from calico_lab import k8s_state, network
from calico_lab.state import LabError, LabState


class ApiError(LabError):
    def __init__(self, status: int, path: str, message: str) -> None:
        self.status = status
        super().__init__(f"API server: {path}: {status} {message}")


def kubectl_argv(lab: LabState, args: Sequence[str]) -> list[str]:
    ks = k8s_state.require(lab)
    admin = k8s_state.kubeconfig(lab, "admin")
    return ["ip", "netns", "exec", lab.core, f"{ks.kube_bin}/kubectl", f"--kubeconfig={admin}",
            *args]  # fmt: skip


def kubectl(
    lab: LabState, args: Sequence[str], *, input: str | None = None, timeout: float = 120
) -> str:
    """Run kubectl against the lab; its stdout, or a LabError with its message."""
    try:
        return run(kubectl_argv(lab, args), input=input, timeout=timeout).stdout
    except CmdError as exc:
        raise LabError(f"kubectl {' '.join(args)}: {exc.stderr}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"kubectl {' '.join(args)}: no answer within {timeout:.0f}s") from None


def exec_kubectl(lab: LabState, args: Sequence[str]) -> None:
    """Replace this process with kubectl (``calico-lab kubectl ...``)."""
    argv = kubectl_argv(lab, args)
    os.execvp(argv[0], argv)


class Api:
    """Requests to the lab's API server, from the core namespace."""

    def __init__(self, lab: LabState, *, timeout: float = 10.0) -> None:
        pki = k8s_state.pki_dir(lab)
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.host, self.timeout = network.router_ip(0), timeout
        self._conn: http.client.HTTPSConnection | None = None
        self._thread = netns.NetnsExecutor(lab.core)

    def close(self) -> None:
        self._thread.call(self._drop)
        self._thread.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(
        self, path: str, method: str = "GET", body: bytes | None = None
    ) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more, new
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(
                    self.host, k8s_state.API_PORT, context=self.ctx, timeout=self.timeout
                )
            try:
                self._conn.request(method, path, body=body, headers=headers)
                resp = self._conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                self._drop()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        try:
            status, body = self._thread.call(self._request, path)
        except (OSError, http.client.HTTPException) as exc:
            raise LabError(f"API server {self.host}:{k8s_state.API_PORT}: {exc}") from None
        if status != 200:
            raise ApiError(status, f"GET {path}", body.decode(errors="replace")[:300])
        return json.loads(body)

    def send(self, method: str, path: str, obj: dict[str, Any] | None = None) -> Any:
        """POST/PUT/DELETE ``obj`` (JSON); the answer, or ApiError."""
        body = json.dumps(obj).encode() if obj is not None else None
        try:
            status, data = self._thread.call(self._request, path, method, body)
        except (OSError, http.client.HTTPException) as exc:
            raise LabError(f"API server {self.host}:{k8s_state.API_PORT}: {exc}") from None
        if status not in (200, 201, 202):
            raise ApiError(status, f"{method} {path}", data.decode(errors="replace")[:300])
        return json.loads(data)

    def raw(self, path: str) -> tuple[int, str]:
        """Status and text of a GET (``/readyz``); (0, reason) when nothing answered."""
        try:
            status, body = self._thread.call(self._request, path)
        except (OSError, http.client.HTTPException) as exc:
            return 0, str(exc)
        return status, body.decode(errors="replace")

    def items(self, path: str, *, selector: str = "") -> list[dict[str, Any]]:
        query = f"?labelSelector={quote(selector)}" if selector else ""
        items: list[dict[str, Any]] = self.get(path + query).get("items") or []
        return items

    def pods(self, *, namespace: str = "", selector: str = "") -> list[dict[str, Any]]:
        where = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
        return self.items(where, selector=selector)

    def nodes(self) -> list[dict[str, Any]]:
        return self.items("/api/v1/nodes")


def condition(obj: dict[str, Any], kind: str) -> bool:
    """Whether ``status.conditions`` has ``kind`` True (``Ready``...)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return bool(cond.get("status") == "True")
    return False

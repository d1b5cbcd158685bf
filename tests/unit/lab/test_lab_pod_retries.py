"""The lab as kubelet: a CNI ADD that fails with "try again later" (code 11: etcd electing a
leader) or a dataplane error (101) is followed by DEL and another ADD; other errors are final."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from calico_lab import cluster, cni_runner, nodes, pods
from calico_lab.state import PodState


def _lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.setenv("CALICO_LAB_ROOT", str(tmp_path))
    lab = cluster.new_state("t", 1)
    path = nodes.conflist_path(lab, "node1")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(nodes.conflist(lab, lab.nodes[0])))
    return lab


def _run(monkeypatch: pytest.MonkeyPatch, lab: Any, codes: list[int]) -> list[str]:
    calls: list[str] = []
    outcomes = list(codes)

    def add(*_: object, **__: object) -> dict[str, Any]:
        calls.append("ADD")
        code = outcomes.pop(0) if outcomes else 0
        if code:
            raise cni_runner.CNIError("calico", "ADD", code, "failed")
        return {"ips": [{"address": "10.0.0.1/32"}]}

    def delete(*_: object, **__: object) -> None:
        calls.append("DEL")

    monkeypatch.setattr(cni_runner, "add", add)
    monkeypatch.setattr(cni_runner, "delete", delete)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    pod = PodState("default", "p", "node1", "calab-t-p-1", "c1")
    pods.cni_add(lab, pod)
    return calls


def test_try_again_and_dataplane_errors_are_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lab = _lab(monkeypatch, tmp_path)
    assert _run(monkeypatch, lab, [11, 101]) == ["ADD", "DEL", "ADD", "DEL", "ADD"]


def test_other_errors_and_the_last_attempt_are_final(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lab = _lab(monkeypatch, tmp_path)
    with pytest.raises(cni_runner.CNIError):
        _run(monkeypatch, lab, [7])
    with pytest.raises(cni_runner.CNIError):
        _run(monkeypatch, lab, [11] * pods.ADD_ATTEMPTS)

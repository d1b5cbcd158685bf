"""Fixtures for the chaos scenarios: one shared lab (3 nodes, a 3-member etcd with client mTLS,
pods a-d and the protect-b policy) and a figures record per scenario.

The lab lives for the whole session (bringing one up costs ~15 s); scenarios leave it as they
found it: every etcd member and calico-node process running, the base pods and policy in place.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.chaos.chaoslab import PODS, ChaosLab
from tests.chaos.figures import Figures
from tests.e2e import lab_support
from tests.e2e.lab_support import LabHandle


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.when == "call":
        item.stash[OUTCOME] = rep.passed
    return rep


OUTCOME = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def chaos_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with lab_support.lab_root(tmp_path_factory.mktemp("chaoslab")) as path:
        yield path


@pytest.fixture(scope="session")
def chaos_lab(chaos_root: Path) -> Iterator[ChaosLab]:
    handle = LabHandle(lab_support.unique_name("ch"), chaos_root)
    lab = ChaosLab(handle)
    try:
        handle.cli("up", "--nodes", "3", "--etcd-members", "3", "--etcd-tls", "--quiet")
        handle.apply(PODS)
        yield lab
    finally:
        lab.close()
        handle.cli("down", "--quiet", check=False)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """The scenario's figures, saved after the test with its outcome."""
    scenario = request.node.name.removeprefix("test_")
    fig = Figures(scenario)
    yield fig
    fig.save(passed=request.node.stash.get(OUTCOME, False))

"""Fixtures for the agent's real-traffic tests (root, netns, real etcd, real nft)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.datastore.etcd_server import free_port
from tests.integration.agent.harness import Node


@pytest.fixture
def node(make_netns: object, tmp_path: Path) -> Iterator[Node]:
    n = Node(make_netns, tmp_path, free_port())  # type: ignore[arg-type]
    try:
        yield n
    finally:
        n.close()

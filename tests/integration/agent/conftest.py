"""Fixtures for the agent's real-traffic tests (root, netns, real etcd, real nft)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.datastore.etcd_server import EtcdServer, free_port
from tests.integration.agent.encap_cluster import Cluster
from tests.integration.agent.harness import Node


@pytest.fixture
def node(make_netns: object, tmp_path: Path) -> Iterator[Node]:
    n = Node(make_netns, tmp_path, free_port())  # type: ignore[arg-type]
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def cluster(make_netns: object, tmp_path: Path, etcd_server: EtcdServer) -> Iterator[Cluster]:
    """Router + outside + node namespaces on two subnets (nodes added by the test)."""
    c = Cluster(make_netns, tmp_path, etcd_server.endpoint)  # type: ignore[arg-type]
    try:
        yield c
    finally:
        c.close()

"""Fixtures for the agent's real-traffic tests (root, netns, real etcd, real nft)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from calico.datastore.etcd_server import EtcdServer, free_port
from tests.integration.agent.encap_cluster import Cluster
from tests.integration.agent.harness import Node


@pytest.fixture
def node(make_netns: Callable[[], str], tmp_path: Path) -> Iterator[Node]:
    n = Node(make_netns, tmp_path, free_port())
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def cluster(
    make_netns: Callable[[], str], tmp_path: Path, etcd_server: EtcdServer
) -> Iterator[Cluster]:
    """Router + outside + node namespaces on two subnets (nodes added by the test)."""
    c = Cluster(make_netns, tmp_path, etcd_server.endpoint)
    try:
        yield c
    finally:
        c.close()

"""Property, end to end: whatever ``calicoctl apply`` stores, the agent's calculation graph
programs; whatever it rejects, nothing is stored.

Through the real command code (``calico.cli.main.cli`` invoked in-process with click's runner: the
same loading, validation, IPPool checks and datastore writes as the ``calicoctl`` binary, without
a process start per example) against a real etcd on 127.0.0.1. A real etcd is cheap here (one
server for the module, a few ms a write) and is what proves "nothing stored": a rejected apply must
leave the store empty. The graph is then fed what etcd holds, decoded as the agent's syncer
decodes it. ``tests/unit/calc/test_calc_programs_what_model_accepts.py`` checks the same property
on many more examples at the validation entry point.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from calico.cli.main import cli
from calico.datastore.client import decode
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.model import validation
from tests import policy_strategies as ps

pytestmark = pytest.mark.etcd

RESOURCES = "/calico/resources/"


@pytest.fixture(scope="module")
def etcd_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EtcdServer.on_free_ports(tmp_path_factory.mktemp("agree-etcd") / "etcd") as server:
        yield server.endpoint


@pytest.fixture(scope="module")
def store(etcd_endpoint: str) -> Iterator[EtcdClient]:
    client = EtcdClient([etcd_endpoint])
    yield client
    client.close()


def test_calicoctl_stores_only_what_the_agent_programs(
    etcd_endpoint: str, store: EtcdClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("agree") / "in.yaml"
    runner = CliRunner()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ps.policy_resource())
    def check(obj: dict[str, Any]) -> None:
        store.delete_prefix("/calico/")
        path.write_text(yaml.safe_dump(obj))
        env = {"ETCD_ENDPOINTS": etcd_endpoint}
        result = runner.invoke(cli, ["apply", "-f", str(path)], env=env, catch_exceptions=False)
        kvs, _ = store.get_prefix(RESOURCES)
        try:
            validation.validate(obj)
            valid = True
        except validation.ValidationError:
            valid = False
        if result.exit_code != 0:
            assert not valid, result.output
            assert "nothing was written" in result.output, result.output
            assert kvs == [], "a rejected apply stored something"
            return
        assert valid
        assert len(kvs) == 1
        stored = decode(kvs[0].value, kvs[0].mod_revision)
        graph, out = ps.program(stored)
        assert not graph.invalid, graph.invalid
        got = ps.programmed(stored, out)
        assert got is not None, f"stored but not programmed: {stored}"
        want_in, want_out = ps.expected_directions(stored)
        assert (len(got[0]), len(got[1])) == (len(want_in), len(want_out))
        for raw, rule in zip(want_in + want_out, got[0] + got[1], strict=True):
            ps.check_rule(raw, rule)

    check()

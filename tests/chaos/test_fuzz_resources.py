"""Fuzzed resources into validation, calicoctl and the datastore layer: a valid resource of every
kind, mutated at a random place, is either accepted (normalised, and then stable) or refused with
an error that names the field (and, for the field that was changed to a scalar, its value); never
a traceback, never a partial write (a refused file or resource leaves etcd's revision as it was).
Random text into calicoctl's loader: resources or a LoadError, nothing else."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from calico.cli import loading
from calico.cli.main import cli
from calico.datastore.client import Client, DatastoreError
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.model.validation import ValidationError, validate
from tests.chaos.figures import Figures
from tests.chaos.fuzz import Mutation, dotted, fuzz_settings, mutated

pytestmark = [pytest.mark.chaos]

SCALARS = (type(None), bool, int, float, str)


@pytest.fixture(scope="module", autouse=True)
def fuzz_figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """The module's figures: examples run per property, refusals; saved when the module ends
    (passed when no test of it failed)."""
    fig = Figures("fuzz_resources_cli_datastore")
    fig.fault("mutated resources of 11 kinds, random text, files mixing valid and mutated ones")
    failed_before = request.session.testsfailed
    FIGURES.append(fig)
    yield fig
    FIGURES.remove(fig)
    fig.duplicates = fig.leaks = 0
    fig.notes.append("a refused input left etcd's revision unchanged every time")
    fig.save(passed=request.session.testsfailed == failed_before)


FIGURES: list[Figures] = []


def count(kind: str) -> None:
    if FIGURES:
        FIGURES[-1].op(kind)


@pytest.fixture(scope="module")
def fuzz_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with EtcdServer.on_free_ports(tmp_path_factory.mktemp("fuzz") / "etcd") as server:
        yield server


def names_field_and_value(exc: ValidationError, m: Mutation) -> None:
    msg = str(exc)
    assert exc.field or msg.split(":", maxsplit=1)[0] == "resource", f"no field named: {msg}"
    assert exc.field in msg, f"{exc.field!r} not in {msg!r}"
    # None (and "") stand for "not given": "required" is then the right message
    named = isinstance(m.value, SCALARS) and m.value not in (None, "")
    if m.action == "replace" and exc.field == dotted(m.path) and named:
        shown = (repr(m.value), str(m.value), json.dumps(m.value))
        assert any(s in msg for s in shown), f"the value {m.value!r} is not named: {msg}"


@given(m=mutated())
@fuzz_settings(short=300, long=20000)
def test_validation_accepts_or_names_field_and_value(m: Mutation) -> None:
    count("validation examples")
    try:
        out = validate(m.obj)
    except ValidationError as exc:
        names_field_and_value(exc, m)
        count("validation: refused, naming the field")
        return
    assert validate(out) == out  # normalised: stable


@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=200).map(lambda b: b.decode(
    "utf-8", "replace"))))  # fmt: skip
@fuzz_settings(short=200, long=10000)
def test_loader_gives_resources_or_a_load_error(text: str) -> None:
    count("loader examples")
    try:
        docs = loading.parse(text, "fuzz")
    except loading.LoadError as exc:
        docs, error = [], str(exc)
    else:
        error = "-"
    assert error, "a LoadError without a message"
    assert all(isinstance(d.where, str) for d in docs)


def _revision(endpoint: str) -> int:
    etcd = EtcdClient([endpoint])
    try:
        return etcd.revision()
    finally:
        etcd.close()


@given(m=mutated(), valid=st.sampled_from(["ippool", "profile"]), as_json=st.booleans())
@fuzz_settings(short=40, long=1500)
def test_calicoctl_apply_all_or_nothing(
    fuzz_etcd: EtcdServer, tmp_path: Path, m: Mutation, valid: str, as_json: bool
) -> None:
    """A file of two valid resources and the mutated one: exit 0 and all applied, or exit 1, a
    message, no traceback and nothing written."""
    good = [
        {"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": "fz-ok"},
         "spec": {}},
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "fz-ok"},
         "spec": {"cidr": "10.99.0.0/16"} if valid == "ippool" else {"cidr": "10.98.0.0/16"}},
    ]  # fmt: skip
    docs = [good[0], m.obj, good[1]]
    path = tmp_path / f"r-{os.getpid()}.{'json' if as_json else 'yaml'}"
    try:
        text = json.dumps({"kind": "List", "items": docs}) if as_json else yaml.safe_dump_all(docs)
    except (ValueError, yaml.YAMLError):
        return  # not representable as a file (e.g. NaN in JSON): nothing to feed
    path.write_text(text)
    before = _revision(fuzz_etcd.endpoint)
    count("calicoctl apply examples")
    result = CliRunner().invoke(
        cli, ["apply", "-f", str(path)], env={"ETCD_ENDPOINTS": fuzz_etcd.endpoint}
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {result.exception!r}\n{result.output}"
    )
    if result.exit_code != 0:
        assert result.output.strip(), "refused without a message"
        partial = "Partial success" in result.output or "Failed to apply" in result.output
        if not partial:  # refused before writing: nothing may have been written
            assert _revision(fuzz_etcd.endpoint) == before, result.output
            count("calicoctl apply: file refused, nothing written")


@given(m=mutated())
@fuzz_settings(short=60, long=3000)
def test_datastore_writes_whole_or_not_at_all(fuzz_etcd: EtcdServer, m: Mutation) -> None:
    etcd = EtcdClient([fuzz_etcd.endpoint])
    client = Client(etcd)
    count("datastore examples")
    try:
        before = etcd.revision()
        try:
            client.apply(m.obj)
        except ValidationError as exc:
            names_field_and_value(exc, m)
            assert etcd.revision() == before, "a refused resource changed etcd"
        except DatastoreError as exc:  # e.g. a kind's rules beyond validation
            refused = str(exc)
            assert refused, "refused without a message"
            assert etcd.revision() == before
    finally:
        etcd.close()

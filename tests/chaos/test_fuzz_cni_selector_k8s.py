"""Fuzzed CNI calls, selectors and Kubernetes NetworkPolicies.

* CNI: random stdin (junk bytes, and the node's valid config mutated at a random place) and random
  ``CNI_*`` environments through the plugin's own entry point (``invocation.execute``, what the
  launcher and the CNI server run): always exit 0 or 1, the spec's error JSON on 1 (integer
  ``code``, ``msg``, ``cniVersion``), never code 999 (an exception nothing expected), and a failed
  call writes nothing to etcd. The calls run on a thread inside a ``calt-`` namespace of their own
  (etcd reached through a forwarder) and ``CNI_NETNS`` never names an existing namespace.
* Selectors: any text parses or raises SelectorError with the selector and a position.
* NetworkPolicy conversion: a valid Kubernetes NetworkPolicy mutated anywhere converts, or raises
  ConversionError naming the policy; what it converts to passes Calico's validation.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calico.cni import invocation, plugin
from calico.datastore.etcd import EtcdClient
from calico.datastore.etcd_server import EtcdServer
from calico.k8s.conversion import ConversionError, convert_network_policy
from calico.lib.netns import NetnsExecutor
from calico.model.validation import validate
from calico.selector.errors import SelectorError
from calico.selector.parser import parse
from tests.chaos.figures import Figures
from tests.chaos.fuzz import K8S_NP, Mutation, cni_env, fuzz_settings, mutated
from tests.nsnet import Forwarder

pytestmark = [pytest.mark.chaos]
ERR_UNEXPECTED = 999
FIGURES: list[Figures] = []


def count(kind: str) -> None:
    if FIGURES:
        FIGURES[-1].op(kind)


@pytest.fixture(scope="module", autouse=True)
def fuzz_figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    fig = Figures("fuzz_cni_selectors_networkpolicy")
    fig.fault("junk and mutated CNI stdin/env, random selector text, mutated NetworkPolicies")
    failed_before = request.session.testsfailed
    FIGURES.append(fig)
    yield fig
    FIGURES.remove(fig)
    fig.duplicates = fig.leaks = 0
    fig.save(passed=request.session.testsfailed == failed_before)


@pytest.fixture(scope="module")
def cni_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetnsExecutor, str]]:
    """A thread in a fresh ``calt-`` namespace, an etcd reachable from it, its endpoint."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a network namespace for the fuzzed CNI calls)")
    name = f"calt-fuzz-{os.getpid()}-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    server = EtcdServer.on_free_ports(tmp_path_factory.mktemp("cnifuzz") / "etcd")
    server.start()
    fwd = Forwarder(name, server.port)
    ex = NetnsExecutor(name)
    try:
        yield ex, server.endpoint
    finally:
        ex.close()
        fwd.close()
        server.stop()
        subprocess.run(["ip", "netns", "del", name], check=False)


def _conf(endpoint: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "type": "calico",
        "etcd_endpoints": endpoint,
        "nodename": "fuzz-node",
        "mtu": 1450,
        "ipam": {"type": "calico-ipam"},
        "policy": {"type": "k8s"},
    }


def _check_reply(rc: int, out: str, err: str) -> dict[str, Any] | None:
    assert rc in (0, 1), (rc, out, err)
    if rc == 0:
        return json.loads(out) if out.strip() else None
    reply: dict[str, Any] = json.loads(out)
    assert isinstance(reply.get("code"), int), reply
    assert isinstance(reply.get("msg"), str), reply
    assert reply["msg"], reply
    assert "cniVersion" in reply, reply
    assert reply["code"] != ERR_UNEXPECTED, f"an unexpected exception: {reply}"
    return reply


@st.composite
def cni_calls(draw: Any) -> tuple[bytes, dict[str, str], str]:
    env = cni_env(draw)
    kind = draw(st.sampled_from(["junk", "mutated", "mutated", "valid"]))
    if kind == "junk":
        return draw(st.binary(max_size=300)), env, kind
    conf = _conf("ENDPOINT")
    if kind == "mutated":
        m = draw(mutated(templates=[conf]))
        conf = m.obj
    return json.dumps(conf).encode(), env, kind


@given(call=cni_calls())
@fuzz_settings(short=150, long=4000)
def test_cni_answers_the_spec_and_writes_nothing_on_failure(
    cni_host: tuple[NetnsExecutor, str], call: tuple[bytes, dict[str, str], str]
) -> None:
    ex, endpoint = cni_host
    data, env, _ = call
    data = data.replace(b"ENDPOINT", endpoint.encode())
    etcd = EtcdClient([endpoint])
    try:
        before = etcd.revision()
        count("CNI calls")
        rc, out, err = ex.call(
            invocation.execute, plugin.dispatch, env.get("CNI_COMMAND", ""), data, env
        )
        _check_reply(rc, out, err)
        if rc != 0:
            count("CNI calls refused with the spec's error")
            assert etcd.revision() == before, f"a failed call wrote to etcd: {out}"
    finally:
        etcd.close()


selector_text = st.one_of(
    st.text(max_size=60),
    st.lists(
        st.sampled_from(["a", "b.c/d", "==", "!=", "in", "not in", "{", "}", "'x'", '"y"', ",",
                         "has(", ")", "(", "&&", "||", "!", "all()", "global()", "contains",
                         "starts with", "ends with", " ", "'", "\\", "\x00", "é", "9", "-"]),
        max_size=14,
    ).map("".join),
)  # fmt: skip


@given(text=selector_text)
@fuzz_settings(short=300, long=20000)
def test_selectors_parse_or_say_where(text: str) -> None:
    count("selector texts")
    try:
        parse(text)
    except SelectorError as exc:
        where, message = exc.position, str(exc)
    else:
        return
    count("selectors refused with a position")
    assert 0 <= where <= len(text), (text, where)
    assert repr(text) in message or text in message, message


@given(m=mutated(templates=[K8S_NP]))
@fuzz_settings(short=300, long=20000)
def test_network_policy_conversion_is_valid_or_refused(m: Mutation) -> None:
    count("NetworkPolicies")
    try:
        conv = convert_network_policy(m.obj)
    except ConversionError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        count("NetworkPolicies refused, naming the policy")
        assert "NetworkPolicy" in message, message
        return
    validate(conv.policy)  # what the controllers would write must be a valid Calico resource
    for problem in conv.problems:
        assert "NetworkPolicy" in str(problem), str(problem)

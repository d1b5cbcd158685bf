"""The policy case table (tests/unit/calc/policy_cases.py) with real packets: one agent, three
workloads in two namespaces, each case applied, checked by the connectivity matrix, removed."""

from __future__ import annotations

import pytest

from tests.integration.agent.harness import Matrix, Node, profile
from tests.unit.calc import policy_cases

pytestmark = [pytest.mark.netns, pytest.mark.etcd]


def test_agent_policy_cases(node: Node) -> None:
    for ns, labels in policy_cases.NAMESPACE_LABELS.items():
        node.apply(profile(ns, labels))
    for name, (account, account_labels) in policy_cases.SERVICE_ACCOUNTS.items():
        ns = policy_cases.WORKLOADS[name][0]
        node.apply(policy_cases.service_account_profile(ns, account, account_labels))
    for name, (ns, ip, labels, ports) in policy_cases.WORKLOADS.items():
        sa = policy_cases.SERVICE_ACCOUNTS.get(name, (None, {}))[0]
        node.add_workload(name, ip, labels, namespace=ns, ports=ports, service_account=sa)
    node.start_agent()
    failures = []
    for case in policy_cases.CASES:
        for obj in case.resources:
            node.apply(obj)
        mx = Matrix(node)
        for src, dst, proto, port, ok in case.expect:
            mx.expect(src, dst, proto, port, ok=ok)
        try:
            mx.check(timeout=10)
        except AssertionError as exc:
            failures.append(f"case {case.name}: {str(exc).split('--- agent log')[0]}")
        for obj in case.resources:
            node.delete(obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
    assert not failures, "\n".join(failures) + "\n--- agent log ---\n" + node.log_tail()

"""Selector micro-benchmark: parse and evaluate, against a tree-walking reference evaluator.

Run: ``.venv/bin/python -m bench.selector [--endpoints N] [--repeats R]``

Measured in the same run, per selector x label-set evaluation (ns, median and p90 over repeats):

* ``compiled``   - ``Selector.evaluate`` (generated lambda, the production path);
* ``closure``    - ``compiler.closure`` (nested closures, the fallback path);
* ``reference``  - a recursive ``match``-based AST interpreter, the straightforward baseline
                   (what libcalico-go's ``node.Evaluate`` does);

and per selector (us): a cold ``parse`` (cache cleared: tokenise, parse, normalise, render, compile)
and a cached ``parse``. Ratios are against the reference evaluator.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import time
from collections.abc import Callable, Mapping

from bench import results
from calico import selector
from calico.selector import compiler, nodes, selectors

SELECTORS = [
    "",
    "role == 'db'",
    "role == 'db' && env in {'prod', 'dev'}",
    "projectcalico.org/namespace == 'ns-3' && app.kubernetes.io/name == 'web'",
    "has(pcns.team) && pcns.team in {'a', 'b', 'c'}",
    "!has(quarantine) && tier != 'frontend'",
    "app starts with 'api-' || app ends with '-worker'",
    "version contains '1.' && env not in {'test'}",
    "(role == 'db' || role == 'cache') && (env == 'prod' || has(critical))",
    "global() || projectcalico.org/namespace in {'kube-system', 'ns-1', 'ns-2'}",
    "a == '1' && b == '2' && c == '3' && d == '4' && e == '5' && f == '6'",
]


# One match, as a tree walker is written: this is the baseline every ratio is against, and
# splitting it would add a call per node to that figure (docs/design/style.md).
def reference(node: nodes.Node, labels: Mapping[str, str]) -> bool:  # noqa: C901, PLR0912
    match node:
        case nodes.All():
            return True
        case nodes.Global():
            return nodes.NAMESPACE_LABEL not in labels
        case nodes.Has(key):
            return key in labels
        case nodes.Eq(key, value):
            return key in labels and labels[key] == value
        case nodes.Ne(key, value):
            return key not in labels or labels[key] != value
        case nodes.In(key, values):
            return key in labels and labels[key] in values
        case nodes.NotIn(key, values):
            return key not in labels or labels[key] not in values
        case nodes.StartsWith(key, value):
            return key in labels and labels[key].startswith(value)
        case nodes.EndsWith(key, value):
            return key in labels and labels[key].endswith(value)
        case nodes.Contains(key, value):
            return key in labels and value in labels[key]
        case nodes.Not(operand):
            return not reference(operand, labels)
        case nodes.And(operands):
            return all(reference(op, labels) for op in operands)
        case nodes.Or(operands):
            return any(reference(op, labels) for op in operands)


def make_endpoints(count: int, rnd: random.Random) -> list[dict[str, str]]:
    endpoints = []
    for i in range(count):
        labels = {
            "projectcalico.org/namespace": f"ns-{rnd.randrange(8)}",
            "projectcalico.org/orchestrator": "k8s",
            "app": rnd.choice(["api-users", "api-orders", "batch-worker", "web"]),
            "app.kubernetes.io/name": rnd.choice(["web", "db", "cache"]),
            "role": rnd.choice(["db", "cache", "frontend", "backend"]),
            "env": rnd.choice(["prod", "dev", "test"]),
            "version": f"{rnd.randrange(3)}.{rnd.randrange(10)}",
            "pod-template-hash": f"{i:08x}",
        }
        if rnd.random() < 0.3:
            labels["pcns.team"] = rnd.choice("abcd")
        if rnd.random() < 0.05:
            labels["quarantine"] = "true"
        endpoints.append(labels)
    return endpoints


def timed(fn: Callable[[], object], repeats: int, per: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / per)
    return samples


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


def time_parse(repeats: int) -> dict[str, list[float]]:
    """Per-selector parse times (us): "cold" (caches cleared) and "cached"."""

    def cold() -> None:
        selectors._parse_cached.cache_clear()
        selectors._intern.cache_clear()
        for text in SELECTORS:
            selector.parse(text)

    def cached() -> None:
        for text in SELECTORS:
            selector.parse(text)

    print(f"{'parse':<12}{'median us':>12}{'p90 us':>10}")
    parse = {}
    for name, fn in (("cold", cold), ("cached", cached)):
        parse[name] = samples = [s / 1000 for s in timed(fn, repeats, len(SELECTORS))]
        print(f"{name:<12}{statistics.median(samples):>12.2f}{p90(samples):>10.2f}")
    return parse


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--endpoints", type=int, default=2000)
    args.add_argument("--repeats", type=int, default=15)
    opts = args.parse_args()
    endpoints = make_endpoints(opts.endpoints, random.Random(42))
    sels = [selector.parse(text) for text in SELECTORS]
    evaluators: dict[str, list[Callable[[Mapping[str, str]], bool]]] = {
        "reference": [functools.partial(reference, s.root) for s in sels],
        "closure": [compiler.closure(s.root) for s in sels],
        "compiled": [s.evaluate for s in sels],
    }
    expected = [[f(ep) for ep in endpoints] for f in evaluators["reference"]]
    for name, fns in evaluators.items():  # all three agree before anything is timed
        assert [[f(ep) for ep in endpoints] for f in fns] == expected, name
    per = len(sels) * len(endpoints)
    print(f"{len(sels)} selectors x {len(endpoints)} endpoints, {opts.repeats} repeats")
    print(f"{'evaluate':<12}{'median ns':>12}{'p90 ns':>10}{'vs reference':>14}")
    results_ = {}
    for name, fns in evaluators.items():

        def run(fns: list[Callable[[Mapping[str, str]], bool]] = fns) -> None:
            for f in fns:
                for ep in endpoints:
                    f(ep)

        results_[name] = timed(run, opts.repeats, per)
    base = statistics.median(results_["reference"])
    for name, samples in results_.items():
        med = statistics.median(samples)
        print(f"{name:<12}{med:>12.0f}{p90(samples):>10.0f}{base / med:>13.1f}x")

    parse = time_parse(opts.repeats)
    matches = sum(map(sum, expected))
    print(f"(matches: {matches} of {per}; cold parse includes compile)")
    rec = results.Recorder("selector")
    rec.fact("workload", f"{len(sels)} selectors x {len(endpoints)} endpoints, {matches} matches")
    for name in ("compiled", "closure"):
        rec.figure(
            f"evaluate_{name}", title=f"selector evaluation, {name}", unit="ns",
            samples=results_[name], baseline=results_["reference"],
            baseline_title="tree-walking evaluator",
            readme="selector evaluation (compiled)" if name == "compiled" else None,
            doc="docs/design/selector.md",
        )  # fmt: skip
    rec.figure("parse_cold", title="selector parse, cold (includes compile)", unit="us",
               samples=parse["cold"])  # fmt: skip
    rec.figure("parse_cached", title="selector parse, cached", unit="us", samples=parse["cached"])
    rec.save()


if __name__ == "__main__":
    main()

"""Pod-to-pod TCP throughput with iperf3: calico-lab pods vs a veth pair and the kernel's vxlan.

    .venv/bin/python -m bench.throughput [--runs 3] [--seconds 3] [--policies 1000]
                                         [--modes direct,vxlan,ipip] [--streams 1,4]

Same-run baselines (:mod:`bench.throughput.baselines`): two fresh namespaces joined by a plain
veth pair, and the kernel's own vxlan between two namespaces (ipip too where the kernel has it,
else printed as skipped with the reason); and the lab's pod paths' hops without Calico: a
forwarding namespace between two veths (without and with conntrack) and two forwarding
namespaces joined through a bridge. Then, per mode, a throwaway 2-node lab (state in a temp
dir, namespaces ``calab-tput<hex>-*``): ``direct`` (``--vxlan Never``: routed by BIRD, pod MTU
1500 like the veth baseline), ``vxlan`` (``--vxlan Always``) and ``ipip`` (``--ipip Always``),
each with no policy and then with ``--policies`` Calico NetworkPolicies selecting the pods (and,
in the same rounds, an identical set of pods that no policy selects: the no-policy path under the
same noise); same-node (client and server pods on node1) and cross-node (server on node2, through
the lab's bridge). Everything else is the lab's shipped defaults. An encapsulating mode whose
routes do not go through its tunnel device is reported as missing, never measured as if it were
encapsulated.

Each round measures the baselines and the lab's paths alternately (so they share the noise);
the figures are medians over rounds with their spread, and ratios against the same run's
baselines. The figures go to ``bench/results/throughput-<time>.json`` (every sample and ratio) and
the headline ones into the results file of ``make bench`` (``BENCH_RESULTS``).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable

from bench import results
from bench.throughput import iperf, report
from bench.throughput.baselines import Baselines, Pair

Key = report.Key
MODES = {"direct": {"vxlan": "Never"}, "vxlan": {"vxlan": "Always"}, "ipip": {"ipip": "Always"}}


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    ap.add_argument("--runs", type=int, default=3, help="rounds per case (median over them)")
    ap.add_argument("--seconds", type=float, default=3.0, help="iperf3 -t per sample")
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--modes", default="direct,vxlan,ipip")
    ap.add_argument("--streams", default="1,4", help="iperf3 -P values")
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        ap.error(f"--modes: unknown {', '.join(sorted(unknown))} (use {', '.join(MODES)})")
    args.streams = [int(s) for s in args.streams.split(",") if s]
    return args


Measure = tuple[Key, Callable[[], float]]


def _baseline_jobs(pairs: list[Pair], streams: list[int], seconds: float) -> list[Measure]:
    return [
        (
            (p.label, "-", 0, s),
            functools.partial(iperf.measure, p.client, p.server_ip, seconds=seconds, streams=s),
        )
        for p in pairs
        for s in streams
    ]


def _rounds(jobs: list[Measure], runs: int, samples: dict[Key, list[float]]) -> None:
    for r in range(runs):
        order = jobs if r % 2 == 0 else list(reversed(jobs))
        for key, fn in order:
            samples[key].append(fn())
        print(f"    round {r + 1}/{runs} done", flush=True)


def _lab_mode(
    mode: str,
    args: argparse.Namespace,
    base_jobs: list[Measure],
    samples: dict[Key, list[float]],
    notes: dict[str, object],
) -> str:
    """Measure one lab mode; "" or why it was skipped."""
    from bench.throughput import labcases

    print(f"== lab {mode}: a 2-node lab with {MODES[mode]}", flush=True)
    case = labcases.start(mode, dict(MODES[mode]))
    try:
        problem = labcases.path_problem(case)
        if problem:
            return f"lab {mode}: {problem}; not measured"
        for policies in (0, args.policies):
            if policies:
                took = labcases.apply_policies(case, policies)
                notes[f"lab {mode}: {policies} policies programmed on both nodes in"] = (
                    f"{took:.1f}s"
                )
                print(f"  {policies} policies programmed in {took:.1f}s", flush=True)
            groups = {"": f"lab {mode}"}
            if policies:  # the no-policy path in the same rounds: pods no policy selects
                groups["u-"] = f"lab {mode} unselected"
            jobs: list[Measure] = [
                (
                    (path, place, policies, s),
                    functools.partial(iperf.measure, client, ip, seconds=args.seconds, streams=s),
                )
                for group, path in groups.items()
                for place, (client, ip) in case.paths(group).items()
                for s in args.streams
            ]
            print(f"  measuring with {policies} policies", flush=True)
            _rounds(base_jobs + jobs, args.runs, samples)
        return ""
    finally:
        labcases.stop(case)


def main() -> None:
    args = _args()
    if shutil.which("iperf3") is None:
        sys.exit("bench.throughput: iperf3 is not installed (make install adds the Debian package)")
    root = tempfile.mkdtemp(prefix="tputbench")
    os.environ["CALICO_LAB_ROOT"] = root
    samples: dict[Key, list[float]] = defaultdict(list)
    skipped: list[str] = []
    notes: dict[str, object] = {"loadavg_start": os.getloadavg()}
    baselines = Baselines()
    servers: list[iperf.Server] = []
    started = time.monotonic()
    try:
        pairs = [
            baselines.veth(),
            baselines.vxlan(),
            baselines.routed(),
            baselines.routed(conntrack=True),
            baselines.bridged(),
            baselines.bridged(vxlan=True),
        ]
        ipip = baselines.ipip()
        if isinstance(ipip, str):
            skipped.append(f"kernel ipip baseline: {ipip}")
            if "ipip" in args.modes:
                args.modes.remove("ipip")
                skipped.append(f"lab ipip: {ipip}")
        else:
            pairs.append(ipip)
        servers = [iperf.Server(p.server) for p in pairs]
        base_jobs = _baseline_jobs(pairs, args.streams, args.seconds)
        for reason in skipped:
            print(f"skipped: {reason}", flush=True)
        for mode in args.modes:
            reason = _lab_mode(mode, args, base_jobs, samples, notes)
            if reason:
                print(f"  skipped: {reason}", flush=True)
                skipped.append(reason)
    finally:
        for server in servers:
            server.stop()
        baselines.close()
        shutil.rmtree(root, ignore_errors=True)
    notes["wall_seconds"] = round(time.monotonic() - started, 1)
    report.print_figures(samples, args.policies, skipped)
    settings = {
        "runs": args.runs,
        "seconds": args.seconds,
        "policies": args.policies,
        "modes": {m: MODES[m] for m in MODES},
        "streams": args.streams,
        "lab": "2 nodes, 1 subnet, shipped defaults except the mode's flag",
    }
    path = report.write_json(
        samples, policies=args.policies, settings=settings, skipped=skipped, notes=notes
    )
    print(f"\nfigures written to {path}")
    rec = results.Recorder("throughput")
    rec.fact("per_run_file", str(path.relative_to(report.RESULTS_DIR.parents[1])))
    rec.fact("skipped", skipped)
    report.record(rec, samples, args.policies)
    rec.save()


if __name__ == "__main__":
    main()

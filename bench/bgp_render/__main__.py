"""Benchmark: what calico-bgp pays per datastore change, by cluster size.

For a full mesh of N nodes (each with a block) this measures, in one run:
  * build   - model.build over N Node resources (pure Python);
  * render  - jinja2 render of that model;
  * check   - ``bird -p -c`` on the rendered file (the validation every render goes through);
  * baseline - ``bird -p -c`` on a minimal config (BIRD's own start-up cost, the floor of "check").
Prints medians and p90 in ms and the ratios (build+render)/check and check/baseline.

    .venv/bin/python -m bench.bgp_render [--sizes 10,100,500] [--repeat 15]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import results
from calico.bgp import model, render


def nodes(n: int) -> dict[str, Any]:
    return {
        f"node{i}": {
            "metadata": {"name": f"node{i}"},
            "spec": {"bgp": {"ipv4Address": f"10.{i // 250}.{i % 250}.1/16"}},
        }
        for i in range(n)
    }


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def stats(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(len(xs) * 0.9))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,500")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bgp-") as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, tmp: Path) -> None:
    minimal = tmp / "minimal.cfg"
    minimal.write_text("router id 10.0.0.1;\nprotocol device {}\n")
    base = timed(lambda: render.validate(minimal), args.repeat)
    bm, bp = stats(base)
    print(f"baseline bird -p (minimal config): median {bm:.2f} ms  p90 {bp:.2f} ms")
    print(
        f"{'nodes':>6} {'build':>16} {'render':>16} {'bird -p':>16} {'(b+r)/check':>12} "
        f"{'check/base':>11}"
    )
    rec = results.Recorder("bgp_render")
    pools = [{"spec": {"cidr": "192.168.0.0/16"}}]
    aff = {"192.168.0.0/26": {"state": "confirmed"}}
    for n in (int(s) for s in args.sizes.split(",")):
        ns = nodes(n)
        b = timed(functools.partial(model.build, "node0", nodes=ns, pools=pools, affinities=aff),
                  args.repeat)  # fmt: skip
        m = model.build("node0", nodes=ns, pools=pools, affinities=aff)
        r = timed(functools.partial(render.render, m), args.repeat)
        path = tmp / f"mesh{n}.cfg"
        path.write_text(render.render(m))
        c = timed(functools.partial(render.validate, path), args.repeat)
        (b50, b90), (r50, r90), (c50, c90) = stats(b), stats(r), stats(c)
        print(
            f"{n:>6} {b50:7.2f}/{b90:7.2f} {r50:7.2f}/{r90:7.2f} {c50:7.2f}/{c90:7.2f} "
            f"{(b50 + r50) / c50:12.2f} {c50 / bm:11.2f}"
        )
        rec.figure(
            f"build_render_{n}", title=f"build + render, {n}-node mesh", unit="ms",
            samples=[x + y for x, y in zip(b, r, strict=True)], baseline=c,
            baseline_title="bird -p on the rendered file", doc="docs/design/bgp.md",
        )  # fmt: skip
        rec.figure(f"check_{n}", title=f"bird -p, {n}-node mesh", unit="ms", samples=c,
                   baseline=base, baseline_title="bird -p on a minimal config")  # fmt: skip
    print("(cells: median/p90 ms)")
    rec.save()


if __name__ == "__main__":
    main()

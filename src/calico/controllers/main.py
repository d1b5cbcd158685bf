"""``calico-kube-controllers``: run the policy controller, or probe a running one.

    calico-kube-controllers [--kubeconfig PATH] [--listen HOST:PORT] [--workers N]
                            [--batch N] [--resync-period SECONDS]
    calico-kube-controllers check-health [--ready] [--url URL]

Environment, as Calico's kube-controllers reads it: ``KUBECONFIG`` (else the in-cluster service
account), ``ETCD_ENDPOINTS`` / ``ETCD_CA_CERT_FILE`` / ``ETCD_CERT_FILE`` / ``ETCD_KEY_FILE``,
``ENABLED_CONTROLLERS`` (default ``node,policy,namespace,serviceaccount,workloadendpoint``),
``LOG_LEVEL`` (default info), ``HEALTH_LISTEN`` (default ``127.0.0.1:9094``).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence

DEFAULT_LISTEN = "127.0.0.1:9094"


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"--listen {text!r}: expected HOST:PORT")
    return host, int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="calico-kube-controllers",
        description="Calico policy controller for Kubernetes (etcd mode)",
    )
    p.add_argument("command", nargs="?", default="run", choices=["run", "check-health"])
    # KUBECONFIG (its first file) else lightkube's default: in-cluster, then ~/.kube/config.
    kubeconfig = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or None
    p.add_argument("--kubeconfig", default=kubeconfig)
    p.add_argument(
        "--listen", type=_listen, default=_listen(os.environ.get("HEALTH_LISTEN") or DEFAULT_LISTEN)
    )
    p.add_argument("--workers", type=int, default=8)
    p.add_argument(
        "--batch", type=int, default=128, help="keys a worker reconciles (and writes) at once"
    )
    p.add_argument("--resync-period", type=float, default=300.0)
    p.add_argument("--ready", action="store_true", help="check-health: readiness, not liveness")
    p.add_argument("--url", default=None, help="check-health: base URL of the health server")
    return p


def check_health(url: str, ready: bool) -> int:
    path = "/readyz" if ready else "/healthz"
    try:
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=5) as resp:
            print(resp.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.read().decode() or exc, file=sys.stderr)
    except OSError as exc:
        print(f"calico-kube-controllers: {url}: {exc}", file=sys.stderr)
    return 1


def _tune_gc() -> None:
    """The cyclic garbage collector, tuned for a process that holds every watched object: what
    was imported never becomes garbage (frozen: no collection walks it again), and the youngest
    generation is collected every 10,000 allocations instead of 700. The objects are JSON trees
    without cycles, freed by reference counting; with the defaults a cold start of 7,000
    objects spent ~0.5 s of its ~1.7 s of CPU in ~500 collections, each holding every thread
    (measured: docs/design/k8s-controllers.md)."""
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-health":
        host, port = args.listen
        return check_health(args.url or f"http://{host}:{port}", args.ready)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per request otherwise

    from calico.controllers.manager import ControllerConfig, KubeControllers
    from calico.datastore import config as dsconfig

    try:
        enabled = os.environ.get(
            "ENABLED_CONTROLLERS", "node,policy,namespace,serviceaccount,workloadendpoint"
        )
        config = ControllerConfig(
            datastore=dsconfig.load(),
            kubeconfig=args.kubeconfig,
            controllers=tuple(c.strip() for c in enabled.split(",") if c.strip()),
            workers=max(1, args.workers),
            batch=max(1, args.batch),
            resync_period=max(1.0, args.resync_period),
            listen=args.listen,
        )
        config.kinds()
    except (ValueError, dsconfig.ConfigError) as exc:
        print(f"calico-kube-controllers: {exc}", file=sys.stderr)
        return 2
    _tune_gc()
    controller = KubeControllers(config)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    try:
        controller.start()
    except Exception as exc:
        print(
            f"calico-kube-controllers: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return 1
    logging.getLogger(__name__).info("started: %s", json.dumps(config.controllers))
    done.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m calico_lab.kubeapi``: the API server stand-in as a process (a Kubernetes-datastore
lab without a real kube-apiserver runs it in its core namespace; see calico_lab.kdd_server).

Serves until SIGTERM. Its objects live in memory only. With ``--compact-every S`` it forgets the
watch history every S seconds, as a real API server's etcd compaction does (a watch from an older
resourceVersion then gets 410 Gone and its client lists again).
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from calico_lab.kubeapi import tls
from calico_lab.kubeapi.server import FakeKube


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m calico_lab.kubeapi", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--cert", help="serving certificate (with --key): HTTPS")
    parser.add_argument("--key")
    parser.add_argument("--token", help="the bearer token every request must carry")
    parser.add_argument("--compact-every", type=float, default=300.0, help="seconds; 0: never")
    args = parser.parse_args(argv)
    fake = FakeKube(host=args.host, port=args.port, token=args.token)
    if args.cert and args.key:
        fake.tls_files = tls.TLSFiles(ca=Path(args.cert), cert=Path(args.cert), key=Path(args.key))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    fake.start()
    print(f"API server stand-in on {fake.url}", flush=True)
    while not stop.wait(args.compact_every or None):
        print(f"compacted at resourceVersion {fake.compact()}", flush=True)
    fake.stop()


if __name__ == "__main__":
    main()

"""Traffic between two lab pods for the Kubernetes bench: a verdict prober and a TCP stream.

- :class:`Prober`: ``bench/policy_latency/udp_prober.py`` run in the source pod's network
  namespace (``nsenter --net=/proc/<pid>/ns/net``): one UDP datagram every 2 ms from a fresh socket
  (a new conntrack flow each), answered by the destination's responder; a verdict is the first
  packet sent after a change that starts a run of 3 with the new outcome, as in
  ``bench.policy_latency``.
- :class:`Stream`: one TCP connection from the source pod to an echo server (a thread that entered
  the destination pod's namespace), a numbered line every 20 ms; the longest gap between echoes is
  how long the path was down.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import verdicts
from calico.lib import cmd, netns

PROBER = Path(__file__).resolve().parents[1] / "policy_latency" / "udp_prober.py"


class Prober:
    def __init__(self, src_netns: str, ip: str, port: int) -> None:
        argv = ["nsenter", f"--net={src_netns}", "--", sys.executable, "-I", str(PROBER), ip,
                str(port)]  # fmt: skip
        self.proc = cmd.start(argv, stdout=subprocess.PIPE, text=True)
        self.rows: list[tuple[float, bool]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t, ok = line.split()
            self.rows.append((float(t), ok == "1"))

    def first_after(self, t0: float, want: bool, *, timeout: float = 30.0, run: int = 3) -> float:
        """Seconds from ``t0`` to the first packet sent after it starting ``run`` with ``want``."""
        return verdicts.first_run_after(lambda: self.rows, t0, want, timeout=timeout, run=run)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Stream:
    def __init__(self, src_netns: str, dst_netns: str, dst_ip: str, port: int = 9000) -> None:
        self.src, self.dst, self.ip, self.port = src_netns, dst_netns, dst_ip, port
        self.echoes: list[float] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        listening = threading.Event()
        threading.Thread(target=self._serve, args=(listening,), daemon=True).start()
        if not listening.wait(10):
            raise RuntimeError("the echo server did not start")
        self.talker = threading.Thread(target=self._talk, daemon=True)
        self.talker.start()

    def _serve(self, listening: threading.Event) -> None:
        netns.enter_process(self.dst)
        with socket.create_server(("0.0.0.0", self.port)) as srv:
            listening.set()
            conn, _ = srv.accept()
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data)

    def _talk(self) -> None:
        try:
            netns.enter_process(self.src)
            with socket.create_connection((self.ip, self.port), timeout=300) as sock:
                reader = sock.makefile("r")
                for n in itertools.count():
                    if self.stop.is_set():
                        return
                    sock.sendall(f"{n}\n".encode())
                    if int(reader.readline()) != n:
                        raise RuntimeError(f"echo out of order at {n}")
                    self.echoes.append(time.monotonic())
                    time.sleep(0.02)
        except BaseException as exc:
            self.error = exc

    def gap_since(self, t0: float) -> float:
        """The longest time without an echo after ``t0`` (s)."""
        times = [t0, *(t for t in self.echoes if t > t0)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def close(self) -> None:
        self.stop.set()
        self.talker.join(310)
        if self.error is not None:
            raise RuntimeError(f"the TCP stream broke: {self.error!r}")

"""iperf3 in network namespaces: a server per destination, one client run per sample.

A server is ``iperf3 -s`` started in its namespace (its own session, killed by process group at
the end); a sample is ``iperf3 -c ADDR -t SECONDS -O 1 -P STREAMS -J`` in the source namespace,
whose JSON report gives the receiver's bits per second (the first second, TCP's slow start, is
omitted from the figure).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from calico.lib import cmd

PORT = 5201


class Server:
    """``iperf3 -s`` inside ``netns`` until :meth:`stop`."""

    def __init__(self, netns: str, *, port: int = PORT) -> None:
        self.netns = netns
        self.port = port
        self.proc = cmd.start(
            ["ip", "netns", "exec", netns, "iperf3", "-s", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_listening()

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            out = cmd.run_process(
                ["ip", "netns", "exec", self.netns, "ss", "-Hltn", f"sport = :{self.port}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            if out.strip():
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"iperf3 server in {self.netns} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def measure(
    client_netns: str, server_ip: str, *, seconds: float, streams: int, port: int = PORT
) -> float:
    """One iperf3 TCP run from ``client_netns`` to ``server_ip``: received Gbit/s."""
    argv = [
        "ip",
        "netns",
        "exec",
        client_netns,
        "iperf3",
        "-c",
        server_ip,
        "-p",
        str(port),
        "-t",
        str(seconds),
        "-O",
        "1",
        "-P",
        str(streams),
        "-J",
    ]
    proc = cmd.run_process(argv, capture_output=True, text=True, check=False, timeout=seconds + 30)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError(f"iperf3 {client_netns} -> {server_ip}: {proc.stderr.strip()}") from None
    if "error" in report:
        raise RuntimeError(f"iperf3 {client_netns} -> {server_ip}: {report['error']}")
    return float(report["end"]["sum_received"]["bits_per_second"]) / 1e9

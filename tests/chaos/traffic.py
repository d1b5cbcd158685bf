"""Live traffic during a fault: a continuous TCP stream and a continuous prober of a denied pair.

``Stream``: one TCP connection from a socket made in the client pod's namespace to a server made
in the server pod's namespace (sockets keep the namespace they were created in, so the threads
that drive them live anywhere). The client sends a numbered 256-byte chunk every ``interval``;
the server checks the sequence and notes when each chunk arrived. It reports bytes, whether the
connection survived (no reset, no EOF, no gap in the sequence) and the longest stall (the
largest gap between two arrivals).

``DeniedProber``: connects from a pod to a pod that policy denies it, again and again (a fresh
socket every ``interval``, 0.3 s timeout); any connection that completes is a packet wrongly
allowed. Run alongside an allowed control pair, so a prober that never connects because the
target is down is noticed (``control_ok``).
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from calico.lib.netns import NetnsExecutor

CHUNK = 256


def _socket_in(netns: str, fn: object, *args: object) -> socket.socket:
    ex = NetnsExecutor(netns)
    try:
        sock: socket.socket = ex.call(fn, *args)  # type: ignore[arg-type]
        return sock
    finally:
        ex.close()


@dataclass
class StreamResult:
    chunks: int
    survived: bool
    longest_stall: float
    error: str = ""


class Stream:
    def __init__(
        self, *, client_ns: str, server_ns: str, server_ip: str, port: int, interval: float = 0.02
    ) -> None:
        self.interval = interval
        self._listener = _socket_in(server_ns, socket.create_server, (server_ip, port))
        self._client = _socket_in(client_ns, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        self._client.settimeout(10)
        self._client.connect((server_ip, port))
        self._client.settimeout(None)  # a stalled path blocks the sender; TCP retransmits
        self._conn, _ = self._listener.accept()
        self._conn.settimeout(1.0)
        self._stop = threading.Event()
        self._stop_send = threading.Event()
        self.sent = 0
        self.received = 0
        self.arrivals: list[float] = []
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._recv, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _send(self) -> None:
        payload = b"x" * (CHUNK - 8)
        while not self._stop_send.is_set():
            try:
                self._client.sendall(struct.pack("!Q", self.sent) + payload)
            except OSError as exc:
                self.errors.append(f"send: {exc}")
                return
            self.sent += 1
            time.sleep(self.interval)

    def _recv(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                data = self._conn.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                self.errors.append(f"recv: {exc}")
                return
            if not data:
                if not self._stop.is_set():
                    self.errors.append("recv: the connection was closed")
                return
            buf += data
            now = time.monotonic()
            while len(buf) >= CHUNK:
                (seq,) = struct.unpack("!Q", buf[:8])
                if seq != self.received:
                    self.errors.append(f"sequence {seq} where {self.received} was due")
                    return
                self.received += 1
                self.arrivals.append(now)
                buf = buf[CHUNK:]

    def longest_stall(self) -> float:
        times = self.arrivals
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def received_after(self, t: float) -> int:
        return sum(1 for a in self.arrivals if a > t)

    def stop(self) -> StreamResult:
        # stop sending, let what is in flight arrive, then stop reading
        self._stop_send.set()
        self._threads[0].join(3)
        deadline = time.monotonic() + 5
        while self.received < self.sent and time.monotonic() < deadline and not self.errors:
            time.sleep(0.05)
        self._stop.set()
        for t in self._threads:
            t.join(3)
        for s in (self._client, self._conn, self._listener):
            s.close()
        survived = not self.errors and self.received == self.sent
        return StreamResult(self.received, survived, self.longest_stall(), "; ".join(self.errors))


@dataclass
class ProbeCounts:
    attempts: int = 0
    connected: int = 0
    first_connected_at: list[float] = field(default_factory=list)


class DeniedProber:
    """Probe ``dst_ip:port`` from ``src_ns`` every ``interval`` until stopped."""

    def __init__(self, *, src_ns: str, dst_ip: str, port: int, interval: float = 0.05) -> None:
        self.dst = (dst_ip, port)
        self.interval = interval
        self.counts = ProbeCounts()
        self._ex = NetnsExecutor(src_ns)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _attempt(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.3)
            try:
                s.connect(self.dst)
            except OSError:
                return False
            return True

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = self._ex.call(self._attempt)
            self.counts.attempts += 1
            if ok:
                self.counts.connected += 1
                self.counts.first_connected_at.append(time.monotonic())
            time.sleep(self.interval)

    def stop(self) -> ProbeCounts:
        self._stop.set()
        self._thread.join(5)
        self._ex.close()
        return self.counts


def connects(src_ns: str, dst_ip: str, port: int, timeout: float = 1.0) -> bool:
    """One TCP connection attempt from ``src_ns`` (the control for a prober)."""

    def attempt() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect((dst_ip, port))
            except OSError:
                return False
            return True

    ex = NetnsExecutor(src_ns)
    try:
        return ex.call(attempt)
    finally:
        ex.close()

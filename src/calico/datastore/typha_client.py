"""TyphaSyncer: the datastore syncer's interface, fed by a Typha instead of the datastore.

A drop-in for :class:`calico.datastore.syncer.Syncer` (``start``/``stop``/``join``/``run``,
callbacks ``on_updates(list[Update])`` and ``on_status(SyncStatus)`` on its own thread, the same
contract: every (key, revision) once, WaitForDatastore -> ResyncInProgress -> InSync once)::

    addresses() ──> connect (TCP, TLS when configured: CA + CN/URI SAN) ──> Hello ──> Welcome
        ▲                                                                         │
        │   Typha gone, refused us, silent > read_timeout, or bad frame:          ▼
        └── next address (backoff after a full round) <──────── frames -> ClientState -> callbacks

Which Typha: ``addresses()`` is asked before every round (a fixed list, or a Kubernetes Service's
endpoints, see typha_discovery); the first try starts at a random one (spreading agents over the
Typhas), a failed one is left for the next. What a new connection's snapshot means for what was
already delivered is :class:`calico.datastore.typha_state.ClientState`'s business.

While a callback blocks (the agent's queue is full) nothing is read: the kernel's buffers fill
and Typha, not the agent, decides when the agent is too far behind (it then drops it; we
reconnect and resync).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence

from calico.datastore import typha_tls
from calico.datastore import typha_wire as wire
from calico.datastore.syncer import SyncStatus, Update
from calico.datastore.typha_state import ClientState, Output

logger = logging.getLogger(__name__)

DEFAULT_PORT = 5473
POLL = 0.5  # how often a blocked read looks at stop() and the read deadline


class TyphaRefused(Exception):
    """The server refused the connection (it said why)."""


def parse_address(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or a bare host (port 5473); ValueError naming the entry."""
    text = text.strip()
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not host:port")
        port = rest[1:] or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text:  # a bare IPv6 address (with a port it needs brackets)
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            raise ValueError(f"{text!r} is not host:port ([v6]:port for IPv6)") from None
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    return host, int(port)


def parse_addresses(text: str) -> list[str]:
    """A comma-separated ``FELIX_TYPHAADDR`` value, each entry checked."""
    out = [a.strip() for a in text.split(",") if a.strip()]
    for a in out:
        parse_address(a)
    return out


class TyphaSyncer:
    def __init__(
        self,
        addresses: Callable[[], Sequence[str]],
        *,
        node: str,
        on_updates: Callable[[list[Update]], None],
        on_status: Callable[[SyncStatus], None] = lambda s: None,
        syncer_type: str = "felix",
        prefixes: Sequence[str] = (),
        tls: typha_tls.TLSSettings | None = None,
        read_timeout: float = 30.0,
        write_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        retry_delay: float = 0.2,
        max_retry_delay: float = 5.0,
        compression: bool = True,
        shuffle: bool = True,
    ) -> None:
        self._addresses = addresses
        self._node = node
        self._on_updates = on_updates
        self._on_status = on_status
        self._syncer_type = syncer_type
        self._tls = tls if tls is not None and tls.enabled else None
        self._ctx = typha_tls.client_context(self._tls) if self._tls else None
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._compression = ("zlib",) if compression else ()
        self._next = -1 if shuffle else 0  # index of the next address to try (-1: random)
        self.state = ClientState(prefixes)
        self.stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.current: str | None = None  # the address of the Typha serving us now
        self.server: str = ""  # its name (Welcome)
        # metrics
        self.connects = 0
        self.disconnects = 0
        self.bytes_received = 0
        self.last_error = ""

    # ---- lifecycle (as Syncer) ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="typha-client", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def run(self) -> None:
        self._deliver(self.state.start())
        delay = self._retry_delay
        failed_in_a_row = 0
        while not self.stopped.is_set():
            addrs = self._resolve()
            if addrs:
                if self._next < 0:
                    self._next = random.randrange(len(addrs))
                addr = addrs[self._next % len(addrs)]
                welcomed = self._session(addr)
                if welcomed:
                    failed_in_a_row, delay = 0, self._retry_delay
                else:
                    failed_in_a_row += 1
                self._next = (self._next + 1) % len(addrs)
                if self.stopped.is_set() or failed_in_a_row < len(addrs):
                    continue  # try the next Typha at once
            self.stopped.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self._max_retry_delay)
            failed_in_a_row = 0

    def _resolve(self) -> list[str]:
        try:
            return list(self._addresses())
        except Exception as exc:  # discovery failing is like every Typha being down: retry
            self.last_error = f"finding Typha: {exc}"
            logger.warning("cannot find a Typha: %s", exc)
            return []

    def close_connection(self) -> None:
        """Break the current connection (tests: as if the network dropped it)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ---- one connection -----------------------------------------------------------------------

    def _session(self, addr: str) -> bool:
        """Serve from ``addr`` until it fails or we stop; True if it welcomed us."""
        welcomed = False
        try:
            sock = self._connect(addr)
        except (OSError, ValueError) as exc:
            self._failed(addr, exc, welcomed)
            return False
        self._sock = sock
        try:
            self._send(
                sock, wire.Hello(self._node, self._syncer_type, compression=self._compression)
            )
            reader = wire.FrameReader(wire.MAX_SERVER_FRAME)
            last = time.monotonic()
            while not self.stopped.is_set():
                try:
                    data = sock.recv(1 << 20)
                except TimeoutError:
                    if time.monotonic() - last > self._read_timeout:
                        raise TimeoutError(
                            f"nothing from Typha for {self._read_timeout:.0f}s"
                        ) from None
                    continue
                if not data:
                    raise ConnectionError("Typha closed the connection")
                last = time.monotonic()
                self.bytes_received += len(data)
                reader.feed(data)
                for payload in reader.frames():
                    welcomed = self._handle(sock, addr, wire.decode_server(payload), welcomed)
        except (OSError, wire.WireError, TyphaRefused) as exc:
            self._failed(addr, exc, welcomed)
        finally:
            self._sock = None
            self.current = None
            sock.close()
        return welcomed

    def _failed(self, addr: str, exc: Exception, welcomed: bool) -> None:
        self.last_error = f"{addr}: {type(exc).__name__}: {exc}"
        if welcomed:
            self.disconnects += 1
            logger.warning("connection to Typha %s lost (%s); trying the next", addr, exc)
            self._deliver(self.state.disconnected())
        else:
            logger.warning("cannot use Typha %s: %s", addr, exc)

    def _connect(self, addr: str) -> socket.socket:
        host, port = parse_address(addr)
        sock = socket.create_connection((host, port), self._connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if self._ctx is not None and self._tls is not None:
                sock.settimeout(self._connect_timeout)
                sock = self._ctx.wrap_socket(sock)
                problem = typha_tls.peer_problem(sock.getpeercert(), self._tls)
                if problem:
                    raise ssl.SSLError(f"Typha's {problem}")
            sock.settimeout(POLL)
        except BaseException:
            sock.close()
            raise
        return sock

    def _send(self, sock: socket.socket, msg: wire.Hello | wire.Pong) -> None:
        sock.settimeout(self._write_timeout)
        try:
            sock.sendall(wire.encode(msg))
        finally:
            sock.settimeout(POLL)

    def _handle(self, sock: socket.socket, addr: str, msg: object, welcomed: bool) -> bool:
        if isinstance(msg, wire.Refused):
            raise TyphaRefused(msg.reason)
        if not welcomed:
            if not isinstance(msg, wire.Welcome):
                raise wire.WireError(f"expected a welcome, got {type(msg).__name__}")
            if msg.syncer != self._syncer_type:
                raise wire.WireError(f"asked for syncer {self._syncer_type}, got {msg.syncer}")
            self.connects += 1
            self.current, self.server = addr, msg.server
            logger.info("connected to Typha %s (%s)", addr, msg.server)
            self._deliver(self.state.connected())
            return True
        if isinstance(msg, wire.Updates):
            self._deliver(self.state.on_updates(msg.entries))
        elif isinstance(msg, wire.Status):
            self._deliver(self.state.on_status(msg.status, msg.revision))
        elif isinstance(msg, wire.Ping):
            self._send(sock, wire.Pong(msg.ts))
            self._deliver(self.state.on_progress(msg.revision))
        else:
            raise wire.WireError(f"unexpected {type(msg).__name__}")
        return True

    def _deliver(self, out: Output) -> None:
        if out.updates:
            self._on_updates(out.updates)
        for status in out.statuses:
            self._on_status(status)


__all__ = ["DEFAULT_PORT", "TyphaRefused", "TyphaSyncer", "parse_address", "parse_addresses"]

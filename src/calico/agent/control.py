"""The agent's control socket: a registry of methods and the server that answers them.

Protocol (JSON lines, addresses, the client): :mod:`calico.lib.control`; the contract is in
docs/design/agent.md ("Control socket"). Other modules add methods to the registry::

    registry.register("explain", handler)                       # runs on the agent's loop
    registry.register("flows", gen, on_loop=False, stream=True)  # runs in the connection's thread

* ``on_loop=True`` (the default): the handler runs on the agent's main thread between two loop
  turns, right after an apply, so it sees the calculation graph and the dataplane exactly as
  they were programmed and never races the loop (the loop owns that state; nothing is locked).
  The connection's thread hands the call over (:class:`LoopCalls`), wakes the loop and waits.
* ``on_loop=False``: the handler runs in the connection's own thread; it must only touch
  thread-safe state. Streaming handlers are of this kind: a generator that yields one result per
  line; yielding ``None`` writes nothing and lets the server notice a client that went away
  (the generator is then closed), so a ``--follow`` stream with nothing to say still ends.
* ``read_only=False`` methods are refused on the TCP listener (only the Unix socket, whose
  file is root's, may change anything); every method today is read-only.

A handler raises :class:`MethodError` (or ``ValueError``) for bad params; its message is the
answer's ``error``. Any other exception is logged with its traceback and answered as an internal
error: a diagnostic call must never end the agent that enforces policy.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calico.lib import control as wire

logger = logging.getLogger(__name__)

LOOP_CALL_TIMEOUT = 30.0
Handler = Callable[[dict[str, Any]], Any]


class MethodError(Exception):
    """Bad params or a question the agent cannot answer; the message is sent back."""


@dataclass(frozen=True, slots=True)
class Method:
    handler: Handler
    on_loop: bool = True
    stream: bool = False
    read_only: bool = True


class Registry:
    def __init__(self) -> None:
        self._methods: dict[str, Method] = {}

    def register(
        self,
        name: str,
        handler: Handler,
        *,
        on_loop: bool = True,
        stream: bool = False,
        read_only: bool = True,
    ) -> None:
        if name in self._methods:
            raise ValueError(f"control method {name!r} is already registered")
        if stream and on_loop:
            raise ValueError(f"control method {name!r}: a stream runs in its connection's thread")
        self._methods[name] = Method(handler, on_loop, stream, read_only)

    def get(self, name: str) -> Method | None:
        return self._methods.get(name)

    def names(self) -> list[str]:
        return sorted(self._methods)


# ---- calls handed to the agent's loop ---------------------------------------------------------


class _Pending:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.cancelled = False
        self.result: Any = None
        self.error: BaseException | None = None


class LoopCalls:
    """Calls that must run on the agent's main thread: ``submit`` (any thread) queues one, wakes
    the loop and waits; the loop runs them in ``run_pending`` after its apply."""

    def __init__(self, wake: Callable[[], None] = lambda: None) -> None:
        self._wake = wake
        self._inbox: queue.SimpleQueue[_Pending] = queue.SimpleQueue()

    def submit(self, fn: Callable[[], Any], *, timeout: float = LOOP_CALL_TIMEOUT) -> Any:
        call = _Pending(fn)
        self._inbox.put(call)
        self._wake()
        if not call.done.wait(timeout):
            call.cancelled = True
            raise MethodError(f"the agent's loop did not take the call within {timeout:.0f} s")
        if call.error is not None:
            raise call.error
        return call.result

    def run_pending(self) -> int:
        """Run every queued call (on the loop's thread); how many ran."""
        ran = 0
        while True:
            try:
                call = self._inbox.get_nowait()
            except queue.Empty:
                return ran
            if call.cancelled:
                continue
            try:
                call.result = call.fn()
            except Exception as exc:
                call.error = exc
            call.done.set()
            ran += 1


# ---- the server ----------------------------------------------------------------------------


def _client_gone(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _Conn(socketserver.StreamRequestHandler):
    server: _UnixServer | _TCPServer

    def handle(self) -> None:
        owner = self.server.owner
        while True:
            line = self.rfile.readline(wire.MAX_REQUEST + 1)
            if not line:
                return
            if len(line) > wire.MAX_REQUEST:
                self._send({"error": f"request longer than {wire.MAX_REQUEST} bytes"})
                return
            if not owner.answer(line, self._send, self.request, remote=self.server.remote):
                return

    def _send(self, msg: dict[str, Any]) -> None:
        self.wfile.write(wire.encode(msg))
        self.wfile.flush()


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    owner: ControlServer
    remote = False


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ControlServer
    remote = True


class ControlServer:
    """Serves ``registry`` on a Unix socket at ``path`` and optionally on ``tcp`` (host, port)."""

    def __init__(
        self,
        registry: Registry,
        calls: LoopCalls,
        *,
        path: str,
        tcp: tuple[str, int] | None = None,
    ) -> None:
        self.registry = registry
        self.calls = calls
        self.path = path
        self.tcp = tcp
        self._servers: list[socketserver.BaseServer] = []
        self.tcp_bound: tuple[str, int] | None = None  # the listener's address once started
        registry.register("ping", lambda params: {"pid": os.getpid()}, on_loop=False)
        registry.register("methods", lambda params: registry.names(), on_loop=False)

    def start(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(self.path):
            os.unlink(self.path)  # a dead agent's socket (calico-node runs one agent per node)
        old = os.umask(0o177)
        path, fd = wire.short_path(self.path)
        try:
            unix = _UnixServer(path, _Conn)
        finally:
            os.umask(old)
            if fd is not None:
                os.close(fd)
        unix.owner = self
        self._run(unix, "control")
        logger.info("control socket: %s", self.path)
        if self.tcp is not None:
            tcp = _TCPServer(self.tcp, _Conn)
            tcp.owner = self
            host, port = tcp.server_address[:2]
            self.tcp_bound = (str(host), int(port))
            self._run(tcp, "control-tcp")
            logger.info("control listener: tcp://%s:%d", *self.tcp)

    def _run(self, server: socketserver.BaseServer, name: str) -> None:
        self._servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.1,), name=name, daemon=True).start()

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    # ---- one request ----------------------------------------------------------------------------

    def answer(
        self, line: bytes, send: Callable[[dict[str, Any]], None], sock: Any, *, remote: bool
    ) -> bool:
        """Answer one request line; False when the connection should end."""
        try:
            msg = wire.decode(line)
            name, params = msg.get("method"), msg.get("params") or {}
            if not isinstance(name, str) or not isinstance(params, dict):
                raise ValueError('expected {"method": NAME, "params": {...}}')
        except ValueError as exc:
            send({"error": f"bad request: {exc}"})
            return False
        method = self.registry.get(name)
        if method is None:
            send({"error": f"unknown method {name!r} (known: {', '.join(self.registry.names())})"})
            return True
        if remote and not method.read_only:
            send({"error": f"method {name!r} is served on the local socket only"})
            return True
        try:
            if method.stream:
                self._stream(name, method.handler(params), send, sock)
                return False
            if method.on_loop:
                result = self.calls.submit(lambda: method.handler(params))
            else:
                result = method.handler(params)
        except (MethodError, ValueError) as exc:
            send({"error": str(exc)})
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False
        except Exception as exc:
            logger.exception("control method %s failed", name)
            send({"error": f"internal error in {name}: {exc!r}"})
            return True
        send({"result": result})
        return True

    @staticmethod
    def _stream(
        name: str, items: Iterator[Any], send: Callable[[dict[str, Any]], None], sock: Any
    ) -> None:
        try:
            for item in items:
                if item is None:
                    if isinstance(sock, socket.socket) and _client_gone(sock):
                        return
                    continue
                send({"result": item})
            send({"end": True})
        except (BrokenPipeError, ConnectionResetError):
            return
        except (MethodError, ValueError) as exc:
            send({"error": str(exc)})
        except Exception as exc:
            logger.exception("control stream %s failed", name)
            send({"error": f"internal error in {name}: {exc!r}"})
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

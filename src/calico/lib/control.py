"""The agent's control protocol: wire format, addresses and a small client (stdlib only).

The policy agent (``calico-felix``) answers questions about what it has programmed on a Unix
socket, ``$CALICO_RUN_DIR/felix-control.sock`` (default ``/var/run/calico``), and, when
configured, on a TCP port (off by default). The server is ``calico.agent.control``; this module
is what a client (``calicoctl``, ``calico-lab``, tests) needs, and nothing else: it lives in
``calico.lib`` so the CLI can import it without the agent.

Wire format: UTF-8 JSON, one object per line (``\\n``-terminated)::

    client: {"method": "explain", "params": {...}}
    server: {"result": ...}                     (unary method: exactly one line)
        or  {"error": "what went wrong"}

A connection may carry several requests, one after another (one answer each). A *streaming*
method answers with any number of ``{"result": ...}`` lines, then ``{"end": true}`` when the
stream is finite, or keeps writing until the client closes the connection (``--follow``); an
``{"error": ...}`` line also ends a stream. Built-in methods: ``ping`` and ``methods``.

Addresses: a path (a Unix socket) or ``tcp://HOST:PORT``. :func:`resolve` finds the address of
a node's agent (see its docstring).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Generator, Iterator, Mapping
from typing import Any

SOCKET_NAME = "felix-control.sock"
DEFAULT_RUN_DIR = "/var/run/calico"
MAX_REQUEST = 1 << 20  # bytes in one request line (answers are not limited)
DEFAULT_TIMEOUT = 30.0
ENV_AGENTS = "CALICO_AGENTS"  # NODE=ADDR,... and/or one template with {node} / {node_ip}


class ControlError(Exception):
    """A control call failed (the message says where and why)."""


class Unreachable(ControlError):
    """No agent answered at the address (not running, wrong path, refused)."""


class RemoteError(ControlError):
    """The agent answered with an error."""


# ---- wire format ------------------------------------------------------------------------------


def encode(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a JSON line: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("a message must be a JSON object")
    return obj


def request(method: str, params: Mapping[str, Any] | None = None) -> bytes:
    return encode({"method": method, "params": dict(params or {})})


# ---- addresses ---------------------------------------------------------------------------------


def socket_path(env: Mapping[str, str] | None = None) -> str:
    """This node's agent socket: ``$CALICO_RUN_DIR/felix-control.sock``."""
    env = os.environ if env is None else env
    return os.path.join(env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR, SOCKET_NAME)


UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


def short_path(path: str) -> tuple[str, int | None]:
    """A Unix socket path the kernel accepts: ``path`` itself, or, when it is longer than
    ``sun_path``, ``/proc/self/fd/<fd>/<name>`` through an ``O_PATH`` descriptor of its
    directory (the caller closes the descriptor when done)."""
    if len(os.fsencode(path)) <= UNIX_PATH_MAX:
        return path, None
    head, name = os.path.split(path)
    fd = os.open(head or ".", os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{name}", fd


def _connect(address: str, timeout: float | None) -> socket.socket:
    if address.startswith("tcp://"):
        host, _, port = address[len("tcp://") :].rpartition(":")
        if not host or not port.isdigit():
            raise ControlError(f"agent address {address!r}: expected tcp://HOST:PORT")
        try:
            return socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        except OSError as exc:
            raise Unreachable(f"no agent answers at {address}: {exc.strerror or exc}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    fd = None
    try:
        path, fd = short_path(address)
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise Unreachable(f"no agent answers at {address}: {exc.strerror or exc}") from None
    finally:
        if fd is not None:
            os.close(fd)
    return sock


def parse_agents(text: str) -> tuple[dict[str, str], str | None]:
    """``CALICO_AGENTS``/``--agent`` values: ``NODE=ADDR`` entries and at most one template
    (an address holding ``{node}`` or ``{node_ip}``), comma-separated."""
    explicit: dict[str, str] = {}
    template: str | None = None
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        node, eq, addr = item.partition("=")
        if eq and node and addr and "{" not in node:
            explicit[node] = addr
        elif "{node" in item:
            template = item
        else:
            raise ControlError(
                f"agent address {item!r}: expected NODE=ADDRESS or a template with {{node}} "
                "or {node_ip} (ADDRESS: a socket path or tcp://HOST:PORT)"
            )
    return explicit, template


def resolve(
    node: str,
    *,
    local_node: str | None,
    agents: str = "",
    env: Mapping[str, str] | None = None,
    node_ip: str | None = None,
) -> str | None:
    """The control address of ``node``'s agent, or None when there is no way to reach it.

    In order: an explicit ``NODE=ADDR`` in ``agents`` (``--agent``) or ``$CALICO_AGENTS``; a
    template there (``/run/lab/{node}/felix-control.sock``, ``tcp://{node_ip}:9094``); this
    node's own socket when ``node`` is ``local_node``."""
    env = os.environ if env is None else env
    explicit, template = parse_agents(agents)
    env_explicit, env_template = parse_agents(env.get(ENV_AGENTS, ""))
    if node in explicit:
        return explicit[node]
    if node in env_explicit:
        return env_explicit[node]
    template = template or env_template
    if template and ("{node_ip}" not in template or node_ip):
        return template.replace("{node}", node).replace("{node_ip}", node_ip or "")
    if local_node is not None and node == local_node:
        return socket_path(env)
    return None


# ---- the client ----------------------------------------------------------------------------


def _lines(sock: socket.socket, address: str) -> Iterator[dict[str, Any]]:
    buf = b""
    while True:
        nl = buf.find(b"\n")
        if nl >= 0:
            line, buf = buf[:nl], buf[nl + 1 :]
            try:
                yield decode(line)
            except ValueError as exc:
                raise ControlError(f"agent at {address}: bad answer: {exc}") from None
            continue
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            raise ControlError(f"agent at {address}: no answer in time") from None
        except OSError as exc:
            raise ControlError(f"agent at {address}: {exc.strerror or exc}") from None
        if not chunk:
            raise ControlError(f"agent at {address} closed the connection without an answer")
        buf += chunk


def _result(msg: dict[str, Any], address: str) -> Any:
    if "error" in msg:
        raise RemoteError(str(msg["error"]))
    if "result" not in msg:
        raise ControlError(f"agent at {address}: answer without result or error: {msg}")
    return msg["result"]


def call(
    address: str,
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Any:
    """One unary call; raises Unreachable, RemoteError (the agent's message) or ControlError."""
    with _connect(address, timeout) as sock:
        try:
            sock.sendall(request(method, params))
        except OSError as exc:
            raise ControlError(f"agent at {address}: {exc.strerror or exc}") from None
        return _result(next(_lines(sock, address)), address)


def stream(
    address: str,
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = None,
) -> Generator[Any, None, None]:
    """A streaming call: yields each result until the agent ends the stream; closing the
    generator closes the connection (which is how a ``--follow`` stream is stopped)."""
    with _connect(address, timeout) as sock:
        try:
            sock.sendall(request(method, params))
        except OSError as exc:
            raise ControlError(f"agent at {address}: {exc.strerror or exc}") from None
        for msg in _lines(sock, address):
            if msg.get("end"):
                return
            yield _result(msg, address)

"""The control socket: registry, JSON-lines protocol, loop calls, streams, errors, the client."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calico.agent import control
from calico.lib import control as wire


class Loop:
    """A stand-in for the agent's loop: a thread running the queued calls when woken."""

    def __init__(self) -> None:
        self.woken = threading.Event()
        self.calls = control.LoopCalls(wake=self.woken.set)
        self.thread_ids: list[int] = []
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            if self.woken.wait(0.05):
                self.woken.clear()
                self.calls.run_pending()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[control.ControlServer, Loop, str]]:
    loop = Loop()
    registry = control.Registry()
    server = control.ControlServer(registry, loop.calls, path=str(tmp_path / "felix-control.sock"))
    yield server, loop, server.path
    server.close()
    loop.stop = True


def _on_loop(loop: Loop) -> Any:
    def handler(params: dict[str, Any]) -> Any:
        loop.thread_ids.append(threading.get_ident())
        return {"echo": params}

    return handler


def test_unary_methods_run_on_the_loop_and_builtins_answer(served: Any) -> None:
    server, loop, path = served
    server.registry.register("echo", _on_loop(loop))
    server.start()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert wire.call(path, "echo", {"x": 1}) == {"echo": {"x": 1}}
    assert loop.thread_ids == [loop.thread.ident]
    assert wire.call(path, "ping")["pid"] == os.getpid()
    assert wire.call(path, "methods") == ["echo", "methods", "ping"]


def test_several_requests_on_one_connection_and_errors(served: Any) -> None:
    server, loop, path = served

    def bad(params: dict[str, Any]) -> Any:
        raise control.MethodError(f"no endpoint {params['name']!r}")

    def broken(params: dict[str, Any]) -> Any:
        raise KeyError("oops")

    server.registry.register("bad", bad)
    server.registry.register("broken", broken, on_loop=False)
    server.registry.register("echo", _on_loop(loop))
    server.start()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        f = sock.makefile("rwb")
        answers = []
        for method, params in (("bad", {"name": "x"}), ("nope", {}), ("broken", {}),
                               ("echo", {"y": 2})):  # fmt: skip
            f.write(wire.request(method, params))
            f.flush()
            answers.append(wire.decode(f.readline()))
    assert answers[0] == {"error": "no endpoint 'x'"}
    assert answers[1]["error"].startswith("unknown method 'nope' (known: bad, broken, echo,")
    assert answers[2]["error"] == "internal error in broken: KeyError('oops')"
    assert answers[3] == {"result": {"echo": {"y": 2}}}
    with pytest.raises(wire.RemoteError, match="no endpoint 'z'"):
        wire.call(path, "bad", {"name": "z"})


def test_a_bad_request_line_is_answered_and_the_connection_closed(served: Any) -> None:
    server, _, path = served
    server.start()
    for raw in (b"not json\n", b"[1]\n", b'{"method": 3}\n', b"x" * (wire.MAX_REQUEST + 5)):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            sock.sendall(raw if raw.endswith(b"\n") else raw + b"\n")
            f = sock.makefile("rb")
            answer = wire.decode(f.readline())
            assert "error" in answer, raw[:20]
            assert f.readline() == b""  # closed


def test_streams_end_and_follow_stops_when_the_client_goes(served: Any) -> None:
    server, _, path = served
    closed = threading.Event()

    def finite(params: dict[str, Any]) -> Iterator[Any]:
        yield from range(params["n"])

    def follow(params: dict[str, Any]) -> Iterator[Any]:
        try:
            yield "first"
            while True:
                time.sleep(0.01)
                yield None  # nothing new
        finally:
            closed.set()

    def failing(params: dict[str, Any]) -> Iterator[Any]:
        yield 1
        raise control.MethodError("the log is gone")

    server.registry.register("finite", finite, on_loop=False, stream=True)
    server.registry.register("follow", follow, on_loop=False, stream=True)
    server.registry.register("failing", failing, on_loop=False, stream=True)
    server.start()
    assert list(wire.stream(path, "finite", {"n": 3})) == [0, 1, 2]
    items = wire.stream(path, "follow")
    assert next(items) == "first"
    items.close()  # the client goes away
    assert closed.wait(5), "the server did not notice the client leaving"
    got = wire.stream(path, "failing")
    assert next(got) == 1
    with pytest.raises(wire.RemoteError, match="the log is gone"):
        next(got)


def test_registry_refuses_duplicates_and_loop_streams() -> None:
    registry = control.Registry()
    registry.register("a", lambda p: 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", lambda p: 2)
    with pytest.raises(ValueError, match="connection's thread"):
        registry.register("s", lambda p: iter(()), stream=True)


def test_a_loop_that_never_turns_times_out_and_the_call_is_dropped() -> None:
    calls = control.LoopCalls()
    ran: list[int] = []
    with pytest.raises(control.MethodError, match="did not take the call within 0 s"):
        calls.submit(lambda: ran.append(1), timeout=0.05)
    assert calls.run_pending() == 0
    assert ran == []


def test_long_socket_paths_and_a_dead_agents_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = str(deep / wire.SOCKET_NAME)
    assert len(path) > wire.UNIX_PATH_MAX
    server = control.ControlServer(control.Registry(), control.LoopCalls(), path=path)
    server.start()
    try:
        assert wire.call(path, "ping")["pid"] == os.getpid()
    finally:
        server.close()
    assert not os.path.exists(path)
    # a socket file nobody serves (an agent that died): unreachable, then replaced by a new agent
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(tmp_path / "s.sock"))
    with pytest.raises(wire.Unreachable, match="no agent answers at"):
        wire.call(str(tmp_path / "s.sock"), "ping")
    server = control.ControlServer(
        control.Registry(), control.LoopCalls(), path=str(tmp_path / "s.sock")
    )
    server.start()
    try:
        assert wire.call(str(tmp_path / "s.sock"), "ping")
    finally:
        server.close()


def test_resolve_agent_addresses() -> None:
    env = {"CALICO_RUN_DIR": "/run/x"}
    assert wire.resolve("n1", local_node="n1", env=env) == "/run/x/felix-control.sock"
    assert wire.resolve("n2", local_node="n1", env=env) is None
    agents = "n2=/a/n2.sock, /lab/{node}/felix-control.sock"
    assert wire.resolve("n2", local_node="n1", agents=agents, env=env) == "/a/n2.sock"
    assert wire.resolve("n3", local_node="n1", agents=agents, env=env) == (
        "/lab/n3/felix-control.sock"
    )
    env2 = {**env, wire.ENV_AGENTS: "tcp://{node_ip}:9094"}
    assert wire.resolve("n3", local_node="n1", env=env2, node_ip="10.0.0.3") == (
        "tcp://10.0.0.3:9094"
    )
    assert wire.resolve("n1", local_node="n1", env=env2) == "/run/x/felix-control.sock"
    with pytest.raises(wire.ControlError, match="expected NODE=ADDRESS"):
        wire.resolve("n1", local_node=None, agents="nonsense", env=env)

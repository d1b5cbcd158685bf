"""The compiled launcher (launcher.c): fastpath's wire protocol, and the exact fallback contract.

A real socket server in a thread plays the CNI server with chosen replies; the fallback the
launcher execs is a probe script that records its argv, environment and stdin bytes (the real
Python fallback runs in tests/integration/cni).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from calico.cni import install, server

pytestmark = pytest.mark.skipif(install.compiler() is None, reason="no C compiler")

PROBE = """#!{python} -IS
import json, os, sys
data = sys.stdin.buffer.read()
with open({report!r}, "w") as f:
    json.dump({{"argv": sys.argv[1:], "env": dict(os.environ), "stdin": data.hex()}}, f)
sys.stdout.write("from-fallback")
sys.exit(42)
"""
ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "CNI_COMMAND": "ADD", "CNI_ARGS": "a=b;c="}


@dataclass
class Fake:
    """What the fake CNI server answers and what it received."""

    reply: bytes = b"FALLBACK\n"
    requests: list[bytes] = field(default_factory=list)
    roots: list[list[tuple[int, int]]] = field(default_factory=list)  # (dev, ino) of fds received


@dataclass
class Setup:
    bin_dir: Path
    sock: Path
    report: Path
    fake: Fake
    srv: socketserver.UnixStreamServer | None = None

    def listen(self) -> None:
        fake = self.fake

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                first, fds, _, _ = socket.recv_fds(self.request, 65536, 4)
                fake.roots.append([(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in fds])
                for fd in fds:
                    os.close(fd)
                chunks = [first]
                while chunk := self.request.recv(65536):
                    chunks.append(chunk)
                fake.requests.append(b"".join(chunks))
                self.request.sendall(fake.reply)

        class Srv(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.srv = Srv(str(self.sock), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def run(
        self, data: bytes, plugin: str = "calico", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(self.bin_dir / plugin), "arg1", "arg 2"],
            input=data,
            env=env or ENV,
            capture_output=True,
            timeout=30,
            check=False,
        )

    def fallback_saw(self) -> dict[str, object]:
        seen: dict[str, object] = json.loads(self.report.read_text())
        self.report.unlink()
        return seen


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sock = tmp_path / "cni-{netns}.sock"
    exe = tmp_path / "launcher"
    cc = install.compiler()
    assert cc is not None
    install.compile_launcher(exe, socket_path=str(sock), py_dir=str(bin_dir), cc=cc)
    report = tmp_path / "fallback.json"
    for name in install.PLUGINS:
        shutil.copy(exe, bin_dir / name)
        probe = bin_dir / install.fallback_name(name)
        probe.write_text(PROBE.format(python=sys.executable, report=str(report)))
        probe.chmod(0o755)
    ino = str(os.stat("/proc/self/ns/net").st_ino)
    s = Setup(bin_dir, Path(str(sock).replace("{netns}", ino)), report, Fake())
    yield s
    if s.srv is not None:
        s.srv.shutdown()
        s.srv.server_close()


def test_compiles_cleanly_with_strict_warnings(tmp_path: Path) -> None:
    cc = install.compiler()
    assert cc is not None
    proc = subprocess.run(
        [cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror",
         '-DCALICO_PY_DIR="/x"', "-o", str(tmp_path / "l"), str(install.LAUNCHER_C)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (0, "")


def test_served_call_passes_exit_code_stdout_and_stderr(setup: Setup) -> None:
    setup.listen()
    setup.fake.reply = b'1\n21\n{"code": 7, "msg": 1}mtu: bad\x00value\n'
    data = b'{"cniVersion": "1.0.0"}'
    r = setup.run(data, env={**ENV, "CALICO_PLUGIN": "forged"})
    assert (r.returncode, r.stdout, r.stderr) == (
        1,
        b'{"code": 7, "msg": 1}',
        b"mtu: bad\x00value\n",
    )
    assert not setup.report.exists()  # no fallback
    # the request is what fastpath sends: the environment, our plugin and namespace, then stdin
    env, stdin = server.parse_request(setup.fake.requests[0])
    assert stdin == data
    ino = str(server.own_netns_inode())
    assert env == {**ENV, "CALICO_PLUGIN": "calico", "CALICO_NETNS_INO": ino}
    root = os.stat("/")
    assert setup.fake.roots[0] == [(root.st_dev, root.st_ino)]  # our root, as one SCM_RIGHTS fd
    setup.fake.reply = b"0\n6\nipam\n\x00"
    r = setup.run(b"{}", plugin="calico-ipam")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"ipam\n\x00", b"")
    assert server.parse_request(setup.fake.requests[1])[0]["CALICO_PLUGIN"] == "calico-ipam"
    setup.fake.reply = b"300\n0\n"  # exit codes wrap as sys.exit's do
    assert setup.run(b"{}").returncode == 300 & 0xFF


def test_no_server_execs_the_python_launcher_with_the_same_stdin(setup: Setup) -> None:
    data = os.urandom(300_000)  # more than a pipe holds
    for plugin in install.PLUGINS:
        r = setup.run(data, plugin=plugin)
        assert (r.returncode, r.stdout) == (42, b"from-fallback")
        assert setup.fallback_saw() == {"argv": ["arg1", "arg 2"], "env": ENV, "stdin": data.hex()}
    # a stale socket file: connect is refused
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(setup.sock))
    stale.close()
    r = setup.run(b"{}")
    assert (r.returncode, r.stdout) == (42, b"from-fallback")
    assert setup.fallback_saw()["stdin"] == b"{}".hex()


@pytest.mark.parametrize(
    "reply",
    [
        b"FALLBACK\n",
        b"",
        b"0\n",
        b"0\n10\nshort",  # cut short
        b"-1\n0\n",
        b"x\n0\n",
        b"0\n1x\nab",
        b"0\n\n",
        b"1234567890\n0\n",  # more digits than an exit code has
    ],
)
def test_anything_but_a_reply_runs_the_fallback_with_the_same_stdin(
    setup: Setup, reply: bytes
) -> None:
    setup.listen()
    setup.fake.reply = reply
    data = b'{"cniVersion": "1.0.0", "pad": "' + b"\x00\xff" * 100_000 + b'"}'
    r = setup.run(data, plugin="calico-ipam")
    assert (r.returncode, r.stdout) == (42, b"from-fallback")
    assert setup.fallback_saw() == {"argv": ["arg1", "arg 2"], "env": ENV, "stdin": data.hex()}
    assert server.parse_request(setup.fake.requests[0])[1] == data


def test_oversized_config_runs_the_fallback_with_all_of_stdin(setup: Setup) -> None:
    setup.listen()
    setup.fake.reply = b"0\n2\nok"
    data = os.urandom((1 << 20) + 70_000)  # above the launcher's 1 MiB limit
    r = setup.run(data)
    assert (r.returncode, r.stdout) == (42, b"from-fallback")
    assert setup.fallback_saw()["stdin"] == data.hex()
    assert setup.fake.requests == []  # stdin is read before connecting
    exact = os.urandom(1 << 20)  # exactly the limit is still served
    r = setup.run(exact)
    assert (r.returncode, r.stdout) == (0, b"ok")
    assert server.parse_request(setup.fake.requests[0])[1] == exact


def test_reply_size_limit(setup: Setup) -> None:
    setup.listen()
    limit = 8 << 20  # the launcher's MAX_REPLY
    head = b"0\n%d\n" % 0
    setup.fake.reply = head + b"e" * (limit - len(head))  # exactly the limit: served
    r = setup.run(b"{}")
    assert (r.returncode, r.stdout, len(r.stderr)) == (0, b"", limit - len(head))
    setup.fake.reply += b"e"  # one byte more: in-process
    r = setup.run(b"{}")
    assert (r.returncode, r.stdout) == (42, b"from-fallback")


def test_missing_fallback_is_a_cni_error(setup: Setup) -> None:
    (setup.bin_dir / ".calico-py").unlink()
    r = setup.run(b"{}")
    assert r.returncode == 1
    err = json.loads(r.stdout)
    assert err["code"] == 999
    assert ".calico-py" in err["msg"]

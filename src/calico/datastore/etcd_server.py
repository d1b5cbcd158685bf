"""EtcdServer: start and stop a real etcd (Debian's etcd-server) for the lab, tests and benchmarks.

It listens on the given host/port only (127.0.0.1 by default, or an address inside a lab
namespace when ``netns`` is set), keeps its data in ``data_dir`` and is stopped by PID. One
EtcdServer is one member: :class:`calico.datastore.etcd_cluster.EtcdCluster` starts several that
form one cluster (``initial_cluster``).

``progress_notify_interval`` (default ``"5s"``) is the only flag beyond etcd's defaults; ``None``
runs etcd exactly as shipped (progress notifications every 10 minutes), which is how the
stock-etcd tests run it. Our clients work either way (docs/design/datastore.md).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from calico.datastore.etcd import EtcdClient, EtcdUnavailable, TLSFiles
from calico.lib import cmd as lib_cmd
from calico.lib.cmd import netns_argv


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """Serve clients over HTTPS with this certificate; with ``client_cert_auth``, require client
    certificates signed by ``trusted_ca_file``."""

    cert_file: str
    key_file: str
    trusted_ca_file: str | None = None
    client_cert_auth: bool = False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for servers we start on loopback)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class EtcdServer:
    def __init__(
        self,
        data_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 2379,
        peer_port: int | None = None,
        netns: str | None = None,
        name: str = "calico-etcd",
        log_file: str | Path | None = None,
        tls: ServerTLS | None = None,
        client_tls: TLSFiles | None = None,
        progress_notify_interval: str | None = "5s",
        initial_cluster: str | None = None,
        cluster_token: str = "etcd-cluster",
    ) -> None:
        if netns is None and not _is_loopback(host):
            # in the caller's namespace (the root one, for tests and benchmarks): loopback only
            raise ValueError(f"etcd host {host!r}: only a loopback address outside a netns")
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.peer_port = peer_port or port + 1
        self.netns = netns
        self.name = name
        self.log_file = Path(log_file) if log_file else self.data_dir.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls = tls
        self.client_tls = client_tls  # what start() uses to check readiness over TLS
        self.progress_notify_interval = progress_notify_interval
        self.initial_cluster = initial_cluster  # "name=peer-url,..."; None: a one-member cluster
        self.cluster_token = cluster_token

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def argv(self) -> list[str]:
        client = self.endpoint
        peer = self.peer_url
        extra: list[str] = []
        if self.progress_notify_interval:
            extra = ["--experimental-watch-progress-notify-interval", self.progress_notify_interval]
        tls_args: list[str] = []
        if self.tls:
            tls_args = ["--cert-file", self.tls.cert_file, "--key-file", self.tls.key_file]
            if self.tls.trusted_ca_file:
                tls_args += ["--trusted-ca-file", self.tls.trusted_ca_file]
            if self.tls.client_cert_auth:
                tls_args.append("--client-cert-auth")
        return netns_argv(
            self.netns,
            [
                "etcd",
                "--name",
                self.name,
                "--data-dir",
                str(self.data_dir),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                self.initial_cluster or f"{self.name}={peer}",
                "--initial-cluster-token",
                self.cluster_token,
                "--initial-cluster-state",
                "new",
                "--log-level",
                "warn",
                "--logger",
                "zap",
                *extra,
                *tls_args,
            ],
        )

    @classmethod
    def on_free_ports(cls, data_dir: str | Path) -> EtcdServer:
        """An etcd for loopback use on ports nothing else holds."""
        return cls(data_dir, port=free_port(), peer_port=free_port())

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 20.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting (a cluster's members must all start before any
        of them can answer)."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = lib_cmd.start(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until this member answers a linearizable read (so its cluster has a leader)."""
        client = EtcdClient([self.endpoint], tls=self.client_tls, timeout=2)
        try:
            wait_ready(client, timeout)
        except Exception:
            self.stop()
            raise RuntimeError(f"etcd did not start; see {self.log_file}") from None
        finally:
            client.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self) -> None:
        """SIGSTOP: the process hangs with its sockets open (the kernel still completes TCP
        handshakes and ACKs), as a wedged server or a silently dead peer looks to a client."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)  # a paused etcd cannot act on SIGTERM
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def wait_gone(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.proc is not None and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)


def wait_ready(client: EtcdClient, timeout: float = 10.0) -> None:
    """Block until etcd answers, or raise EtcdUnavailable."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.revision()
            return
        except EtcdUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)

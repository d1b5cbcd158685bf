"""What the Typha integration tests share: calico-typha processes on loopback, recording clients,
certificates made with openssl."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from calico.datastore.etcd_server import free_port
from calico.datastore.typha_client import TyphaSyncer
from calico.lib.cmd import run
from tests.integration.datastore.support import Recorder

TYPHA = Path(sys.executable).with_name("calico-typha")


class TyphaProcess:
    """``calico-typha`` as shipped, on 127.0.0.1 (server, health and metrics ports); on etcd, or
    on whatever datastore ``env`` selects (``DATASTORE_TYPE=kubernetes``, ``KUBECONFIG``)."""

    def __init__(self, etcd_endpoint: str, log: Path, **env: str) -> None:
        self.port = free_port()
        self.health_port = free_port()
        self.etcd_endpoint = etcd_endpoint
        self.log = log
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TYPHA_", "ETCD_"))},
            **({"ETCD_ENDPOINTS": etcd_endpoint} if etcd_endpoint else {}),
            "TYPHA_SERVERHOST": "127.0.0.1",
            "TYPHA_SERVERPORT": str(self.port),
            "TYPHA_HEALTHENABLED": "true",
            "TYPHA_HEALTHHOST": "127.0.0.1",
            "TYPHA_HEALTHPORT": str(self.health_port),
            "TYPHA_PROMETHEUSMETRICSENABLED": "true",
            "TYPHA_PROMETHEUSMETRICSHOST": "127.0.0.1",
            "TYPHA_PROMETHEUSMETRICSPORT": str(self.health_port),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, wait_ready: bool = True) -> TyphaProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([str(TYPHA)], env=self.env, stdout=log, stderr=log)
        if wait_ready:
            self.wait(lambda: self.get("/readiness")[0] == 200, 20, "Typha ready")
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            url = f"http://127.0.0.1:{self.health_port}{path}"
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str, labels: str = "") -> float:
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name + (f"{{{labels}}}" if labels else "") + " "):
                return float(line.split()[-1])
        return 0.0

    def wait(self, cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"calico-typha exited {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s\n{self.tail()}")
            time.sleep(0.05)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class Agent(Recorder):
    """A simulated agent: a TyphaSyncer applying what it gets to a dict."""

    def __init__(self, addrs: list[str], name: str = "node", **kw: Any) -> None:
        super().__init__()
        self.syncer = TyphaSyncer(
            lambda: addrs,
            node=name,
            on_updates=self.on_updates,
            on_status=self.statuses.append,
            shuffle=False,
            retry_delay=0.05,
            **kw,
        )
        self.syncer.start()

    def stop(self) -> None:
        self.syncer.stop()
        self.syncer.close_connection()
        assert self.syncer.join(10)


def make_certs(d: Path) -> None:
    """ca, typha (CN calico-typha), felix (CN calico-felix, URI SAN spiffe://cluster/felix),
    other (CN someone-else) — all signed by ca; and a second CA's rogue (CN calico-felix)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "rogue-ca"):
        key, crt = str(d / f"{ca}.key"), str(d / f"{ca}.crt")
        run(["openssl", "req", "-x509", *ec, "-keyout", key, "-out", crt, "-days", "2",
             "-subj", f"/CN={ca}"], timeout=30)  # fmt: skip
    leaves = [
        ("typha", "calico-typha", "", "ca"),
        ("felix", "calico-felix", "URI:spiffe://cluster/felix", "ca"),
        ("other", "someone-else", "URI:spiffe://cluster/other", "ca"),
        ("rogue", "calico-felix", "", "rogue-ca"),
    ]
    for name, cn, san, ca in leaves:
        ext = d / f"{name}.ext"
        ext.write_text("extendedKeyUsage=serverAuth,clientAuth\n"
                       + (f"subjectAltName={san}\n" if san else ""))  # fmt: skip
        run(["openssl", "req", *ec, "-keyout", str(d / f"{name}.key"),
             "-out", str(d / f"{name}.csr"), "-subj", f"/CN={cn}"], timeout=30)  # fmt: skip
        run(["openssl", "x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / f"{ca}.crt"),
             "-CAkey", str(d / f"{ca}.key"), "-CAcreateserial", "-out", str(d / f"{name}.crt"),
             "-days", "2", "-extfile", str(ext)], timeout=30)  # fmt: skip

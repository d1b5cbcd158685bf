"""The lab's Typha (``up --typha``): one ``calico-typha`` in the core namespace, every node's agent
its client instead of a watcher of etcd.

::

    etcd (core) <── one syncer ── calico-typha 10.99.0.1:5473 (core) <── TCP ── calico-felix (node)

Typha listens on the router's subnet-0 address (where etcd is; every node reaches it through its
gateway), health on port 9098 of the same address. The agents get ``FELIX_TYPHAADDR`` (so they
open no watch on etcd at all). With ``--etcd-tls`` the lab's CA also secures Typha as Calico does:
Typha presents ``calico-typha`` (server certificate for 10.99.0.1) and accepts only clients whose
certificate has CN ``calico-felix`` (``TYPHA_CLIENTCN``); the agents check Typha's CN
(``FELIX_TYPHACN``). Typha's own etcd client certificate is ``calico-typha`` too.

Like the etcd options, ``--typha`` is fixed when the lab is made: a later ``up`` keeps it and
refuses the opposite. ``ensure`` is idempotent (a dead Typha is restarted by ``up``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from calico.lib import netns
from calico_lab import daemons, pki
from calico_lab.errors import LabError
from calico_lab.state import LabState, bridge_ip

PORT = 5473
HEALTH_PORT = 9098
SERVER_CERT = "calico-typha"
CLIENT_CERT = "calico-felix"  # one identity for every node's agent, as Calico's manifests use


def resolve(given: bool | None, recorded: bool | None, *, lab: str) -> bool:
    """A new lab (``recorded`` None) takes ``given`` (default off); an existing one keeps its
    setting and refuses the opposite."""
    if recorded is None:
        return bool(given)
    if given is not None and given != recorded:
        have, want = ("--typha", "--no-typha") if recorded else ("--no-typha", "--typha")
        raise LabError(
            f"lab {lab!r} is already up with {have}, not {want} (run: calico-lab down --name {lab})"
        )
    return recorded


def address() -> str:
    return f"{bridge_ip()}:{PORT}"


def node_env(lab: LabState) -> dict[str, str]:
    """What a node's agent needs to use the lab's Typha (nothing without ``--typha``)."""
    if not lab.typha:
        return {}
    env = {"FELIX_TYPHAADDR": address()}
    if lab.etcd.tls:
        d = lab.pki_dir
        env |= {
            "FELIX_TYPHACAFILE": str(d / "ca.crt"),
            "FELIX_TYPHACERTFILE": str(d / f"{CLIENT_CERT}.crt"),
            "FELIX_TYPHAKEYFILE": str(d / f"{CLIENT_CERT}.key"),
            "FELIX_TYPHACN": SERVER_CERT,
        }
    return env


def typha_env(lab: LabState) -> dict[str, str]:
    env = {
        "DATASTORE_TYPE": "etcdv3",
        "ETCD_ENDPOINTS": lab.etcd_endpoint,
        "TYPHA_SERVERHOST": bridge_ip(),
        "TYPHA_SERVERPORT": str(PORT),
        "TYPHA_HEALTHENABLED": "true",
        "TYPHA_HEALTHHOST": bridge_ip(),
        "TYPHA_HEALTHPORT": str(HEALTH_PORT),
        "TYPHA_PROMETHEUSMETRICSENABLED": "true",
        "TYPHA_PROMETHEUSMETRICSHOST": bridge_ip(),
        "TYPHA_PROMETHEUSMETRICSPORT": str(HEALTH_PORT),
        "TYPHA_LOGSEVERITYSCREEN": "INFO",
    }
    if lab.etcd.tls:
        d = lab.pki_dir
        env |= {
            "ETCD_CA_CERT_FILE": str(d / "ca.crt"),
            "ETCD_CERT_FILE": str(d / f"{SERVER_CERT}.crt"),
            "ETCD_KEY_FILE": str(d / f"{SERVER_CERT}.key"),
            "TYPHA_CAFILE": str(d / "ca.crt"),
            "TYPHA_SERVERCERTFILE": str(d / f"{SERVER_CERT}.crt"),
            "TYPHA_SERVERKEYFILE": str(d / f"{SERVER_CERT}.key"),
            "TYPHA_CLIENTCN": CLIENT_CERT,
        }
    return env


def ensure(lab: LabState, *, timeout: float = 30.0) -> bool:
    """Start Typha unless it runs (or the lab has none) and wait until it is ready (in sync with
    etcd); True when it was started."""
    if not lab.typha or daemons.alive(lab.typha_pid):
        return False
    if lab.etcd.tls:
        pki.issue(lab.pki_dir, SERVER_CERT, ips=[bridge_ip()], server=True)
        pki.issue(lab.pki_dir, CLIENT_CERT)
    log = lab.path / "typha.log"
    lab.typha_pid = daemons.spawn(
        [daemons.executable("calico-typha")],
        netns=lab.core,
        log_file=log,
        env=daemons.child_env(typha_env(lab)),
    )
    lab.save()

    def ready() -> bool:
        if not daemons.alive(lab.typha_pid):
            raise LabError(f"calico-typha exited; see {log}")
        return readiness(lab)[0] == 200

    daemons.wait_until(ready, timeout=timeout, interval=0.05, what=f"calico-typha (see {log})")
    return True


def readiness(lab: LabState) -> tuple[int, dict[str, object]]:
    """Typha's ``/readiness`` answer: (HTTP status, its detail), (0, {}) when it does not answer."""

    def get() -> tuple[int, dict[str, object]]:
        url = f"http://{bridge_ip()}:{HEALTH_PORT}/readiness"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except (OSError, ValueError):
            return 0, {}

    return netns.call_in(lab.core, get)


def stop(lab: LabState) -> None:
    daemons.stop(lab.typha_pid, grace=2)

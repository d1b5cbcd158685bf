"""The lab's certificates for ``up --etcd-tls``: one CA, a certificate per etcd member and per
component, made with ``openssl`` (EC P-256, valid for a year) under ``<lab>/pki/``.

::

    ca.crt / ca.key                   the lab's CA (``ca.key`` never leaves this directory)
    etcd-<i>.crt / .key               member i: serverAuth + clientAuth (etcd's JSON gateway dials
                                      its own member with it), every member's address as a SAN
    calico-node-<node>.crt / .key     calico-node and its children (felix, calico-bgp, the CNI
                                      server, the tunnel allocator), calicoctl in ``exec``
    cni-<node>.crt / .key             the CNI plugin (the conflist's ``etcd_cert_file``)
    calico-lab.crt / .key             the lab's own client (``apply``, ``status``; the lab plays the
                                      kube-controllers)

Making them is idempotent: a file that exists is kept, so ``up`` again changes nothing. Keys are
mode 0600.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from calico.lib.cmd import run

CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
DAYS = "365"


def ensure_ca(pki: Path, lab: str) -> None:
    """The lab's CA (kept when present)."""
    pki.mkdir(parents=True, exist_ok=True)
    if (pki / "ca.crt").exists() and (pki / "ca.key").exists():
        return
    run(
        ["openssl", "req", "-x509", *CURVE, "-keyout", str(pki / "ca.key"),
         "-out", str(pki / "ca.crt"), "-days", DAYS, "-subj", f"/CN=calico-lab {lab} CA"],
        timeout=30,
    )  # fmt: skip
    os.chmod(pki / "ca.key", 0o600)


def issue(pki: Path, name: str, *, ips: Sequence[str] = (), server: bool = False) -> None:
    """``<name>.crt``/``<name>.key`` signed by the lab's CA (kept when present): client auth, plus
    server auth and ``ips`` as SANs for a server."""
    crt, key = pki / f"{name}.crt", pki / f"{name}.key"
    if crt.exists() and key.exists():
        return
    usage = "serverAuth,clientAuth" if server else "clientAuth"
    ext = pki / f"{name}.ext"
    lines = [f"extendedKeyUsage={usage}", "keyUsage=critical,digitalSignature,keyEncipherment"]
    if ips:
        lines.append("subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips))
    ext.write_text("\n".join(lines) + "\n")
    csr = pki / f"{name}.csr"
    run(
        ["openssl", "req", *CURVE, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"],
        timeout=30,
    )
    os.chmod(key, 0o600)
    run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"),
         "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-out", str(crt), "-days", DAYS,
         "-extfile", str(ext)],
        timeout=30,
    )  # fmt: skip
    csr.unlink()
    ext.unlink()

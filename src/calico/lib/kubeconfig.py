"""Kubeconfig files, read with the standard library only (the CNI plugin may not import a YAML
library): JSON when the file is JSON, else :func:`read_simple_yaml`, which understands the block
mappings, block sequences and scalars kubeconfigs are made of (not flow style beyond ``[]``/``{}``,
anchors or multi-line strings). :func:`load_kubeconfig` gives the current context's server and
credentials; :func:`ssl_context` the TLS context they describe.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from typing import Any


class KubeconfigError(Exception):
    pass


# ---- a YAML subset for kubeconfig files ----------------------------------------------------------


def _scalar(text: str) -> Any:
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return json.loads(t) if t[0] == '"' else t[1:-1].replace("''", "'")
    if t in ("", "~", "null"):
        return None
    if t in ("true", "false"):
        return t == "true"
    if t == "[]":
        return []
    if t == "{}":
        return {}
    try:
        return int(t)
    except ValueError:
        return t


def _strip_comment(line: str) -> str:
    if "#" not in line or line.lstrip().startswith(("'", '"')):
        return line.rstrip()
    cut = line.find(" #")
    return (line[:cut] if cut >= 0 else ("" if line.lstrip().startswith("#") else line)).rstrip()


def read_simple_yaml(text: str) -> Any:
    lines = []
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if line.strip() and line.strip() not in ("---", "..."):
            lines.append((len(line) - len(line.lstrip(" ")), line.strip()))
    value, _ = _block(lines, 0, lines[0][0] if lines else 0)
    return value


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if i >= len(lines):
        return None, i
    if lines[i][1].startswith("- ") or lines[i][1] == "-":
        out_list: list[Any] = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("-"):
            rest = lines[i][1][1:].strip()
            if not rest:
                item, i = _block(lines, i + 1, lines[i + 1][0] if i + 1 < len(lines) else 0)
            elif ":" in rest and not rest.startswith(("'", '"')) and _is_key(rest):
                # "- key: value" starts a mapping whose keys sit at indent + 2
                sub = [(indent + 2, rest), *lines[i + 1 :]]
                item, j = _block(sub, 0, indent + 2)
                i = i + j
            else:
                item, i = _scalar(rest), i + 1
            out_list.append(item)
        return out_list, i
    out: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent:
        key, _, rest = lines[i][1].partition(":")
        key = str(_scalar(key))
        if rest.strip():
            out[key] = _scalar(rest)
            i += 1
        elif i + 1 < len(lines) and (lines[i + 1][0] > indent or lines[i + 1][1].startswith("-")):
            out[key], i = _block(lines, i + 1, lines[i + 1][0])
        else:
            out[key], i = None, i + 1
    return out, i


def _is_key(text: str) -> bool:
    key, _, rest = text.partition(":")
    return bool(key) and (not rest or rest.startswith(" "))


# ---- kubeconfig → connection ---------------------------------------------------------------------


def _named(items: list[dict[str, Any]] | None, name: str | None, field: str) -> dict[str, Any]:
    for item in items or []:
        if name is None or item.get("name") == name:
            return dict(item.get(field) or {})
    raise KubeconfigError(f"kubeconfig: no {field} named {name!r}")


def load_kubeconfig(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise KubeconfigError(f"kubernetes.kubeconfig {path}: {exc}") from exc
    doc = json.loads(text) if text.lstrip().startswith("{") else read_simple_yaml(text)
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubernetes.kubeconfig {path}: not a kubeconfig")
    ctx_name = doc.get("current-context")
    ctx = _named(doc.get("contexts"), ctx_name, "context") if doc.get("contexts") else {}
    cluster = _named(doc.get("clusters"), ctx.get("cluster"), "cluster")
    user = _named(doc.get("users"), ctx.get("user"), "user") if doc.get("users") else {}
    base = os.path.dirname(os.path.abspath(path))

    def rel(p: str | None) -> str | None:
        return None if not p else (p if os.path.isabs(p) else os.path.join(base, p))

    return {
        "server": cluster.get("server"),
        "ca_file": rel(cluster.get("certificate-authority")),
        "ca_data": cluster.get("certificate-authority-data"),
        "insecure": bool(cluster.get("insecure-skip-tls-verify")),
        "cert_file": rel(user.get("client-certificate")),
        "cert_data": user.get("client-certificate-data"),
        "key_file": rel(user.get("client-key")),
        "key_data": user.get("client-key-data"),
        "token": user.get("token"),
        "token_file": rel(user.get("tokenFile")),
    }


def ssl_context(cfg: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(
        cafile=cfg.get("ca_file"),
        cadata=base64.b64decode(cfg["ca_data"]).decode() if cfg.get("ca_data") else None,
    )
    if cfg.get("insecure"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = cfg.get("cert_file"), cfg.get("key_file")
    if cfg.get("cert_data") and cfg.get("key_data"):
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
            with open(cert, "wb") as f:
                f.write(base64.b64decode(cfg["cert_data"]))
            with open(key, "wb") as f:
                f.write(base64.b64decode(cfg["key_data"]))
            ctx.load_cert_chain(cert, key)
    elif cert:
        ctx.load_cert_chain(cert, key)
    return ctx

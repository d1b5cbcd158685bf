"""Write an image as a docker-archive tarball: what ``docker save`` writes and what ``podman load``,
``docker load`` and ``ctr images import`` read. Standard library only.

The archive holds, in this order::

    <diff-id hex>/layer.tar     one per layer, bottom first (uncompressed, see calico_images.layers)
    <config digest hex>.json    the image config: os/architecture, the container config
                                (Entrypoint, Cmd, Env, WorkingDir, Labels), rootfs.diff_ids,
                                one history entry per layer
    manifest.json               [{"Config": ..., "RepoTags": [...], "Layers": [...]}]

The image ID (what ``podman images`` shows) is the config's sha256, so identical inputs give the
identical image and re-importing it changes nothing. Layer tars are streamed from disk, never read
into memory. The archive is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calico_images.layers import Layer

CREATED = "1970-01-01T00:00:00Z"  # fixed: the ID depends on the content only


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Env": [f"{k}={v}" for k, v in self.env.items()],
            "WorkingDir": self.working_dir,
        }
        if self.entrypoint:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            out["Cmd"] = list(self.cmd)
        if self.labels:
            out["Labels"] = dict(self.labels)
        return out


def image_config(
    layers: Sequence[Layer], config: ContainerConfig, *, history: Sequence[str] = ()
) -> bytes:
    """The image config JSON (canonical: sorted keys, no spaces)."""
    notes = list(history) + [""] * (len(layers) - len(history))
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": config.as_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": CREATED, "created_by": note or "calico_images"} for note in notes],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _member(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.uname, info.gname = size, 0, "", ""
    info.mode = 0o755 if directory else 0o644
    if directory:
        info.type = tarfile.DIRTYPE
    return info


def write(
    out: Path,
    *,
    tags: Sequence[str],
    layers: Sequence[Layer],
    config: ContainerConfig,
    history: Sequence[str] = (),
) -> str:
    """Write the archive to ``out``; returns the image ID (``sha256:<config digest>``)."""
    if not layers:
        raise ValueError("an image needs at least one layer")
    if len({layer.diff_id for layer in layers}) != len(layers):
        raise ValueError("the same layer twice in one image")
    cfg = image_config(layers, config, history=history)
    cfg_hex = hashlib.sha256(cfg).hexdigest()
    names = [layer.diff_id.removeprefix("sha256:") + "/layer.tar" for layer in layers]
    manifest = [{"Config": f"{cfg_hex}.json", "RepoTags": list(tags), "Layers": names}]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for layer, name in zip(layers, names, strict=True):
            tar.addfile(_member(name.split("/")[0], directory=True))
            with open(layer.path, "rb") as f:
                tar.addfile(_member(name, layer.path.stat().st_size), f)
        tar.addfile(_member(f"{cfg_hex}.json", len(cfg)), io.BytesIO(cfg))
        data = json.dumps(manifest, separators=(",", ":")).encode()
        tar.addfile(_member("manifest.json", len(data)), io.BytesIO(data))
    tmp.replace(out)
    return f"sha256:{cfg_hex}"


def read_manifest(archive: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(manifest.json, the first image's config) of an archive: for checks and reports."""
    with tarfile.open(archive) as tar:
        manifest = json.load(_extract(tar, "manifest.json"))
        config = json.load(_extract(tar, manifest[0]["Config"]))
    return manifest, config


def _extract(tar: tarfile.TarFile, name: str) -> io.BufferedReader:
    f = tar.extractfile(name)
    if f is None:
        raise ValueError(f"{name} is not a file in the archive")
    return f  # type: ignore[return-value]

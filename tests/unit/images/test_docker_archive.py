"""calico_images.docker_archive: the docker-archive layout podman load / ctr import read."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from calico_images import docker_archive, layers


def _layer(tmp_path: Path, name: str, content: str) -> layers.Layer:
    root = tmp_path / f"tree-{name}"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / name).write_text(content)
    return layers.write_layer(root, tmp_path / f"{name}.tar")


CONFIG = docker_archive.ContainerConfig(
    cmd=("calico-node",), env={"PATH": "/usr/bin:/bin"}, labels={"a": "b"}
)


def test_archive_layout_config_and_layers(tmp_path: Path) -> None:
    chain = [_layer(tmp_path, "base", "one\n"), _layer(tmp_path, "app", "two\n")]
    out = tmp_path / "img.tar"
    image_id = docker_archive.write(
        out, tags=["calico-py/node:9.9"], layers=chain, config=CONFIG, history=["base", "app"]
    )
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        cfg_bytes = tar.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
        bodies = [tar.extractfile(n).read() for n in manifest[0]["Layers"]]  # type: ignore[union-attr]
    assert names[-1] == "manifest.json"
    assert manifest[0]["RepoTags"] == ["calico-py/node:9.9"]
    # the image ID is the config's digest; each layer's diff_id is its tar's digest, in order
    assert image_id == "sha256:" + hashlib.sha256(cfg_bytes).hexdigest()
    assert manifest[0]["Config"] == image_id.removeprefix("sha256:") + ".json"
    cfg = json.loads(cfg_bytes)
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": [layer.diff_id for layer in chain]}
    assert [("sha256:" + hashlib.sha256(b).hexdigest()) for b in bodies] == cfg["rootfs"][
        "diff_ids"
    ]
    assert cfg["config"]["Cmd"] == ["calico-node"]
    assert "Entrypoint" not in cfg["config"]
    assert cfg["config"]["Env"] == ["PATH=/usr/bin:/bin"]
    assert cfg["config"]["Labels"] == {"a": "b"}
    assert (cfg["os"], cfg["architecture"]) == ("linux", "amd64")
    assert [h["created_by"] for h in cfg["history"]] == ["base", "app"]
    assert docker_archive.read_manifest(out) == (manifest, cfg)


def test_same_inputs_same_image_id(tmp_path: Path) -> None:
    chain = [_layer(tmp_path, "base", "one\n")]
    a = docker_archive.write(tmp_path / "a.tar", tags=["x:1"], layers=chain, config=CONFIG)
    b = docker_archive.write(tmp_path / "b.tar", tags=["x:2"], layers=chain, config=CONFIG)
    assert a == b  # tags are not part of the image
    other = docker_archive.ContainerConfig(cmd=("calicoctl",))
    assert docker_archive.write(tmp_path / "c.tar", tags=["x:1"], layers=chain, config=other) != a


def test_refuses_no_layers_and_repeated_layers(tmp_path: Path) -> None:
    layer = _layer(tmp_path, "base", "one\n")
    with pytest.raises(ValueError, match="at least one layer"):
        docker_archive.write(tmp_path / "x.tar", tags=["x:1"], layers=[], config=CONFIG)
    with pytest.raises(ValueError, match="twice"):
        docker_archive.write(tmp_path / "x.tar", tags=["x:1"], layers=[layer, layer], config=CONFIG)
    assert not (tmp_path / "x.tar").exists()

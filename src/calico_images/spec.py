"""The images: their names, their layers (bottom first) and how a container starts::

    image                       layers                   starts
    calico-py/node              debian, node-debs, app   calico-node (felix, BGP, BIRD, CNI server)
    calico-py/kube-controllers  debian, app              calico-kube-controllers
    calico-py/cni               cni                      install-cni (calico.cni.install_cni)

``debian`` is bookworm's Essential set plus python3 and ca-certificates; ``node-debs`` adds BIRD 2,
nftables, iproute2, ipset and netbase (``/etc/protocols``: nft resolves the protocol names in
felix's rules with it, and fails without it); ``app`` is the project's wheel and its PyPI
dependencies. The node and kube-controllers images share the ``debian`` and ``app`` layer blobs. The
cni image has no Debian tree at all: only what install-cni copies to hosts (see
calico_images.cni_bundle) and itself.
The tag is the project's version (``pyproject.toml``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from calico_images.docker_archive import ContainerConfig

REPO = "calico-py"
BASE_PACKAGES = ("python3", "ca-certificates")
NODE_PACKAGES = ("bird2", "nftables", "iproute2", "ipset", "netbase")
SITE_PACKAGES = "usr/local/lib/python3.11/dist-packages"  # where pip puts the app in the tree
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CNI_PAYLOAD = "opt/calico-py/cni"  # calico.cni.install_cni.PAYLOAD, relative
CNI_RUNTIME_LIB = f"/{CNI_PAYLOAD}/.calico-runtime/lib"


@dataclass(frozen=True, slots=True)
class ImageSpec:
    name: str
    layers: tuple[str, ...]
    config: ContainerConfig
    about: str

    def ref(self, version: str) -> str:
        return f"{REPO}/{self.name}:{version}"

    @property
    def archive(self) -> str:
        return f"{self.name}.tar"


def _config(command: str, **env: str) -> ContainerConfig:
    """A default command, no entry point: ``<engine> run IMAGE calicoctl version`` works too."""
    labels = {"org.opencontainers.image.source": "calico-py"}
    return ContainerConfig(cmd=(command,), env={"PATH": PATH, **env}, labels=labels)


IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec(
        "node",
        ("debian", "node-debs", "app"),
        _config("calico-node"),
        "calico-node with calico-felix, calico-bgp, BIRD 2 and the CNI server",
    ),
    ImageSpec(
        "cni",
        ("cni",),
        _config("/usr/bin/install-cni", LD_LIBRARY_PATH=CNI_RUNTIME_LIB),
        "install-cni and what it copies to hosts: the plugins and their Python runtime",
    ),
    ImageSpec(
        "kube-controllers",
        ("debian", "app"),
        _config("calico-kube-controllers"),
        "calico-kube-controllers",
    ),
)
BY_NAME = {spec.name: spec for spec in IMAGES}


def project_version(root: Path) -> str:
    """The version in ``root/pyproject.toml`` (the images' tag)."""
    with open(root / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert isinstance(version, str)
    return version


def refs(version: str) -> list[str]:
    """Every image reference ``make images`` builds at ``version``."""
    return [spec.ref(version) for spec in IMAGES]

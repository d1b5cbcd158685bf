"""``python -m calico_images`` (``make images``): build the images into ``build/images/``.

Steps, with the trees under ``build/images/work/``::

    wheels      pip wheel: the project's wheel and its PyPI dependencies (build venv's pip)
    debian      mmdebstrap bookworm + python3, ca-certificates, trimmed        } cached, keyed by
    node-debs   a copy of the untrimmed debian + BIRD 2, nftables, iproute2,   } packages, trim list
                ipset (apt-get in the tree), trimmed                           } and apt sources
    app         a copy of debian + the wheels (pip in the tree, by its python3)
    cni         the CNI payload: Python runtime, compiled launcher, Debian's loopback and portmap
    layers      each tree as a layer tar (node-debs and app: their difference from debian)
    images      docker-archive tarballs <name>.tar + images.json (refs, IDs, sizes, seconds)

Before writing, each image's start command runs in its tree (``calico-node --help``,
``calico-kube-controllers --help``, ``install-cni --help``) and the CNI runtime imports the plugins
on its own. ``--refresh`` rebuilds the cached Debian trees (to pick up Debian updates).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from calico_images import cni_bundle, docker_archive, layers, rootfs, spec

LAUNCHER_BIN_DIR = "/opt/cni/bin"  # the host bin dir the compiled launcher is built for
INSTALL_CNI = f"""#!/{spec.CNI_PAYLOAD}/.calico-runtime/bin/python3 -IS
# install-cni: the calico-py/cni image's entry point (calico.cni.install_cni)
import sys
from calico.cni.install_cni import main
sys.exit(main())
"""


def say(text: str) -> None:
    print(f"images: {text}", file=sys.stderr, flush=True)


class Build:
    def __init__(self, *, project: Path, out: Path, work: Path) -> None:
        self.project, self.out, self.work = project, out, work
        self.trees, self.layer_dir, self.log = work / "trees", work / "layers", work / "build.log"
        self.version = spec.project_version(project)
        self.timings: dict[str, float] = {}

    def step(self, name: str, start: float) -> None:
        self.timings[name] = round(time.monotonic() - start, 1)
        say(f"{name}: {self.timings[name]} s")

    # ---------------------------------------------------------------------------- inputs
    def wheels(self) -> Path:
        start, dest = time.monotonic(), self.work / "wheels"
        shutil.rmtree(dest, ignore_errors=True)
        rootfs.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                    "-w", str(dest), str(self.project)], log=self.log)  # fmt: skip
        self.step("wheels", start)
        return dest

    def debian_key(self, sources: str) -> str:
        parts = [rootfs.SUITE, *spec.BASE_PACKAGES, "|", *spec.NODE_PACKAGES, "|",
                 *rootfs.DPKG_EXCLUDES, *rootfs.TRIM, *rootfs.MACHINE_FILES, sources]  # fmt: skip
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def debian_trees(self, *, refresh: bool) -> None:
        """The debian and node-debs trees and layers (reused while their key matches)."""
        sources = rootfs.debian_sources()
        key, stamp = self.debian_key(sources), self.trees / "debian.key"
        have = all((self.layer_dir / f"{n}.tar").exists() for n in ("debian", "node-debs"))
        if not refresh and have and stamp.exists() and stamp.read_text() == key:
            say("debian trees: cached (--refresh rebuilds them)")
            return
        start = time.monotonic()
        stamp.unlink(missing_ok=True)
        base, node = self.trees / "debian", self.trees / "node-debs"
        rootfs.mmdebstrap(base, packages=spec.BASE_PACKAGES, sources=sources, log=self.log)
        self.step("mmdebstrap", start)
        start = time.monotonic()
        rootfs.copy_tree(base, node)
        rootfs.apt_install(node, spec.NODE_PACKAGES, log=self.log)
        self.step("node packages", start)
        for tree in (base, node):
            say(f"trimmed {rootfs.trim(tree) / 1e6:.1f} MB from {tree.name}")
        layers.write_layer(base, self.layer_dir / "debian.tar")
        layers.write_layer(node, self.layer_dir / "node-debs.tar", lower=base)
        stamp.write_text(key)

    # ------------------------------------------------------------------------------ trees
    def app_tree(self, wheels: Path) -> Path:
        start, app = time.monotonic(), self.trees / "app"
        rootfs.copy_tree(self.trees / "debian", app)
        import pip  # the build venv's: put on the tree's PYTHONPATH for one run

        pip_src = Path(pip.__file__).parent
        rootfs.pip_install(app, wheels=wheels, pip_src=pip_src, requirement="calico-py",
                           log=self.log)  # fmt: skip
        rootfs.trim(app)
        self.step("app", start)
        return app

    def cni_tree(self, app: Path) -> Path:
        start, tree = time.monotonic(), self.trees / "cni"
        if tree.exists():
            shutil.rmtree(tree)
        payload = tree / spec.CNI_PAYLOAD
        runtime = payload / cni_bundle.RUNTIME_DIR
        libs = cni_bundle.build_runtime(app, runtime, site_packages=spec.SITE_PACKAGES)
        cni_bundle.check(runtime)
        compiled = cni_bundle.compile_launcher(payload, bin_dir=LAUNCHER_BIN_DIR, log=self.log)
        cni_bundle.add_plugins(payload)
        for d in ("dev", "proc", "sys", "run", "etc", "usr/bin", "lib64"):
            (tree / d).mkdir(parents=True, exist_ok=True)
        (tree / "tmp").mkdir(mode=0o1777)
        (tree / "tmp").chmod(0o1777)
        (tree / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/false\n")
        (tree / "etc/group").write_text("root:x:0:\n")
        (tree / "lib64" / cni_bundle.LOADER).symlink_to(
            f"/{spec.CNI_PAYLOAD}/{cni_bundle.RUNTIME_DIR}/lib/{cni_bundle.LOADER}"
        )
        (tree / "usr/bin/install-cni").write_text(INSTALL_CNI)
        (tree / "usr/bin/install-cni").chmod(0o755)
        say(f"cni runtime: {len(libs)} libraries; launcher: {'compiled' if compiled else 'Python'}")
        self.step("cni payload", start)
        return tree

    def smoke(self, tree: Path, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Run ``argv`` in ``tree`` (a build gate: the image's program starts)."""
        rootfs.chroot(tree, argv, log=self.log, env=env)

    # ----------------------------------------------------------------------------- images
    def layers_for(self, app: Path, cni: Path) -> dict[str, layers.Layer]:
        start = time.monotonic()
        out = {
            name: layers.Layer(p, "sha256:" + layers.file_sha256(p), p.stat().st_size, 0)
            for name in ("debian", "node-debs")
            for p in [self.layer_dir / f"{name}.tar"]
        }
        out["app"] = layers.write_layer(
            app, self.layer_dir / "app.tar", lower=self.trees / "debian"
        )
        out["cni"] = layers.write_layer(cni, self.layer_dir / "cni.tar")
        overlap = layers.files(out["app"].path) & layers.files(out["node-debs"].path)
        if overlap:
            raise rootfs.BuildError(f"app and node-debs layers both hold {sorted(overlap)[:5]}")
        self.step("layers", start)
        return out

    def write_images(self, made: dict[str, layers.Layer], names: list[str]) -> list[dict[str, Any]]:
        start, report = time.monotonic(), []
        for image in (spec.BY_NAME[n] for n in names):
            chain = [made[n] for n in image.layers]
            ref = image.ref(self.version)
            image_id = docker_archive.write(
                self.out / image.archive, tags=[ref], layers=chain, config=image.config,
                history=[f"calico_images layer {n}" for n in image.layers],
            )  # fmt: skip
            size = (self.out / image.archive).stat().st_size
            report.append({"ref": ref, "about": image.about, "archive": image.archive,
                           "id": image_id, "bytes": size,
                           "layers": {n: made[n].size for n in image.layers}})  # fmt: skip
            say(f"{ref}: {self.out / image.archive} ({size / 1e6:.1f} MB)")
        self.step("archives", start)
        return report

    def run(self, *, names: list[str], refresh: bool) -> None:
        total = time.monotonic()
        for d in (self.out, self.trees, self.layer_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.log.write_text("")
        say(f"building {', '.join(names)} {self.version}; log: {self.log}")
        wheels = self.wheels()
        self.debian_trees(refresh=refresh)
        app = self.app_tree(wheels)
        cni = self.cni_tree(app)
        node = self.trees / "node-full"
        rootfs.copy_tree(self.trees / "node-debs", node)
        rootfs.run(["cp", "-a", f"{app}/usr/local/.", f"{node}/usr/local/"], log=self.log)
        self.smoke(node, ["calico-node", "--help"])
        self.smoke(node, ["calicoctl", "--help"])
        self.smoke(app, ["calico-kube-controllers", "--help"])
        self.smoke(
            cni, ["/usr/bin/install-cni", "--help"], {"LD_LIBRARY_PATH": spec.CNI_RUNTIME_LIB}
        )
        shutil.rmtree(node)
        report = self.write_images(self.layers_for(app, cni), names)
        self.timings["total"] = round(time.monotonic() - total, 1)
        index = {"version": self.version, "images": report, "seconds": self.timings}
        (self.out / "images.json").write_text(json.dumps(index, indent=2) + "\n")
        say(f"done in {self.timings['total']} s: {self.out / 'images.json'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m calico_images", description=__doc__.splitlines()[0]
    )
    ap.add_argument("images", nargs="*", help=f"default: all ({', '.join(spec.BY_NAME)})")
    ap.add_argument("--project", default=".", help="the checkout (pyproject.toml)")
    ap.add_argument("--out", default="build/images")
    ap.add_argument("--work", default=None, help="default: <out>/work")
    ap.add_argument("--refresh", action="store_true", help="rebuild the cached Debian trees")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("images: run as root (mmdebstrap and chroot)", file=sys.stderr)
        return 1
    unknown = [n for n in args.images if n not in spec.BY_NAME]
    if unknown:
        print(f"images: unknown image(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    build = Build(project=Path(args.project).resolve(), out=out,
                  work=Path(args.work).resolve() if args.work else out / "work")  # fmt: skip
    try:
        build.run(names=args.images or [s.name for s in spec.IMAGES], refresh=args.refresh)
    except (rootfs.BuildError, OSError, RuntimeError) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0

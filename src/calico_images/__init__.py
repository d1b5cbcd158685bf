"""Build the project's container images with no registry and no container engine (``make images``).

``python -m calico_images`` makes Debian bookworm root filesystems with mmdebstrap, installs the
project's wheel and its PyPI dependencies into them, trims them, and writes each image as a
docker-archive tarball under ``build/images/`` (what ``podman load`` and ``ctr images import``
read). Modules: ``spec`` (the images: names, layers, entry points), ``rootfs`` (Debian trees),
``layers`` (a tree, or its difference from another, as a layer tar), ``docker_archive`` (the
tarball), ``elf`` and ``cni_bundle`` (the self-contained Python runtime the CNI image installs on
hosts), ``main`` (the command). Build tooling: nothing in ``calico`` imports it.
"""

"""Which parts calico-node supervises, from the environment."""

from __future__ import annotations

import signal

from calico.node import main, startup


def names(env: dict[str, str]) -> list[str]:
    settings = startup.settings_from_env(env)
    return [s.name for s in main.services(env, settings)]


def test_default_runs_felix_tunnels_bgp_and_bird() -> None:
    env = {"NODENAME": "n", "CALICO_RUN_DIR": "/tmp/x"}
    assert names(env) == ["felix", "allocate-tunnel-addrs", "bgp", "bird"]
    tunnels = main.services(env, startup.settings_from_env(env))[1]
    assert list(tunnels.argv)[1:] == ["--allocate-tunnel-addrs"]
    assert tunnels.argv[0].endswith("calico-node")
    bird = main.services(env, startup.settings_from_env(env))[3]
    # -R: graceful restart recovery (the kernel keeps BIRD's routes until BGP is back, as
    # Calico runs it); BIRD dies by SIGKILL with calico-node (no Cease: peers keep our routes)
    assert list(bird.argv)[1:] == [
        "-f", "-R", "-c", "/tmp/x/bird.cfg", "-s", "/tmp/x/bird.ctl"
    ]  # fmt: skip
    assert bird.death_signal == signal.SIGKILL
    assert all(s.death_signal == signal.SIGTERM for s in main.services(
        env, startup.settings_from_env(env)) if s.name != "bird")  # fmt: skip
    assert bird.env is not None
    assert bird.env["NODENAME"] == "n"


def test_backends_and_no_felix() -> None:
    assert names({"NODENAME": "n", "CALICO_NETWORKING_BACKEND": "none"}) == ["felix"]
    # Calico's VXLAN-only install: no BIRD, no confd (calico-bgp)
    assert names({"NODENAME": "n", "CALICO_NETWORKING_BACKEND": "vxlan"}) == [
        "felix",
        "allocate-tunnel-addrs",
    ]
    assert names({"NODENAME": "n", "CALICO_DISABLE_FELIX": "true"}) == [
        "allocate-tunnel-addrs",
        "bgp",
        "bird",
    ]

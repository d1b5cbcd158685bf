"""Which parts calico-node supervises, from the environment."""

from __future__ import annotations

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
    assert list(bird.argv)[1:] == ["-f", "-c", "/tmp/x/bird.cfg", "-s", "/tmp/x/bird.ctl"]
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

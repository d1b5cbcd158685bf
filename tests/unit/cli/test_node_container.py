"""calicoctl node run, container form: the engine chosen and the command line built."""

from __future__ import annotations

import itertools
import shlex

import pytest
from click.testing import CliRunner

from calico.cli import node_container as nc
from calico.cli.main import cli

IMAGE = "calico-py/node:9.9"


def _which(*present: str):  # type: ignore[no-untyped-def]
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_run_argv_is_the_guides_command() -> None:
    env = {"ETCD_ENDPOINTS": "http://10.0.0.1:2379", "NODENAME": "h1", "AS": "65001",
           "HOME": "/root", "PATH": "/usr/bin"}  # fmt: skip
    argv = nc.run_argv("/usr/bin/docker", IMAGE, env)
    assert argv[:6] == ["/usr/bin/docker", "run", "--net=host", "--privileged", "--pid=host",
                        "--name=calico-node"]  # fmt: skip
    assert argv[6:8] == ["-d", "--restart=always"]
    assert argv[-1] == IMAGE
    pairs = list(itertools.pairwise(argv))
    variables = dict(v.split("=", 1) for flag, v in pairs if flag == "-e")
    # the guide's variables, empty when unset; nothing else of the caller's environment
    assert variables == {
        "ETCD_ENDPOINTS": "http://10.0.0.1:2379", "NODENAME": "h1", "IP": "", "IP6": "",
        "AS": "65001", "NO_DEFAULT_POOLS": "", "CALICO_NETWORKING_BACKEND": "",
    }  # fmt: skip
    mounts = [v for flag, v in pairs if flag == "-v"]
    assert mounts == [
        "/var/run/calico:/var/run/calico",
        "/var/log/calico:/var/log/calico",
        "/lib/modules:/lib/modules:ro",
    ]


def test_calico_and_felix_variables_pass_and_dirs_follow_the_run_dir() -> None:
    env = {"FELIX_DEFAULTENDPOINTTOHOSTACTION": "ACCEPT", "CALICO_RUN_DIR": "/srv/run",
           "CALICO_NODE_ENGINE": "podman", "IP_AUTODETECTION_METHOD": "interface=eth0"}  # fmt: skip
    argv = nc.run_argv("podman", IMAGE, env, detach=False)
    assert "--rm" in argv
    assert "-d" not in argv
    assert "FELIX_DEFAULTENDPOINTTOHOSTACTION=ACCEPT" in argv
    assert "IP_AUTODETECTION_METHOD=interface=eth0" in argv
    assert "CALICO_RUN_DIR=/srv/run" in argv
    assert "/srv/run:/srv/run" in argv
    assert not any(a.startswith("CALICO_NODE_ENGINE") for a in argv)  # calicoctl's own


def test_no_modules_mount_on_a_host_without_lib_modules() -> None:
    argv = nc.run_argv("podman", IMAGE, {}, modules=False)
    assert not any("/lib/modules" in a for a in argv)


def test_etcd_tls_files_are_mounted_read_only() -> None:
    env = {"ETCD_CA_CERT_FILE": "/etc/pki/ca.pem", "ETCD_KEY_FILE": "/etc/pki/k.pem"}
    argv = nc.run_argv("docker", IMAGE, env)
    assert "ETCD_CA_CERT_FILE=/etc/calico/certs/ca.crt" in argv
    assert "/etc/pki/ca.pem:/etc/calico/certs/ca.crt:ro" in argv
    assert "/etc/pki/k.pem:/etc/calico/certs/key.pem:ro" in argv
    assert not any(a.startswith("ETCD_CERT_FILE") for a in argv)


def test_show_is_a_shell_command_for_the_same_argv() -> None:
    argv = nc.run_argv("docker", IMAGE, {"NODENAME": "a b", "IP": "10.0.0.1"})
    text = nc.show(argv)
    assert "\\\n  -e 'NODENAME=a b'" in text
    assert shlex.split(text.replace("\\\n", "")) == argv


def test_choose_auto_takes_the_first_engine_that_answers_and_has_the_image() -> None:
    got = nc.choose("auto", IMAGE, which=_which("docker", "podman"),
                    answers=lambda e: e.endswith("podman"), holds=lambda e, i: True)  # fmt: skip
    assert got == nc.Choice("/usr/bin/podman", "")
    got = nc.choose("auto", IMAGE, which=_which("docker", "podman"),
                    answers=lambda e: True, holds=lambda e, i: e.endswith("podman"))  # fmt: skip
    assert got.engine == "/usr/bin/podman"


def test_choose_auto_falls_back_to_the_process_form_saying_why() -> None:
    none = nc.choose("auto", IMAGE, which=_which(), answers=lambda e: True,
                     holds=lambda e, i: True)  # fmt: skip
    assert none == nc.Choice(None, "neither docker nor podman is installed")
    got = nc.choose("auto", IMAGE, which=_which("docker", "podman"),
                    answers=lambda e: e.endswith("podman"), holds=lambda e, i: False)  # fmt: skip
    assert got.engine is None
    assert "docker is not answering" in got.reason
    assert f"podman has no image {IMAGE}" in got.reason


def test_choose_explicit_engines() -> None:
    assert nc.choose("none", IMAGE).engine is None
    got = nc.choose("docker", IMAGE, which=_which("docker"), answers=lambda e: True,
                    holds=lambda e, i: False)  # fmt: skip
    assert got.engine == "/usr/bin/docker"  # asked for: used even without the image (its error)
    with pytest.raises(nc.EngineError, match="--engine podman: podman is not installed"):
        nc.choose("podman", IMAGE, which=_which("docker"))
    with pytest.raises(nc.EngineError, match="'rkt' is not one of"):
        nc.choose("rkt", IMAGE)


def test_cli_engine_none_dryrun_is_the_process_form() -> None:
    out = CliRunner().invoke(
        cli, ["node", "run", "--name", "n9", "--engine", "none", "--dryrun"],
        env={"ETCD_ENDPOINTS": "http://127.0.0.1:2379"},
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "NODENAME=n9" in out.output
    assert "docker" not in out.output
    assert "podman" not in out.output


def test_cli_bad_engine_is_refused() -> None:
    out = CliRunner().invoke(cli, ["node", "run", "--engine", "lxc", "--dryrun"])
    assert out.exit_code != 0
    assert "'lxc' is not one of auto, docker, podman, none" in out.output

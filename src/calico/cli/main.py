"""calicoctl: the command-line entry point.

Subcommands live in their own modules and are imported only when invoked, so ``calicoctl version``
does not pay for YAML, rich or the IPAM library. The table below is the whole wiring.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

# command name -> "module:attribute" of a click command or group
SUBCOMMANDS: dict[str, str] = {
    "create": "calico.cli.resource_cmds:create",
    "apply": "calico.cli.resource_cmds:apply",
    "replace": "calico.cli.resource_cmds:replace",
    "delete": "calico.cli.resource_cmds:delete",
    "get": "calico.cli.resource_cmds:get",
    "label": "calico.cli.resource_cmds:label",
    "version": "calico.cli.resource_cmds:version",
    "ipam": "calico.cli.ipam_cmd:ipam",
    "node": "calico.cli.node_cmd:node",
    "flows": "calico.cli.flows_cmd:flows",
    "policy": "calico.cli.policy_cmd:policy",
    "explain": "calico.cli.explain_cmd:explain_command",
    "datastore": "calico.cli.migrate:datastore",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        cmd: Any = getattr(importlib.import_module(module), attr)
        assert isinstance(cmd, click.Command)
        return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    "config_file",
    default=None,
    metavar="FILE",
    help="calicoctl config file (default /etc/calico/calicoctl.cfg)",
)
@click.option("--log-level", "-l", default="panic", help="log level (debug, info, warning, panic)")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, log_level: str) -> None:
    """calicoctl: manage Calico resources, IPAM and nodes."""
    ctx.obj = {"config_file": config_file, "log_level": log_level}


def main() -> None:
    sys.exit(cli.main(prog_name="calicoctl", standalone_mode=True))

"""``calicoctl policy impact|promote NAME``: what a staged policy would change, and enforcing it.

NAME is a StagedNetworkPolicy (in ``-n``, default ``default``), a StagedGlobalNetworkPolicy or a
StagedKubernetesNetworkPolicy (in ``-n``); ``--kind`` picks one when several have the name.

* ``impact`` reads flow records (this node's ``flows.log``, or ``--flows FILE``, ``-`` for
  stdin: e.g. ``calico-lab flows -o json``) and reports the flows the staged policy would turn
  from allowed to denied and from denied to allowed (``cli.flow_view.impact``).
* ``promote`` makes it enforced in ONE etcd transaction: the policy it stages is written (a
  staged ``Delete``: deleted) and the staged policy removed, both only if neither changed since
  they were read; a lost race is retried. A StagedKubernetesNetworkPolicy becomes the Calico
  NetworkPolicy ``knp.default.<name>`` the controllers would make of its Kubernetes policy.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from calico.cli import failures, flow_view, flows_cmd

STAGED_KINDS = ("StagedNetworkPolicy", "StagedGlobalNetworkPolicy", "StagedKubernetesNetworkPolicy")
ENFORCED = {
    "StagedNetworkPolicy": "NetworkPolicy",
    "StagedGlobalNetworkPolicy": "GlobalNetworkPolicy",
    "StagedKubernetesNetworkPolicy": "NetworkPolicy",
}
KIND_ALIASES = {"snp": STAGED_KINDS[0], "sgnp": STAGED_KINDS[1], "sknp": STAGED_KINDS[2]}
Resource = dict[str, Any]


class PolicyError(Exception):
    """A ``calicoctl policy`` failure, already in words."""


def staged_id(kind: str, name: str, namespace: str | None) -> str:
    """The staged policy's id in flow records (the dataplane's ``[ns/]staged:<name>``)."""
    if kind == "StagedKubernetesNetworkPolicy":
        name = "knp.default." + name
    return f"{namespace}/staged:{name}" if kind != "StagedGlobalNetworkPolicy" else f"staged:{name}"


def _find(client: Any, name: str, namespace: str, kind: str | None) -> Resource:
    from calico.datastore.client import NotFound

    kinds = [KIND_ALIASES.get(kind.lower(), kind)] if kind else list(STAGED_KINDS)
    for k in kinds:
        if k not in STAGED_KINDS:
            raise PolicyError(
                f"--kind {kind}: not a staged policy kind ({', '.join(STAGED_KINDS)})"
            )
    found = []
    for k in kinds:
        try:
            found.append(client.get(k, name, namespace if k != STAGED_KINDS[1] else None))
        except NotFound:
            continue
    if not found:
        where = f" (namespace {namespace})"
        raise PolicyError(f"no staged policy named {name}{where}: looked for {', '.join(kinds)}")
    if len(found) > 1:
        have = ", ".join(r["kind"] for r in found)
        raise PolicyError(f"{name}: several staged policies have this name ({have}): use --kind")
    res: Resource = found[0]
    return res


def _describe(res: Resource) -> str:
    meta = res["metadata"]
    ns = meta.get("namespace")
    return f"{res['kind']}({ns}/{meta['name']})" if ns else f"{res['kind']}({meta['name']})"


@click.group()
def policy() -> None:
    """Staged policies: their impact on observed flows, and promoting them."""


@policy.command()
@click.argument("name")
@click.option("-n", "--namespace", default="default", help="namespace of a namespaced kind")
@click.option("--kind", default=None, help="StagedNetworkPolicy (snp), ...Global... (sgnp), sknp")
@click.option("--since", default="10m", show_default=True, metavar="DURATION")
@click.option("--flows", "flows_file", default=None, metavar="FILE",
              help="flow records to read ('-': stdin); default: this node's flows.log")  # fmt: skip
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
@failures.config_option
@failures.fails_cleanly(PolicyError, flows_cmd.FlowsError)
def impact(
    name: str,
    namespace: str,
    kind: str | None,
    since: str,
    flows_file: str | None,
    output: str,
    config_file: str | None,
) -> None:
    """Which observed flows the staged policy NAME would change (allowed -> denied, denied ->
    allowed), with counts and endpoints."""
    client = failures.datastore_config(config_file).client()
    res = _find(client, name, namespace, kind)
    ident = staged_id(res["kind"], name, res["metadata"].get("namespace"))
    flt = flow_view.Filter(since=flows_cmd.parse_since(since))
    report = flow_view.impact(flow_view.select(_records(flows_file), flt), ident)
    if output == "json":
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        click.echo(flow_view.impact_text(report, _describe(res), since))


def _records(flows_file: str | None) -> list[Resource]:
    from calico.lib import jsonlines

    if flows_file == "-":
        out = []
        for line in sys.stdin:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            out.extend(obj if isinstance(obj, list) else [obj])
        return [r for r in out if isinstance(r, dict)]
    path = flows_cmd.flow_file(dict(os.environ), flows_file)
    if not path.exists():
        raise PolicyError(f"no flow logs at {path} (--flows FILE reads others)")
    return list(jsonlines.read(Path(path)))


@policy.command()
@click.argument("name")
@click.option("-n", "--namespace", default="default", help="namespace of a namespaced kind")
@click.option("--kind", default=None, help="StagedNetworkPolicy (snp), ...Global... (sgnp), sknp")
@failures.config_option
@failures.fails_cleanly(PolicyError)
def promote(name: str, namespace: str, kind: str | None, config_file: str | None) -> None:
    """Enforce the staged policy NAME: write the policy it stages (or delete it, for a staged
    Delete) and remove the staged one, in one transaction."""
    from calico.cli import promotion

    client = failures.datastore_config(config_file).client()
    for _attempt in range(5):
        staged = _find(client, name, namespace, kind)
        try:
            message = promotion.promote(client, staged)
        except promotion.Raced:
            continue
        except promotion.PromotionError as exc:
            raise PolicyError(str(exc)) from None
        click.echo(message)
        return
    raise PolicyError(f"{name}: changed by someone else five times while promoting; try again")

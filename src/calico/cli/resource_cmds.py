"""calicoctl's resource commands: create, apply, replace, delete, get, label, version.

Each command reads and validates *all* its input first (:mod:`calico.cli.loading`), then connects
and writes: create/apply/replace in transactions of up to 128 resources (:mod:`calico.cli.batch`),
delete one resource at a time (:mod:`calico.cli.writing`); then it prints calicoctl's summary.
Anything that goes wrong prints a message naming the resource and the reason on stderr and exits 1.
The datastore comes from ``--config FILE`` (a CalicoAPIConfig) or the environment, as
:mod:`calico.datastore.config` reads them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from calico.cli import batch, failures, loading, pool_checks, printers, tier_checks, writing
from calico.datastore.client import Client, Conflict, NotFound
from calico.model import kinds, validation

Resource = dict[str, Any]
F = TypeVar("F", bound=Callable[..., None])


class CommandError(Exception):
    """A calicoctl failure whose message is already what the user should read."""


_fails_cleanly = failures.fails_cleanly(
    CommandError, validation.ValidationError, prefixed=(loading.LoadError,)
)


def _client(config_file: str | None) -> Client:
    return failures.datastore_config(config_file).client()


def _namespace_option(fn: F) -> F:
    return click.option("-n", "--namespace", default=None, help="namespace (namespaced kinds)")(fn)


def _file_option(fn: F, required: bool = True) -> F:
    return click.option(
        "-f",
        "--filename",
        required=required,
        metavar="FILE",
        help="YAML or JSON file, '-' for stdin",
    )(fn)


def _emit(stdout: list[str], stderr: list[str]) -> None:
    for line in stdout:
        click.echo(line)
    if stderr:
        raise CommandError("\n".join(stderr))


# ---- create / apply / replace ------------------------------------------------------------


def _refuse(problems: list[str], what: str) -> None:
    if problems:
        raise CommandError(
            f"Failed to execute command: {len(problems)} problem(s) with {what}; nothing was "
            "written:\n  " + "\n  ".join(problems)
        )


def _write_command(verb: str, past: str, help_text: str, skip_flag: str) -> click.Command:
    @click.command(verb, help=help_text)
    @_file_option
    @_namespace_option
    @failures.config_option
    @_fails_cleanly
    def command(
        filename: str, namespace: str | None, config_file: str | None, **flags: bool
    ) -> None:
        resources = loading.load(filename, namespace=namespace)
        client = _client(config_file)
        problems = pool_checks.check(client, resources, replacing=verb != "create")
        if problems:
            raise CommandError(
                f"Failed to execute command: {len(problems)} problem(s) with IPPools; nothing "
                "was written:\n  " + "\n  ".join(problems)
            )
        _refuse(tier_checks.check_writes(client, resources), "tiers")
        resources = tier_checks.order_writes(resources)
        outcome = batch.write(client, resources, verb, skip_exists=flags.get("skip_exists", False))
        _emit(*writing.report(verb, past, outcome))

    if skip_flag:
        command = click.option("--skip-exists", "-s", "skip_exists", is_flag=True,
                               help="treat an existing resource as created")(command)  # fmt: skip
    return command


create = _write_command(
    "create", "created", "Create resources from a file (fails on existing ones).", "skip-exists"
)
apply = _write_command("apply", "applied", "Create resources, or replace them if they exist.", "")
replace = _write_command(
    "replace",
    "replaced",
    "Replace existing resources (resourceVersion, when given, must match).",
    "",
)


# ---- delete ------------------------------------------------------------------------------


def _from_args(
    kind_arg: str | None, names: tuple[str, ...], namespace: str | None
) -> list[Resource]:
    if not kind_arg or not names:
        raise CommandError("give -f FILE, or KIND and at least one NAME")
    kind = kinds.lookup(kind_arg)
    if namespace and not kind.namespaced:
        raise CommandError(f"{kind.name} is not namespaced")
    out = []
    for name in names:
        meta: Resource = {"name": name}
        if kind.namespaced:
            meta["namespace"] = namespace or "default"
        out.append({"apiVersion": kinds.API_VERSION, "kind": kind.name, "metadata": meta})
    return out


@click.command(help="Delete resources named on the command line or in a file.")
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option(
    "-f", "--filename", default=None, metavar="FILE", help="YAML or JSON file, '-' for stdin"
)
@click.option("--skip-not-exists", is_flag=True, help="treat a missing resource as deleted")
@_namespace_option
@failures.config_option
@_fails_cleanly
def delete(
    kind: str | None, names: tuple[str, ...], filename: str | None, skip_not_exists: bool,
    namespace: str | None, config_file: str | None,
) -> None:  # fmt: skip
    if filename:
        resources = loading.load(filename, namespace=namespace, full=False)
    else:
        resources = _from_args(kind, names, namespace)
    client = _client(config_file)
    _refuse(tier_checks.check_deletes(client, resources), "tiers")
    resources = tier_checks.order_deletes(resources)

    def op(r: Resource) -> object:
        meta = r["metadata"]
        version = str(meta.get("resourceVersion") or "")
        if r["kind"] == "Node":  # and what it leaves: addresses, endpoints, affinities, ...
            from calico.ipam import node_cleanup as node_delete

            return node_delete.delete_node(client, meta["name"], resource_version=version)
        return client.delete(r["kind"], meta["name"], meta.get("namespace"),
                             resource_version=version)  # fmt: skip

    outcome = writing.run(resources, op, skip=(NotFound,) if skip_not_exists else ())
    _emit(*writing.report("delete", "deleted", outcome))


# ---- get ---------------------------------------------------------------------------------

OUTPUTS = ("ps", "wide", "yaml", "json")


@click.command(help="Show resources: all of a KIND, some by NAME, or those in a file.")
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option(
    "-f", "--filename", default=None, metavar="FILE", help="YAML or JSON file, '-' for stdin"
)
@click.option("-o", "--output", default="ps", help="ps, wide, yaml, json or custom-columns=A,B")
@click.option("-A", "--all-namespaces", is_flag=True, help="all namespaces (namespaced kinds)")
@click.option("--export", is_flag=True, help="drop cluster-specific metadata (single resource)")
@_namespace_option
@failures.config_option
@_fails_cleanly
def get(
    kind: str | None, names: tuple[str, ...], filename: str | None, output: str,
    all_namespaces: bool, export: bool, namespace: str | None, config_file: str | None,
) -> None:  # fmt: skip
    _check_get_options(output, all_namespaces=all_namespaces, namespace=namespace)
    client = _client(config_file) if filename or kind else None
    if client is None:
        raise CommandError("give a KIND (optionally with NAMEs), or -f FILE")
    errors: list[str] = []
    list_kind: str | None = None
    if filename:
        found = _get_each(client, loading.load(filename, namespace=namespace, full=False), errors)
    else:
        assert kind is not None
        found, list_kind = _get_kind(
            client, kind, names, namespace=namespace, all_namespaces=all_namespaces, errors=errors
        )
    if export:
        _strip_for_export(found)
    _print(client, found, output, list_kind=list_kind, single=bool(names) and len(names) == 1)
    policies = [r for r in found if r["kind"] in ("NetworkPolicy", "GlobalNetworkPolicy")]
    if output == "wide" and names and policies:
        from calico.cli import rule_counters

        click.echo(rule_counters.section(client, policies), nl=False)
    if errors:
        raise CommandError("\n".join(errors))


def _check_get_options(output: str, *, all_namespaces: bool, namespace: str | None) -> None:
    if output not in OUTPUTS and not output.startswith("custom-columns="):
        raise CommandError(f"unrecognized output format {output!r} (want {', '.join(OUTPUTS)})")
    if all_namespaces and namespace:
        raise CommandError("cannot use both --namespace and --all-namespaces")


def _get_kind(
    client: Client,
    kind: str,
    names: tuple[str, ...],
    *,
    namespace: str | None,
    all_namespaces: bool,
    errors: list[str],
) -> tuple[list[Resource], str | None]:
    """``get KIND [NAME...]``: (the resources found, the kind when the whole kind was listed).
    A name not found is added to ``errors``."""
    k = kinds.lookup(kind)
    if not k.namespaced and (namespace or all_namespaces):
        raise CommandError(f"{k.name} is not namespaced")
    ns = None if all_namespaces or not k.namespaced else (namespace or "default")
    if names and not all_namespaces:
        return _get_each(client, _from_args(kind, names, ns), errors), None
    found = client.list(k.name, ns)
    list_kind: str | None = None
    if names:
        found = [r for r in found if r["metadata"]["name"] in names]
        errors.extend(
            f"Failed to get resources: resource does not exist: {k.name}({n}) in any namespace"
            for n in names
            if n not in {r["metadata"]["name"] for r in found}
        )
    else:
        list_kind = k.name
    if k.name == "Tier":  # as calicoctl lists them: by order, unordered last
        found.sort(key=_tier_order)
    return found, list_kind


def _strip_for_export(found: list[Resource]) -> None:
    for r in found:
        for key in ("namespace", "uid", "resourceVersion", "creationTimestamp"):
            r["metadata"].pop(key, None)


def _tier_order(tier: Resource) -> tuple[bool, float]:
    order = (tier.get("spec") or {}).get("order")
    return (order is None, float(order or 0))


def _get_each(client: Client, wanted: list[Resource], errors: list[str]) -> list[Resource]:
    found = []
    for r in wanted:
        meta = r["metadata"]
        try:
            found.append(client.get(r["kind"], meta["name"], meta.get("namespace")))
        except NotFound as exc:
            errors.append(f"Failed to get resources: {exc}")
    return found


def _print(
    client: Client, found: list[Resource], output: str, *, list_kind: str | None, single: bool
) -> None:
    if output in ("yaml", "json"):
        dump = printers.to_yaml if output == "yaml" else printers.to_json
        if single and len(found) == 1:
            click.echo(dump(found[0]), nl=False)
        elif found or list_kind:
            click.echo(dump(printers.as_list(found, list_kind)), nl=False)
        return
    custom = output.split("=", 1)[1].split(",") if output.startswith("custom-columns=") else None
    by_kind: dict[str, list[Resource]] = {}
    for r in found:
        by_kind.setdefault(r["kind"], []).append(r)
    if list_kind:
        by_kind.setdefault(list_kind, [])
    for kind_name, items in by_kind.items():
        asn = functools.cache(lambda: _default_asn(client))
        click.echo(printers.table(kind_name, items, wide=output == "wide", custom=custom,
                                  default_asn=asn), nl=False)  # fmt: skip


def _default_asn(client: Client) -> str:
    try:
        spec = client.get("BGPConfiguration", "default").get("spec") or {}
    except NotFound:
        return "64512"
    return str(spec.get("asNumber") or 64512)


# ---- label -------------------------------------------------------------------------------


@click.command(help="Set (KEY=VALUE) or remove (KEY --remove) a label on a resource.")
@click.argument("kind")
@click.argument("name")
@click.argument("label")
@click.option("--overwrite", is_flag=True, help="replace an existing value")
@click.option("--remove", is_flag=True, help="remove the label KEY")
@_namespace_option
@failures.config_option
@_fails_cleanly
def label(
    kind: str, name: str, label: str, overwrite: bool, remove: bool, namespace: str | None,
    config_file: str | None,
) -> None:  # fmt: skip
    k = kinds.lookup(kind)
    key, sep, value = label.partition("=")
    if remove == bool(sep):
        raise CommandError("give KEY=VALUE to set a label, or KEY --remove to remove one")
    client = _client(config_file)
    ns = (namespace or "default") if k.namespaced else None
    for _ in range(5):
        res = client.get(k.name, name, ns)
        labels = res["metadata"].setdefault("labels", {})
        if remove:
            if key not in labels:
                raise CommandError(
                    f"can not remove label of resource, label key {key} is not present"
                )
            del labels[key]
        else:
            if key in labels and not overwrite:
                raise CommandError(
                    f"failed to update label of resource: key {key} is already present. "
                    "please use '--overwrite' to set a new value."
                )
            labels[key] = value
        try:
            client.update(res)  # CAS on the resourceVersion just read
        except Conflict:
            continue
        break
    else:
        raise CommandError(f"{k.name} {name}: kept changing while labelling; try again")
    if remove:
        click.echo(f"Successfully removed label {key} from {kind} {name}")
    else:
        click.echo(f"Successfully set label {key} on {kind} {name}")


# ---- version -----------------------------------------------------------------------------


@click.command(help="Print the client version and the cluster's (from ClusterInformation).")
@failures.config_option
def version(config_file: str | None) -> None:
    from importlib import metadata

    try:
        client_version = metadata.version("calico-py")
    except metadata.PackageNotFoundError:
        client_version = "unknown"
    click.echo(f"Client Version:    v{client_version}")
    try:
        from calico.datastore import config

        root = click.get_current_context().find_root().obj or {}
        cfg = config.load(config_file or root.get("config_file"))
        client = Client(cfg.backend(timeout=3.0))
        spec = client.get("ClusterInformation", "default").get("spec") or {}
    except Exception as exc:  # report, do not fail: the client version is still useful
        click.echo(f"Unable to retrieve Cluster Version or Type: {exc}")
        return
    click.echo(f"Cluster Version:   {spec.get('calicoVersion', 'unknown')}")
    click.echo(f"Cluster Type:      {spec.get('clusterType', 'unknown')}")

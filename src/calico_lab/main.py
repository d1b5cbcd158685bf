"""``calico-lab``: a multi-node Calico cluster on one Linux host, built from network namespaces.

Commands: up, down, status, list, exec, apply, delete, label, probe, matrix, explain, flows. Every
command takes ``--name LAB`` (env ``CALICO_LAB``); without it, the only lab that exists, else
``lab``. Errors print one line and exit 1; ``probe`` exits 0 when connected, 1 when not.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from calico_lab import state
from calico_lab.state import LabError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_NAME = "lab"


def resolve_name(name: str | None) -> str:
    if name:
        return state.check_name(name)
    labs = state.existing_labs()
    return labs[0] if len(labs) == 1 else DEFAULT_NAME


def name_option(fn: F) -> F:
    return click.option(
        "--name",
        "-n",
        "name",
        envvar="CALICO_LAB",
        default=None,
        help="Lab name (env CALICO_LAB; default: the only lab, else 'lab').",
    )(fn)


def _fail(exc: Exception) -> None:
    click.echo(f"calico-lab: {exc}", err=True)
    sys.exit(1)


class LabGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from calico.datastore.backend import StoreError
        from calico.datastore.client import DatastoreError
        from calico.lib.cmd import CmdError
        from calico_lab.cni_runner import CNIError

        try:
            return super().invoke(ctx)
        except (
            LabError,
            DatastoreError,
            StoreError,
            CNIError,
            CmdError,
            TimeoutError,
            OSError,
            ValueError,
        ) as exc:
            _fail(exc)


@click.group(cls=LabGroup)
def cli() -> None:
    """A multi-node Calico lab in network namespaces (a tiny kind for Calico)."""
    if os.geteuid() != 0:
        raise click.UsageError("calico-lab needs root (it makes network namespaces)")


MODE_HELP = "[Always|CrossSubnet|Never]"


@cli.command()
@name_option
@click.option("--nodes", "-N", "n_nodes", type=int, default=3, show_default=True)
@click.option(
    "--subnets",
    type=int,
    default=None,
    help="Spread the nodes round robin over N subnets 10.99.<k>.0/24 joined by a router "
    "(default 1).",
)
@click.option("--ipip", metavar=MODE_HELP, default=None, help="The pool's ipipMode (Never).")
@click.option(
    "--vxlan",
    metavar=MODE_HELP,
    default=None,
    help="The pool's vxlanMode (CrossSubnet; Never when --ipip is on).",
)
@click.option(
    "--nat-outgoing/--no-nat-outgoing",
    default=None,
    help="The pool's natOutgoing (on).",
)
@click.option(
    "--backend", metavar="[bird|vxlan|none]", default=None, help="calico-node's backend (bird)."
)
@click.option(
    "--etcd-members",
    type=int,
    default=None,
    help="Run a real etcd cluster of N members in the core, each on its own address (1).",
)
@click.option(
    "--etcd-tls/--no-etcd-tls",
    default=None,
    help="etcd requires client certificates; the lab makes a CA and one per component (off).",
)
@click.option(
    "--typha/--no-typha",
    default=None,
    help="Run a calico-typha in the core; the agents sync from it, not from etcd (off).",
)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Take Namespaces, Pods and NetworkPolicies from this cluster's API server (with "
    "--datastore kubernetes: also Calico's datastore).",
)
@click.option(
    "--datastore",
    metavar="[etcdv3|kubernetes]",
    default=None,
    help="Calico's datastore (etcdv3): kubernetes keeps it in an API server, as CRDs.",
)
@click.option(
    "--apiserver",
    metavar="[kube-apiserver|stand-in]",
    default=None,
    help="With --datastore kubernetes and no --kubeconfig: a real kube-apiserver in the core "
    "(default when make kube built it) or the lab's stand-in.",
)
@click.option(
    "--kubernetes",
    is_flag=True,
    help="A real Kubernetes cluster: control plane in the core, kubelet + containerd + "
    "kube-proxy on every node, Calico by its hosted install (docs/design/kubernetes.md).",
)
@click.option(
    "--calico",
    metavar="[hosted|host]",
    default=None,
    help="With --kubernetes: manifests/calico.yaml (hosted, default) or the lab's processes.",
)
@click.option(
    "--kube-bin",
    metavar="DIR",
    default=None,
    help="With --kubernetes: the Kubernetes 1.20+ binaries (default: make kube's cache).",
)
@click.option("--timeout", type=float, default=None, help="Seconds (90; 600 with --kubernetes).")
@click.option("--quiet", "-q", is_flag=True)
def up(
    name: str | None,
    n_nodes: int,
    kubeconfig: str | None,
    kubernetes: bool,
    calico: str | None,
    kube_bin: str | None,
    timeout: float | None,
    quiet: bool,
    etcd_members: int | None,
    etcd_tls: bool | None,
    datastore: str | None,
    apiserver: str | None,
    typha: bool | None,
    **options: Any,
) -> None:
    """Bring the lab up (idempotent: repairs what is missing).

    The network options are fixed when the lab is made; a later up keeps them (and refuses
    different ones)."""
    from calico_lab import cluster, kdd, network
    from calico_lab import datastore as etcd_options
    from calico_lab import typha as lab_typha
    from calico_lab.progress import Progress

    lab_name = resolve_name(name)
    given = network.requested(n_nodes, **options)  # bad values: nothing is made
    given_etcd = etcd_options.requested(members=etcd_members, tls=etcd_tls)
    given_kdd = kdd.requested(datastore, kubeconfig=kubeconfig, apiserver=apiserver)
    if given_kdd and kubernetes:
        raise LabError("--datastore kubernetes: --kubernetes installs Calico its own way; use one")
    if given_kdd and typha:
        raise LabError("--typha with --datastore kubernetes: not supported in the lab yet")
    recorded = state.load(lab_name)
    if recorded is not None and recorded.kubernetes and not calico:
        calico = str(recorded.kubernetes.get("calico"))  # up again keeps the lab's form
    k8s = _kubernetes_options(kubernetes, calico, kube_bin, kubeconfig)
    wait = timeout if timeout is not None else (600.0 if k8s else 90.0)
    with Progress(f"calico-lab up {lab_name} ({n_nodes} nodes)", enabled=not quiet) as prog:
        lab = cluster.up(
            lab_name,
            n_nodes,
            options=given,
            etcd_options=given_etcd,
            typha=typha,
            step=prog.step,
            timeout=wait,
            kubernetes=k8s,
            kdd_options=(given_kdd or {}) if datastore else None,
        )
        if kubeconfig:
            from calico_lab import kube

            prog.step("Kubernetes sync (scheduler + kubelet for the API server's pods)")
            kube.start(lab, kubeconfig)
    click.echo(
        f"lab {lab.name} is up: nodes {', '.join(n.name for n in lab.nodes)}; "
        f"etcd {lab.etcd_endpoint} (inside {lab.core}); outside {network.OUTSIDE_IP}; "
        f"{lab.network.flags()} {lab.etcd.flags()}; {kdd.describe(lab)}"
        + (f"; typha {lab_typha.address()}" if lab.typha else "")
    )


def _kubernetes_options(
    kubernetes: bool, calico: str | None, kube_bin: str | None, kubeconfig: str | None
) -> dict[str, Any] | None:
    """``up --kubernetes``'s state for a new lab (checked before anything is made)."""
    if not kubernetes:
        if calico or kube_bin:
            raise LabError("--calico and --kube-bin go with --kubernetes")
        return None
    if kubeconfig:
        raise LabError("--kubeconfig follows another cluster; --kubernetes makes one: use one")
    from calico_lab import k8s_cluster

    return k8s_cluster.new_state(
        kube_bin=kube_bin or k8s_cluster.default_kube_bin(), calico=calico or "hosted"
    )


@cli.command()
@name_option
@click.option("--quiet", "-q", is_flag=True)
def down(name: str | None, quiet: bool) -> None:
    """Remove every namespace, process and file of the lab."""
    from calico_lab import cluster
    from calico_lab.progress import Progress

    lab_name = resolve_name(name)
    with Progress(f"calico-lab down {lab_name}", enabled=not quiet) as prog:
        removed = cluster.down(lab_name, step=prog.step)
    click.echo(f"lab {lab_name} removed" if removed else f"lab {lab_name} does not exist")


@cli.command("list")
def list_labs() -> None:
    """The labs that exist on this host."""
    for name in state.existing_labs():
        click.echo(name)


@cli.command()
@name_option
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table")
def status(name: str | None, output: str) -> None:
    """Nodes (subnet, BGP sessions, tunnel addresses), the outside host and pods."""
    from calico_lab import status as snapshots

    snap = snapshots.snapshot(resolve_name(name))
    if output == "json":
        click.echo(json.dumps(snap, indent=2))
        return
    from calico_lab.views import status_text

    click.echo(status_text(snap))


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@name_option
@click.argument("target")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def exec(name: str | None, target: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a node (NODE), pod (NS/POD), ``outside`` or ``router`` namespace.

    Example: calico-lab exec node1 -- birdc show protocols
    """
    from calico_lab import execute

    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    execute.exec_in(state.require(resolve_name(name)), target, argv)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@name_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kubectl(name: str | None, args: tuple[str, ...]) -> None:
    """Run kubectl against an ``up --kubernetes`` lab (as its admin, from the core namespace).

    Example: calico-lab kubectl get pods -A -o wide
    """
    from calico_lab import k8s_api

    k8s_api.exec_kubectl(state.require(resolve_name(name)), list(args))


def _read(files: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for f in files:
        try:
            if f == "-":
                out.append((f, sys.stdin.read()))
            else:
                with open(f) as fh:
                    out.append((f, fh.read()))
        except OSError as exc:
            raise LabError(f"-f {f}: {exc.strerror}") from None
    return out


def _docs(files: tuple[str, ...]) -> list[Any]:
    from calico_lab import objects

    docs = []
    for source, text in _read(files):
        docs += objects.parse(text, source)
    return docs


@cli.command()
@name_option
@click.option("--filename", "-f", "files", multiple=True, required=True, help="FILE or -")
def apply(name: str | None, files: tuple[str, ...]) -> None:
    """Create or update Namespaces, Pods, NetworkPolicies and Calico v3 resources.

    On a --kubernetes lab: any Kubernetes object (through the API server)."""
    from calico_lab import cluster, objects

    if lab := _kubernetes_lab(name):
        from calico_lab import k8s_pods

        k8s_pods.apply(lab, _read(files), click.echo)
        return
    docs = _docs(files)
    with cluster.session(resolve_name(name)) as (lab, store):
        _refuse_if_following(lab, [d for d in docs if not d.is_calico])
        objects.apply(lab, store, docs, click.echo)


@cli.command()
@name_option
@click.option("--filename", "-f", "files", multiple=True, required=True, help="FILE or -")
def delete(name: str | None, files: tuple[str, ...]) -> None:
    """Delete what the manifests name."""
    from calico_lab import cluster, objects

    if lab := _kubernetes_lab(name):
        from calico_lab import k8s_pods

        k8s_pods.delete(lab, _read(files), click.echo)
        return
    docs = _docs(files)
    with cluster.session(resolve_name(name)) as (lab, store):
        _refuse_if_following(lab, [d for d in docs if not d.is_calico])
        objects.delete(lab, store, docs, click.echo)


def _kubernetes_lab(name: str | None) -> state.LabState | None:
    """The lab when it was made with ``up --kubernetes`` (its API server owns the objects)."""
    lab = state.load(resolve_name(name))
    return lab if lab is not None and lab.kubernetes else None


def _with_pods(name: str | None) -> state.LabState:
    """The lab, with a --kubernetes lab's pods read from its API server."""
    from calico_lab import k8s_pods

    return k8s_pods.with_live_pods(state.require(resolve_name(name)))


def _refuse_if_following(lab: state.LabState, what: list[Any]) -> None:
    """With ``up --kubeconfig`` the API server owns Kubernetes objects; the lab only follows."""
    from calico_lab import daemons

    if what and daemons.alive(lab.kube_pid):
        raise LabError(
            f"lab {lab.name} follows a Kubernetes API server: change Namespaces, Pods and "
            "NetworkPolicies there (kubectl); calico-lab apply takes Calico resources only"
        )


def parse_label_changes(args: tuple[str, ...]) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    for arg in args:
        if arg.endswith("-") and "=" not in arg:
            changes[arg[:-1]] = None
        elif "=" in arg and arg.split("=", 1)[0]:
            k, v = arg.split("=", 1)
            changes[k] = v
        else:
            raise LabError(f"label {arg!r}: use KEY=VALUE to set or KEY- to remove")
    return changes


@cli.command()
@name_option
@click.argument("kind", type=click.Choice(["pod", "namespace", "ns"]))
@click.argument("target")
@click.argument("changes", nargs=-1, required=True)
def label(name: str | None, kind: str, target: str, changes: tuple[str, ...]) -> None:
    """Change labels live: label pod NS/NAME KEY=VALUE | KEY-; label namespace NAME ..."""
    from calico_lab import cluster, objects, pods

    parsed = parse_label_changes(changes)
    if k8s_lab := _kubernetes_lab(name):
        from calico_lab import k8s_pods

        labels = k8s_pods.label(k8s_lab, "pod" if kind == "pod" else "namespace", target, parsed)
        click.echo(f"{'pod' if kind == 'pod' else 'namespace'}/{target} labeled: "
                   f"{_fmt_labels(labels)}")  # fmt: skip
        return
    with cluster.session(resolve_name(name)) as (lab, store):
        _refuse_if_following(lab, [target])
        if kind == "pod":
            p = pods.relabel(lab, store, target, parsed)
            click.echo(f"pod/{p.key} labeled: {_fmt_labels(p.labels)}")
        else:
            labels = objects.relabel_namespace(lab, store, target, parsed)
            click.echo(f"namespace/{target} labeled: {_fmt_labels(labels)}")


def _fmt_labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "(none)"


@cli.command()
@name_option
@click.argument("src")
@click.argument("dst")
@click.option("--port", "-p", type=click.IntRange(1, 65535), required=True)
@click.option("--protocol", default="TCP", show_default=True)
@click.option("--timeout", type=float, default=1.0, show_default=True)
def probe(name: str | None, src: str, dst: str, port: int, protocol: str, timeout: float) -> None:
    """Exit 0 when SRC reaches DST on PORT, else 1.

    SRC is a pod (NS/POD), or with DST ``outside`` also a node (NODE); DST is a pod or
    ``outside``, whose answer (the source address it saw) is printed."""
    from calico_lab import probe as probes

    lab = _with_pods(name)
    if dst == "outside":
        seen = probes.probe_outside(lab, src, port=port, protocol=protocol, timeout=timeout)
        result = f"connected, outside saw {seen}" if seen else "no connection"
        click.echo(f"{src} -> outside {protocol.upper()}/{port}: {result}")
        sys.exit(0 if seen else 1)
    ok = probes.probe(lab, src, dst, port=port, protocol=protocol, timeout=timeout)
    click.echo(
        f"{src} -> {dst} {protocol.upper()}/{port}: {'connected' if ok else 'no connection'}"
    )
    sys.exit(0 if ok else 1)


@cli.command()
@name_option
@click.option("--namespaces", default="", help="Comma-separated namespaces (default: all).")
@click.option("--port", "-p", type=click.IntRange(1, 65535), required=True)
@click.option("--protocol", default="TCP", show_default=True)
@click.option("--timeout", type=float, default=1.0, show_default=True)
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table")
def matrix(
    name: str | None, namespaces: str, port: int, protocol: str, timeout: float, output: str
) -> None:
    """Probe every pod pair in parallel; print a ✓/✗ table or JSON."""
    from calico_lab import probe as probes

    wanted = [n for n in namespaces.split(",") if n] or None
    result = probes.matrix(
        _with_pods(name),
        port=port,
        protocol=protocol,
        timeout=timeout,
        namespaces=wanted,
    )
    if output == "json":
        click.echo(json.dumps(result, indent=1))
    else:
        click.echo(f"{protocol.upper()}/{port} (rows: from, columns: to)")
        click.echo(probes.render_table(result, colour=sys.stdout.isatty()))


@cli.command()
@name_option
@click.argument("src")
@click.argument("dst")
@click.option("--port", "-p", type=click.IntRange(1, 65535), default=None)
@click.option("--protocol", default="TCP", show_default=True)
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text")
def explain(
    name: str | None, src: str, dst: str, port: int | None, protocol: str, output: str
) -> None:
    """Why SRC can or cannot reach DST: ``calicoctl explain`` run on the lab's first node, which
    asks each node's agent (egress on SRC's node, ingress on DST's)."""
    from calico_lab import execute

    lab = state.require(resolve_name(name))
    if not lab.nodes:
        raise LabError(f"lab {lab.name} has no nodes")
    argv = ["calicoctl", "explain", src, dst, "--protocol", protocol, "-o", output]
    if port is not None:
        argv += ["--port", str(port)]
    execute.exec_in(lab, lab.nodes[0].name, argv)


@cli.command()
@name_option
@click.option("--node", default=None, help="one node's flows (default: every node's)")
@click.option("--follow", "-F", is_flag=True, help="keep printing records as nodes write them")
@click.option("--action", type=click.Choice(["deny", "allow"]), default=None)
@click.option("--since", default=None, metavar="DURATION", help="e.g. 10m")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table")
def flows(
    name: str | None,
    node: str | None,
    follow: bool,
    action: str | None,
    since: str | None,
    output: str,
) -> None:
    """The flows the lab's agents logged (denied ones; allowed ones too when configured): who
    talked to whom, the verdict and the tier/policy/rule behind it, merged from every node."""
    from calico_lab import flows as lab_flows

    lab = state.require(resolve_name(name))
    args = [*(["--action", action] if action else []), *(["--since", since] if since else [])]
    if follow:
        lab_flows.follow(lab, node, args, output, click.echo)
    else:
        lab_flows.show(lab_flows.gather(lab, node, args), output, click.echo)


def main() -> None:
    cli(prog_name="calico-lab")


if __name__ == "__main__":
    main()

"""The lab's verbs on a Kubernetes lab: pods are the API server's, the network is the lab's.

- ``apply``/``delete -f``: Kubernetes objects go to the API server (``kubectl apply``/``delete``;
  any kind: Services, Deployments...), ``projectcalico.org/v3`` resources to etcd as on any lab.
  A container without an image, or with the lab's ``calico-lab/responder``, gets that image with
  ``imagePullPolicy: Never`` (there is no registry) and, when it has no command or args, args that
  serve its containerPorts (``--tcp 80 --udp 80``...) under the pod's name. ``apply`` waits until
  every Pod it applied runs with an address, and fails early on an image or start error.
- ``label pod|namespace``: ``kubectl label --overwrite``.
- ``probe``/``matrix``/``status``: :func:`live` lists the pods from the API server and finds each
  one's network namespace as ``/proc/<pid>/ns/net`` of a process in the pod's cgroup
  (``/calab-<lab>-<node>/kubepods/.../pod<uid>/...``: this lab's nodes only), so the probes enter
  the pod's real namespace (containerd's, which has no name on the machine).
- ``exec NODE``: the node as a host (its network, mount and PID namespaces: ``ctr`` finds its
  containerd, ``/etc/cni/net.d`` is what its kubelet sees, ``calicoctl``/``birdc`` its Calico);
  ``exec NS/POD``: the pod's network namespace (``nsenter --net``) with the machine's programs, as
  on any lab.
"""

from __future__ import annotations

import copy
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from calico_lab import daemons, k8s_api, k8s_calico, k8s_host, k8s_images, k8s_state, pods
from calico_lab.state import LabError, LabState, PodState

Report = Callable[[str], None]
CALICO_API = "projectcalico.org/v3"
POD_CGROUP = re.compile(r"/kubepods(?:/[a-z]+)?/pod([0-9a-f-]{36})/")
TEMPLATED = ("Deployment", "DaemonSet", "ReplicaSet", "StatefulSet", "Job")
START_ERRORS = ("ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                "CrashLoopBackOff", "CreateContainerError", "CreateContainerConfigError",
                "RunContainerError")  # fmt: skip
RUNNING_TIMEOUT = 180.0


# ---- live pods ----------------------------------------------------------------------------------


def pod_pids(lab: LabState) -> dict[str, int]:
    """{pod uid: a PID in the pod} for this lab's nodes (from /proc/<pid>/cgroup)."""
    roots = tuple(f"/{k8s_state.cgroup_root(lab, n.name)}/kubepods" for n in lab.nodes)
    out: dict[str, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "cgroup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            path = line.split(":", 2)[-1]
            if path.startswith(roots) and (found := POD_CGROUP.search(path + "/")):
                out.setdefault(found[1], int(entry.name))
                break
    return out


def container_ports(pod: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return pods.container_ports(pod)
    except LabError:
        return []


def live(lab: LabState) -> tuple[dict[str, PodState], dict[str, dict[str, str]], list[Any]]:
    """(pods, namespaces with their labels, the raw Pod objects) from the API server. A pod
    without host network gets its IP only once its network namespace is found."""
    with k8s_api.Api(lab) as api:
        items = api.pods()
        namespaces = {
            n["metadata"]["name"]: dict(n["metadata"].get("labels") or {})
            for n in api.items("/api/v1/namespaces")
        }
    pids = pod_pids(lab)
    out = {}
    for item in items:
        meta, spec, status = item["metadata"], item.get("spec") or {}, item.get("status") or {}
        if spec.get("hostNetwork"):
            continue
        pid = pids.get(meta["uid"], 0)
        running = status.get("phase") == "Running" and status.get("podIP") and pid
        p = PodState(
            namespace=meta["namespace"],
            name=meta["name"],
            node=str(spec.get("nodeName") or ""),
            netns=f"/proc/{pid}/ns/net" if pid else "",
            container_id=meta["uid"],
            labels=dict(meta.get("labels") or {}),
            ports=container_ports(item),
            ip=str(status.get("podIP")) if running else "",
            service_account=str(spec.get("serviceAccountName") or "default"),
        )
        out[p.key] = p
    return out, namespaces, items


def with_live_pods(lab: LabState) -> LabState:
    """``lab`` with its pods and namespaces read from the API server (never saved: the API
    server keeps them)."""
    if k8s_state.is_kubernetes(lab):
        lab.pods, lab.namespaces, _ = live(lab)
    return lab


# ---- apply / delete / label ---------------------------------------------------------------------


def _ours(image: str) -> bool:
    return image.split(":", maxsplit=1)[0].removeprefix("docker.io/") == k8s_images.RESPONDER


def fill_pod_spec(spec: dict[str, Any], identity: str | None) -> None:
    """The lab's image, pull policy and responder args where a container asks for none."""
    for container in spec.get("containers") or []:
        image = str(container.get("image") or "")
        if not image:
            container["image"] = image = k8s_images.responder_ref()
        if not _ours(image):
            continue
        container.setdefault("imagePullPolicy", "Never")
        if container.get("command") or container.get("args"):
            continue
        args = ["--identity", identity] if identity else []
        ports = pods.container_ports({"spec": {"containers": [container]}})
        for proto in ("TCP", "UDP"):
            numbers = sorted({p["containerPort"] for p in ports if p["protocol"] == proto})
            if numbers:
                args += [f"--{proto.lower()}", ",".join(map(str, numbers))]
        container["args"] = args


def prepare(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kubernetes documents as ``kubectl apply`` gets them (pods filled in)."""
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        if kind == "Pod":
            ident = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
            fill_pod_spec(doc.setdefault("spec", {}), ident)
        elif kind in TEMPLATED:
            template = (doc.get("spec") or {}).get("template") or {}
            fill_pod_spec(template.setdefault("spec", {}), None)
        out.append(doc)
    return out


def load(texts: list[tuple[str, str]]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for source, text in texts:
        try:
            raw = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            raise LabError(f"{source}: not valid YAML/JSON: {exc}") from None
        for i, doc in enumerate(raw, 1):
            if not isinstance(doc, dict) or not doc.get("kind"):
                raise LabError(f"{source}: document {i}: not a Kubernetes object (no kind)")
            docs += doc.get("items") or [] if str(doc["kind"]).endswith("List") else [doc]
    return docs


def split(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(Calico resources, Kubernetes objects)."""
    calico = [d for d in docs if d.get("apiVersion") == CALICO_API]
    return calico, [d for d in docs if d.get("apiVersion") != CALICO_API]


def _calico(lab: LabState, docs: list[dict[str, Any]], report: Report, *, delete: bool) -> None:
    if not docs:
        return
    from calico_lab import cluster, objects

    parsed = objects.parse(yaml.safe_dump_all(docs), "Calico resources")  # checked, as any lab
    with cluster.session(lab.name) as (lab_, store):
        (objects.delete if delete else objects.apply)(lab_, store, parsed, report)


def check_nodes(lab: LabState, docs: list[dict[str, Any]]) -> None:
    """A Pod pinned to a node must name a lab node (it would stay Pending forever)."""
    for doc in docs:
        node = (doc.get("spec") or {}).get("nodeName") if doc.get("kind") == "Pod" else None
        if node:
            try:
                lab.node(str(node))
            except LabError as exc:
                name = (doc.get("metadata") or {}).get("name")
                raise LabError(f"pod {name}: spec.nodeName: {exc}") from None


def apply(lab: LabState, texts: list[tuple[str, str]], report: Report) -> None:
    calico, kube = split(load(texts))
    check_nodes(lab, kube)
    kube = prepare(kube)
    if kube:
        out = k8s_api.kubectl(lab, ["apply", "-f", "-"], input=yaml.safe_dump_all(kube))
        for line in out.splitlines():
            report(line)
    _calico(lab, calico, report, delete=False)
    wanted = [(d["metadata"].get("namespace") or "default", d["metadata"]["name"])
              for d in kube if d.get("kind") == "Pod"]  # fmt: skip
    if wanted:
        wait_running(lab, wanted)


def delete(lab: LabState, texts: list[tuple[str, str]], report: Report) -> None:
    calico, kube = split(load(texts))
    if kube:
        args = ["delete", "--ignore-not-found", "--wait=true", "-f", "-"]
        for line in k8s_api.kubectl(lab, args, input=yaml.safe_dump_all(kube)).splitlines():
            report(line)
    _calico(lab, calico, report, delete=True)


def wait_running(lab: LabState, wanted: list[tuple[str, str]]) -> None:
    """Until every pod runs with an address (and its network namespace is found)."""
    deadline = time.monotonic() + RUNNING_TIMEOUT
    keys = {f"{ns}/{name}" for ns, name in wanted}
    while True:
        found, _, items = live(lab)
        for item in items:
            key = f"{item['metadata']['namespace']}/{item['metadata']['name']}"
            if key in keys and (reason := start_error(item)):
                raise LabError(f"pod {key}: {reason}")
        pending = sorted(k for k in keys if not (k in found and found[k].ip))
        if not pending:
            return
        if time.monotonic() > deadline:
            phases = {
                f"{i['metadata']['namespace']}/{i['metadata']['name']}": (i.get("status") or {})
                for i in items
            }
            why = [f"{k} ({phases.get(k, {}).get('phase', 'gone')})" for k in pending]
            raise LabError(f"pods not running after {RUNNING_TIMEOUT:.0f}s: {', '.join(why)}")
        time.sleep(0.3)


def start_error(pod: dict[str, Any]) -> str:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in START_ERRORS:
            return f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
    return ""


def label(lab: LabState, kind: str, target: str, changes: dict[str, str | None]) -> dict[str, str]:
    """``kubectl label``; the object's labels afterwards."""
    args = [f"{k}={v}" if v is not None else f"{k}-" for k, v in changes.items()]
    if kind == "pod":
        ns, _, name = target.rpartition("/")
        if not ns:
            raise LabError(f"pod {target!r}: use NAMESPACE/NAME")
        where = ["pod", name, "-n", ns]
    else:
        where = ["namespace", target]
    k8s_api.kubectl(lab, ["label", "--overwrite", *where, *args])
    out = k8s_api.kubectl(lab, ["get", *where, "-o", "jsonpath={.metadata.labels}"])
    labels: dict[str, str] = yaml.safe_load(out) or {}
    return labels


# ---- exec ---------------------------------------------------------------------------------------


def exec_in(lab: LabState, target: str, command: list[str]) -> None:
    """Replace this process with ``command`` in a node (as a host), a pod's network namespace,
    or (``outside``, ``router``) as on any lab, with kubectl's environment."""
    from calico_lab import execute

    ks = k8s_state.require(lab)
    kube_env = {"KUBECONFIG": str(k8s_state.kubeconfig(lab, "admin"))}
    if target in execute.EXTRA_HOSTS or "/" in target:
        if "/" in target:
            with_live_pods(lab)
            ns = lab.pod(target).netns
            if not ns:
                raise LabError(f"pod {target} is not running")
            argv = ["nsenter", f"--net={ns}", "--", *command]
        else:
            argv = ["ip", "netns", "exec", execute.EXTRA_HOSTS[target](lab), *command]
        env = daemons.child_env(kube_env)
        env["PATH"] = f"{ks.kube_bin}:{env['PATH']}"
        os.execvpe(argv[0], argv, env)
    node = lab.node(target)
    host = ks.hosts[node.name]
    env = {**k8s_calico.host_node_env(lab, node), **kube_env}
    env["PATH"] = f"{lab.bin_dir}:{ks.kube_bin}:{env['PATH']}"
    env.pop("CALICO_CNI_SERVER", None)
    argv = [*k8s_host.nsenter(host), *command]
    os.execvpe(argv[0], argv, {**os.environ, **env})

"""Calico on a real Kubernetes cluster: the hosted install on a 2-node `calico-lab up --kubernetes`
lab.

    .venv/bin/python -m bench.k8s [-n 20] [--restarts 3] [--policy-reps 10]

Brings up a throwaway lab (state in a temp dir, namespaces ``calab-bk<hex>-*``) with the shipped
defaults (``manifests/calico.yaml`` as a user applies it, the images from ``make images``), then
measures, on node2 (``bench.k8s.sandboxes``, ``bench.k8s.traffic``):

1. CNI ADD and DEL as the kubelet sees them: containerd's RunPodSandbox (pause container + CNI ADD)
   and first StopPodSandbox (pause stopped + CNI DEL), from its log, for pods served by the hosted
   install's ``calico`` + ``portmap`` against Debian's Go ``ptp`` + ``host-local`` + ``portmap``
   on the same node, in alternating blocks of 5 pods so both see the same noise;
2. pod create -> Running (the POST to ``phase: Running`` with an address), both contenders;
3. policy apply -> first enforced verdict: a NetworkPolicy denying ingress to pod b (node2) POSTed
   to the API server (through calico-kube-controllers, etcd, felix) until a UDP prober in pod a
   (node1) sees its first run of drops, and its DELETE until traffic passes again; baseline: the
   same policy written straight into etcd as a Calico NetworkPolicy (no API server, no controller);
4. a TCP stream from a to b while the calico-node pod of node1 is deleted (``kubectl delete pod``):
   the longest gap until the DaemonSet's new pod has taken over;
5. facts: bring-up time, image sizes (``build/images/images.json`` and the lab's pause and
   responder images).

Skips (recording why) without the Kubernetes binaries (``make kube``) or the images.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import results
from bench.k8s import sandboxes, traffic
from calico.lib import cmd

DOC = "docs/design/kubernetes.md"
CALICO_LAB = str(Path(sys.executable).parent / "calico-lab")
REF_SUBNET = "10.250.2.0/24"
DENY_K8S = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "bench-deny", "namespace": sandboxes.NAMESPACE},
    "spec": {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"]},
}
DENY_CALICO = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "NetworkPolicy",
    "metadata": {"name": "bench-deny-direct", "namespace": sandboxes.NAMESPACE},
    "spec": {"selector": "app == 'b'", "types": ["Ingress"]},
}
PAIR = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: bench, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers: [{{name: c, ports: [{{containerPort: 80}}, {{containerPort: 53, protocol: UDP}}]}}]
"""


def missing() -> str:
    from calico_lab import k8s_calico, k8s_cluster

    if os.geteuid() != 0:
        return "needs root"
    try:
        k8s_cluster.check_kube_bin(k8s_cluster.default_kube_bin())
        k8s_calico.calico_archives()
    except Exception as exc:
        return str(exc)
    return ""


def cli(*args: str, input: str | None = None, timeout: float = 600) -> str:
    proc = cmd.run([CALICO_LAB, *args], input=input, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"calico-lab {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


CONTENDERS = ("calico", "calico-felix-stopped", "ptp")


def sandbox_samples(lab: Any, api: Any, n: int) -> dict[str, dict[str, list[float]]]:
    """{contender: {"run"|"stop"|"running": samples}}, in rotating blocks of 5 pods. The middle
    contender is the hosted calico with node2's felix stopped (SIGSTOP) during its block: what the
    node's dataplane update, running at the same time on the same cores, adds to the sandbox."""
    out: dict[str, dict[str, list[float]]] = {
        c: {"run": [], "stop": [], "running": []} for c in CONTENDERS
    }
    names: dict[str, str] = {}
    for block in range(max(1, n // 5)):
        order = CONTENDERS[block % 3 :] + CONTENDERS[: block % 3]
        for contender in order:
            sandboxes.use_reference(lab, "node2", contender == "ptp", subnet=REF_SUBNET)
            felix = sandboxes.felix_pids(lab, "node2") if "stopped" in contender else []
            for pid in felix:
                os.kill(pid, signal.SIGSTOP)
            try:
                for i in range(5):
                    name = f"s{block}-{contender}-{i}"
                    secs, ip = sandboxes.create_until_running(api, name, "node2")
                    sandboxes.check_address(ip, contender, REF_SUBNET)
                    out[contender]["running"].append(secs)
                    sandboxes.delete_until_gone(api, name)
                    names[name] = contender
            finally:
                for pid in felix:
                    os.kill(pid, signal.SIGCONT)
    sandboxes.use_reference(lab, "node2", False, subnet=REF_SUBNET)
    time.sleep(3)  # the last StopPodSandbox lands in the log
    times = sandboxes.sandbox_times(sandboxes.containerd_log(lab, "node2"), set(names))
    for name, (run, stop) in times.items():
        out[names[name]]["run"].append(run)
        out[names[name]]["stop"].append(stop)
    out["calico"]["served"] = sandboxes.served_adds(lab, "node2")  # both calico contenders
    return out


def policy_samples(lab: Any, api: Any, reps: int) -> tuple[list[float], list[float], list[float]]:
    """(k8s apply -> deny, k8s delete -> allow, direct Calico write -> deny) in ms."""
    from calico_lab.store import LabStore

    pods = lab.pods
    a, b = pods["bench/a"], pods["bench/b"]
    prober = traffic.Prober(a.netns, b.ip, 53)
    store = LabStore.of(lab)
    path = f"/apis/networking.k8s.io/v1/namespaces/{sandboxes.NAMESPACE}/networkpolicies"
    deny, allow, direct = [], [], []
    try:
        prober.first_after(time.monotonic(), True)
        for _ in range(reps):
            t0 = time.monotonic()
            api.send("POST", path, DENY_K8S)
            deny.append(prober.first_after(t0, False) * 1000)
            t0 = time.monotonic()
            api.send("DELETE", f"{path}/bench-deny")
            allow.append(prober.first_after(t0, True) * 1000)
            t0 = time.monotonic()
            store.apply(DENY_CALICO)
            direct.append(prober.first_after(t0, False) * 1000)
            store.delete("NetworkPolicy", "bench-deny-direct", sandboxes.NAMESPACE)
            prober.first_after(time.monotonic(), True)
    finally:
        prober.close()
        store.close()
    return deny, allow, direct


def restart_gaps(lab: Any, restarts: int) -> list[float]:
    a, b = lab.pods["bench/a"], lab.pods["bench/b"]
    stream = traffic.Stream(a.netns, b.netns, b.ip)
    gaps = []
    try:
        for _ in range(restarts):
            pods = json.loads(cli("kubectl", "get", "pods", "-n", "kube-system", "-l",
                                  "k8s-app=calico-node", "-o", "json"))["items"]  # fmt: skip
            (old,) = [p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == "node1"]
            t0 = time.monotonic()
            cli("kubectl", "delete", "pod", old, "-n", "kube-system", "--wait=true")
            cli("kubectl", "rollout", "status", "daemonset/calico-node", "-n", "kube-system",
                "--timeout=300s")  # fmt: skip
            time.sleep(5)  # traffic well after the new pod is Ready
            gaps.append(stream.gap_since(t0))
    finally:
        stream.close()
    return gaps


def image_facts(rec: results.Recorder, lab: Any) -> None:
    from calico_lab import k8s_calico, k8s_state

    meta = json.loads((k8s_calico.images_dir() / "images.json").read_text())
    for image in meta["images"]:
        rec.fact(f"image_bytes {image['ref']}", image["bytes"])
    for archive in sorted(k8s_state.images_dir(lab).glob("*.tar")):
        rec.fact(f"image_bytes calico-lab/{archive.stem}", archive.stat().st_size)


def run(args: argparse.Namespace, rec: results.Recorder) -> None:
    from calico_lab import k8s_api, k8s_pods, state

    name = f"bk{secrets.token_hex(3)}"
    os.environ["CALICO_LAB"] = name  # every calico-lab below: this lab
    t0 = time.monotonic()
    cli("up", "--kubernetes", "--nodes", "2", "--quiet", timeout=1200)
    rec.fact("bring_up_seconds", round(time.monotonic() - t0, 1))
    try:
        lab = state.require(name)
        image_facts(rec, lab)
        cli("kubectl", "create", "namespace", sandboxes.NAMESPACE)
        with k8s_api.Api(lab) as api:
            got = sandbox_samples(lab, api, args.n)
            report_sandboxes(rec, got)
            pair = PAIR.format(name="a", node="node1") + "---" + PAIR.format(name="b", node="node2")
            cli("apply", "-f", "-", input=pair)
            lab = k8s_pods.with_live_pods(state.require(name))
            deny, allow, direct = policy_samples(lab, api, args.policy_reps)
        rec.figure("policy_apply", title="k8s NetworkPolicy POST -> first enforced verdict",
                   unit="ms", samples=deny, baseline=direct,
                   baseline_title="the same policy written to etcd (no API server, controller)",
                   readme="NetworkPolicy apply → first enforced verdict (real Kubernetes)",
                   doc=DOC)  # fmt: skip
        rec.figure("policy_delete", title="k8s NetworkPolicy DELETE -> first allowed verdict",
                   unit="ms", samples=allow, doc=DOC)  # fmt: skip
        if args.restarts:
            gaps = restart_gaps(lab, args.restarts)
            if len(gaps) >= results.MIN_REPS:
                rec.figure(
                    "calico_node_restart_gap",
                    title="TCP stream gap, calico-node pod deleted and replaced",
                    unit="s",
                    samples=gaps,
                    doc=DOC,
                )
            else:
                rec.fact("calico_node_restart_gap_s", [round(g, 2) for g in gaps])
    finally:
        cli("down", "--quiet", timeout=600)


def report_sandboxes(rec: results.Recorder, got: dict[str, dict[str, list[float]]]) -> None:
    ref, ref_title = got["ptp"], "Go ptp + host-local + portmap, same node"
    for key, what, readme in (
        ("run", "RunPodSandbox (pause + CNI ADD)", "CNI ADD under a real kubelet (RunPodSandbox)"),
        (
            "stop",
            "StopPodSandbox (pause + CNI DEL)",
            "CNI DEL under a real kubelet (StopPodSandbox)",
        ),
    ):
        rec.figure(f"sandbox_{key}", title=f"{what}, hosted calico + portmap", unit="ms",
                   samples=got["calico"][key], baseline=ref[key], baseline_title=ref_title,
                   readme=readme, doc=DOC)  # fmt: skip
        rec.figure(f"sandbox_{key}_felix_stopped", title=f"{what}, calico, felix stopped",
                   unit="ms", samples=got["calico-felix-stopped"][key], baseline=ref[key],
                   baseline_title=ref_title, doc=DOC)  # fmt: skip
    rec.figure("cni_add_served", title="calico ADD in the node's CNI server (its log)",
               unit="ms", samples=got["calico"]["served"], doc=DOC)  # fmt: skip
    rec.figure("pod_running", title="pod create -> Running, hosted calico", unit="s",
               samples=got["calico"]["running"], baseline=ref["running"],
               baseline_title=ref_title, readme="pod create → Running (real Kubernetes)",
               doc=DOC)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.k8s", description=__doc__)
    parser.add_argument("-n", type=int, default=20, help="pods per contender (blocks of 5)")
    parser.add_argument("--policy-reps", type=int, default=10)
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args()
    rec = results.Recorder("k8s")
    reason = missing()
    if reason:
        print(f"[k8s] skipped: {reason}")
        rec.fact("skipped", reason)
        rec.save()
        return 0
    root = tempfile.mkdtemp(prefix="calab-bench-k8s-")
    os.environ["CALICO_LAB_ROOT"] = root  # this process and the calico-lab it runs
    try:
        run(args, rec)
    finally:
        try:
            os.rmdir(root)
        except OSError:
            pass
    rec.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())

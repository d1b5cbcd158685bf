"""A Kubernetes lab node: containerd (CRI, runc, cgroupfs), kubelet and kube-proxy in the node's
namespaces, shaped like a host of its own.

Inside the node's mount namespace (:mod:`calico_lab.k8s_init`) the node gets, over the machine's
paths, its own directories (``<lab>/k8s/hosts/<node>/...``), so the hosted install's hostPath
volumes and every daemon's default paths land in the node and nowhere else::

    /run                  tmpfs: containerd's state, runc's, /run/netns/cni-*, xtables.lock
    /run/calico           the node's CALICO_RUN_DIR (BIRD's socket, the CNI server's, health.json)
    /var/log              var-log/ (/var/log/pods, /var/log/containers)
    /var/log/calico       the node's calico log directory (<lab>/nodes/<node>/log)
    /etc/cni/net.d        cni-net.d/   (install-cni writes the conflist and kubeconfig here)
    /opt/cni/bin          cni-bin/     (and the plugins here)
    /var/lib/calico       var-lib-calico/
    /var/lib/cni          var-lib-cni/ (libcni's cache)
    /var/lib/kubelet      kubelet/     (the kubelet's root: pods' volumes, its sockets)
    /proc/sys/...         the host-wide sysctls kubelet 1.20 writes, masked by files holding the
                          values it wants (vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
                          kernel.panic_on_oops, kernel.keys.root_maxkeys, kernel.keys.root_maxbytes)

The kubelet's pods live under ``cgroupRoot: /calab-<lab>-<node>`` (made in every hierarchy by
:mod:`calico_lab.k8s_host`); its flexvolume directory is the node's (else made under
``/usr/libexec/kubernetes`` on the machine).
kube-proxy runs in iptables mode with every conntrack setting at 0: 1.20 writes
``nf_conntrack_max`` (and the module's ``hashsize``) and the TCP timeouts only for values above 0,
and those are not (all) per network namespace. What it does write, ``route_localnet``, is.
"""

from __future__ import annotations

import json
from pathlib import Path

from calico_lab import daemons, k8s_host, k8s_state, nodes
from calico_lab.k8s_state import KubeState
from calico_lab.state import LabError, LabState, NodeState

CONTAINERD = "/usr/bin/containerd"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"  # in the node's own /run
MOUNT_POINTS = ("/etc/cni/net.d", "/opt/cni/bin", "/var/lib/calico", "/var/lib/cni",
                "/var/lib/kubelet")  # fmt: skip
SYSCTL_MASKS = {  # what kubelet 1.20's setupKernelTunables wants (it writes nothing then)
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
STOP_ORDER = ("kubelet", "kube-proxy", "calico-node", "containerd")


def node_dir(lab: LabState, node: str, what: str) -> Path:
    return k8s_state.host_dir(lab, node) / what


def binds(lab: LabState, node: str) -> list[tuple[Path, str]]:
    """(source, mount point inside the node), in mount order."""
    return [
        (nodes.run_dir(lab, node), "/run/calico"),
        (node_dir(lab, node, "var-log"), "/var/log"),
        (nodes.log_dir(lab, node), "/var/log/calico"),
        (node_dir(lab, node, "cni-net.d"), "/etc/cni/net.d"),
        (node_dir(lab, node, "cni-bin"), "/opt/cni/bin"),
        (node_dir(lab, node, "var-lib-calico"), "/var/lib/calico"),
        (node_dir(lab, node, "var-lib-cni"), "/var/lib/cni"),
        # kubelet's default root: short socket paths (pod-resources, device-plugins), as a host's
        (node_dir(lab, node, "kubelet"), "/var/lib/kubelet"),
    ]


def init_args(lab: LabState, node: str) -> list[str]:
    args = []
    for where, opts in k8s_host.cgroup_mounts():
        args += ["--cgroup", f"{where}={opts}"]
    masks = node_dir(lab, node, "sysctl")
    masks.mkdir(parents=True, exist_ok=True)
    for key, value in SYSCTL_MASKS.items():
        (masks / key.replace("/", ".")).write_text(f"{value}\n")
        args += ["--mask", f"/proc/sys/{key}={masks / key.replace('/', '.')}"]
    args += ["--tmpfs", "/run"]
    for source, target in binds(lab, node):
        source.mkdir(parents=True, exist_ok=True)
        args += ["--bind", f"{source}={target}"]
    return args


def containerd_config(lab: LabState, node: str) -> str:
    root = node_dir(lab, node, "containerd")
    from calico_lab import k8s_images

    return f"""# containerd on lab node {node}: own root; state, socket, shims in the node's /run
version = 2
root = "{root / "root"}"
state = "/run/containerd"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{CONTAINERD_SOCKET}"
[debug]
  level = "info"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{root / "opt"}"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{k8s_images.pause_ref()}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    disable_apparmor = true
    # root here lacks CAP_SYS_RESOURCE: no negative oom_score_adj, no hugetlb hierarchy
    restrict_oom_score_adj = true
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "/etc/cni/net.d"
      max_conf_num = 1
"""


def kubelet_config(lab: LabState, node: NodeState) -> str:
    pki = k8s_state.pki_dir(lab)
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.ip,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": "/" + k8s_state.cgroup_root(lab, node.name),
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "failSwapOn": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDomain": k8s_state.CLUSTER_DOMAIN,
        "resolvConf": str(node_dir(lab, node.name, "resolv.conf")),
        "serializeImagePulls": False,
        # the machine's disk is shared with everything else: no image GC, no disk eviction
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "makeIPTablesUtilChains": True,
    }
    return json.dumps(config, indent=1) + "\n"


def kubelet_argv(lab: LabState, ks: KubeState, node: NodeState) -> list[str]:
    from calico_lab import k8s_images

    kdir = k8s_state.host_dir(lab, node.name)
    return [
        f"{ks.kube_bin}/kubelet",
        f"--config={kdir / 'kubelet.json'}",
        f"--kubeconfig={k8s_state.kubeconfig(lab, f'kubelet-{node.name}')}",
        "--container-runtime=remote",
        f"--container-runtime-endpoint=unix://{CONTAINERD_SOCKET}",
        "--runtime-request-timeout=2m",
        f"--hostname-override={node.name}",
        f"--node-ip={node.ip}",
        f"--volume-plugin-dir={kdir / 'volume-plugins'}",  # else made under /usr/libexec
        f"--pod-infra-container-image={k8s_images.pause_ref()}",
        "--v=1",
    ]


def kube_proxy_config(lab: LabState, node: NodeState) -> str:
    from calico_lab.state import POOL_CIDR

    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(k8s_state.kubeconfig(lab, "kube-proxy"))},
        "hostnameOverride": node.name,
        "bindAddress": node.ip,
        "clusterCIDR": POOL_CIDR,  # traffic from outside the pods' range is masqueraded
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "oomScoreAdj": 0,
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
    return json.dumps(config, indent=1) + "\n"


def write_configs(lab: LabState, node: NodeState) -> None:
    kdir = k8s_state.host_dir(lab, node.name)
    (kdir / "containerd").mkdir(parents=True, exist_ok=True)
    (kdir / "containerd" / "config.toml").write_text(containerd_config(lab, node.name))
    (kdir / "kubelet.json").write_text(kubelet_config(lab, node))
    (kdir / "kube-proxy.json").write_text(kube_proxy_config(lab, node))
    (kdir / "resolv.conf").write_text("# no DNS in the lab\nnameserver 127.0.0.1\n")


def start_runtime(lab: LabState, ks: KubeState, node: NodeState) -> None:
    """The node's init (mounts), its cgroup root, containerd; wait for containerd to answer."""
    host = ks.hosts[node.name]
    if not host.cgroup:
        host.cgroup = k8s_state.cgroup_root(lab, node.name)
        k8s_state.save(lab, ks)  # write-ahead
    k8s_host.make_cgroup_root(host.cgroup)
    write_configs(lab, node)
    k8s_host.start_init(lab, ks, node.name, init_args=init_args(lab, node.name))
    config = k8s_state.host_dir(lab, node.name) / "containerd" / "config.toml"
    k8s_host.ensure_daemon(lab, ks, node.name, "containerd", [CONTAINERD, "--config", str(config)])

    def answers() -> bool:
        if not daemons.alive(host.daemons["containerd"]):
            raise LabError(f"containerd on {node.name} exited; see "
                           f"{k8s_state.log_file(lab, node.name, 'containerd')}")  # fmt: skip
        try:
            k8s_host.run_in(host, ["ctr", "--address", CONTAINERD_SOCKET, "version"], timeout=10)
        except Exception:
            return False
        return True

    daemons.wait_until(answers, timeout=60, interval=0.2, what=f"containerd on {node.name}")


def import_images(ks: KubeState, node: str, archives: dict[str, Path]) -> None:
    """``ctr images import`` each archive ({image ID: path}) not imported into this node yet,
    noting it in the host's state (saved by the caller: nodes import in parallel)."""
    host = ks.hosts[node]
    for image_id, archive in archives.items():
        if image_id in host.images:
            continue
        k8s_host.run_in(host, ["ctr", "--address", CONTAINERD_SOCKET, "-n", "k8s.io", "images",
                               "import", str(archive)], timeout=600)  # fmt: skip
        host.images.append(image_id)


def start_kubelet(lab: LabState, ks: KubeState, node: NodeState) -> None:
    k8s_host.ensure_daemon(lab, ks, node.name, "kubelet", kubelet_argv(lab, ks, node))
    config = k8s_state.host_dir(lab, node.name) / "kube-proxy.json"
    proxy = [f"{ks.kube_bin}/kube-proxy", f"--config={config}", "--v=1"]
    k8s_host.ensure_daemon(lab, ks, node.name, "kube-proxy", proxy)


def stop(lab: LabState, ks: KubeState, node: str) -> list[str]:
    """Stop everything of the node; what could not be removed (cgroups)."""
    host = ks.hosts[node]
    k8s_host.stop(host, STOP_ORDER)
    return k8s_host.remove_cgroup_root(host.cgroup) if host.cgroup else []

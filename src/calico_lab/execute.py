"""``calico-lab exec``: run a command in a lab node's, pod's, outside's or the router's namespace.

In a node the command sees what that host's Calico processes see: ``ETCD_ENDPOINTS``, ``NODENAME``,
``CALICO_RUN_DIR`` (so ``calicoctl node status`` finds this node's BIRD) and a ``PATH`` with the
lab's ``birdc`` wrapper (which talks to this node's BIRD socket) and our console scripts first,
plus ``CALICO_AGENTS``: where every node's agent answers (all run dirs are on the one shared
filesystem), so ``calicoctl explain`` and ``get ... -o wide`` reach every node from any node.
"""

from __future__ import annotations

from collections.abc import Callable

from calico.lib import cmd, control
from calico_lab import daemons, nodes
from calico_lab.state import LabError, LabState

# Namespaces of the lab that are neither nodes nor pods: the host beyond the router, the router.
EXTRA_HOSTS: dict[str, Callable[[LabState], str]] = {
    "outside": lambda lab: lab.outside,
    "router": lambda lab: lab.core,
}


def target_env(lab: LabState, target: str) -> tuple[str, dict[str, str]]:
    """The namespace and environment for ``NODE``, ``NS/POD``, ``outside`` or ``router``."""
    if target in EXTRA_HOSTS:
        return EXTRA_HOSTS[target](lab), daemons.child_env({})
    if "/" in target:
        pod = lab.pod(target)
        return pod.netns, daemons.child_env({"CALICO_LAB_POD": pod.key})
    node = lab.node(target)
    env = daemons.child_env(nodes.node_env(lab, node))
    env["PATH"] = f"{lab.bin_dir}:{env['PATH']}"
    env[control.ENV_AGENTS] = agents_template(lab)
    return node.netns, env


def agents_template(lab: LabState) -> str:
    """Every lab node's agent socket, as a ``{node}`` template (``CALICO_AGENTS``)."""
    return str(nodes.run_dir(lab, "{node}") / control.SOCKET_NAME)


def exec_in(lab: LabState, target: str, command: list[str]) -> None:
    """Replace this process with ``command`` running in the target's namespace."""
    if not command:
        raise LabError("exec: no command given (calico-lab exec NODE -- COMMAND ...)")
    if lab.kubernetes:
        from calico_lab import k8s_pods

        k8s_pods.exec_in(lab, target, command)
    ns, env = target_env(lab, target)
    cmd.exec_replace(["ip", "netns", "exec", ns, *command], env)

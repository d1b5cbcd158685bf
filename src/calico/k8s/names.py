"""Names and labels Calico uses for objects derived from Kubernetes (libcalico-go's constants).

A Kubernetes NetworkPolicy ``N`` in namespace ``S`` becomes Calico NetworkPolicy ``knp.default.N``
in ``S``; an AdminNetworkPolicy ``N`` becomes GlobalNetworkPolicy ``kanp.kube-admin.N`` (tier
``kube-admin``) and the BaselineAdminNetworkPolicy ``default`` becomes
``kbanp.kube-baseline.default`` (tier ``kube-baseline``); a Namespace ``S`` becomes Profile
``kns.S``; a ServiceAccount ``A`` in ``S`` becomes Profile ``ksa.S.A``. The prefixes are also how
the policy controller recognises the objects it owns: it never touches a Calico object whose name
does not carry one of them.
"""

from __future__ import annotations

POLICY_PREFIX = "knp.default."
# Calico's tiers for the cluster-scoped Kubernetes policies, and the names of what we write there.
KUBE_ADMIN_TIER = "kube-admin"
KUBE_BASELINE_TIER = "kube-baseline"
ADMIN_POLICY_PREFIX = "kanp.kube-admin."  # AdminNetworkPolicy N -> GNP kanp.kube-admin.N
BASELINE_POLICY_PREFIX = "kbanp.kube-baseline."  # BaselineAdminNetworkPolicy default
NAMESPACE_PROFILE_PREFIX = "kns."
SERVICE_ACCOUNT_PROFILE_PREFIX = "ksa."

# Label prefixes applied through a profile's labelsToApply (namespaceSelector / serviceAccounts).
NAMESPACE_LABEL_PREFIX = "pcns."
SERVICE_ACCOUNT_LABEL_PREFIX = "pcsa."
# The profile also carries the object's own name under this key (pcns.projectcalico.org/name).
NAME_LABEL = "projectcalico.org/name"

# Labels Calico adds to a pod's WorkloadEndpoint.
LABEL_NAMESPACE = "projectcalico.org/namespace"
LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator"
LABEL_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount"
ORCHESTRATOR_K8S = "k8s"

POLICY_ORDER = 1000.0


def policy_name(k8s_name: str) -> str:
    """``knp.default.<name>``: the Calico policy for Kubernetes NetworkPolicy ``k8s_name``."""
    return POLICY_PREFIX + k8s_name


def policy_name_to_k8s(calico_name: str) -> str | None:
    """The Kubernetes NetworkPolicy name behind ``calico_name``, or None if we do not own it."""
    if calico_name.startswith(POLICY_PREFIX) and len(calico_name) > len(POLICY_PREFIX):
        return calico_name[len(POLICY_PREFIX) :]
    return None


def admin_policy_name(k8s_name: str) -> str:
    return ADMIN_POLICY_PREFIX + k8s_name


def baseline_policy_name(k8s_name: str) -> str:
    return BASELINE_POLICY_PREFIX + k8s_name


def global_policy_source(calico_name: str) -> tuple[str, str] | None:
    """(Kubernetes kind, name) behind a GlobalNetworkPolicy we own, or None."""
    for prefix, kind in (
        (ADMIN_POLICY_PREFIX, "AdminNetworkPolicy"),
        (BASELINE_POLICY_PREFIX, "BaselineAdminNetworkPolicy"),
    ):
        if calico_name.startswith(prefix) and len(calico_name) > len(prefix):
            return kind, calico_name[len(prefix) :]
    return None


def namespace_profile_name(namespace: str) -> str:
    return NAMESPACE_PROFILE_PREFIX + namespace


def service_account_profile_name(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PROFILE_PREFIX}{namespace or 'default'}.{name}"


def profile_name_to_namespace(profile: str) -> str | None:
    """``kns.S`` -> ``S``; None for any other profile."""
    if profile.startswith(NAMESPACE_PROFILE_PREFIX) and len(profile) > len(
        NAMESPACE_PROFILE_PREFIX
    ):
        return profile[len(NAMESPACE_PROFILE_PREFIX) :]
    return None


def profile_name_to_service_account(profile: str) -> tuple[str, str] | None:
    """``ksa.S.A`` -> ``(S, A)``; None for any other profile (namespaces never contain dots)."""
    if not profile.startswith(SERVICE_ACCOUNT_PROFILE_PREFIX):
        return None
    parts = profile.split(".", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def _escape(part: str) -> str:
    return part.replace("-", "--")


def workload_endpoint_name(
    node: str, pod: str, endpoint: str = "eth0", *, orchestrator: str = ORCHESTRATOR_K8S
) -> str:
    """``<node>-<orchestrator>-<pod>-<endpoint>`` with every ``-`` inside a part doubled."""
    return "-".join(_escape(p) for p in (node, orchestrator, pod, endpoint))

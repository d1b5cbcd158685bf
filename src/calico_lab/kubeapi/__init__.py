"""The lab's Kubernetes API server stand-in (also the tests' and benchmarks' fake API server).

Serves core objects (Pods, Namespaces, ServiceAccounts, Nodes, Events), NetworkPolicies, the
network-policy-api CRDs and, once their CustomResourceDefinitions are created, Calico's
``crd.projectcalico.org/v1`` custom resources, with the real server's resourceVersion conflicts,
watches (bookmarks, 410 Gone) and paged lists. See :mod:`calico_lab.kubeapi.server`.
"""

from calico_lab.kubeapi.server import FakeKube
from calico_lab.kubeapi.store import RESOURCES, ApiError

__all__ = ["RESOURCES", "ApiError", "FakeKube"]

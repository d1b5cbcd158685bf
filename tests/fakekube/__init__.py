"""The fake Kubernetes API server for tests and bench: the lab's stand-in (calico_lab.kubeapi)."""

from calico_lab.kubeapi.server import FakeKube
from calico_lab.kubeapi.store import RESOURCES, ApiError

__all__ = ["RESOURCES", "ApiError", "FakeKube"]

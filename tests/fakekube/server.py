"""Re-export: the fake API server lives in calico_lab.kubeapi.server."""

from calico_lab.kubeapi.server import *  # noqa: F403
from calico_lab.kubeapi.server import FakeKube

__all__ = ["FakeKube"]

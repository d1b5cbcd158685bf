"""A small fake Kubernetes API server (see :mod:`tests.fakekube.server`), for tests and bench."""

from tests.fakekube.server import FakeKube
from tests.fakekube.store import RESOURCES, ApiError

__all__ = ["RESOURCES", "ApiError", "FakeKube"]

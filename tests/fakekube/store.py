"""Re-export: the fake API server's store lives in calico_lab.kubeapi.store."""

from calico_lab.kubeapi.store import RESOURCES, ApiError, Obj, Store

__all__ = ["RESOURCES", "ApiError", "Obj", "Store"]

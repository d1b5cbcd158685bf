"""Re-export: calico_lab.kubeapi.tls."""

from calico_lab.kubeapi.tls import *  # noqa: F403

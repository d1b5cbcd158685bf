"""Calico, in Python: pod networking and network policy for Kubernetes."""

__version__ = "0.1.0"

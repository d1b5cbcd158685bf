"""IPAM errors: every failure the IPAM library raises is an :class:`IPAMError`."""

from __future__ import annotations


class IPAMError(Exception):
    """An IPAM request failed (no pool, exhausted, datastore kept changing...)."""


class PoolExhausted(IPAMError):
    """No free address is left in the usable pools."""

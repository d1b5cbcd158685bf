"""LabError: a lab operation failed; the message is for the user (the CLI prints it, exit 1)."""

from __future__ import annotations


class LabError(Exception):
    """A lab operation failed; the message is for the user."""

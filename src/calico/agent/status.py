"""The agent's status for other processes: ``$CALICO_RUN_DIR/felix-status.json``.

A JSON object, rewritten atomically (temp file + rename) whenever its content changes::

    {
      "node": "node1",
      "pid": 1234,
      "ready": false,            # in sync, applied, no failure pending and no problems
      "in_sync": true,           # the datastore's first full sync has been programmed
      "applies": 42,             # dataplane applies so far
      "failures": 0,             # consecutive failed applies (5 end the agent)
      "problems": ["IPIP pool(s) default-ipv4-ippool: the kernel has no 'ipip' module ..."]
    }

``problems`` lists what this node cannot program for its pools, in words naming them (a device
type the kernel lacks, this node's Node missing its VXLAN tunnel address or MAC); everything
else is programmed all the same. ``calico-node --felix-ready`` and ``calicoctl node status`` read
this file; ``/readiness`` serves the same fields. The run dir defaults to ``/var/run/calico``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_RUN_DIR = "/var/run/calico"
FILE_NAME = "felix-status.json"


def path_from_env(env: dict[str, str]) -> Path:
    return Path(env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR) / FILE_NAME


class StatusFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: dict[str, Any] | None = None
        self._warned = False

    def write(self, status: dict[str, Any]) -> bool:
        """Rewrite the file if ``status`` differs from the last write; True if written."""
        if status == self._last:
            return False
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(status, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._warned:
                logger.warning("cannot write %s: %s", self.path, exc)
                self._warned = True
            return False
        self._last = dict(status)
        return True

"""k8s_init.py is started as ``python -I -S k8s_init.py`` (no site, no package on the path): it
must import from the standard library only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import calico_lab

INIT = Path(calico_lab.__file__).parent / "k8s_init.py"


def test_starts_without_the_package_or_site() -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(INIT), "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    assert "--ready" in proc.stdout

"""Render a :class:`~calico.bgp.model.BirdModel` to BIRD 2 config text; check it with ``bird -p``.

The template (``templates/bird.cfg.j2``) reads like the config it produces, as Calico's confd
templates did. Rendering is pure; :func:`validate` runs ``bird -p -c FILE`` (parse only, no sockets)
and :func:`install` writes a checked config atomically next to the live one, so BIRD never reads a
file that failed validation or a half-written one.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import jinja2

from calico.bgp.model import PEER_TYPES, BirdModel
from calico.lib import cmd

# BGPConfiguration.logSeverityScreen -> (BIRD log classes, protocol debug level)
_LOG_LEVELS: dict[str, tuple[str, str]] = {
    "debug": ("all", "all"),
    "info": ("info, remote, warning, error, auth, fatal, bug", "states"),
    "warning": ("warning, error, auth, fatal, bug", ""),
    "error": ("error, auth, fatal, bug", ""),
    "fatal": ("fatal, bug", ""),
    "none": ("", ""),
}


class RenderError(ValueError):
    """The rendered config was rejected by ``bird -p`` (message names file, line and column)."""


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("calico.bgp", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env.get_template("bird.cfg.j2")


def render(model: BirdModel) -> str:
    log_classes, debug = _LOG_LEVELS.get(model.log_severity.lower(), _LOG_LEVELS["info"])
    return _template().render(m=model, log_classes=log_classes, debug=debug, peer_types=PEER_TYPES)


def validate(path: str | Path, *, bird: str = "bird") -> None:
    """Raise RenderError unless ``bird -p`` accepts the config at ``path``."""
    proc = cmd.run([bird, "-p", "-c", str(path)], check=False, timeout=20)
    if proc.returncode != 0:
        raise RenderError(f"bird -p rejected {path}: {(proc.stderr or proc.stdout).strip()}")


def install(text: str, path: str | Path, *, bird: str = "bird") -> bool:
    """Validate ``text`` and atomically replace ``path`` with it; False if it was already there.

    Raises RenderError (and leaves ``path`` untouched) when BIRD rejects the text.
    """
    path = Path(path)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        validate(tmp, bird=bird)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True

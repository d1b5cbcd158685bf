"""How calicoctl commands fail, and where they find the datastore: shared by every command module.

:func:`fails_cleanly` turns the errors a user can cause (bad input, bad config, a datastore that
said no or is not there) into one message on stderr and exit status 1, never a traceback.
:func:`datastore_config` reads ``--config`` (the command's :func:`config_option`, else the top-level
one) and the env.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from calico.datastore.config import DatastoreConfig

F = TypeVar("F", bound=Callable[..., None])


def fails_cleanly(
    *user_errors: type[Exception], prefixed: tuple[type[Exception], ...] = ()
) -> Callable[[F], F]:
    """Decorator: ``user_errors`` print as they are; ``prefixed`` ones after "Failed to execute
    command: "; datastore failures after "Failed: "; all exit 1."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            from calico.datastore.backend import StoreError
            from calico.datastore.config import ConfigError

            plain: tuple[type[Exception], ...] = (ConfigError, ValueError, *user_errors)
            try:
                fn(*args, **kwargs)
            except prefixed as exc:
                click.echo(f"Failed to execute command: {exc}", err=True)
            except plain as exc:
                click.echo(str(exc), err=True)
            except StoreError as exc:
                click.echo(f"Failed: {exc}", err=True)
            else:
                return
            raise click.exceptions.Exit(1)

        return wrapper  # type: ignore[return-value]

    return decorate


def datastore_config(config_file: str | None) -> DatastoreConfig:
    from calico.datastore import config

    root = click.get_current_context().find_root().obj or {}
    return config.load(config_file or root.get("config_file"))


def config_option(fn: F) -> F:
    """The per-command ``-c/--config FILE`` option."""
    return click.option(
        "-c", "--config", "config_file", default=None, metavar="FILE",
        help="CalicoAPIConfig file (default /etc/calico/calicoctl.cfg)",
    )(fn)  # fmt: skip
